"""Shopper profile weights: how much each recent event counts towards a profile vector.

`profile_weights(events, now, cfg)` is pure: it turns a shopper's events into
(item_id, weight) pairs, weighting by action (purchase > cart > favourite >
view) and by recency (exponential decay with a half-life in days when events
carry timestamps, in events when they only carry an order index). The index
turns the pairs into a vector (`ItemIndex.profile_vector`); this module knows
nothing about embeddings or FAISS.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

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


def _when(e: Event) -> tuple[float, int]:
    t = e.timestamp if e.timestamp is not None else float(e.order or 0)
    return (t, e.order if e.order is not None else 0)
