"""Ranking and classification metrics for next-category and next-item prediction.

Ties are handled honestly: a case's rank is the *expected* rank under uniformly
random tie-breaking, and every rank metric is the exact expectation of that
metric over the tied positions (a constant scorer over C classes gets
hit@1 = 1/C, never 1). This module is numpy-only and knows nothing about models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_EULER = 0.5772156649015329


def _harmonic(n: np.ndarray) -> np.ndarray:
    """H(n) = 1 + 1/2 + ... + 1/n for integer arrays n >= 0 (exact below 64, asymptotic above)."""
    from scipy.special import digamma

    n = np.asarray(n, dtype=np.float64)
    return np.where(n < 1, 0.0, digamma(n + 1.0) + _EULER)


def _check(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    targets = np.asarray(targets)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a matrix (n, C), got shape {scores.shape}")
    if targets.shape != (scores.shape[0],):
        raise ValueError(f"targets must have shape ({scores.shape[0]},), got {targets.shape}")
    if targets.size and (targets.min() < 0 or targets.max() >= scores.shape[1]):
        raise ValueError(f"targets must lie in [0, {scores.shape[1]})")
    return scores, targets.astype(np.int64)


def rank_metrics(
    scores: np.ndarray, targets: np.ndarray, ks: Sequence[int] = (1, 3, 5, 10), chunk: int = 2048
) -> dict[str, np.ndarray]:
    """Per-case hit@k, ndcg@k, mrr and expected rank over a full ranking of all columns.

    Args:
        scores: (n, C) higher is better.
        targets: (n,) the column of each case's true label.
    Returns:
        {"hit@k": (n,), "ndcg@k": (n,), "mrr": (n,), "rank": (n,)} as float64.

    Example:
        >>> m = rank_metrics(np.array([[0.1, 0.5, 0.4]]), np.array([2]), ks=(1, 3))
        >>> float(m["rank"][0]), float(m["hit@1"][0]), round(float(m["ndcg@3"][0]), 4)
        (2.0, 0.0, 0.6309)
    """
    scores, targets = _check(scores, targets)
    n = scores.shape[0]
    greater = np.empty(n, dtype=np.int64)
    ties = np.empty(n, dtype=np.int64)
    for s in range(0, n, chunk):
        block = scores[s : s + chunk]
        t = block[np.arange(block.shape[0]), targets[s : s + chunk]][:, None]
        greater[s : s + chunk] = (block > t).sum(axis=1)
        ties[s : s + chunk] = (block == t).sum(axis=1) - 1
    m = ties + 1  # the target's rank is uniform over g+1 .. g+m
    g = greater
    out: dict[str, np.ndarray] = {"rank": g + (m + 1) / 2.0}
    kmax = max(ks)
    disc = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, kmax + 2)))])  # disc[r] = sum_{j<=r}
    for k in ks:
        top = np.minimum(k, g + m)
        low = np.minimum(k, g)
        out[f"hit@{k}"] = (top - low) / m
        out[f"ndcg@{k}"] = (disc[top] - disc[low]) / m
    out["mrr"] = (_harmonic(g + m) - _harmonic(g)) / m
    return out


def classification_metrics(probs: np.ndarray, targets: np.ndarray, n_bins: int = 15) -> dict[str, float]:
    """Accuracy, macro-F1, macro one-vs-rest AUC and expected calibration error.

    `probs` (n, C) are the predicted distributions. Accuracy and F1 use the
    argmax (ties go to the lowest column). Macro-F1 averages over classes that
    occur among the targets or the predictions. AUC averages over classes with
    at least one positive and one negative among the targets (others are
    skipped: their AUC is undefined), with tie-corrected ranks. ECE bins the
    top-1 probability into `n_bins` equal-width bins.
    """
    from scipy.stats import rankdata

    probs, targets = _check(probs, targets)
    n, c = probs.shape
    pred = probs.argmax(axis=1)
    correct = pred == targets
    tp = np.bincount(targets[correct], minlength=c).astype(np.float64)
    n_true = np.bincount(targets, minlength=c).astype(np.float64)
    n_pred = np.bincount(pred, minlength=c).astype(np.float64)
    present = (n_true + n_pred) > 0
    f1 = np.divide(2 * tp, n_true + n_pred, out=np.zeros(c), where=(n_true + n_pred) > 0)
    macro_f1 = float(f1[present].mean()) if present.any() else 0.0

    cls = np.flatnonzero((n_true > 0) & (n_true < n))
    auc = float("nan")
    if cls.size:
        ranks = rankdata(probs[:, cls], axis=0)  # average ranks for ties
        pos = targets[:, None] == cls[None, :]
        n_pos = pos.sum(axis=0).astype(np.float64)
        n_neg = n - n_pos
        auc = float(np.mean(((ranks * pos).sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)))

    conf = probs.max(axis=1)
    bins = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            ece += sel.sum() / n * abs(correct[sel].mean() - conf[sel].mean())
    return {"accuracy": float(correct.mean()), "macro_f1": macro_f1, "auc_ovr": auc, "ece": float(ece)}
