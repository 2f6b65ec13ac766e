"""Baselines on hand-computed examples, and SASRec-CE on a tiny deterministic task."""

from __future__ import annotations

import numpy as np
import pytest

from llmint.baselines import (
    LastCategory,
    Markov,
    MostPopular,
    Ranker,
    SASRec,
    SASRecConfig,
    UserMostFrequent,
)
from llmint.baselines.base import popularity
from llmint.baselines.sasrec import _left_pad, _windows
from llmint.metrics import rank_metrics

TRAIN = [[0, 1, 1], [1, 2]]  # counts 0:1, 1:3, 2:1 -> add-one 2, 4, 2 of 8
POP = [0.25, 0.5, 0.25]
SIMPLE = [MostPopular, UserMostFrequent, LastCategory, Markov]


def test_popularity_is_add_one_smoothed() -> None:
    assert popularity(TRAIN, 3) == pytest.approx(POP)
    assert popularity([], 4) == pytest.approx([0.25] * 4)


def test_most_popular_by_hand() -> None:
    p = MostPopular().fit(TRAIN, 3).predict_proba([[], [2]])
    assert p[0] == pytest.approx(POP) and p[1] == pytest.approx(POP)


def test_user_most_frequent_by_hand() -> None:
    p = UserMostFrequent(mix=0.05).fit(TRAIN, 3).predict_proba([[2, 2, 0]])[0]
    # w2 = 2 + 0.5 * 2/3 = 7/3, w0 = 1 + 0.5 * 3/3 = 3/2, sum 23/6; the unseen token 1 gets the mix
    assert p == pytest.approx([0.95 * 9 / 23, 0.05, 0.95 * 14 / 23])


def test_user_most_frequent_order_is_count_then_recency_then_popularity() -> None:
    m = UserMostFrequent(mix=0.05).fit([[3, 3, 3, 2, 2, 1]], 5)
    assert m.predict_proba([[0, 4]])[0].argmax() == 4  # tie on counts: the more recent wins
    long = [0] * 4 + [1] * 90 + [2] * 3  # 0 is more frequent than 2, though 2 is far more recent
    p = m.predict_proba([long])[0]
    assert p[1] > p[0] > p[2] > p[3] > p[4]  # then the unseen tokens by popularity (3 over 4)


def test_user_most_frequent_history_outranks_unseen_tokens_even_with_a_large_mix() -> None:
    m = UserMostFrequent(mix=0.9).fit([[1] * 50], 3)
    p = m.predict_proba([[0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]])[0]
    assert p[2] > p[0] > p[1] and p.sum() == pytest.approx(1.0)


def test_user_most_frequent_empty_history_is_popularity() -> None:
    assert UserMostFrequent().fit(TRAIN, 3).predict_proba([[]])[0] == pytest.approx(POP)


def test_last_category_by_hand() -> None:
    p = LastCategory(weight=0.9).fit(TRAIN, 3).predict_proba([[1, 0], []])
    assert p[0] == pytest.approx([0.9 + 0.1 * 0.25, 0.1 * 0.5, 0.1 * 0.25])
    assert p[1] == pytest.approx(POP)


def test_markov_by_hand() -> None:
    m = Markov(alpha=1.0).fit(TRAIN, 3)
    # from 1: 1->1 once, 1->2 once: P = (count + pop) / (2 + 1)
    assert m.predict_proba([[0, 1]])[0] == pytest.approx([0.25 / 3, 1.5 / 3, 1.25 / 3])
    # from 0: 0->1 once: P = (count + pop) / (1 + 1)
    assert m.predict_proba([[0]])[0] == pytest.approx([0.125, 0.75, 0.125])
    # 2 is never a predecessor, and an empty history has no last token: popularity
    assert m.predict_proba([[2], []]) == pytest.approx(np.array([POP, POP]))


@pytest.mark.parametrize("cls", SIMPLE)
def test_rows_are_distributions(cls) -> None:
    m = cls().fit(TRAIN, 3)
    assert isinstance(m, Ranker)
    p = m.predict_proba([[], [0], [1, 2, 2], [0, 1, 2]])
    assert p.dtype == np.float32 and p.shape == (4, 3)
    assert np.allclose(p.sum(1), 1.0, atol=1e-6) and (p > 0).all()
    assert m.predict_proba([]).shape == (0, 3)


@pytest.mark.parametrize("cls", SIMPLE)
def test_equal_evidence_gives_exact_ties(cls) -> None:
    p = cls().fit([[0, 1], [1, 0]], 4).predict_proba([[]])[0]
    assert p[0] == p[1] and p[2] == p[3]  # left to the metrics, which count ties fairly


@pytest.mark.parametrize("cls", SIMPLE + [SASRec])
def test_bad_input_is_rejected(cls) -> None:
    with pytest.raises(ValueError, match="outside"):
        cls().fit([[0, 5]], 3)
    with pytest.raises(RuntimeError, match="not fitted"):
        cls().predict_proba([[0]])


def test_out_of_range_history_is_rejected() -> None:
    with pytest.raises(ValueError, match="history 1"):
        Markov().fit(TRAIN, 3).predict_proba([[0], [-1]])


