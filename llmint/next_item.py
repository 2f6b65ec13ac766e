"""Next-item ranking from a category distribution and embedding retrieval.

`CategoryRetrieval` ranks every item of the catalogue for a shopper:

    p(item | history) = P(category(item) | history) ** alpha
                        x softmax_{items j in that category}(sim(profile, j) / tau
                                                             + gamma * log popularity(j))

then renormalised over all items; optionally items already in the history are
ranked last (a shopper rarely buys the same office chair twice, but often the
same milk). The category distribution comes from any
fitted category ranker (Markov, SASRec-CE, the LLM scorer: anything with
`predict_proba` over category tokens); the retrieval score is the inner
product of the shopper's profile (recency-weighted mean of the embeddings of
the items in the history) with each item's embedding, i.e. exact (flat)
inner-product search over the whole catalogue, which is what a full ranking
needs. `alpha`, `tau`, `gamma` (0 = retrieval alone inside a category) and
whether to allow repeats are chosen on the validation cases only.

With `category_ranker=None` the system is retrieval alone (no category term).
This module knows nothing about files, text or FAISS: it takes token
sequences, an item -> category token array and unit item vectors.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CategoryRetrievalConfig:
    """Grids searched on validation, and how the profile weighs history items."""

    taus: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2)  # retrieval softmax temperatures
    alphas: tuple[float, ...] = (1.0, 2.0)  # sharpening of the category distribution
    gammas: tuple[float, ...] = (0.0, 0.5, 1.0)  # weight of log item popularity within a category
    repeats: tuple[bool, ...] = (True, False)  # may items already in the history be recommended?
    half_life_events: float = 3.0  # the item this many positions back weighs half
    max_events: int = 50  # only the most recent N history items form the profile
    max_valid: int = 3000  # validation cases used for the grid (seeded subsample above)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.taus or any(t <= 0 for t in self.taus):
            raise ValueError(f"taus={self.taus!r}; expected positive temperatures")
        if not self.alphas or any(a <= 0 for a in self.alphas):
            raise ValueError(f"alphas={self.alphas!r}; expected positive exponents")
        if not self.gammas or any(g < 0 for g in self.gammas) or not self.repeats:
            raise ValueError("gammas must be >= 0 and repeats non-empty")
        if self.half_life_events <= 0 or self.max_events < 1 or self.max_valid < 1:
            raise ValueError("half_life_events must be > 0, max_events and max_valid >= 1")


class CategoryRetrieval:
    """A next-item `Ranker`: category distribution x within-category retrieval softmax."""

    def __init__(
        self,
        name: str,
        item_category: np.ndarray,
        item_vectors: np.ndarray,
        category_ranker: Any | None,
        cfg: CategoryRetrievalConfig | None = None,
        n_ranker_categories: int | None = None,
    ) -> None:
        self.name = name
        self.item_category = np.asarray(item_category, dtype=np.int64)
        self.vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != self.item_category.shape[0]:
            raise ValueError(
                f"item_vectors {self.vectors.shape} and item_category "
                f"{self.item_category.shape} must have one row per item"
            )
        if self.item_category.size and self.item_category.min() < 0:
            raise ValueError("every item needs a category token >= 0")
        self.category_ranker = category_ranker
        self.cfg = cfg or CategoryRetrievalConfig()
        self.n_categories = int(self.item_category.max()) + 1 if self.item_category.size else 0
        # category tokens >= this are not known to the ranker (dropped from its histories)
        self.n_cat_ranker = n_ranker_categories if n_ranker_categories else self.n_categories
        self._onehot = np.zeros((self.item_category.size, max(self.n_categories, 1)))
        self._onehot[np.arange(self.item_category.size), self.item_category] = 1.0
        self.tau = self.cfg.taus[0]
        self.alpha = self.cfg.alphas[0] if category_ranker is not None else 0.0
        self.gamma = self.cfg.gammas[0]
        self.repeat = self.cfg.repeats[0]
        self.log_pop = np.zeros(self.item_category.size)
        self.grid: list[dict[str, float]] = []

    # -- pieces ---------------------------------------------------------------

    def profiles(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """(n, dim) unit profile vectors; a zero row for an empty history."""
        out = np.zeros((len(histories), self.vectors.shape[1]), dtype=np.float32)
        for r, h in enumerate(histories):
            recent = np.asarray(h[-self.cfg.max_events :], dtype=np.int64)
            if recent.size == 0:
                continue
            w = 0.5 ** (np.arange(recent.size)[::-1] / self.cfg.half_life_events)
            v = (w[:, None] * self.vectors[recent]).sum(axis=0)
            norm = np.linalg.norm(v)
            if norm > 0:
                out[r] = v / norm
        return out

    def _category_probs(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        if self.category_ranker is None:
            return np.ones((len(histories), max(self.n_categories, 1)), dtype=np.float64)
        cat_hists = [
            [c for c in self.item_category[np.asarray(h, dtype=np.int64)].tolist() if c < self.n_cat_ranker]
            for h in histories
        ]
        p = np.asarray(self.category_ranker.predict_proba(cat_hists), dtype=np.float64)
        if p.shape[1] < self.n_categories:  # extra tokens (items without a category): uniform
            pad = np.full((p.shape[0], self.n_categories - p.shape[1]), 1.0 / p.shape[1])
            p = np.hstack([p, pad])
            p /= p.sum(axis=1, keepdims=True)
        return p

    def _log_scores(
        self,
        sims: np.ndarray,
        log_cat: np.ndarray,
        tau: float,
        alpha: float,
        gamma: float = 0.0,
        repeat: bool = True,
        histories: Sequence[Sequence[int]] = (),
    ) -> np.ndarray:
        """Unnormalised log p(item) for (n, n_items) similarities and (n, C) log P(category)."""
        z = sims / tau + gamma * self.log_pop
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        per_cat = e @ self._onehot  # (n, C): sum of exp within each category
        within = z - np.log(per_cat[:, self.item_category])
        out = alpha * log_cat[:, self.item_category] + within
        if not repeat:
            for r, h in enumerate(histories):
                if len(h):
                    out[r, np.asarray(h, dtype=np.int64)] -= 1e4  # after every unseen item
        return out

    # -- Ranker interface -----------------------------------------------------

    def fit(
        self,
        sequences: Sequence[Sequence[int]],
        n_classes: int,
        *,
        valid: tuple[Sequence[Sequence[int]], Sequence[int]] | None = None,
    ) -> CategoryRetrieval:
        """Choose (alpha, tau) by validation NDCG@10; the category ranker must be fitted already."""
        from .metrics import rank_metrics

        if n_classes != self.vectors.shape[0]:
            raise ValueError(f"n_classes={n_classes} but {self.vectors.shape[0]} item vectors")
        alphas = self.cfg.alphas if self.category_ranker is not None else (0.0,)
        counts = np.ones(self.item_category.size)  # add-one smoothing
        for seq in sequences:
            np.add.at(counts, np.asarray(seq, dtype=np.int64), 1.0)
        self.log_pop = np.log(counts)
        if not valid or not len(valid[1]):
            return self
        hists, targets = list(valid[0]), np.asarray(valid[1])
        if len(targets) > self.cfg.max_valid:
            keep = np.sort(
                np.random.default_rng(self.cfg.seed).choice(
                    len(targets), self.cfg.max_valid, replace=False
                )
            )
            hists, targets = [hists[i] for i in keep], targets[keep]
        grid = itertools.product(alphas, self.cfg.taus, self.cfg.gammas, self.cfg.repeats)
        totals = {g: 0.0 for g in grid}
        for s in range(0, len(hists), 512):
            h = hists[s : s + 512]
            sims = self.profiles(h) @ self.vectors.T
            log_cat = np.log(np.maximum(self._category_probs(h), 1e-12))
            for key in totals:
                alpha, tau, gamma, repeat = key
                scores = self._log_scores(sims, log_cat, tau, alpha, gamma, repeat, h)
                totals[key] += float(
                    rank_metrics(scores, targets[s : s + 512], ks=(10,))["ndcg@10"].sum()
                )
        best_key, best = next(iter(totals)), -1.0
        for key, tot in totals.items():
            ndcg = tot / len(targets)
            alpha, tau, gamma, repeat = key
            self.grid.append(
                {"alpha": alpha, "tau": tau, "gamma": gamma, "repeat": repeat, "valid_ndcg@10": round(ndcg, 5)}
            )
            if ndcg > best:
                best_key, best = key, ndcg
        self.alpha, self.tau, self.gamma, self.repeat = best_key
        logger.info("%s: chose %s (valid NDCG@10 %.4f)", self.name, self.chosen, best)
        return self

    @property
    def chosen(self) -> dict[str, Any]:
        """The hyper-parameters in use."""
        return {"alpha": self.alpha, "tau": self.tau, "gamma": self.gamma, "repeat": self.repeat}

    def predict_proba(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        sims = self.profiles(histories) @ self.vectors.T
        log_cat = np.log(np.maximum(self._category_probs(histories), 1e-12))
        s = self._log_scores(sims, log_cat, self.tau, self.alpha, self.gamma, self.repeat, histories)
        s -= s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
        return p.astype(np.float32)
