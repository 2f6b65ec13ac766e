"""Long-term interest evolution: a shopper's category mix per time window, and per-category trends.

Windows are calendar periods ("month", "week", "day") where events carry unix
timestamps, or runs of N baskets ("orders:N", labelled "orders 1-5") where
they carry only an order or a relative time (Instacart, Amazon Office). A
trend is Mann-Kendall on a label's share over the windows (Kendall's tau
against the window index, scipy's exact/normal p-value) plus the OLS slope.
This module knows nothing about models, plots or files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from ..schema import Event, Item
from ..taxonomy import Taxonomy
from .sequences import UNIX_MIN, LabelledEvent, baskets, labelled

CALENDAR = ("month", "week", "day")


@dataclass(frozen=True)
class CategoryMix:
    """Category counts and shares of one shopper per window, oldest window first.

    `shares[w]` sums to 1 for every window (windows with no categorised event
    are not listed). `labels` are the taxonomy labels seen in any window.
    """

    windows: list[str]
    labels: list[str]
    shares: np.ndarray  # float64 (n_windows, n_labels)
    counts: np.ndarray  # int64 (n_windows, n_labels)
    window: str  # the resolved window spec, e.g. "month" or "orders:4"


def resolve_window(seq: Sequence[LabelledEvent], window: str = "auto", *, n_windows: int = 8) -> str:
    """The concrete window spec for a history: "auto" picks month/week/day for unix times
    (by span) and "orders:N" otherwise, with N so that there are about `n_windows` windows."""
    if window != "auto":
        parse_window(window)
        return window
    unix = bool(seq) and all(le.event.timestamp is not None for le in seq) and seq[0].time >= UNIX_MIN
    if unix:
        span_days = (seq[-1].time - seq[0].time) / 86400.0
        return "month" if span_days >= 120 else "week" if span_days >= 21 else "day"
    return f"orders:{max(1, math.ceil(len(baskets(seq)) / n_windows))}"


def parse_window(window: str) -> tuple[str, int]:
    """("month"|"week"|"day", 0) or ("orders", N); raises ValueError on anything else."""
    if window in CALENDAR:
        return window, 0
    if window.startswith("orders:"):
        try:
            n = int(window.split(":", 1)[1])
        except ValueError:
            n = 0
        if n >= 1:
            return "orders", n
    raise ValueError(f"window={window!r}; expected 'auto', 'month', 'week', 'day' or 'orders:N' with N >= 1")


def window_keys(seq: Sequence[LabelledEvent], window: str) -> list[str]:
    """The window label of each event of a chronological sequence."""
    kind, n = parse_window(window)
    if kind == "orders":
        keys: list[str] = []
        for i, b in enumerate(baskets(seq)):
            lo = (i // n) * n + 1
            keys += [f"orders {lo}-{lo + n - 1}" if n > 1 else f"order {lo}"] * len(b)
        return keys
    fmt = {"month": "%Y-%m", "week": "%G-W%V", "day": "%Y-%m-%d"}[kind]
    return [datetime.fromtimestamp(le.time, UTC).strftime(fmt) for le in seq]


def mix_of(seq: Sequence[LabelledEvent], taxonomy: Taxonomy, window: str, *, all_labels: bool = False
           ) -> CategoryMix:
    """`CategoryMix` of an already labelled chronological sequence with a resolved window."""
    keys = window_keys(seq, window)
    order: list[str] = []
    for k in keys:
        if not order or order[-1] != k:
            order.append(k)
    pos = {k: i for i, k in enumerate(order)}
    n_lab = len(taxonomy.labels)
    counts = np.zeros((len(order), n_lab), dtype=np.int64)
    for k, le in zip(keys, seq, strict=True):
        counts[pos[k], le.label] += 1
    cols = np.arange(n_lab) if all_labels else np.flatnonzero(counts.sum(0) > 0)
    counts = counts[:, cols]
    tot = counts.sum(1, keepdims=True)
    shares = np.divide(counts, tot, out=np.zeros(counts.shape), where=tot > 0)
    return CategoryMix(order, [taxonomy.labels[i] for i in cols], shares, counts, window)


def category_mix(
    events: Sequence[Event], items: Mapping[str, Item], taxonomy: Taxonomy, *, window: str = "auto",
    all_labels: bool = False, n_windows: int = 8, seed: int = 0,
) -> CategoryMix:
    """One shopper's category mix per window ("auto", "month", "week", "day" or "orders:N").

    `all_labels=True` keeps every taxonomy label as a column (zeros included),
    so mixes of different shoppers line up.

    Example:
        >>> it = {"a": Item("a", "A", ("X",)), "b": Item("b", "B", ("Y",))}
        >>> evs = [Event("u", i, "purchase", order=k) for k, i in enumerate("aaab")]
        >>> m = category_mix(evs, it, Taxonomy.from_items(it.values(), 1), window="orders:2")
        >>> m.windows, m.labels, m.shares.tolist()
        (['orders 1-2', 'orders 3-4'], ['X', 'Y'], [[1.0, 0.0], [0.5, 0.5]])
    """
    seq = labelled(events, items, taxonomy, seed=seed)
    return mix_of(seq, taxonomy, resolve_window(seq, window, n_windows=n_windows), all_labels=all_labels)


@dataclass(frozen=True)
class TrendConfig:
    """How a label's share series is called rising, stable or falling."""

    alpha: float = 0.05  # significance level of the Mann-Kendall test
    min_windows: int = 4  # fewer windows: every label is "stable" (too short to test)

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha={self.alpha}; expected 0 < alpha < 1")
        if self.min_windows < 3:
            raise ValueError(f"min_windows={self.min_windows}; expected >= 3")