def test_windows_make_every_later_token_a_target_once() -> None:
    seq = list(range(11))
    x, y = _windows([seq, [4]], 4)
    assert sorted(t - 1 for t in y[y > 0]) == seq[1:]  # the one-event sequence gives no pair
    for xi, yi in zip(x, y, strict=True):  # each target follows its input position
        real = xi > 0
        assert (yi[real] == xi[real] + 1).all() and (real == (yi > 0)).all()


def _cycle(n_seq: int, length: int, c: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [[(s + i) % c for i in range(length)] for s in rng.integers(0, c, n_seq)]


CYCLE_C = 10
CYCLE_CFG = SASRecConfig(
    max_len=8,
    hidden=16,
    n_layers=1,
    dropout=0.0,
    lr=1e-2,
    batch_size=32,
    max_epochs=6,
    patience=6,
    progress=False,
    num_threads=1,
)


@pytest.fixture(scope="module")
def cycle_model() -> SASRec:
    """SASRec-CE fitted on next = (last + 1) mod 10 (about a second on a CPU)."""
    train = _cycle(200, 8, CYCLE_C, 0)
    hist = _cycle(40, 5, CYCLE_C, 1)
    targets = [(h[-1] + 1) % CYCLE_C for h in hist]
    return SASRec(CYCLE_CFG).fit(train, CYCLE_C, valid=(hist, targets))


def test_sasrec_learns_a_cycle(cycle_model: SASRec) -> None:
    hist = _cycle(100, 4, CYCLE_C, 2) + [[3]]
    targets = np.array([(h[-1] + 1) % CYCLE_C for h in hist])
    p = cycle_model.predict_proba(hist)
    assert p.dtype == np.float32 and p.shape == (101, CYCLE_C)
    assert np.allclose(p.sum(1), 1.0, atol=1e-5)
    assert rank_metrics(p, targets, ks=(1,))["hit@1"].mean() > 0.95
    assert cycle_model.best_epoch is not None and cycle_model.history[-1]["valid_ndcg@10"] > 0.9


def test_sasrec_padding_is_masked(cycle_model: SASRec) -> None:
    import torch

    h = [2, 3, 4]
    alone = cycle_model.predict_proba([h])  # padded to 3
    beside_long = cycle_model.predict_proba([h, [1, 2, 3, 4, 5, 6, 7, 8]])[:1]  # padded to 8
    assert np.allclose(alone, beside_long, atol=1e-6)
    net = cycle_model.net
    with torch.no_grad():
        short = net(torch.from_numpy(_left_pad([h], 3)))[0, -1]
        padded = net(torch.from_numpy(_left_pad([h], 8)))[0, -1]
    assert torch.allclose(short, padded, atol=1e-6)


def test_sasrec_uses_the_last_max_len_events_and_prior_for_cold_start(cycle_model: SASRec) -> None:
    recent = [1, 2, 3, 4, 5, 6, 7, 8]  # max_len = 8
    p = cycle_model.predict_proba([[9, 9, 9] + recent, recent, []])
    assert np.array_equal(p[0], p[1])
    assert p[2] == pytest.approx(cycle_model.pop)


def test_sasrec_output_layer_is_tied_to_the_embeddings(cycle_model: SASRec) -> None:
    shapes = [tuple(w.shape) for w in cycle_model.net.parameters()]
    # the token embeddings (row 0 = padding), and no separate output matrix
    assert shapes.count((CYCLE_C + 1, 16)) == 1
    assert not any(s[0] == CYCLE_C for s in shapes)


def test_sasrec_is_deterministic_and_leaves_global_state_alone() -> None:
    import torch

    cfg = SASRecConfig(
        max_len=8, hidden=16, n_layers=1, dropout=0.3, max_epochs=2, progress=False, num_threads=1
    )
    train = _cycle(40, 6, 6, 0)
    threads, state = torch.get_num_threads(), torch.get_rng_state()
    a = SASRec(cfg).fit(train, 6).predict_proba([[1, 2, 3], []])
    b = SASRec(cfg).fit(train, 6).predict_proba([[1, 2, 3], []])
    assert np.array_equal(a, b)
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), state)
    c = SASRec(SASRecConfig(**{**cfg.__dict__, "seed": 1})).fit(train, 6).predict_proba([[1, 2, 3]])
    assert not np.array_equal(a[:1], c)


def test_sasrec_without_training_pairs_predicts_popularity() -> None:
    m = SASRec(SASRecConfig(progress=False)).fit([[0], [1], [1]], 3)
    assert m.predict_proba([[0, 1]])[0] == pytest.approx(popularity([[0], [1], [1]], 3))


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"hidden": 10, "n_heads": 3}, "divisible"),
        ({"dropout": 1.0}, "dropout"),
        ({"max_len": 0}, "max_len"),
        ({"lr": 0.0}, "lr"),
        ({"device": "tpu"}, "device"),
        ({"num_threads": 0}, "num_threads"),
    ],
)
def test_sasrec_config_validation(kw: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        SASRecConfig(**kw)
