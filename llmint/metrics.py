"""Ranking and classification metrics for next-category and next-item prediction.

Ties are handled honestly. With g columns scoring strictly above the target
and t other columns scoring exactly the same, the target's rank is taken to be
uniform over g+1 .. g+t+1 (uniformly random tie-breaking), and every rank
metric is the exact expectation over those ranks. A constant scorer over C
columns therefore gets hit@1 = 1/C, never 1.

This module is numpy-only. It knows nothing about models, datasets or
bootstrapping: it turns score matrices and target columns into numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np

logger = logging.getLogger(__name__)

_EULER = 0.57721566490153286061
_CHUNK_ELEMENTS = 1 << 24  # about 16M score cells per chunk (64 MiB of float32)


def _harmonic(n: np.ndarray) -> np.ndarray:
    """H(n) = 1 + 1/2 + ... + 1/n (H(0) = 0), float64, for integer arrays n >= 0.

    Exact sums below 64; above, the asymptotic series
    ln n + gamma + 1/(2n) - 1/(12n^2) + 1/(120n^4) - 1/(252n^6),
    whose truncation error (< 1/(240 n^8)) is below 1e-16 there.
    """
    n = np.asarray(n, dtype=np.int64)
    table = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, 64, dtype=np.float64))])
    x = np.maximum(n, 1).astype(np.float64)
    inv2 = 1.0 / (x * x)
    series = np.log(x) + _EULER + 0.5 / x - inv2 * (1 / 12 - inv2 * (1 / 120 - inv2 / 252))
    return np.where(n < 64, table[np.minimum(n, 63)], series)


def _check_targets(targets: np.ndarray, n: int, n_cols: int) -> np.ndarray:
    targets = np.asarray(targets)
    if targets.shape != (n,):
        raise ValueError(f"targets must have shape ({n},), got {targets.shape}")
    if targets.size == 0:
        return targets.astype(np.int64)
    if not np.issubdtype(targets.dtype, np.integer):
        raise TypeError(f"targets must be integer column indices, got dtype {targets.dtype}")
    if targets.min() < 0 or targets.max() >= n_cols:
        raise ValueError(
            f"targets must lie in [0, {n_cols}), got values in [{targets.min()}, {targets.max()}]"
        )
    return targets.astype(np.int64)


def _check_matrix(scores: np.ndarray, name: str) -> np.ndarray:
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"{name} must be a matrix (n, C), got shape {scores.shape}")
    if scores.shape[1] == 0:
        raise ValueError(f"{name} must have at least one column, got shape {scores.shape}")
    if not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)):
        raise TypeError(f"{name} must be real numbers, got dtype {scores.dtype}")
    return scores


def tie_counts(
    scores: np.ndarray, targets: np.ndarray, chunk_rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """For each case, how many columns score strictly above the target and how many others tie it.

    Args:
        scores: (n, C) real scores, higher is better; any dtype (float32 is fine). NaN is rejected.
        targets: (n,) integer column of each case's true label.
        chunk_rows: rows compared at a time; default keeps a chunk near 16M cells.
    Returns:
        (greater, ties), both (n,) int64; ties excludes the target itself.

    Example:
        >>> tie_counts(np.array([[0.9, 0.5, 0.5, 0.1]]), np.array([2]))
        (array([1]), array([1]))
    """
    scores = _check_matrix(scores, "scores")
    n, c = scores.shape
    targets = _check_targets(targets, n, c)
    if chunk_rows is None:
        chunk_rows = max(1, _CHUNK_ELEMENTS // c)
    greater = np.empty(n, dtype=np.int64)
    ties = np.empty(n, dtype=np.int64)
    for s in range(0, n, chunk_rows):
        block = scores[s : s + chunk_rows]
        if np.issubdtype(block.dtype, np.floating) and np.isnan(block).any():
            row = s + int(np.flatnonzero(np.isnan(block).any(axis=1))[0])
            raise ValueError(
                f"scores contain NaN (first in row {row}); a ranking needs comparable scores"
            )
        t = block[np.arange(block.shape[0]), targets[s : s + chunk_rows]][:, None]
        greater[s : s + chunk_rows] = np.count_nonzero(block > t, axis=1)
        ties[s : s + chunk_rows] = np.count_nonzero(block == t, axis=1) - 1
    return greater, ties


def rank_metrics_from_counts(
    greater: np.ndarray, ties: np.ndarray, ks: Sequence[int] = (1, 3, 5, 10)
) -> dict[str, np.ndarray]:
    """Exact expected hit@k, ndcg@k, mrr and rank from `tie_counts` output.

    The target's rank r is uniform over g+1 .. g+t+1 (m = t+1 positions), so
    hit@k = |{r <= k}| / m, ndcg@k = sum_{r <= k} 1/log2(r+1) / m,
    mrr = (H(g+m) - H(g)) / m with harmonic numbers H, rank = g + (m+1)/2.
    Cases without ties (m = 1) are computed directly, without differences.

    Args:
        greater, ties: (n,) non-negative integers.
        ks: cut-offs, positive integers.
    Returns:
        {"hit@k": (n,), "ndcg@k": (n,) for k in ks, "mrr": (n,), "rank": (n,)}, float64.
    """
    g = np.asarray(greater, dtype=np.int64)
    t = np.asarray(ties, dtype=np.int64)
    if g.ndim != 1 or g.shape != t.shape:
        raise ValueError(
            f"greater and ties must be vectors of one shape, got {g.shape} and {t.shape}"
        )
    if g.size and (g.min() < 0 or t.min() < 0):
        raise ValueError("greater and ties must be >= 0")
    ks = tuple(ks)
    if not ks or any(
        isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in ks
    ):
        raise ValueError(f"ks must be positive integers, got {ks!r}")
    m = t + 1
    exact = m == 1
    kmax = int(max(ks))
    # disc[r] = sum_{j=1..r} 1/log2(j+1), the NDCG gain summed over the first r ranks
    disc = np.concatenate(
        [[0.0], np.cumsum(1.0 / np.log2(np.arange(2, kmax + 2, dtype=np.float64)))]
    )
    out: dict[str, np.ndarray] = {}
    for k in ks:
        top = np.minimum(k, g + m)
        low = np.minimum(k, g)
        hit = (top - low) / m
        gain = (disc[top] - disc[low]) / m
        out[f"hit@{k}"] = np.where(exact, (g < k).astype(np.float64), hit)
        out[f"ndcg@{k}"] = np.where(exact, np.where(g < k, 1.0 / np.log2(g + 2.0), 0.0), gain)
    out["mrr"] = np.where(exact, 1.0 / (g + 1.0), (_harmonic(g + m) - _harmonic(g)) / m)
    out["rank"] = g + (m + 1) / 2.0
    return out


def rank_metrics(
    scores: np.ndarray,
    targets: np.ndarray,
    ks: Sequence[int] = (1, 3, 5, 10),
    chunk_rows: int | None = None,
) -> dict[str, np.ndarray]:
    """Per-case hit@k, ndcg@k, mrr and expected rank over a full ranking of all C columns.

    Ties count as uniformly random tie-breaking (see the module docstring);
    each value is the exact expectation. `scores` may be float32; it is
    compared in chunks of rows, so a (22k, 12k) float32 matrix needs only
    ~64 MiB beyond itself. For matrices that do not fit in memory at all, pass
    row blocks to `rank_metrics_chunks`.

    Args:
        scores: (n, C) higher is better. NaN raises ValueError.
        targets: (n,) integer column of each case's true label.
        ks: cut-offs for hit@k and ndcg@k.
    Returns:
        {"hit@k": (n,), "ndcg@k": (n,), "mrr": (n,), "rank": (n,)}, float64.

    Example:
        >>> m = rank_metrics(np.array([[0.1, 0.5, 0.4]]), np.array([2]), ks=(1, 3))
        >>> float(m["rank"][0]), float(m["hit@1"][0]), round(float(m["ndcg@3"][0]), 4)
        (2.0, 0.0, 0.6309)
        >>> float(rank_metrics(np.zeros((1, 4)), np.array([0]), ks=(1,))["hit@1"][0])
        0.25
    """
    greater, ties = tie_counts(scores, targets, chunk_rows)
    return rank_metrics_from_counts(greater, ties, ks)


def rank_metrics_chunks(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]], ks: Sequence[int] = (1, 3, 5, 10)
) -> dict[str, np.ndarray]:
    """`rank_metrics` over an iterable of (scores (b, C), targets (b,)) row blocks, concatenated."""
    gs: list[np.ndarray] = []
    ts: list[np.ndarray] = []
    for scores, targets in chunks:
        g, t = tie_counts(scores, targets)
        gs.append(g)
        ts.append(t)
    if not gs:
        gs, ts = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    return rank_metrics_from_counts(np.concatenate(gs), np.concatenate(ts), ks)


def _midranks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row of x (b, n); return the order and the 1-based mid-ranks in sorted order."""
    order = np.argsort(x, axis=1, kind="stable")
    xs = np.take_along_axis(x, order, axis=1)
    n = x.shape[1]
    new = np.ones(xs.shape, dtype=bool)  # first element of a run of equal values
    new[:, 1:] = xs[:, 1:] != xs[:, :-1]
    last = np.ones(xs.shape, dtype=bool)  # last element of a run
    last[:, :-1] = new[:, 1:]
    pos = np.arange(n)
    start = np.maximum.accumulate(np.where(new, pos, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, pos, n - 1)[:, ::-1], axis=1)[:, ::-1]
    return order, (start + end) / 2.0 + 1.0