@dataclass(frozen=True)
class Trend:
    """The trend of one label's share over the windows."""

    label: str
    direction: str  # "rising", "stable" or "falling"
    tau: float  # Kendall's tau of share vs window index (nan if constant)
    p_value: float  # Mann-Kendall two-sided p (1.0 if untestable)
    slope: float  # OLS slope of the share per window
    first: float  # share in the first window
    last: float  # share in the last window


def trends(mix: CategoryMix, cfg: TrendConfig | None = None) -> list[Trend]:
    """Mann-Kendall trend of every label of `mix`, strongest (smallest p, largest |slope|) first.

    Example:
        >>> m = CategoryMix(["1", "2", "3", "4", "5"], ["X", "Y"],
        ...                 np.array([[.9, .1], [.8, .2], [.6, .4], [.5, .5], [.2, .8]]), np.zeros((5, 2)), "x")
        >>> [(t.label, t.direction) for t in trends(m)]
        [('X', 'falling'), ('Y', 'rising')]
    """
    from scipy.stats import kendalltau

    cfg = cfg or TrendConfig()
    n = len(mix.windows)
    x = np.arange(n, dtype=np.float64)
    out: list[Trend] = []
    for j, lab in enumerate(mix.labels):
        y = mix.shares[:, j]
        tau, p = float("nan"), 1.0
        slope = float(np.polyfit(x, y, 1)[0]) if n >= 2 else 0.0
        if n >= cfg.min_windows and np.ptp(y) > 0:
            res = kendalltau(x, y)
            tau, p = float(res.statistic), float(res.pvalue)
        direction = "stable"
        if p < cfg.alpha:
            direction = "rising" if tau > 0 else "falling"
        out.append(Trend(lab, direction, tau, p, slope, float(y[0]) if n else 0.0, float(y[-1]) if n else 0.0))
    return sorted(out, key=lambda t: (t.p_value, -abs(t.slope), t.label))


@dataclass(frozen=True)
class PopulationTrends:
    """How many shoppers have each label rising / falling (among shoppers with enough windows)."""

    n_shoppers: int  # shoppers tested (at least `min_windows` windows)
    rising: dict[str, int] = field(default_factory=dict)
    falling: dict[str, int] = field(default_factory=dict)


def population_trends(mixes: Mapping[str, CategoryMix], cfg: TrendConfig | None = None, *,
                      workers: int = 1) -> PopulationTrends:
    """Count rising and falling labels over many shoppers' mixes (`workers` processes test them; 0: one per CPU)."""
    from functools import partial

    from .parallel import pmap

    cfg = cfg or TrendConfig()
    rising: dict[str, int] = {}
    falling: dict[str, int] = {}
    tested = [mix for mix in mixes.values() if len(mix.windows) >= cfg.min_windows]
    for found in pmap(partial(trends, cfg=cfg), tested, workers=workers):
        for t in found:
            if t.direction == "rising":
                rising[t.label] = rising.get(t.label, 0) + 1
            elif t.direction == "falling":
                falling[t.label] = falling.get(t.label, 0) + 1
    by = lambda d: dict(sorted(d.items(), key=lambda kv: (-kv[1], kv[0])))  # noqa: E731
    return PopulationTrends(len(tested), by(rising), by(falling))
