"""Count-based baselines: most popular, the user's most frequent, last token, first-order Markov.

Each returns a proper distribution for every history; an empty history (cold
start) gets the training popularity. Popularity is add-one smoothed so that
no token has zero probability.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import check_sequences


def _popularity(sequences: Sequence[Sequence[int]], n: int) -> np.ndarray:
    counts = np.ones(n, dtype=np.float64)
    for s in sequences:
        if len(s):
            counts += np.bincount(np.asarray(s, dtype=np.int64), minlength=n)
    return counts / counts.sum()


class MostPopular:
    """The training frequency of each token, the same for every shopper."""

    name = "most_popular"

    def fit(self, sequences, n_classes, *, valid=None) -> MostPopular:
        check_sequences(sequences, n_classes)
        self.n = n_classes
        self.pop = _popularity(sequences, n_classes)
        return self

    def predict_proba(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        return np.tile(self.pop.astype(np.float32), (len(histories), 1))


class UserMostFrequent:
    """The history's token counts, recency-weighted to break ties, mixed with popularity.

    P(c | h) = (1 - mix) * w_c / sum(w) + mix * pop(c), where w_c sums
    (1 + recency bonus) over the history's events of token c; the bonus is
    < 1 so counts dominate and recency only breaks ties.
    """

    name = "user_most_frequent"

    def __init__(self, mix: float = 0.05) -> None:
        if not 0 < mix < 1:
            raise ValueError(f"mix={mix}; expected 0 < mix < 1")
        self.mix = mix

    def fit(self, sequences, n_classes, *, valid=None) -> UserMostFrequent:
        check_sequences(sequences, n_classes)
        self.n = n_classes
        self.pop = _popularity(sequences, n_classes)
        return self

    def predict_proba(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        out = np.empty((len(histories), self.n), dtype=np.float32)
        for i, h in enumerate(histories):
            if not len(h):
                out[i] = self.pop
                continue
            h = np.asarray(h, dtype=np.int64)
            w = 1.0 + 0.5 * (np.arange(1, len(h) + 1) / len(h))  # in (1, 1.5]: counts dominate
            counts = np.bincount(h, weights=w, minlength=self.n)
            out[i] = (1 - self.mix) * counts / counts.sum() + self.mix * self.pop
        return out


class LastCategory:
    """The last token of the history gets most of the mass; the rest follows popularity."""

    name = "last"

    def __init__(self, weight: float = 0.9) -> None:
        if not 0 < weight < 1:
            raise ValueError(f"weight={weight}; expected 0 < weight < 1")
        self.weight = weight

    def fit(self, sequences, n_classes, *, valid=None) -> LastCategory:
        check_sequences(sequences, n_classes)
        self.n = n_classes
        self.pop = _popularity(sequences, n_classes)
        return self

    def predict_proba(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        out = np.tile(self.pop.astype(np.float32), (len(histories), 1))
        for i, h in enumerate(histories):
            if len(h):
                out[i] *= 1 - self.weight
                out[i, h[-1]] += self.weight
        return out


class Markov:
    """First-order transitions P(next | last) from training pairs, smoothed toward popularity.

    P(c | last=a) = (count(a -> c) + alpha * pop(c)) / (count(a -> .) + alpha).
    """

    name = "markov"

    def __init__(self, alpha: float = 1.0) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha={alpha}; expected > 0")
        self.alpha = alpha

    def fit(self, sequences, n_classes, *, valid=None) -> Markov:
        check_sequences(sequences, n_classes)
        self.n = n_classes
        self.pop = _popularity(sequences, n_classes)
        prev, nxt = [], []
        for s in sequences:
            if len(s) >= 2:
                prev.append(np.asarray(s[:-1], dtype=np.int64))
                nxt.append(np.asarray(s[1:], dtype=np.int64))
        from scipy.sparse import csr_matrix

        if prev:
            p, q = np.concatenate(prev), np.concatenate(nxt)
            self.counts = csr_matrix((np.ones(p.size), (p, q)), shape=(n_classes, n_classes))
        else:
            self.counts = csr_matrix((n_classes, n_classes))
        self.row_sum = np.asarray(self.counts.sum(axis=1)).ravel()
        return self

    def transition(self, last: int) -> np.ndarray:
        """P(next | last) as a dense float64 vector."""
        row = self.counts.getrow(last).toarray().ravel()
        return (row + self.alpha * self.pop) / (self.row_sum[last] + self.alpha)

    def predict_proba(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        out = np.empty((len(histories), self.n), dtype=np.float32)
        for i, h in enumerate(histories):
            out[i] = self.transition(int(h[-1])) if len(h) else self.pop
        return out
