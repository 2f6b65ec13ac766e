"""Churn signal and its evaluation on synthetic shoppers with a known outcome."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmint import Event, Item
from llmint.analysis import ChurnConfig, churn_signal, evaluate_churn
from llmint.analysis.churn import auc
from llmint.taxonomy import Taxonomy

DAY = 86400
T0 = 1_600_000_000
ITEMS = {"a": Item("a", "A", ("A",)), "b": Item("b", "B", ("B",))}
TAX = Taxonomy.from_items(ITEMS.values(), 1)


def test_auc_known_values() -> None:
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert auc(np.array([1.0, 1.0]), np.array([0, 1])) == 0.5  # ties count half
    assert math.isnan(auc(np.array([1.0, 2.0]), np.array([1, 1])))


def test_churn_signal_trends_and_evidence() -> None:
    # sessions at days 0 (3 events), 1 (2), 3 (1), 7 (1): gaps 1, 2, 4; last third = [4] vs [1, 2]
    s = churn_signal("u", [0, 0, 0, DAY, DAY, 3 * DAY, 7 * DAY], recency_days=4.0)
    assert s.n_sessions == 4
    assert s.gap_trend == pytest.approx(math.log((4 + 1 / 24) / (1.5 + 1 / 24)))
    assert s.intensity_trend == pytest.approx(math.log(1 / 2))
    assert s.evidence == ["gaps between sessions grew from 1.5 to 4.0 days", "events per session fell from 2.0 to 1.0",
                          "4.0 days since the last activity"]
    steady = churn_signal("v", [k * DAY for k in range(6)])
    assert steady.gap_trend == pytest.approx(0.0) and steady.evidence == []
    assert churn_signal("w", [0, DAY]) is None


def synthetic(n: int = 20) -> dict[str, list[Event]]:
    """Unix clock over 100 days: half the shoppers slow down and stop at day ~60, half stay steady."""
    out = {}
    for u in range(n):
        if u % 2:  # churner: shrinking sessions, growing gaps, nothing after day 62
            days, sizes = [0, 5, 12, 22, 36, 60 + u % 3], [4, 4, 3, 2, 1, 1]
        else:  # steady: every 8 days, 3 events, until the end
            days, sizes = list(range(0, 100, 8)), [3] * 13
        evs = []
        for d, k in zip(days, sizes, strict=True):
            for j in range(k):
                evs.append(Event(f"u{u}", "ab"[j % 2], "purchase", timestamp=T0 + d * DAY + j * 60))
        out[f"u{u}"] = evs
    return out


def test_evaluate_churn_global_separates_known_churners() -> None:
    ev = evaluate_churn(synthetic(), ITEMS, TAX, ChurnConfig(horizon=0.25))
    assert ev.mode == "global" and ev.n == 20 and ev.base_rate == 0.5
    assert ev.cutoff == pytest.approx(T0 + 96 * DAY + 120 - 0.25 * (96 * DAY + 120))
    assert ev.labels.tolist() == [bool(u % 2) for u in range(20)]
    assert ev.auc["signal"] == 1.0 and ev.auc["combined"] == 1.0
    assert ev.precision_top["signal"] == 1.0
    assert any("grew" in e for e in ev.signals[1].evidence)


def test_evaluate_churn_gap_mode_on_relative_times() -> None:
    # relative clock (Instacart): the held-out final gap of 30 days is a lapse for odd shoppers
    hist = {}
    for u in range(10):
        gaps = [7, 7, 8, 14, 21, 30] if u % 2 else [7, 7, 7, 7, 7, 7]
        t, evs = 0, []
        for k, g in enumerate([0, *gaps]):
            t += g * DAY
            evs += [Event(f"u{u}", "a", "purchase", timestamp=t, order=k * 1000 + j) for j in range(2)]
        hist[f"u{u}"] = evs
    ev = evaluate_churn(hist, ITEMS, TAX)
    assert ev.mode == "gap" and ev.n == 10 and ev.base_rate == 0.5
    assert ev.auc["recency"] == 1.0  # last observed gap 21 vs 7
    assert ev.auc["signal"] == 1.0  # growing gaps


def test_churn_needs_time_and_valid_config() -> None:
    hist = {"u": [Event("u", "a", "view", order=k) for k in range(6)]}
    with pytest.raises(ValueError, match="timestamps"):
        evaluate_churn(hist, ITEMS, TAX)
    with pytest.raises(ValueError, match="mode="):
        ChurnConfig(mode="x")
    with pytest.raises(ValueError, match="horizon="):
        ChurnConfig(horizon=1.0)
