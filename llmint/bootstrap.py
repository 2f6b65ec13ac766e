"""Bootstrap confidence intervals over evaluation cases, and paired differences.

Percentile bootstrap: resample cases with replacement, recompute the
statistic, take the alpha/2 and 1-alpha/2 quantiles. Paired comparisons
resample the same case indices for both systems. Numpy only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class CI:
    """A point estimate with its confidence interval."""

    mean: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class PairedCI:
    """The mean difference a - b, its confidence interval and a two-sided bootstrap p-value."""

    diff: float
    low: float
    high: float
    p_value: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _boot_means(values: np.ndarray, n_boot: int, seed: int, chunk: int = 200) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = values.shape[0]
    out = np.empty(n_boot)
    for s in range(0, n_boot, chunk):
        b = min(chunk, n_boot - s)
        idx = rng.integers(0, n, size=(b, n))
        out[s : s + b] = values[idx].mean(axis=1)
    return out


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> CI:
    """CI of the mean of a per-case metric.

    Example:
        >>> bootstrap_ci(np.ones(10)).to_dict()
        {'mean': 1.0, 'low': 1.0, 'high': 1.0}
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"values must be a non-empty vector, got shape {values.shape}")
    boots = _boot_means(values, n_boot, seed)
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return CI(float(values.mean()), float(lo), float(hi))


def bootstrap_stat(
    fn: Callable[..., float], arrays: Sequence[np.ndarray], n_boot: int = 200, alpha: float = 0.05, seed: int = 0
) -> CI:
    """CI of a statistic that is not a mean of per-case values (macro-F1, AUC, ECE).

    `fn(*arrays)` is recomputed on `n_boot` resamples of the cases (rows).
    Resamples where the statistic is undefined (NaN) are dropped.
    """
    n = arrays[0].shape[0]
    rng = np.random.default_rng(seed)
    point = float(fn(*arrays))
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, size=n)
        v = fn(*(a[idx] for a in arrays))
        if np.isfinite(v):
            vals.append(v)
    if not vals:
        return CI(point, float("nan"), float("nan"))
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return CI(point, float(lo), float(hi))


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> PairedCI:
    """Mean of a - b over the same cases, its CI, and a two-sided bootstrap p-value."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"a and b must be non-empty vectors of the same shape, got {a.shape} and {b.shape}")
    d = a - b
    boots = _boot_means(d, n_boot, seed)
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    if np.all(d == 0):
        p = 1.0
    else:
        p = float(min(1.0, 2 * min((boots <= 0).mean(), (boots >= 0).mean())))
    return PairedCI(float(d.mean()), float(lo), float(hi), p)
