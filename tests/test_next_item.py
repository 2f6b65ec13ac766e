"""Category distribution x retrieval next-item ranker, on seeded vectors with a known structure."""

from __future__ import annotations

import numpy as np
import pytest

from llmint.metrics import rank_metrics
from llmint.next_item import CategoryRetrieval, CategoryRetrievalConfig


class FixedCategories:
    """A fitted category 'ranker' that always returns the same distribution."""

    name = "fixed"

    def __init__(self, p: np.ndarray) -> None:
        self.p = np.asarray(p, dtype=np.float64)
        self.seen: list[list[int]] = []

    def fit(self, sequences, n_classes, *, valid=None):  # pragma: no cover - never called
        return self

    def predict_proba(self, histories):
        self.seen.extend(list(h) for h in histories)
        return np.tile(self.p, (len(histories), 1))


def unit(rng: np.random.Generator, n: int, d: int = 16) -> np.ndarray:
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_probabilities_factor_into_category_times_within_category() -> None:
    rng = np.random.default_rng(0)
    cats = np.array([0, 0, 1, 1, 1, 2])
    prior = np.array([0.5, 0.3, 0.2])
    sys = CategoryRetrieval("x", cats, unit(rng, 6), FixedCategories(prior))
    sys.alpha, sys.tau, sys.gamma, sys.repeat = 1.0, 0.1, 0.0, True
    p = sys.predict_proba([[0, 3], [5], []])
    assert p.shape == (3, 6) and np.allclose(p.sum(axis=1), 1.0, atol=1e-6)
    for c in range(3):  # the mass of each category is exactly its prior (alpha = 1)
        assert np.allclose(p[:, cats == c].sum(axis=1), prior[c], atol=1e-6)
    # an empty history has no profile: uniform inside each category
    assert np.allclose(p[2, :2], 0.25) and np.allclose(p[2, 5], 0.2)


def test_alpha_sharpens_the_category_distribution() -> None:
    rng = np.random.default_rng(1)
    cats = np.array([0, 1])
    sys = CategoryRetrieval("x", cats, unit(rng, 2), FixedCategories([0.75, 0.25]))
    sys.alpha = 2.0
    p = sys.predict_proba([[0]])[0]
    assert p == pytest.approx([0.9, 0.1], abs=1e-6)  # 0.75^2 : 0.25^2


def test_no_repeat_ranks_history_items_after_every_other_item() -> None:
    rng = np.random.default_rng(2)
    cats = np.zeros(8, dtype=int)
    sys = CategoryRetrieval("x", cats, unit(rng, 8), None)
    sys.repeat = False
    p = sys.predict_proba([[3, 5]])[0]
    assert p[[3, 5]].max() < np.delete(p, [3, 5]).min()
    sys.repeat = True  # with repeats the last item is its own nearest neighbour
    assert sys.predict_proba([[3, 5]])[0].argmax() == 5


def test_retrieval_finds_the_nearest_neighbour_world_and_the_grid_picks_a_sharp_tau() -> None:
    """Next item = nearest unseen neighbour of the last one: retrieval must beat chance by far."""
    rng = np.random.default_rng(3)
    n = 200
    vecs = unit(rng, n, 32)
    sims = vecs @ vecs.T
    np.fill_diagonal(sims, -np.inf)
    nxt = sims.argmax(axis=1)

    def walk(length: int) -> list[int]:
        s = [int(rng.integers(n))]
        for _ in range(length - 1):
            s.append(int(nxt[s[-1]]))
        return s

    train = [walk(6) for _ in range(100)]
    valid = [walk(5) for _ in range(100)]
    test = [walk(5) for _ in range(100)]
    cats = np.arange(n) % 4
    sys = CategoryRetrieval("retrieval", cats, vecs, None, CategoryRetrievalConfig(half_life_events=0.5))
    sys.fit(train, n, valid=([v[:-1] for v in valid], [v[-1] for v in valid]))
    assert sys.alpha == 0.0 and len(sys.grid) == 4 * 3 * 2
    best = max(g["valid_ndcg@10"] for g in sys.grid)
    assert best == pytest.approx(max(g["valid_ndcg@10"] for g in sys.grid if g["tau"] == sys.tau
                                     and g["gamma"] == sys.gamma and g["repeat"] == sys.repeat))
    m = rank_metrics(sys.predict_proba([t[:-1] for t in test]), np.array([t[-1] for t in test]), ks=(10,))
    assert m["hit@10"].mean() > 0.5  # chance is 10/200


def test_items_outside_the_rankers_categories_get_a_uniform_share() -> None:
    rng = np.random.default_rng(4)
    cats = np.array([0, 1, 2])  # token 2: items without a category, unknown to the ranker
    ranker = FixedCategories([0.6, 0.4])
    sys = CategoryRetrieval("x", cats, unit(rng, 3), ranker, n_ranker_categories=2)
    sys.alpha = 1.0
    p = sys.predict_proba([[0, 2, 1]])[0]
    assert p == pytest.approx(np.array([0.6, 0.4, 0.5]) / 1.5, abs=1e-6)
    assert ranker.seen == [[0, 1]]  # the unknown token never reaches the ranker


def test_bad_shapes_and_grids_are_refused() -> None:
    with pytest.raises(ValueError, match="one row per item"):
        CategoryRetrieval("x", np.zeros(3, dtype=int), np.zeros((4, 8)), None)
    with pytest.raises(ValueError, match="taus"):
        CategoryRetrievalConfig(taus=(0.0,))
    sys = CategoryRetrieval("x", np.zeros(3, dtype=int), np.eye(3, dtype=np.float32), None)
    with pytest.raises(ValueError, match="n_classes"):
        sys.fit([[0, 1]], 5)
