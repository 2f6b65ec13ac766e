"""The migration Sankey: which flows are drawn, band widths, the empty case."""

from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import PathPatch, Rectangle

from llmint.analysis import plot_flows
from llmint.analysis.plots import sankey_flows

LABELS = ["Office > Paper", "Office > Ink", "Electronics > Phones", "Electronics > Cables"]
# a small population: mostly staying (diagonal), a few moves, one count tie (9) and several smaller ones
COUNTS = np.array([[50, 7, 3, 0],
                   [6, 40, 9, 2],
                   [3, 9, 30, 4],
                   [0, 1, 4, 20]])


def _bands(fig: Figure) -> list[PathPatch]:
    return [p for p in fig.axes[0].patches if isinstance(p, PathPatch)]


def test_sankey_flows_exact_order_and_diagonal_ignored() -> None:
    # count desc, ties as the report's top_flows: by lift (Cables -> Phones 0.65 beats Phones -> Cables),
    # then names (Phones -> Ink and Ink -> Phones have equal lift); staying never counts as a flow
    assert sankey_flows(COUNTS, LABELS, 5) == [(2, 1, 9), (1, 2, 9), (0, 1, 7), (1, 0, 6), (3, 2, 4)]
    everything = sankey_flows(COUNTS, LABELS, 100)
    assert len(everything) == 10 and all(a != b for a, b, _ in everything)
    assert sum(v for *_, v in everything) == COUNTS.sum() - np.trace(COUNTS)
    bigger_stays = COUNTS + np.diag([1000, 1000, 1000, 1000])
    stays = sankey_flows(bigger_stays, LABELS, 100)  # the same flows, counts in the same order
    assert set(stays) == set(everything) and [v for *_, v in stays] == [v for *_, v in everything]
    assert sankey_flows(COUNTS, LABELS, 0) == []


def test_plot_flows_draws_one_band_per_flow_as_wide_as_its_count() -> None:
    fig = plot_flows(COUNTS, LABELS, top=5)
    assert isinstance(fig, Figure)
    bands = _bands(fig)
    assert len(bands) == 5  # min(top, 10 off-diagonal flows)
    # each band's left end is as tall as its count (drawn in sankey_flows order)
    heights = [p.get_path().vertices[0, 1] - p.get_path().vertices[7, 1] for p in bands]
    np.testing.assert_allclose(heights, [9, 9, 7, 6, 4])
    # node bars: 3 sources on the left, 4 next categories on the right, with short names and totals
    bars = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    assert len(bars) == 3 + 4
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {"Ink (15)", "Phones (13)", "Paper (7)", "Ink (16)", "Cables (4)"} <= texts
    assert fig.axes[0].get_title().startswith("top 5 migration flows: 35 of 48 moves")
    assert len(_bands(plot_flows(COUNTS, LABELS, top=12))) == 10  # fewer flows than top: all of them
    fig.savefig(io.BytesIO(), format="png")  # it renders


def test_plot_flows_without_moves() -> None:
    for counts in (np.diag([3, 4]), np.zeros((2, 2), dtype=np.int64)):
        fig = plot_flows(counts, ["A", "B"])
        assert isinstance(fig, Figure) and _bands(fig) == []
        assert [t.get_text() for t in fig.axes[0].texts] == ["no moves between categories"]
