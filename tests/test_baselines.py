"""Baselines on hand-computed examples, and SASRec-CE on a tiny deterministic task."""

from __future__ import annotations

import numpy as np
import pytest

from llmint.baselines import LastCategory, Markov, MostPopular, SASRec, SASRecConfig, UserMostFrequent
from llmint.metrics import rank_metrics

TRAIN = [[0, 1, 1], [1, 2]]  # counts: 0:1, 1:3, 2:1 -> add-one: 2, 4, 2 over 8


def test_most_popular_by_hand() -> None:
    p = MostPopular().fit(TRAIN, 3).predict_proba([[], [2]])
    assert p[0] == pytest.approx([0.25, 0.5, 0.25]) and p[1] == pytest.approx(p[0])


def test_user_most_frequent_counts_dominate_and_recency_breaks_ties() -> None:
    m = UserMostFrequent(mix=0.05).fit(TRAIN, 3)
    p = m.predict_proba([[2, 2, 0], [0, 2], []])
    assert p[0].argmax() == 2
    assert p[1].argmax() == 2  # tie on counts: the more recent wins
    assert p[2] == pytest.approx([0.25, 0.5, 0.25], abs=1e-6)


def test_last_category() -> None:
    p = LastCategory(weight=0.9).fit(TRAIN, 3).predict_proba([[1, 0]])
    assert p[0] == pytest.approx([0.9 + 0.1 * 0.25, 0.1 * 0.5, 0.1 * 0.25])


def test_markov_by_hand() -> None:
    m = Markov(alpha=1.0).fit(TRAIN, 3)
    # transitions from 1: 1->1 once, 1->2 once; P = (count + pop) / (2 + 1)
    assert m.predict_proba([[0, 1]])[0] == pytest.approx([(0 + 0.25) / 3, (1 + 0.5) / 3, (1 + 0.25) / 3])
    assert m.predict_proba([[]])[0] == pytest.approx([0.25, 0.5, 0.25])


@pytest.mark.parametrize("cls", [MostPopular, UserMostFrequent, LastCategory, Markov])
def test_rows_are_distributions(cls) -> None:
    p = cls().fit(TRAIN, 3).predict_proba([[], [0], [1, 2, 2]])
    assert p.dtype == np.float32 and p.shape == (3, 3)
    assert np.allclose(p.sum(1), 1.0, atol=1e-5) and (p > 0).all()


def test_out_of_range_tokens_are_rejected() -> None:
    with pytest.raises(ValueError, match="outside"):
        Markov().fit([[0, 5]], 3)


def _cycle(n_seq: int, length: int, c: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [[(s + i) % c for i in range(length)] for s in rng.integers(0, c, n_seq)]


def test_sasrec_learns_a_cycle() -> None:
    c = 12
    train = _cycle(200, 10, c, 0)
    hist = _cycle(50, 6, c, 1)
    targets = np.array([(h[-1] + 1) % c for h in hist])
    cfg = SASRecConfig(max_len=8, hidden=32, dropout=0.1, lr=5e-3, max_epochs=15, batch_size=64, progress=False)
    m = SASRec(cfg).fit(train, c, valid=(hist, targets))
    p = m.predict_proba(hist)
    assert np.allclose(p.sum(1), 1.0, atol=1e-4)
    assert rank_metrics(p, targets, ks=(1,))["hit@1"].mean() > 0.9


def test_sasrec_is_deterministic_and_masks_padding() -> None:
    cfg = SASRecConfig(max_len=8, hidden=16, dropout=0.2, max_epochs=2, progress=False)
    train = _cycle(40, 6, 6, 0)
    a = SASRec(cfg).fit(train, 6).predict_proba([[1, 2, 3], []])
    b = SASRec(cfg).fit(train, 6).predict_proba([[1, 2, 3], []])
    assert np.array_equal(a, b)
    m = SASRec(cfg).fit(train, 6)
    # a history longer than max_len is cut to its last max_len events: only they matter
    assert np.allclose(m.predict_proba([[0] * 20 + [1, 2, 3, 4, 5, 0, 1, 2]]), m.predict_proba([[1, 2, 3, 4, 5, 0, 1, 2]]))
    assert np.allclose(a[1], m.pop)  # empty history -> population prior


def test_sasrec_config_validation() -> None:
    with pytest.raises(ValueError, match="divisible"):
        SASRecConfig(hidden=10, n_heads=3)
    with pytest.raises(ValueError, match="dropout"):
        SASRecConfig(dropout=1.0)
