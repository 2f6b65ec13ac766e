"""Metrics on small hand-computed cases with exact expected values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmint.bootstrap import bootstrap_ci, bootstrap_stat, paired_bootstrap
from llmint.metrics import classification_metrics, rank_metrics


def test_rank_metrics_simple() -> None:
    m = rank_metrics(np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1]]), np.array([2, 0]), ks=(1, 3))
    assert m["rank"].tolist() == [2.0, 1.0]
    assert m["hit@1"].tolist() == [0.0, 1.0]
    assert m["ndcg@3"][0] == pytest.approx(1 / math.log2(3))
    assert m["mrr"].tolist() == pytest.approx([0.5, 1.0])


def test_constant_scorer_is_not_rewarded() -> None:
    m = rank_metrics(np.zeros((3, 4)), np.array([0, 1, 3]), ks=(1, 3, 5))
    assert m["hit@1"] == pytest.approx([0.25] * 3)
    assert m["hit@3"] == pytest.approx([0.75] * 3)
    assert m["hit@5"] == pytest.approx([1.0] * 3)
    assert m["mrr"] == pytest.approx([(1 + 1 / 2 + 1 / 3 + 1 / 4) / 4] * 3)
    assert m["rank"] == pytest.approx([2.5] * 3)
    expected_ndcg3 = (1 + 1 / math.log2(3) + 1 / math.log2(4)) / 4
    assert m["ndcg@3"] == pytest.approx([expected_ndcg3] * 3)


def test_partial_tie() -> None:
    # target tied with one other column, one column strictly better: rank is 2 or 3
    m = rank_metrics(np.array([[0.9, 0.5, 0.5, 0.1]]), np.array([2]), ks=(1, 2, 3))
    assert m["hit@1"][0] == 0.0
    assert m["hit@2"][0] == pytest.approx(0.5)
    assert m["hit@3"][0] == pytest.approx(1.0)
    assert m["mrr"][0] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert m["ndcg@2"][0] == pytest.approx(0.5 / math.log2(3))


def test_mrr_matches_bruteforce_on_large_ties() -> None:
    scores = np.zeros((1, 5000))
    scores[0, :7] = 1.0
    m = rank_metrics(scores, np.array([100]))
    assert m["mrr"][0] == pytest.approx(np.mean(1.0 / np.arange(8, 5001)), rel=1e-9)


def test_rank_metrics_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="matrix"):
        rank_metrics(np.zeros(3), np.array([0]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        rank_metrics(np.zeros((1, 3)), np.array([3]))


def test_classification_metrics_by_hand() -> None:
    probs = np.array([[0.8, 0.2, 0.0], [0.6, 0.4, 0.0], [0.1, 0.7, 0.2], [0.1, 0.2, 0.7]])
    targets = np.array([0, 1, 1, 2])
    m = classification_metrics(probs, targets, n_bins=10)
    assert m["accuracy"] == pytest.approx(0.75)
    # class 0: tp1 fp1 fn0 -> 2/3; class 1: tp1 fn1 -> 2/3; class 2: 1 -> macro = (2/3+2/3+1)/3
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    # ECE: bins .8 (correct), .6 (wrong), .7 and .7 (both correct) -> |1-.8|/4 + |0-.6|/4 + 2*|1-.7|/4
    assert m["ece"] == pytest.approx((0.2 + 0.6 + 0.6) / 4)


def test_auc_matches_pairwise_count() -> None:
    rng = np.random.default_rng(0)
    probs = rng.random((60, 4))
    probs[:, 1] = np.round(probs[:, 1], 1)  # ties
    targets = rng.integers(0, 4, 60)
    aucs = []
    for c in range(4):
        pos, neg = probs[targets == c, c], probs[targets != c, c]
        wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
        aucs.append(wins / (len(pos) * len(neg)))
    assert classification_metrics(probs, targets)["auc_ovr"] == pytest.approx(np.mean(aucs))


def test_bootstrap() -> None:
    ci = bootstrap_ci(np.ones(20))
    assert (ci.mean, ci.low, ci.high) == (1.0, 1.0, 1.0)
    x = np.random.default_rng(1).random(500)
    ci = bootstrap_ci(x, seed=3)
    assert ci.low < x.mean() < ci.high
    assert bootstrap_ci(x, seed=3) == ci
    same = paired_bootstrap(x, x)
    assert (same.diff, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    better = paired_bootstrap(x + 0.1, x)
    assert better.low == pytest.approx(0.1) and better.p_value == 0.0
    st = bootstrap_stat(lambda v: float(np.median(v)), (x,), n_boot=50)
    assert st.low <= st.mean <= st.high
