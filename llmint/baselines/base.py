"""The interface every ranking system implements, in integer token space.

Tokens are category indices or item indices, decided by the evaluation
harness. A system is fitted on chronological training sequences and returns,
for each history (possibly empty: cold start), a probability distribution
over all tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Ranker(Protocol):
    """A next-token ranker."""

    name: str

    def fit(
        self,
        sequences: Sequence[Sequence[int]],
        n_classes: int,
        *,
        valid: tuple[Sequence[Sequence[int]], Sequence[int]] | None = None,
    ) -> Ranker:
        """Learn from training sequences of ints in [0, n_classes); `valid` is for model selection only."""
        ...

    def predict_proba(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """float32 (n, n_classes); each row a probability distribution."""
        ...


def check_sequences(sequences: Sequence[Sequence[int]], n_classes: int) -> None:
    """Raise ValueError if any token is outside [0, n_classes)."""
    if n_classes < 1:
        raise ValueError(f"n_classes={n_classes}; expected >= 1")
    for i, s in enumerate(sequences):
        if len(s) and (min(s) < 0 or max(s) >= n_classes):
            raise ValueError(f"sequence {i} has a token outside [0, {n_classes})")
