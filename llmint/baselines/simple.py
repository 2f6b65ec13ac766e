"""Count-based baselines: most popular, the user's most frequent, last token, first-order Markov.

Each returns a proper float32 distribution for every history; an empty
history (cold start) gets the training popularity, which is add-one smoothed
so that no token has zero probability. Equal evidence gives exactly equal
probabilities (ties are left to the metrics, which count them fairly), so
the tie structure depends on the data alone, never on token order.
This module knows nothing about events, text or neural models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import check_sequences, popularity


class _Counted:
    """Shared fitting: validate the sequences and learn the popularity prior."""

    name = "counted"

    def fit(self, sequences, n_classes, *, valid=None):
        check_sequences(sequences, n_classes)
        self.n = int(n_classes)
        self.pop = popularity(sequences, self.n)
        return self

    def _check(self, histories: Sequence[Sequence[int]]) -> None:
        if not hasattr(self, "pop"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() first")
        check_sequences(histories, self.n, "history")


class MostPopular(_Counted):
    """The training frequency of each token, the same for every shopper.

    Example:
        >>> MostPopular().fit([[0, 1, 1], [1, 2]], 3).predict_proba([[]]).tolist()
        [[0.25, 0.5, 0.25]]
    """

    name = "most_popular"

    def predict_proba(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """float32 (n, n_classes): the popularity row, repeated."""
        self._check(histories)
        return np.tile(self.pop.astype(np.float32), (len(histories), 1))


class UserMostFrequent(_Counted):
    """The history's most frequent token first, ties to the more recent; the rest by popularity.

    Token c of the history has weight w_c = count_c + 0.5 * last_c / len(h),
    where last_c in 1..len(h) is the position of its last occurrence: the
    bonus is at most 0.5, so counts decide and recency only breaks ties.
    History tokens share 1 - m of the mass in proportion to w; the others
    share m in proportion to popularity, with m = `mix` unless that would
    lift an unseen token above a history token (m is then lowered so that
    every history token outranks every unseen one).
    """

    name = "user_most_frequent"

    def __init__(self, mix: float = 0.05) -> None:
        if not 0 < mix < 1:
            raise ValueError(f"mix={mix}; expected 0 < mix < 1")
        self.mix = mix

    def predict_proba(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """float32 (n, n_classes)."""
        self._check(histories)
        out = np.empty((len(histories), self.n), dtype=np.float32)
        for i, h in enumerate(histories):
            if not len(h):
                out[i] = self.pop
                continue
            h = np.asarray(h, dtype=np.int64)
            w = np.bincount(h, minlength=self.n).astype(np.float64)
            last = np.zeros(self.n)
            np.maximum.at(last, h, np.arange(1, len(h) + 1, dtype=np.float64))
            seen = w > 0
            w[seen] += 0.5 * last[seen] / len(h)
            p = np.zeros(self.n)
            if seen.all():
                p = w / w.sum()
            else:
                rest = self.pop * ~seen
                s = w[seen].min() / w.sum()  # smallest history share
                r = rest.max() / rest.sum()  # largest unseen share
                m = min(self.mix, 0.5 * s / (r + s))  # ensures m * r < (1 - m) * s
                p = (1 - m) * w / w.sum() + m * rest / rest.sum()
            out[i] = p
        return out


class LastCategory(_Counted):
    """The last token of the history gets `weight` of the mass; the rest follows popularity."""

    name = "last"

    def __init__(self, weight: float = 0.9) -> None:
        if not 0 < weight < 1:
            raise ValueError(f"weight={weight}; expected 0 < weight < 1")
        self.weight = weight

    def predict_proba(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """float32 (n, n_classes): (1 - weight) * popularity + weight on the last token."""
        self._check(histories)
        out = np.tile(self.pop, (len(histories), 1))
        rows = [i for i, h in enumerate(histories) if len(h)]
        if rows:
            out[rows] *= 1 - self.weight
            out[rows, [int(histories[i][-1]) for i in rows]] += self.weight
        return out.astype(np.float32)


class Markov(_Counted):
    """First-order transitions P(next | last) from training pairs, smoothed toward popularity.

    P(c | last=a) = (count(a -> c) + alpha * pop(c)) / (count(a -> .) + alpha);
    a token never seen as a predecessor falls back to popularity. Transition
    counts are kept sparse (CSR arrays), so item vocabularies are fine.
    """

    name = "markov"

    def __init__(self, alpha: float = 1.0) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha={alpha}; expected > 0")
        self.alpha = alpha

    def fit(self, sequences, n_classes, *, valid=None) -> Markov:
        super().fit(sequences, n_classes)
        pairs = [
            np.asarray(s, dtype=np.int64)[:-1] * self.n + np.asarray(s, dtype=np.int64)[1:]
            for s in sequences
            if len(s) >= 2
        ]
        keys, counts = np.unique(
            np.concatenate(pairs) if pairs else np.zeros(0, np.int64), return_counts=True
        )
        self._cols = keys % self.n
        self._counts = counts.astype(np.float64)
        self._indptr = np.searchsorted(keys // self.n, np.arange(self.n + 1))
        self.row_sum = np.bincount(keys // self.n, weights=self._counts, minlength=self.n)
        return self

    def transition(self, last: int) -> np.ndarray:
        """P(next | last) as a dense float64 vector (n_classes,)."""
        a, b = self._indptr[last], self._indptr[last + 1]
        row = self.alpha * self.pop
        row[self._cols[a:b]] += self._counts[a:b]
        return row / (self.row_sum[last] + self.alpha)

    def predict_proba(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """float32 (n, n_classes)."""
        self._check(histories)
        out = np.empty((len(histories), self.n), dtype=np.float32)
        for i, h in enumerate(histories):
            out[i] = self.transition(int(h[-1])) if len(h) else self.pop
        return out
