"""Bootstrap confidence intervals over evaluation cases, and paired differences between systems.

Percentile bootstrap: resample the n cases with replacement n_boot times,
recompute the statistic on each resample, and report the alpha/2 and
1 - alpha/2 quantiles around the full-sample point estimate.

Every function draws its resamples from `resample_indices(n, n_boot, seed)`,
so with one seed all metrics and all systems of one slice are resampled
identically (that is what makes a paired comparison paired).

This module is numpy-only and knows nothing about which metric it resamples.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

logger = logging.getLogger(__name__)

_CHUNK_ELEMENTS = 1 << 22  # resampled indices held at once (32 MiB of int64)


@dataclass(frozen=True)
class CI:
    """A point estimate on all cases with its percentile-bootstrap confidence interval."""

    mean: float  # the statistic on the full sample (for a per-case metric, its mean)
    low: float  # alpha/2 quantile of the bootstrap distribution
    high: float  # 1 - alpha/2 quantile

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class PairedCI:
    """The mean difference a - b over the same cases, its CI and a two-sided bootstrap p-value."""

    diff: float  # mean(a - b) on all cases
    low: float
    high: float
    p_value: float  # 2 * min(share of resampled diffs <= 0, share >= 0), at most 1

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _check_params(n_boot: int, alpha: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")


def _vector(values: np.ndarray, name: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{name} must be a non-empty vector (n,), got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(
            f"{name} must be finite; it has {int((~np.isfinite(v)).sum())} NaN or infinite values"
        )
    return v


def resample_indices(n: int, n_boot: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Yield (b, n) int64 matrices of case indices, b rows at a time, n_boot rows in all.

    Deterministic in (n, n_boot, seed): the chunk size depends only on n.
    """
    if n < 1:
        raise ValueError(f"need at least one case to resample, got n={n}")
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_ELEMENTS // n)
    for s in range(0, n_boot, rows):
        yield rng.integers(0, n, size=(min(rows, n_boot - s), n))


def _boot_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    return np.concatenate(
        [values[idx].mean(axis=1) for idx in resample_indices(values.size, n_boot, seed)]
    )


def _interval(point: float, boots: np.ndarray, alpha: float) -> tuple[float, float, float]:
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return float(point), float(lo), float(hi)


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> CI:
    """Percentile-bootstrap CI of the mean of a per-case metric.

    Args:
        values: (n,) finite per-case values (e.g. `rank_metrics(...)["hit@1"]`).
    Returns:
        CI(mean, low, high). A constant vector gives exactly CI(v, v, v).

    Example:
        >>> bootstrap_ci(np.ones(10)).to_dict()
        {'mean': 1.0, 'low': 1.0, 'high': 1.0}
    """
    _check_params(n_boot, alpha)
    v = _vector(values, "values")
    if np.all(v == v[0]):
        return CI(float(v[0]), float(v[0]), float(v[0]))
    return CI(*_interval(v.mean(), _boot_means(v, n_boot, seed), alpha))


def bootstrap_stats(
    fn: Callable[..., Mapping[str, float]],
    arrays: Sequence[np.ndarray],
    n_boot: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, CI]:
    """CIs of several statistics computed together by `fn(*arrays) -> {name: value}`.

    For statistics that are not means of per-case values (macro-F1, AUC, ECE):
    `fn` is recomputed on `n_boot` resamples of the rows shared by all
    `arrays`. Resamples on which a statistic is NaN (e.g. AUC with no
    qualifying class) are dropped for that statistic, with a warning if more
    than 5% are; a statistic NaN on every resample gets low = high = nan.

    Example:
        >>> x = np.arange(10.0)
        >>> cis = bootstrap_stats(lambda a: {"max": a.max(), "min": a.min()}, [x], n_boot=50)
        >>> cis["max"].mean, cis["min"].mean
        (9.0, 0.0)
    """
    _check_params(n_boot, alpha)
    arrays = [np.asarray(a) for a in arrays]
    if not arrays or arrays[0].ndim == 0 or arrays[0].shape[0] == 0:
        raise ValueError("arrays must hold at least one array with at least one row")
    n = arrays[0].shape[0]
    if any(a.ndim == 0 or a.shape[0] != n for a in arrays):
        raise ValueError(
            f"all arrays must have the same number of rows, got {[a.shape for a in arrays]}"
        )
    point = {k: float(v) for k, v in fn(*arrays).items()}
    draws: dict[str, list[float]] = {k: [] for k in point}
    for block in resample_indices(n, n_boot, seed):
        for idx in block:
            for k, v in fn(*(a[idx] for a in arrays)).items():
                draws[k].append(float(v))
    out: dict[str, CI] = {}
    for k, p in point.items():
        d = np.asarray(draws[k])
        ok = d[np.isfinite(d)]
        if ok.size < 0.95 * d.size:
            logger.warning(
                "bootstrap of %s: %d of %d resamples undefined and dropped",
                k,
                d.size - ok.size,
                d.size,
            )
        if ok.size == 0:
            out[k] = CI(p, float("nan"), float("nan"))
        else:
            out[k] = CI(*_interval(p, ok, alpha))
    return out


def bootstrap_stat(
    fn: Callable[..., float],
    arrays: Sequence[np.ndarray],
    n_boot: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
) -> CI:
    """CI of one statistic `fn(*arrays) -> float` on resampled rows (see `bootstrap_stats`).

    Example:
        >>> bootstrap_stat(np.median, [np.full(7, 3.0)], n_boot=20).to_dict()
        {'mean': 3.0, 'low': 3.0, 'high': 3.0}
    """
    return bootstrap_stats(lambda *a: {"stat": fn(*a)}, arrays, n_boot, alpha, seed)["stat"]


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> PairedCI:
    """Mean of a - b over the same cases, its percentile CI and a two-sided bootstrap p-value.

    Both systems are resampled with the same case indices (resampling the
    per-case differences). p = 2 * min(share of resampled mean differences
    <= 0, share >= 0), capped at 1; resamples exactly at 0 count on both sides
    (conservative for 0/1 metrics). p = 0 means no resample reached zero,
    i.e. p < 1/n_boot. Identical systems give PairedCI(0, 0, 0, 1).

    Args:
        a, b: (n,) per-case values of two systems on the same cases, same order.

    Example:
        >>> paired_bootstrap(np.array([1.0, 0.0, 1.0]), np.array([1.0, 0.0, 1.0])).to_dict()
        {'diff': 0.0, 'low': 0.0, 'high': 0.0, 'p_value': 1.0}
    """
    _check_params(n_boot, alpha)
    a = _vector(a, "a")
    b = _vector(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must score the same cases, got shapes {a.shape} and {b.shape}")
    d = a - b
    if np.all(d == d[0]):
        return PairedCI(float(d[0]), float(d[0]), float(d[0]), 1.0 if d[0] == 0 else 0.0)
    boots = _boot_means(d, n_boot, seed)
    p = min(1.0, 2.0 * min(float(np.mean(boots <= 0)), float(np.mean(boots >= 0))))
    return PairedCI(*_interval(d.mean(), boots, alpha), p)
