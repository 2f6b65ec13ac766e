"""Chronological per-shopper splits: leave-last-out with a validation position.

For each shopper, events are sorted by time (then by `order`); events that tie
on both are shuffled with a fixed seed, so no file order (e.g. by product id)
leaks into the split. The last event is the test target and the one before it
the validation target. A case's history holds only events *strictly earlier*
than its target: events at the same timestamp as the target (a basket, a
same-second burst) are not visible. Training data is everything strictly
before the validation target. This module knows nothing about models or text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .schema import Event


@dataclass(frozen=True)
class SplitConfig:
    """How to split histories."""

    seed: int = 0  # seed of the tie shuffle
    cold_start_max: int = 3  # a test case whose history has at most this many events is cold-start

    def __post_init__(self) -> None:
        if self.cold_start_max < 0:
            raise ValueError(f"cold_start_max={self.cold_start_max}; expected >= 0")


@dataclass(frozen=True)
class Case:
    """One prediction problem: a shopper's history and the event that came next."""

    user_id: str
    history: tuple[Event, ...]
    target: Event


@dataclass
class Split:
    """Training sequences plus validation and test cases, all chronological."""

    train: dict[str, list[Event]]
    valid: list[Case]
    test: list[Case]
    config: SplitConfig = field(default_factory=SplitConfig)

    def cold_start(self) -> list[Case]:
        """Test cases whose history has at most `config.cold_start_max` events."""
        return [c for c in self.test if len(c.history) <= self.config.cold_start_max]


def _time(e: Event) -> float:
    return float(e.timestamp) if e.timestamp is not None else float(e.order or 0)


def order_events(events: Sequence[Event], rng: np.random.Generator) -> list[Event]:
    """Sort one shopper's events by (time, order), shuffling exact ties with `rng`."""
    noise = rng.random(len(events))
    keyed = sorted(
        range(len(events)),
        key=lambda i: (_time(events[i]), events[i].order if events[i].order is not None else -1, noise[i]),
    )
    return [events[i] for i in keyed]


def ordered_histories(histories: Mapping[str, Sequence[Event]], seed: int, limit: int) -> dict[str, list[Event]]:
    """Every shopper's events in time order (ties shuffled with `seed`, shoppers taken in sorted id
    order), newest `limit` kept: the stored histories the service and the batch scorer predict from."""
    rng = np.random.default_rng(seed)
    return {uid: order_events(evs, rng)[-limit:] for uid, evs in sorted(histories.items())}


def _strictly_before(ordered: Sequence[Event], pos: int) -> tuple[Event, ...]:
    t = _time(ordered[pos])
    return tuple(e for e in ordered[:pos] if _time(e) < t)


def make_split(histories: dict[str, list[Event]] | Iterable[Event], config: SplitConfig | None = None) -> Split:
    """Leave-last-out split of every shopper's history.

    Shoppers with one event give no case; with two, a test case only; with three
    or more, a validation and a test case. Users are processed in sorted id
    order so the tie shuffle depends on the seed alone, not on file order.

    Example:
        >>> evs = [Event("u", str(i), "purchase", timestamp=float(i)) for i in range(4)]
        >>> s = make_split(evs)
        >>> [e.item_id for e in s.train["u"]], s.valid[0].target.item_id, s.test[0].target.item_id
        (['0', '1'], '2', '3')
    """
    config = config or SplitConfig()
    if not isinstance(histories, dict):
        grouped: dict[str, list[Event]] = {}
        for e in histories:
            grouped.setdefault(e.user_id, []).append(e)
        histories = grouped
    rng = np.random.default_rng(config.seed)
    train: dict[str, list[Event]] = {}
    valid: list[Case] = []
    test: list[Case] = []
    for uid in sorted(histories):
        ordered = order_events(histories[uid], rng)
        n = len(ordered)
        if n < 2:
            continue
        test.append(Case(uid, _strictly_before(ordered, n - 1), ordered[n - 1]))
        if n >= 3:
            valid.append(Case(uid, _strictly_before(ordered, n - 2), ordered[n - 2]))
            train[uid] = list(_strictly_before(ordered, n - 2))
        else:
            train[uid] = []
    return Split(train=train, valid=valid, test=test, config=config)