def _positive_midranks_by_sorting(
    probs: np.ndarray, targets: np.ndarray, cls: np.ndarray
) -> np.ndarray:
    """Sum of the mid-ranks of each class's positives in its own column: sort each column."""
    n = probs.shape[0]
    step = max(1, _CHUNK_ELEMENTS // 4 // n)
    out = np.empty(cls.size)
    for s in range(0, cls.size, step):
        cols = cls[s : s + step]
        order, ranks = _midranks(np.ascontiguousarray(probs[:, cols].T))
        out[s : s + step] = (ranks * (targets[order] == cols[:, None])).sum(axis=1)
    return out


def _positive_midranks_by_counting(
    probs: np.ndarray, targets: np.ndarray, cls: np.ndarray
) -> np.ndarray:
    """Same sums, by comparing each case's own score with its target's column: O(n^2), any C."""
    n, c = probs.shape
    step = max(1, _CHUNK_ELEMENTS // 4 // n)
    mid = np.empty(n)
    for s in range(0, n, step):
        cols = targets[s : s + step]
        own = probs[np.arange(s, s + cols.size), cols]  # (b,)
        column = probs[:, cols]  # (n, b): every case's score for these targets
        less = np.count_nonzero(column < own, axis=0)
        equal = np.count_nonzero(column == own, axis=0)  # includes the case itself
        mid[s : s + step] = less + (equal + 1) / 2.0
    return np.bincount(targets, weights=mid, minlength=c)[cls]


def auc_ovr(probs: np.ndarray, targets: np.ndarray) -> tuple[float, int]:
    """Macro one-vs-rest ROC AUC and the number of classes it averages over.

    Per class c: Mann-Whitney U of column c, positives = cases whose target is
    c, with mid-ranks for ties, so AUC_c = P(pos > neg) + P(pos = neg) / 2.
    Classes with no positive or no negative among the targets have no AUC and
    are skipped (classes absent from the targets are never scored). Returns
    (nan, 0) when no class qualifies. Vectorised: it sorts the scored columns
    or, when that is cheaper (n < classes * log2 n), counts pairwise per case
    in O(n^2); n=5000, C=2911 takes a fraction of a second.

    Args:
        probs: (n, C) scores, higher means more likely; NaN is not allowed.
        targets: (n,) integer columns.
    """
    probs = _check_matrix(probs, "probs")
    n, c = probs.shape
    targets = _check_targets(targets, n, c)
    if np.issubdtype(probs.dtype, np.floating) and np.isnan(probs).any():
        raise ValueError("probs contain NaN; AUC needs comparable scores")
    n_pos = np.bincount(targets, minlength=c)
    cls = np.flatnonzero((n_pos > 0) & (n_pos < n))
    if cls.size == 0:
        return float("nan"), 0
    if n < cls.size * np.log2(n):
        r_pos = _positive_midranks_by_counting(probs, targets, cls)
    else:
        r_pos = _positive_midranks_by_sorting(probs, targets, cls)
    k = n_pos[cls].astype(np.float64)
    return float(np.mean((r_pos - k * (k + 1) / 2) / (k * (n - k)))), int(cls.size)


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15
) -> float:
    """ECE = sum over bins of |bin| / n * |accuracy(bin) - mean confidence(bin)|.

    `n_bins` equal-width bins over [0, 1]: bin b holds confidence in
    [b/n_bins, (b+1)/n_bins), the last bin also holds 1.0.

    Example:
        >>> # bins 0.9: 2 cases, accuracy 1/2; bin 0.3: 1 case, accuracy 0 -> (2*0.4 + 0.3) / 3
        >>> ece = expected_calibration_error(np.array([0.9, 0.9, 0.3]), np.array([1, 0, 0]), 10)
        >>> round(ece, 4)
        0.3667
    """
    conf = np.asarray(confidence, dtype=np.float64)
    corr = np.asarray(correct, dtype=np.float64)
    if conf.ndim != 1 or conf.shape != corr.shape or conf.size == 0:
        raise ValueError(
            "confidence and correct must be non-empty vectors of one shape, "
            f"got {conf.shape} and {corr.shape}"
        )
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    bins = np.clip(np.floor(conf * n_bins).astype(np.int64), 0, n_bins - 1)
    gap = np.bincount(bins, weights=corr - conf, minlength=n_bins)
    return float(np.abs(gap).sum() / conf.size)


def classification_metrics(
    probs: np.ndarray, targets: np.ndarray, n_bins: int = 15, eps: float = 1e-12
) -> dict[str, float]:
    """Accuracy, macro-F1, macro one-vs-rest AUC, top-1 ECE and NLL of predicted distributions.

    - accuracy, macro_f1: the hard prediction is the argmax; an exact tie goes
      to the lowest column (numpy's argmax). For the tie-honest top-1 rate use
      `rank_metrics(...)["hit@1"]`. Macro-F1 averages F1 over the classes that
      occur among the targets or the predictions (others have no F1).
    - auc_ovr: `auc_ovr` - classes absent from the targets (or making up every
      target) are skipped; nan if none qualifies.
    - ece: `expected_calibration_error` of the top-1 probability against
      argmax correctness, `n_bins` equal-width bins.
    - nll: mean -log p(target), with p clipped below at `eps`.

    Args:
        probs: (n, C) rows of probabilities in [0, 1] (not logits; checked within 1e-4).
        targets: (n,) integer column of the true label.

    Example:
        >>> m = classification_metrics(np.array([[0.7, 0.3], [0.4, 0.6]]), np.array([0, 0]))
        >>> m["accuracy"], m["macro_f1"], m["auc_ovr"]
        (0.5, 0.3333333333333333, nan)
    """
    probs = _check_matrix(probs, "probs")
    n, c = probs.shape
    if n == 0:
        raise ValueError("classification metrics need at least one case, got 0 rows")
    targets = _check_targets(targets, n, c)
    lo, hi = float(np.min(probs)), float(np.max(probs))
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(
            f"probs must be probabilities in [0, 1] (softmax, not logits), got range [{lo}, {hi}]"
        )
    pred = np.argmax(probs, axis=1)
    correct = pred == targets
    tp = np.bincount(targets[correct], minlength=c).astype(np.float64)
    n_true = np.bincount(targets, minlength=c).astype(np.float64)
    n_pred = np.bincount(pred, minlength=c).astype(np.float64)
    present = (n_true + n_pred) > 0
    macro_f1 = float(np.mean(2 * tp[present] / (n_true[present] + n_pred[present])))
    conf = np.clip(probs[np.arange(n), pred].astype(np.float64), 0.0, 1.0)
    p_true = np.clip(probs[np.arange(n), targets].astype(np.float64), eps, 1.0)
    return {
        "accuracy": float(correct.mean()),
        "macro_f1": macro_f1,
        "auc_ovr": auc_ovr(probs, targets)[0],
        "ece": expected_calibration_error(conf, correct, n_bins),
        "nll": float(-np.log(p_true).mean()),
    }
