"""Shoppers' events as chronological category sequences: the common input of every analysis.

An event becomes its item's taxonomy label (index into `taxonomy.labels`);
events without an item, with an unknown item or with an item that has no
category at the taxonomy's level are skipped. Events are ordered exactly as
`llmint.split.order_events` orders them (time, then `order`, exact ties
shuffled with a seeded generator). A *basket* is a run of events sharing one
time key (the timestamp, or the `order` index where there is no timestamp):
an Instacart order, a same-second burst, or one position of an order-only
history. This module knows nothing about models, plots or files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..schema import Event, Item
from ..split import order_events
from ..taxonomy import Taxonomy

UNIX_MIN = 1e8  # timestamps at or above this (1973-03) are read as unix seconds, below as relative


@dataclass(frozen=True)
class LabelledEvent:
    """One categorised event: the event, its label index and its time key."""

    event: Event
    label: int
    time: float  # timestamp in seconds, or the order index where the event has no timestamp


def time_key(e: Event) -> float:
    """The event's timestamp (seconds), or its `order` where it has none."""
    return float(e.timestamp) if e.timestamp is not None else float(e.order or 0)


def has_time(events: Iterable[Event]) -> bool:
    """True when every event has a timestamp."""
    return all(e.timestamp is not None for e in events)


def labelled(
    events: Sequence[Event], items: Mapping[str, Item], taxonomy: Taxonomy, *, seed: int = 0
) -> list[LabelledEvent]:
    """One shopper's categorised events in chronological order (uncategorised ones skipped).

    Example:
        >>> from llmint.taxonomy import Taxonomy
        >>> it = {"a": Item("a", "A", ("X",)), "b": Item("b", "B")}
        >>> evs = [Event("u", "a", "view", order=2), Event("u", "b", "view", order=1)]
        >>> [(le.event.item_id, le.label) for le in labelled(evs, it, Taxonomy.from_items(it.values(), 1))]
        [('a', 0)]
    """
    cache: dict[str, int | None] = {}
    out: list[LabelledEvent] = []
    for e in order_events(list(events), np.random.default_rng(seed)):
        if e.item_id is None:
            continue
        if e.item_id not in cache:
            it = items.get(e.item_id)
            lab = taxonomy.label_of(it) if it is not None else None
            cache[e.item_id] = taxonomy.index(lab) if lab is not None and lab in taxonomy else None
        idx = cache[e.item_id]
        if idx is not None:
            out.append(LabelledEvent(e, idx, time_key(e)))
    return out


def baskets(seq: Sequence[LabelledEvent]) -> list[list[LabelledEvent]]:
    """Consecutive runs of events with the same time key.

    Example:
        >>> e = Event("u", "a", "view", order=0)
        >>> [len(b) for b in baskets([LabelledEvent(e, 0, 1.0), LabelledEvent(e, 1, 1.0), LabelledEvent(e, 0, 2.0)])]
        [2, 1]
    """
    out: list[list[LabelledEvent]] = []
    for le in seq:
        if out and out[-1][-1].time == le.time:
            out[-1].append(le)
        else:
            out.append([le])
    return out


def label_sequences(
    histories: Mapping[str, Sequence[Event]], items: Mapping[str, Item], taxonomy: Taxonomy, *, seed: int = 0
) -> dict[str, list[int]]:
    """user -> chronological label indices (users with no categorised event are left out)."""
    out: dict[str, list[int]] = {}
    for uid in sorted(histories):
        s = [le.label for le in labelled(histories[uid], items, taxonomy, seed=seed)]
        if s:
            out[uid] = s
    return out


def distribution(labels: Sequence[int], n_labels: int, weights: Sequence[float] | None = None) -> np.ndarray:
    """The (weighted) share of each label, float64 (n_labels,); all zeros for no labels.

    Example:
        >>> distribution([0, 0, 2], 3).tolist()
        [0.6666666666666666, 0.0, 0.3333333333333333]
    """
    w = np.bincount(np.asarray(labels, dtype=np.int64), weights=weights, minlength=n_labels).astype(np.float64)
    s = w.sum()
    return w / s if s > 0 else w


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray | float:
    """Total-variation distance 0.5 * sum |p - q| along the last axis (0 = same, 1 = disjoint).

    Example:
        >>> total_variation(np.array([1.0, 0.0]), np.array([0.5, 0.5]))
        0.5
    """
    d = 0.5 * np.abs(np.asarray(p, dtype=np.float64) - np.asarray(q, dtype=np.float64)).sum(axis=-1)
    return float(d) if np.ndim(d) == 0 else d
