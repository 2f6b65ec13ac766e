"""The interface every ranking system implements, in integer token space.

Tokens are category indices or item indices, decided by the evaluation
harness. A system is fitted on chronological training sequences and returns,
for each history (possibly empty: cold start), a probability distribution
over all tokens. This module knows nothing about events, text or models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Ranker(Protocol):
    """A next-token ranker (`isinstance` checks only that its members exist)."""

    name: str

    def fit(
        self,
        sequences: Sequence[Sequence[int]],
        n_classes: int,
        *,
        valid: tuple[Sequence[Sequence[int]], Sequence[int]] | None = None,
    ) -> Ranker:
        """Learn from sequences of ints in [0, n_classes); `valid` is for model selection only."""
        ...

    def predict_proba(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """float32 (n, n_classes); each row a probability distribution. A history may be empty."""
        ...


def check_sequences(
    sequences: Sequence[Sequence[int]], n_classes: int, what: str = "sequence"
) -> None:
    """Raise ValueError unless every token is an int in [0, n_classes)."""
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes={n_classes!r}; expected an int >= 1")
    for i, s in enumerate(sequences):
        if not len(s):
            continue
        a = np.asarray(s)
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(
                f"{what} {i} must be a flat list of ints, got dtype {a.dtype} shape {a.shape}"
            )
        if a.min() < 0 or a.max() >= n_classes:
            raise ValueError(
                f"{what} {i} has a token outside [0, {n_classes}): {a.min()}..{a.max()}"
            )


def check_valid(
    valid: tuple[Sequence[Sequence[int]], Sequence[int]] | None, n_classes: int
) -> None:
    """Raise ValueError unless `valid` is None or equal-length, in-range (histories, targets)."""
    if valid is None:
        return
    hist, targets = valid
    if len(hist) != len(targets):
        raise ValueError(f"valid has {len(hist)} histories but {len(targets)} targets")
    check_sequences(hist, n_classes, "valid history")
    check_sequences([list(targets)], n_classes, "valid targets")


def popularity(sequences: Sequence[Sequence[int]], n_classes: int) -> np.ndarray:
    """Add-one smoothed training frequency of each token, float64 (n_classes,), summing to 1.

    Example:
        >>> popularity([[0, 1, 1], [1, 2]], 3).tolist()
        [0.25, 0.5, 0.25]
    """
    counts = np.ones(n_classes, dtype=np.float64)
    for s in sequences:
        if len(s):
            counts += np.bincount(np.asarray(s, dtype=np.int64), minlength=n_classes)
    return counts / counts.sum()
