"""Next-window forecasts: exponential smoothing, window baselines and plugged-in rankers on known series."""

from __future__ import annotations

import numpy as np
import pytest

from llmint import Event, Item
from llmint.analysis import ForecastConfig, compare_forecasters, held_out_windows, ses_forecast
from llmint.baselines import Markov
from llmint.taxonomy import Taxonomy

ITEMS = {"a": Item("a", "A", ("A",)), "b": Item("b", "B", ("B",)), "c": Item("c", "C", ("C",))}
TAX = Taxonomy.from_items(ITEMS.values(), 1)


def alternating(n_users: int = 5, n_windows: int = 6, per: int = 3) -> dict[str, list[Event]]:
    """Order-only histories: window w (of `per` events) is all "a" when w is even, all "b" when odd."""
    out = {}
    for u in range(n_users):
        evs, k = [], 0
        for w in range(n_windows):
            for _ in range(per):
                evs.append(Event(f"u{u}", "a" if w % 2 == 0 else "b", "purchase", order=k))
                k += 1
        out[f"u{u}"] = evs
    return out


def test_ses_forecast_is_statsmodels_one_step_forecast() -> None:
    """ses_forecast reads the fitted last level: the number statsmodels' `forecast(1)` gives, fitted or fixed alpha."""
    import warnings

    from statsmodels.tsa.holtwinters import SimpleExpSmoothing

    rng = np.random.default_rng(3)
    shares = rng.dirichlet(np.ones(5), size=7)  # 7 windows, 5 labels
    for alpha in (None, 0.3):
        want = np.zeros(5)
        for j in range(5):
            y = shares[:, j]
            model = SimpleExpSmoothing(y, initialization_method="known", initial_level=float(y[0]))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = model.fit() if alpha is None else model.fit(smoothing_level=alpha, optimized=False)
            want[j] = fit.forecast(1)[0]
        np.testing.assert_allclose(ses_forecast(shares, alpha), want / want.sum(), rtol=0, atol=1e-12)


def test_ses_forecast_known_values() -> None:
    assert ses_forecast(np.array([[1.0, 0.0], [0.0, 1.0]]), alpha=0.5).tolist() == [0.5, 0.5]
    # alpha = 1: the last window
    np.testing.assert_allclose(ses_forecast(np.array([[0.2, 0.8], [0.6, 0.4]]), alpha=1.0), [0.6, 0.4])
    # constant and unseen labels
    np.testing.assert_allclose(ses_forecast(np.array([[0.5, 0.5, 0.0]] * 4)), [0.5, 0.5, 0.0])
    with pytest.raises(ValueError, match="shares"):
        ses_forecast(np.zeros(3))


def test_held_out_windows_and_exact_baselines() -> None:
    cfg = ForecastConfig(window="orders:3", min_windows=4, n_boot=50)
    problems, train = held_out_windows(alternating(), ITEMS, TAX, cfg)
    assert len(problems) == 5 and all(len(s) == 15 for s in train.values())
    p = problems[0]
    assert p.train_shares.shape == (5, 3) and p.target.tolist() == [0.0, 1.0, 0.0]
    assert p.target_window == "orders 16-18" and len(p.history) == 15
    res = compare_forecasters(problems, train, 3, rankers={"markov": Markov()}, cfg=cfg)
    # the last window is always the other category: total variation 1, never the top
    assert res.per_case["last_window"]["tv"].tolist() == [1.0] * 5
    assert res.metrics["last_window"]["top_hit"]["mean"] == 0.0
    # history mean: 9 a + 6 b -> [0.6, 0.4]; tv to [0, 1] = 0.6
    np.testing.assert_allclose(res.per_case["history_mean"]["tv"], 0.6)
    assert set(res.metrics) == {"ses", "last_window", "history_mean", "markov"}
    assert res.metrics["ses"]["tv"]["mean"] < 1.0


class FixedRanker:
    """A token-level ranker that always predicts the same distribution (checks the plug-in interface)."""

    name = "fixed"

    def fit(self, sequences, n_classes, *, valid=None):
        self.n, self.seen = n_classes, sum(len(s) for s in sequences)
        return self

    def predict_proba(self, histories):
        return np.tile(np.array([0.0, 0.0, 1.0], dtype=np.float32), (len(histories), 1))


class EventRanker:
    """An event-level ranker (like LLMCategoryRanker): reads the events, predicts "b"."""

    name = "events"

    def __init__(self):
        self.calls = 0

    def predict_events(self, histories):
        self.calls += 1
        assert all(isinstance(e, Event) for h in histories for e in h)
        return np.tile(np.array([0.0, 1.0, 0.0], dtype=np.float32), (len(histories), 1))


def test_rankers_plug_in() -> None:
    cfg = ForecastConfig(window="orders:3", min_windows=4, n_boot=20)
    problems, train = held_out_windows(alternating(), ITEMS, TAX, cfg)
    fixed, events = FixedRanker(), EventRanker()
    res = compare_forecasters(problems, train, 3, rankers={"fixed": fixed, "events": events}, cfg=cfg)
    assert fixed.seen == 75 and events.calls == 1
    assert res.per_case["fixed"]["tv"].tolist() == [1.0] * 5
    assert res.per_case["events"]["tv"].tolist() == [0.0] * 5 and res.metrics["events"]["top_hit"]["mean"] == 1.0


def test_forecast_config_and_no_problems() -> None:
    with pytest.raises(ValueError, match="min_windows"):
        ForecastConfig(min_windows=1)
    with pytest.raises(ValueError, match="ses_alpha"):
        ForecastConfig(ses_alpha=0.0)
    problems, train = held_out_windows(alternating(n_windows=2), ITEMS, TAX, ForecastConfig(window="orders:3"))
    assert problems == []
    with pytest.raises(ValueError, match="enough windows"):
        compare_forecasters(problems, train, 3)
