"""A shopper's interest profile: short-term vs long-term category distribution, and the shift.

Short term: the category shares of the last `recent_n` categorised events
(or of the current session, when a session gap is given).
Long term: the whole history with recency decay, weight 0.5 ** (age / half-life),
where age is measured back from the shopper's last event, in days where the
events have timestamps and in baskets (orders) where they have only an order
index. Shift = short - long: positive for interests that are growing now.
This module knows nothing about models or plots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..schema import Event, Item
from ..taxonomy import Taxonomy
from .sequences import baskets, distribution, has_time, labelled

DAY = 86400.0


@dataclass(frozen=True)
class ShopperProfile:
    """Short- and long-term interest of one shopper over taxonomy labels.

    Each dict holds the labels that appear in the history (others are 0 in
    both), in descending long-term share; `short` and `long` each sum to 1
    (or are empty for a history with no categorised event).
    """

    short: dict[str, float]
    long: dict[str, float]
    shift: dict[str, float]  # short - long
    n_events: int  # categorised events used
    recent_n: int  # events in the short-term window (last recent_n, or the current session)
    half_life: float  # in days, or in orders for an order-only history
    half_life_unit: str  # "days" or "orders"

    def top_shift(self, k: int = 3) -> list[tuple[str, float]]:
        """The `k` labels with the largest |shift|, largest first."""
        return sorted(self.shift.items(), key=lambda kv: (-abs(kv[1]), kv[0]))[:k]


def shopper_profile(
    events: Sequence[Event], items: Mapping[str, Item], taxonomy: Taxonomy, *,
    recent_n: int = 10, half_life_days: float = 90.0, half_life_orders: float = 20.0,
    session_gap_s: float | None = None, seed: int = 0,
) -> ShopperProfile:
    """Short-term (last `recent_n` events) vs decayed long-term interest of one shopper.

    With `session_gap_s`, the short term is the current session instead: the
    last events that follow each other at most `session_gap_s` seconds apart
    (at most `recent_n` of them); on an order-only history, the last basket.

    Example:
        >>> it = {"a": Item("a", "A", ("X",)), "b": Item("b", "B", ("Y",))}
        >>> tax = Taxonomy.from_items(it.values(), 1)
        >>> evs = [Event("u", i, "purchase", timestamp=1e9 + k * 86400) for k, i in enumerate("aaab")]
        >>> p = shopper_profile(evs, it, tax, recent_n=2, half_life_days=1e9)
        >>> p.short, {k: round(v, 6) for k, v in p.long.items()}, {k: round(v, 6) for k, v in p.shift.items()}
        ({'X': 0.5, 'Y': 0.5}, {'X': 0.75, 'Y': 0.25}, {'X': -0.25, 'Y': 0.25})
    """
    if recent_n < 1:
        raise ValueError(f"recent_n={recent_n}; expected an int >= 1")
    if half_life_days <= 0 or half_life_orders <= 0:
        raise ValueError(f"half_life_days={half_life_days}, half_life_orders={half_life_orders}; expected > 0")
    seq = labelled(events, items, taxonomy, seed=seed)
    n_lab = len(taxonomy.labels)
    timed = has_time(le.event for le in seq)
    unit, hl = ("days", half_life_days) if timed else ("orders", half_life_orders)
    if not seq:
        return ShopperProfile({}, {}, {}, 0, 0, hl, unit)
    labels = [le.label for le in seq]
    start = max(0, len(seq) - recent_n)
    if session_gap_s is not None:
        if session_gap_s < 0:
            raise ValueError(f"session_gap_s={session_gap_s}; expected None or >= 0")
        gap = session_gap_s if timed else 0.0
        first = len(seq) - 1
        while first > 0 and seq[first].time - seq[first - 1].time <= gap:
            first -= 1
        start = max(start, first)
    short = distribution(labels[start:], n_lab)
    if timed:
        age = (seq[-1].time - np.array([le.time for le in seq])) / DAY
    else:
        bs = baskets(seq)
        age = np.concatenate([np.full(len(b), len(bs) - 1 - i, dtype=np.float64) for i, b in enumerate(bs)])
    long = distribution(labels, n_lab, weights=0.5 ** (age / hl))
    present = np.flatnonzero((short > 0) | (long > 0))
    present = present[np.lexsort((present, -long[present]))]
    name = taxonomy.labels
    return ShopperProfile(
        short={name[i]: float(short[i]) for i in present},
        long={name[i]: float(long[i]) for i in present},
        shift={name[i]: float(short[i] - long[i]) for i in present},
        n_events=len(seq), recent_n=len(seq) - start, half_life=float(hl), half_life_unit=unit,
    )
