"""Real tier: the interest analyses on ../shared/data (Instacart, Amazon Office) and the bundled MovieLens.

Golden numbers are exact for seed 0 (they change only if a loader or the
tie shuffle changes); the rest are invariants that a wrong analysis breaks.
"""

from __future__ import annotations

import numpy as np
import pytest

from llmint.analysis import (
    ChurnConfig,
    ForecastConfig,
    category_mix,
    compare_forecasters,
    evaluate_churn,
    held_out_windows,
    label_sequences,
    shopper_profile,
)
from llmint.analysis.reports import migration_report, subsample
from llmint.baselines import Markov
from llmint.taxonomy import Taxonomy

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def instacart(shared_data):
    from llmint.loaders import load_dataset

    return load_dataset("instacart", data_dir=shared_data)


@pytest.fixture(scope="module")
def office(shared_data):
    from llmint.loaders import load_dataset

    return load_dataset("office", data_dir=shared_data)


def test_instacart_shopper_profile_and_mix(instacart) -> None:
    tax = Taxonomy.from_items(instacart.items.values(), 1)
    hist = instacart.histories()
    uid = sorted(hist)[0]
    events = hist[uid]
    n_cat = sum(1 for e in events if instacart.items[e.item_id].category_path)
    p = shopper_profile(events, instacart.items, tax, recent_n=10)
    assert p.n_events == n_cat and p.half_life_unit == "days"  # relative seconds are still days apart
    assert sum(p.short.values()) == pytest.approx(1.0) and sum(p.long.values()) == pytest.approx(1.0)
    assert set(p.long) <= set(tax.labels)
    mix = category_mix(events, instacart.items, tax)
    assert mix.window.startswith("orders:")  # relative clock: windows of orders
    n_orders = len({e.timestamp for e in events})
    assert len(mix.windows) == -(-n_orders // int(mix.window.split(":")[1]))
    assert mix.counts.sum() == n_cat
    np.testing.assert_allclose(mix.shares.sum(1), 1.0)


def test_instacart_migration_golden(instacart, tmp_path) -> None:
    res = migration_report(instacart, tmp_path, ks=(10, 50))
    tax = Taxonomy.from_items(instacart.items.values(), 1)
    seqs = label_sequences(instacart.histories(), instacart.items, tax)
    assert res["n_transitions"] == sum(len(s) - 1 for s in seqs.values()) == 149042
    top = res["top_flows"][0]
    assert (top["source"], top["target"], top["count"]) == ("produce", "dairy eggs", 6495)
    r = res["rankers"]
    # shoppers' own most frequent departments find the movers far above chance; popularity does not
    assert r["user_most_frequent"]["precision@10"] > 2 * r["user_most_frequent"]["base_rate"]
    assert r["markov"]["matrix_tv"] < r["most_popular"]["matrix_tv"]
    assert (tmp_path / "migration_instacart.png").stat().st_size > 5000


def test_instacart_churn_gap_mode(instacart) -> None:
    tax = Taxonomy.from_items(instacart.items.values(), 1)
    ev = evaluate_churn(instacart.histories(), instacart.items, tax, ChurnConfig())
    assert ev.mode == "gap" and ev.n == 593
    assert int(ev.labels.sum()) == round(0.142 * 593)  # final gap of 30 (= "30 or more") days
    assert ev.auc["recency"] > 0.6 and ev.auc["signal"] > 0.55


def test_office_forecast_on_held_out_windows(office) -> None:
    tax = Taxonomy.from_items(office.items.values(), 2)
    cfg = ForecastConfig(max_shoppers=300, n_boot=100)
    hist = subsample(office.histories(), 1500)
    problems, train = held_out_windows(hist, office.items, tax, cfg)
    assert len(problems) == 300
    assert all(p.window.startswith("orders:") for p in problems)  # order-only clock
    res = compare_forecasters(problems, train, len(tax.labels), rankers={"markov": Markov()}, cfg=cfg)
    for name, m in res.metrics.items():
        assert 0 <= m["tv"]["mean"] <= 1 and 0 <= m["top_hit"]["mean"] <= 1, name
    # history mean recomputed by hand for the first problem
    p = problems[0]
    hm = np.bincount(p.history_labels, minlength=len(tax.labels)) / len(p.history_labels)
    assert res.per_case["history_mean"]["tv"][0] == pytest.approx(0.5 * np.abs(hm - p.target).sum())


def test_movielens_churn_global_golden() -> None:
    from llmint.loaders import load_dataset

    ds = load_dataset("movielens")
    ev = evaluate_churn(ds.histories(), ds.items, Taxonomy.from_items(ds.items.values(), 1))
    assert ev.mode == "global" and ev.n == 130 and int(ev.labels.sum()) == 55
    assert ev.auc["recency"] > 0.7
