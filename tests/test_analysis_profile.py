"""Shopper profile, category mix per window and trends on small hand-made histories with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from llmint import Event, Item
from llmint.analysis import category_mix, plot_category_mix, plot_profile, shopper_profile, trends
from llmint.analysis.evolution import CategoryMix, TrendConfig, parse_window
from llmint.taxonomy import Taxonomy

DAY = 86400
T0 = 1_700_000_000  # 2023-11-14

ITEMS = {
    "p1": Item("p1", "paper", ("Office", "Paper")),
    "p2": Item("p2", "ink", ("Office", "Ink")),
    "p3": Item("p3", "phone", ("Electronics", "Phones")),
    "x": Item("x", "no category"),
}
TAX = Taxonomy.from_items(ITEMS.values(), 2)


def ev(item: str | None, t: float | None = None, order: int | None = None, action: str = "purchase") -> Event:
    if item is None:
        return Event("u", None, "search", timestamp=t, order=order, text="q")
    return Event("u", item, action, timestamp=t, order=order)


def test_profile_short_long_and_shift_exact() -> None:
    # 6 paper events long ago, then 2 ink and 2 phone recently; half-life 1 day
    evs = [ev("p1", T0 + k) for k in range(6)] + [ev("p2", T0 + 100 * DAY), ev("p3", T0 + 100 * DAY + 1),
                                                   ev("p2", T0 + 101 * DAY), ev("p3", T0 + 101 * DAY + 1)]
    p = shopper_profile(evs, ITEMS, TAX, recent_n=4, half_life_days=1.0)
    assert p.n_events == 10 and p.recent_n == 4 and p.half_life_unit == "days"
    assert p.short == {"Office > Ink": 0.5, "Electronics > Phones": 0.5, "Office > Paper": 0.0}
    # long: weights 0.5**age_days; ages (days) of the 4 recent events: 1+1/86400, 1, 1/86400, 0
    w_ink = 0.5 ** ((DAY + 1) / DAY) + 0.5 ** (1 / DAY)
    w_ph = 0.5 ** 1.0 + 1.0
    w_paper = sum(0.5 ** ((101 * DAY + 1 - k) / DAY) for k in range(6))
    tot = w_ink + w_ph + w_paper
    assert p.long["Office > Ink"] == pytest.approx(w_ink / tot)
    assert p.long["Electronics > Phones"] == pytest.approx(w_ph / tot)
    assert p.long["Office > Paper"] == pytest.approx(w_paper / tot)
    assert sum(p.shift.values()) == pytest.approx(0.0, abs=1e-12)
    assert p.shift["Office > Paper"] == pytest.approx(-w_paper / tot)
    assert list(p.long) == ["Electronics > Phones", "Office > Ink", "Office > Paper"]  # by long share
    assert p.top_shift(1)[0][0] in ("Office > Ink", "Electronics > Phones")


def test_profile_skips_uncategorised_and_uses_orders_without_time() -> None:
    evs = [ev("p1", order=0), ev("x", order=1), ev(None, order=2), ev("p2", order=3)]
    p = shopper_profile(evs, ITEMS, TAX, recent_n=1, half_life_orders=1.0)
    assert p.n_events == 2 and p.half_life_unit == "orders"
    assert p.short == {"Office > Ink": 1.0, "Office > Paper": 0.0}
    assert p.long == {"Office > Ink": pytest.approx(1 / 1.5), "Office > Paper": pytest.approx(0.5 / 1.5)}


def test_profile_short_term_is_the_current_session() -> None:
    evs = [ev("p1", T0), ev("p1", T0 + 60), ev("p2", T0 + DAY), ev("p3", T0 + DAY + 600), ev("p3", T0 + DAY + 1200)]
    p = shopper_profile(evs, ITEMS, TAX, recent_n=10, session_gap_s=1800)
    assert p.recent_n == 3
    assert p.short == {"Electronics > Phones": pytest.approx(2 / 3), "Office > Ink": pytest.approx(1 / 3),
                       "Office > Paper": 0.0}
    assert shopper_profile(evs, ITEMS, TAX, recent_n=2, session_gap_s=1800).recent_n == 2  # capped by recent_n
    # order-only: the current session is the last basket (same order index)
    basket = [ev("p1", order=1), ev("p2", order=2), ev("p3", order=2)]
    assert shopper_profile(basket, ITEMS, TAX, session_gap_s=3600).recent_n == 2


def test_profile_empty_and_bad_arguments() -> None:
    p = shopper_profile([ev("x", T0)], ITEMS, TAX)
    assert p.n_events == 0 and p.short == {} and p.long == {}
    with pytest.raises(ValueError, match="recent_n"):
        shopper_profile([], ITEMS, TAX, recent_n=0)
    with pytest.raises(ValueError, match="half_life"):
        shopper_profile([], ITEMS, TAX, half_life_days=0)


def test_category_mix_by_month_exact() -> None:
    may, june = 1_714_521_600, 1_717_200_000  # 2024-05-01, 2024-06-01 UTC
    evs = [ev("p1", may), ev("p1", may + DAY), ev("p2", may + 2 * DAY), ev("p3", june + DAY), ev("x", june)]
    m = category_mix(evs, ITEMS, TAX, window="month")
    assert m.windows == ["2024-05", "2024-06"] and m.window == "month"
    assert m.labels == ["Electronics > Phones", "Office > Ink", "Office > Paper"]
    assert m.counts.tolist() == [[0, 1, 2], [1, 0, 0]]
    np.testing.assert_allclose(m.shares, [[0, 1 / 3, 2 / 3], [1, 0, 0]])
    full = category_mix(evs, ITEMS, TAX, window="month", all_labels=True)
    assert full.labels == list(TAX.labels) and full.shares.shape == (2, 3)


def test_category_mix_orders_group_baskets() -> None:
    # relative times (Instacart-like): a basket = events with the same timestamp
    evs = [ev("p1", 0), ev("p2", 0), ev("p3", 7 * DAY), ev("p1", 9 * DAY), ev("p1", 20 * DAY), ev("p3", 20 * DAY)]
    m = category_mix(evs, ITEMS, TAX, window="orders:2")
    assert m.windows == ["orders 1-2", "orders 3-4"]
    assert m.counts.tolist() == [[1, 1, 1], [1, 0, 2]]
    auto = category_mix(evs, ITEMS, TAX)  # relative clock -> orders; 4 baskets / 8 -> 1 per window
    assert auto.window == "orders:1" and auto.windows == ["order 1", "order 2", "order 3", "order 4"]


@pytest.mark.parametrize("span_days,expected", [(400, "month"), (60, "week"), (5, "day")])
def test_auto_window_by_span(span_days: int, expected: str) -> None:
    m = category_mix([ev("p1", T0), ev("p2", T0 + span_days * DAY)], ITEMS, TAX)
    assert m.window == expected


@pytest.mark.parametrize("bad", ["year", "orders:0", "orders:x", ""])
def test_bad_window_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="window="):
        parse_window(bad)


def test_trends_rising_falling_stable() -> None:
    shares = np.array([[0.9, 0.1, 0.5], [0.8, 0.2, 0.4], [0.6, 0.4, 0.6], [0.5, 0.5, 0.4], [0.2, 0.8, 0.5],
                       [0.1, 0.9, 0.6]])
    mix = CategoryMix([str(i) for i in range(6)], ["A", "B", "C"], shares, np.zeros((6, 3), int), "x")
    got = {t.label: t for t in trends(mix)}
    assert got["A"].direction == "falling" and got["A"].tau == pytest.approx(-1.0)
    assert got["B"].direction == "rising" and got["B"].slope > 0
    assert got["C"].direction == "stable"
    assert got["A"].p_value == pytest.approx(0.002777777, rel=1e-4)  # exact Kendall p for n=6, tau=-1
    short = CategoryMix(["1", "2", "3"], ["A"], np.array([[0.1], [0.5], [0.9]]), np.zeros((3, 1), int), "x")
    assert trends(short, TrendConfig(min_windows=4))[0].direction == "stable"


def test_plots_return_figures(tmp_path) -> None:
    from matplotlib.figure import Figure

    evs = [ev("p1", T0 + k * 40 * DAY) for k in range(5)] + [ev("p3", T0 + 210 * DAY)]
    fig = plot_category_mix(category_mix(evs, ITEMS, TAX), top=2)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["Paper", "Phones"]
    fig2 = plot_profile(shopper_profile(evs, ITEMS, TAX, recent_n=2))
    assert isinstance(fig2, Figure)
    fig2.savefig(tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
