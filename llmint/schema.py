"""The canonical data schema: items, events, datasets.

Every loader turns its file format into these types; everything downstream
(serialisation, splits, baselines, the index) reads only these types.
This module does no I/O and knows nothing about file formats or models.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

from .errors import DataError

ACTIONS: tuple[str, ...] = ("view", "search", "favourite", "cart", "purchase", "review")
"""The actions a shopper event can have."""

Clock = Literal["unix", "relative", "order"]
"""How a dataset's event times are expressed: unix seconds, seconds relative to
the shopper's first event (Instacart), or an order index only (no time)."""


@dataclass(frozen=True, slots=True)
class Item:
    """A product in the catalogue.

    `category_path` runs from the root down, e.g. ("Office Products", "Paper"): the
    item's one category, the one predicted. `attributes` holds extra string facts
    (brand-less datasets, genres, form...). `also_in` holds further category paths of
    a multi-label item (a film's genres after the first): never a prediction target,
    but an explanation may truthfully say the item is in any of them.
    """

    item_id: str
    title: str
    category_path: tuple[str, ...] = ()
    brand: str | None = None
    text: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()
    also_in: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.item_id, str) or not self.item_id:
            raise DataError(f"Item.item_id must be a non-empty str, got {self.item_id!r}")
        if not isinstance(self.title, str):
            raise DataError(f"Item.title must be a str, got {type(self.title).__name__}")
        if not isinstance(self.category_path, tuple) or not all(
            isinstance(c, str) and c for c in self.category_path
        ):
            raise DataError(
                f"Item.category_path must be a tuple of non-empty str, got {self.category_path!r}"
            )
        if not isinstance(self.also_in, tuple) or not all(
            isinstance(p, tuple) and p and all(isinstance(c, str) and c for c in p) for p in self.also_in
        ):
            raise DataError(f"Item.also_in must be a tuple of category paths (tuples of non-empty str), "
                            f"got {self.also_in!r}")


@dataclass(frozen=True, slots=True)
class Event:
    """One thing a shopper did.

    `timestamp` is in seconds (unix or relative, see `Dataset.clock`); `order`
    is a position (order number, sequence index) used where no time exists and
    to break ties. A `search` event carries its query in `text` and may have no
    item; a `review` event carries its `rating` (1-5) and review `text`.
    """

    user_id: str
    item_id: str | None
    action: str
    timestamp: float | None = None
    order: int | None = None
    rating: float | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.user_id, str) or not self.user_id:
            raise DataError(f"Event.user_id must be a non-empty str, got {self.user_id!r}")
        if self.action not in ACTIONS:
            raise DataError(f"Event.action {self.action!r} is not one of {ACTIONS}")
        if self.item_id is None:
            if self.action != "search":
                raise DataError(f"a {self.action!r} event needs an item_id")
        elif not isinstance(self.item_id, str) or not self.item_id:
            raise DataError(f"Event.item_id must be a non-empty str or None, got {self.item_id!r}")
        if self.action == "search" and not self.text:
            raise DataError("a 'search' event needs its query in text")
        if self.timestamp is None and self.order is None:
            raise DataError("an event needs a timestamp or an order index")
        if self.timestamp is not None:
            if isinstance(self.timestamp, bool) or not isinstance(self.timestamp, (int, float)):
                raise DataError(f"Event.timestamp must be a number, got {self.timestamp!r}")
            if not math.isfinite(self.timestamp) or self.timestamp < 0:
                raise DataError(f"Event.timestamp must be finite and >= 0, got {self.timestamp!r}")
        if self.order is not None and (
            isinstance(self.order, bool) or not isinstance(self.order, int) or self.order < 0
        ):
            raise DataError(f"Event.order must be an int >= 0, got {self.order!r}")
        if self.rating is not None:
            if isinstance(self.rating, bool) or not isinstance(self.rating, (int, float)):
                raise DataError(f"Event.rating must be a number, got {self.rating!r}")
            if not math.isfinite(self.rating) or not 0 <= self.rating <= 5:
                raise DataError(f"Event.rating must be within 0..5, got {self.rating!r}")
        if self.text is not None and not isinstance(self.text, str):
            raise DataError(f"Event.text must be a str or None, got {type(self.text).__name__}")


@dataclass
class LoadReport:
    """What a loader read, kept and skipped (never a silent drop)."""

    source: str
    rows_read: int = 0
    rows_kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def skip(self, reason: str, where: str) -> None:
        """Count one skipped row; keep the first few locations as examples."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if len(self.examples) < 20:
            self.examples.append(f"{where}: {reason}")

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        s = f"{self.source}: read {self.rows_read} rows, kept {self.rows_kept}"
        if self.skipped:
            s += ", skipped " + ", ".join(f"{n} ({r})" for r, n in sorted(self.skipped.items()))
        return s


@dataclass
class Dataset:
    """A catalogue plus the events of its shoppers.

    `default_level` is the category depth at which next-interest prediction is
    evaluated by default (1 = top level). `users` holds optional per-shopper
    attributes (MovieLens age, gender...).
    """

    name: str
    items: dict[str, Item]
    events: list[Event]
    clock: Clock = "unix"
    default_level: int = 1
    users: dict[str, dict[str, str]] = field(default_factory=dict)
    reports: list[LoadReport] = field(default_factory=list)
    description: str = ""

    def __post_init__(self) -> None:
        if self.clock not in ("unix", "relative", "order"):
            raise ValueError(f"clock={self.clock!r}; expected 'unix', 'relative' or 'order'")
        if self.default_level < 1:
            raise ValueError(f"default_level={self.default_level}; expected >= 1")

    @property
    def has_categories(self) -> bool:
        """True when items carry category paths that distinguish them."""
        paths = {it.category_path[: self.default_level] for it in self.items.values()}
        return len(paths) > 1

    def histories(self) -> dict[str, list[Event]]:
        """Events grouped by user, in file order (use `split.order_events` to sort)."""
        out: dict[str, list[Event]] = defaultdict(list)
        for e in self.events:
            out[e.user_id].append(e)
        return dict(out)

    def stats(self) -> dict[str, int]:
        users = {e.user_id for e in self.events}
        return {"users": len(users), "items": len(self.items), "events": len(self.events)}
