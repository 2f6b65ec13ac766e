"""Shopper profile weights: how much each recent event counts towards a profile vector.

`profile_weights(events, now, cfg)` is pure: it turns a shopper's events into
(item_id, weight) pairs, weighting by action (purchase > cart > favourite >
view) and by recency (exponential decay with a half-life in days when events
carry timestamps, in events when they only carry an order index).
`profile_vector(events, vectors_of, known, ...)` turns the pairs of the items that are
`known` into a unit vector, the weighted mean of the item vectors that `vectors_of`
looks up (`ItemIndex.profile_vector` passes its own). This module knows nothing about
embeddings, labels or FAISS.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import HistoryError
from .schema import ACTIONS, Event

DEFAULT_ACTION_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("purchase", 1.0),
    ("review", 0.8),  # a review implies the shopper bought the item
    ("cart", 0.7),
    ("favourite", 0.5),
    ("view", 0.25),
)


@dataclass(frozen=True)
class ProfileConfig:
    """How a shopper profile weights events (action weights and recency decay)."""

    action_weights: tuple[tuple[str, float], ...] = field(
        default=DEFAULT_ACTION_WEIGHTS,
        metadata={"help": "(action, weight) pairs; actions not listed (search) weigh 0"},
    )
    half_life_days: float = field(
        default=30.0, metadata={"help": "an event this many days older than `now` counts half"}
    )
    half_life_events: float = field(
        default=10.0,
        metadata={"help": "without timestamps: the event this many positions back counts half"},
    )
    max_events: int = field(default=50, metadata={"help": "only the most recent N events count"})

    def __post_init__(self) -> None:
        for action, weight in self.action_weights:
            if action not in ACTIONS:
                raise ValueError(f"action_weights: {action!r} is not one of {ACTIONS}")
            if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
                raise ValueError(f"action_weights[{action!r}]={weight!r}; expected a number >= 0")
        for name in ("half_life_days", "half_life_events"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{name}={v!r}; expected a number > 0")
        if not isinstance(self.max_events, int) or self.max_events < 1:
            raise ValueError(f"max_events={self.max_events!r}; expected an int >= 1")

    @property
    def weights(self) -> Mapping[str, float]:
        return dict(self.action_weights)


def profile_weights(
    events: Iterable[Event], now: float | None = None, cfg: ProfileConfig | None = None
) -> list[tuple[str, float]]:
    """(item_id, weight) for the recent item events of one shopper, newest first.

    With timestamps on every item event, weight = action weight x 0.5 ** (age_days /
    half_life_days), age measured from `now` (default: the newest event); events
    after `now` are ignored. Otherwise events are ranked by (timestamp or order) and
    weight = action weight x 0.5 ** (rank / half_life_events), rank 0 = newest.
    Events without an item or with weight 0 are dropped.

    Example:
        >>> evs = [Event("u", "a", "view", order=0), Event("u", "b", "purchase", order=1)]
        >>> profile_weights(evs, cfg=ProfileConfig(half_life_events=1.0))
        [('b', 1.0), ('a', 0.125)]
    """
    cfg = cfg or ProfileConfig()
    weights = cfg.weights
    evs = [e for e in events if e.item_id is not None and weights.get(e.action, 0.0) > 0]
    if not evs:
        return []
    timed = all(e.timestamp is not None for e in evs)
    if timed:
        if now is None:
            now = max(e.timestamp for e in evs)  # type: ignore[type-var]
        evs = [e for e in evs if e.timestamp <= now]  # type: ignore[operator]
    evs.sort(key=_when, reverse=True)
    evs = evs[: cfg.max_events]
    out: list[tuple[str, float]] = []
    for rank, e in enumerate(evs):
        if timed:
            age_days = (now - e.timestamp) / 86400.0  # type: ignore[operator]
            decay = 0.5 ** (age_days / cfg.half_life_days)
        else:
            decay = 0.5 ** (rank / cfg.half_life_events)
        out.append((e.item_id, weights[e.action] * decay))  # type: ignore[arg-type]
    return out


def profile_vector(
    events: Iterable[Event],
    vectors_of: Callable[[Sequence[str]], np.ndarray],
    known: Container[str],
    now: float | None = None,
    cfg: ProfileConfig | None = None,
) -> np.ndarray:
    """A shopper's profile (d,): the normalised, weighted mean of their recent items' vectors.

    Weights come from `profile_weights` (action x recency). Items not `known` are
    skipped; raises HistoryError when no event has a known item, or when the weighted
    vectors (`vectors_of(item_ids)`, (n, d) float32) cancel out.
    """
    pairs = [(i, w) for i, w in profile_weights(events, now, cfg) if i in known]
    if not pairs:
        raise HistoryError("no recent event of this shopper has an item in the index")
    vecs = vectors_of([i for i, _ in pairs])
    w = np.array([w for _, w in pairs], dtype=np.float32)
    v = (w[:, None] * vecs).sum(axis=0)
    norm = float(np.linalg.norm(v))
    if norm == 0.0:
        raise HistoryError("the shopper's weighted item vectors cancel out to zero")
    return (v / norm).astype(np.float32)


def _when(e: Event) -> tuple[float, int]:
    t = e.timestamp if e.timestamp is not None else float(e.order or 0)
    return (t, e.order if e.order is not None else 0)
