"""Metrics on small hand-computed cases with exact expected values, plus brute-force checks."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from llmint.metrics import (
    _harmonic,
    _positive_midranks_by_counting,
    _positive_midranks_by_sorting,
    auc_ovr,
    classification_metrics,
    expected_calibration_error,
    rank_metrics,
    rank_metrics_chunks,
    rank_metrics_from_counts,
    tie_counts,
)

# ---------------------------------------------------------------- rank metrics


def test_rank_metrics_by_hand() -> None:
    m = rank_metrics(np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1]]), np.array([2, 0]), ks=(1, 3))
    assert m["rank"].tolist() == [2.0, 1.0]
    assert m["hit@1"].tolist() == [0.0, 1.0]
    assert m["hit@3"].tolist() == [1.0, 1.0]
    assert m["ndcg@1"].tolist() == [0.0, 1.0]
    assert m["ndcg@3"].tolist() == [1 / math.log2(3), 1.0]
    assert m["mrr"].tolist() == [0.5, 1.0]
    assert set(m) == {"hit@1", "hit@3", "ndcg@1", "ndcg@3", "mrr", "rank"}


def test_target_outside_the_cutoff_scores_zero() -> None:
    # target is last of 5: rank 5
    m = rank_metrics(np.array([[5.0, 4.0, 3.0, 2.0, 1.0]]), np.array([4]), ks=(3, 5))
    assert m["hit@3"][0] == 0.0 and m["ndcg@3"][0] == 0.0
    assert m["hit@5"][0] == 1.0 and m["ndcg@5"][0] == 1 / math.log2(6)
    assert m["mrr"][0] == 0.2 and m["rank"][0] == 5.0


def test_constant_scorer_is_not_rewarded() -> None:
    m = rank_metrics(np.zeros((3, 4)), np.array([0, 1, 3]), ks=(1, 3, 5))
    assert m["hit@1"].tolist() == [0.25] * 3
    assert m["hit@3"].tolist() == [0.75] * 3
    assert m["hit@5"].tolist() == [1.0] * 3
    assert m["rank"].tolist() == [2.5] * 3
    assert m["mrr"] == pytest.approx([(1 + 1 / 2 + 1 / 3 + 1 / 4) / 4] * 3, rel=1e-15)
    assert m["ndcg@3"] == pytest.approx(
        [(1 + 1 / math.log2(3) + 1 / math.log2(4)) / 4] * 3, rel=1e-15
    )


def test_partial_tie_by_hand() -> None:
    # one column strictly better, one tied with the target: rank 2 or 3, each with probability 1/2
    scores = np.array([[0.9, 0.5, 0.5, 0.1]])
    assert tie_counts(scores, np.array([2])) == (np.array([1]), np.array([1]))
    m = rank_metrics(scores, np.array([2]), ks=(1, 2, 3))
    assert m["hit@1"][0] == 0.0
    assert m["hit@2"][0] == 0.5
    assert m["hit@3"][0] == 1.0
    assert m["rank"][0] == 2.5
    assert m["mrr"][0] == pytest.approx((1 / 2 + 1 / 3) / 2, rel=1e-15)
    assert m["ndcg@2"][0] == pytest.approx(0.5 / math.log2(3), rel=1e-15)
    assert m["ndcg@3"][0] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / 2, rel=1e-15)


def test_ties_match_enumerating_every_tie_break() -> None:
    """Independent check of the 'uniform over tied positions' claim: average over all orderings."""
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(25, 5)).astype(np.float32)  # many ties
    targets = rng.integers(0, 5, size=25)
    ks = (1, 2, 3)
    m = rank_metrics(scores, targets, ks=ks)
    for i in range(25):
        ranks = []
        for perm in itertools.permutations(range(5)):  # perm = random tie-break priority
            order = sorted(range(5), key=lambda j: (-scores[i, j], perm[j]))
            ranks.append(order.index(targets[i]) + 1)
        ranks = np.array(ranks)
        assert m["rank"][i] == pytest.approx(ranks.mean(), rel=1e-12)
        assert m["mrr"][i] == pytest.approx(np.mean(1 / ranks), rel=1e-12)
        for k in ks:
            assert m[f"hit@{k}"][i] == pytest.approx(np.mean(ranks <= k), rel=1e-12)
            assert m[f"ndcg@{k}"][i] == pytest.approx(
                np.mean((ranks <= k) / np.log2(ranks + 1)), rel=1e-12
            )


def test_huge_tie_is_exact() -> None:
    # 7 columns above, the target tied with 11,992 others: rank uniform over 8..12000
    scores = np.zeros((1, 12_000), dtype=np.float32)
    scores[0, :7] = 1.0
    m = rank_metrics(scores, np.array([100]), ks=(1, 10))
    ranks = np.arange(8, 12_001)
    assert m["mrr"][0] == pytest.approx(math.fsum(1.0 / ranks) / ranks.size, rel=1e-13)
    assert m["hit@10"][0] == pytest.approx(3 / ranks.size, rel=1e-15)
    assert m["ndcg@10"][0] == pytest.approx(
        sum(1 / math.log2(r + 1) for r in (8, 9, 10)) / ranks.size, rel=1e-14
    )
    assert m["rank"][0] == (8 + 12_000) / 2


@pytest.mark.parametrize("n", [0, 1, 2, 10, 63, 64, 65, 100, 1000, 12_000])
def test_harmonic_numbers_are_exact(n: int) -> None:
    exact = (
        float(sum(Fraction(1, k) for k in range(1, n + 1)))
        if n <= 1000
        else math.fsum(1 / k for k in range(1, n + 1))
    )
    assert _harmonic(np.array([n]))[0] == pytest.approx(exact, rel=1e-15, abs=0)


def test_chunking_does_not_change_results() -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, size=(37, 11)).astype(np.float32)
    targets = rng.integers(0, 11, size=37)
    whole = rank_metrics(scores, targets)
    by_rows = rank_metrics(scores, targets, chunk_rows=1)
    streamed = rank_metrics_chunks((scores[s : s + 8], targets[s : s + 8]) for s in range(0, 37, 8))
    for k in whole:
        assert np.array_equal(whole[k], by_rows[k]) and np.array_equal(whole[k], streamed[k])
    assert rank_metrics_chunks([])["mrr"].shape == (0,)


def test_float32_and_float64_agree() -> None:
    rng = np.random.default_rng(2)
    scores = rng.random((20, 30)).astype(np.float32)
    targets = rng.integers(0, 30, 20)
    a, b = rank_metrics(scores, targets), rank_metrics(scores.astype(np.float64), targets)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_rank_metrics_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="matrix"):
        rank_metrics(np.zeros(3), np.array([0]))
    with pytest.raises(ValueError, match=r"shape \(1,\)"):
        rank_metrics(np.zeros((1, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        rank_metrics(np.zeros((1, 3)), np.array([3]))
    with pytest.raises(TypeError, match="integer"):
        rank_metrics(np.zeros((1, 3)), np.array([1.0]))
    with pytest.raises(ValueError, match="NaN .*row 1"):
        rank_metrics(np.array([[0.0, 1.0], [np.nan, 1.0]]), np.array([0, 0]))
    with pytest.raises(ValueError, match="ks"):
        rank_metrics(np.zeros((1, 3)), np.array([0]), ks=(0,))
    with pytest.raises(ValueError, match=">= 0"):
        rank_metrics_from_counts(np.array([-1]), np.array([0]))


# ------------------------------------------------------- classification metrics

PROBS = np.array([[0.8, 0.2, 0.0], [0.6, 0.4, 0.0], [0.1, 0.7, 0.2], [0.1, 0.2, 0.7]])
TARGETS = np.array([0, 1, 1, 2])


def test_classification_metrics_by_hand() -> None:
    m = classification_metrics(PROBS, TARGETS, n_bins=10)
    # argmax: 0, 0, 1, 2 -> 3 of 4 right
    assert m["accuracy"] == 0.75
    # F1 = 2tp / (n_true + n_pred): class 0 2/(1+2), class 1 2/(2+1), class 2 2/(1+1)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3, rel=1e-15)
    # top-1 confidences .8 (right), .6 (wrong), .7, .7 (right) in bins 8, 6, 7:
    # (|1 - .8| + |0 - .6| + |2 - 1.4|) / 4
    assert m["ece"] == pytest.approx((0.2 + 0.6 + 0.6) / 4, rel=1e-12)
    assert m["nll"] == pytest.approx(
        -(math.log(0.8) + math.log(0.4) + math.log(0.7) + math.log(0.7)) / 4, rel=1e-12
    )
    assert m["auc_ovr"] == 1.0  # every positive outscores every negative in its own column


def test_auc_with_a_tie_by_hand() -> None:
    probs = np.array([[0.5, 0.5], [0.5, 0.5], [0.2, 0.8]])
    targets = np.array([0, 1, 1])
    # class 0: positive .5 vs negatives .5 (tie, 1/2) and .2 (win, 1) -> 3/4
    # class 1: positives .5, .8 vs negative .5 -> (1/2 + 1) / 2 = 3/4
    assert auc_ovr(probs, targets) == (0.75, 2)


def test_auc_skips_classes_without_positives_or_negatives() -> None:
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1]])
    # class 2 never occurs among the targets: skipped; classes 0 and 1 are perfect
    assert auc_ovr(probs, np.array([0, 1, 0])) == (1.0, 2)
    # a single class among the targets has no negatives: nothing to score
    auc, n_cls = auc_ovr(probs, np.array([1, 1, 1]))
    assert math.isnan(auc) and n_cls == 0
    assert math.isnan(classification_metrics(probs, np.array([1, 1, 1]))["auc_ovr"])


def _brute_force_auc(probs: np.ndarray, targets: np.ndarray) -> float:
    aucs = []
    for c in range(probs.shape[1]):
        pos, neg = probs[targets == c, c], probs[targets != c, c]
        if len(pos) and len(neg):
            wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
            aucs.append(wins / (len(pos) * len(neg)))
    return float(np.mean(aucs))


@pytest.mark.parametrize("n, c", [(60, 4), (30, 25), (200, 120)])
def test_auc_matches_pairwise_count(n: int, c: int) -> None:
    rng = np.random.default_rng(n)
    probs = rng.random((n, c))
    probs[:, ::2] = np.round(probs[:, ::2], 1)  # plenty of ties
    targets = rng.integers(0, c, n)
    assert auc_ovr(probs, targets)[0] == pytest.approx(_brute_force_auc(probs, targets), rel=1e-12)
    # both internal strategies agree whichever one auc_ovr picked
    cls = np.flatnonzero(np.bincount(targets, minlength=c) > 0)
    assert np.allclose(
        _positive_midranks_by_counting(probs, targets, cls),
        _positive_midranks_by_sorting(probs, targets, cls),
    )


def test_macro_f1_counts_predicted_only_classes_and_ignores_absent_ones() -> None:
    # 4 classes; targets use 0 and 1; predictions are 0, 2, 1; class 3 appears nowhere
    probs = np.array([[0.9, 0.1, 0.0, 0.0], [0.1, 0.2, 0.7, 0.0], [0.0, 0.6, 0.4, 0.0]])
    m = classification_metrics(probs, np.array([0, 1, 1]))
    # F1: class 0 = 1, class 1 = 2*1/(2+1) = 2/3, class 2 = 0 (predicted, never true)
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3, rel=1e-15)
    assert m["accuracy"] == pytest.approx(2 / 3, rel=1e-15)


def test_argmax_tie_goes_to_lowest_column() -> None:
    m = classification_metrics(np.full((2, 4), 0.25), np.array([0, 3]))
    assert m["accuracy"] == 0.5  # both predicted as column 0


def test_ece_by_hand() -> None:
    conf = np.array([0.95, 0.95, 0.55, 1.0, 0.0])
    correct = np.array([1, 1, 0, 1, 0])
    # 2 bins: [0, .5) holds 0.0 (wrong, gap 0); [.5, 1] holds .95, .95, .55, 1.0 with 3 right:
    # |3 - 3.45| / 5
    assert expected_calibration_error(conf, correct, n_bins=2) == pytest.approx(0.45 / 5, rel=1e-12)
    # 4 bins: [.5, .75) holds .55 (gap .55); [.75, 1] holds .95, .95, 1.0 all right (gap .1)
    assert expected_calibration_error(conf, correct, n_bins=4) == pytest.approx(
        (0.55 + 0.1) / 5, rel=1e-12
    )
    # perfectly calibrated: confidence 1 and always right
    assert expected_calibration_error(np.ones(3), np.ones(3)) == 0.0


def test_classification_metrics_rejects_logits_and_empty_input() -> None:
    with pytest.raises(ValueError, match="logits"):
        classification_metrics(np.array([[2.0, -1.0]]), np.array([0]))
    with pytest.raises(ValueError, match="at least one case"):
        classification_metrics(np.zeros((0, 3)), np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match="NaN"):
        auc_ovr(np.array([[np.nan, 1.0], [0.0, 1.0]]), np.array([0, 1]))
