"""The evaluation harness end to end on a small synthetic dataset with a known structure."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmint import Dataset, Event, Item
from llmint.evaluate import EvalConfig, evaluate, run, token_view
from llmint.split import make_split


def cyclic_dataset(n_users: int = 60, n_cats: int = 5, per_cat: int = 3, length: int = 12, seed: int = 0) -> Dataset:
    """Shoppers walk the categories in a cycle (c -> c+1), buying a random item of each."""
    rng = np.random.default_rng(seed)
    items = {
        f"i{c}_{k}": Item(f"i{c}_{k}", f"item {c}/{k}", (f"Root{c % 2}", f"Cat{c}"))
        for c in range(n_cats) for k in range(per_cat)
    }
    events = []
    for u in range(n_users):
        c = int(rng.integers(n_cats))
        for t in range(length):
            k = int(rng.integers(per_cat))
            events.append(Event(f"u{u}", f"i{c}_{k}", "purchase", timestamp=float(1000 * u + t)))
            c = (c + 1) % n_cats
    return Dataset("cyclic", items, events, clock="unix", default_level=2)


def test_token_view_has_no_test_leak() -> None:
    ds = cyclic_dataset()
    split = make_split(ds.histories())
    view = token_view("category", ds, split, level=2, cold_max=3)
    assert view.labels == [f"Root{c % 2} > Cat{c}" for c in (0, 2, 4, 1, 3)]
    # training sequences end before the validation target: length - 2 events per shopper
    assert all(len(s) == 10 for s in view.train)
    assert len(view.test_target) == 60 and all(len(h) == 11 for h in view.test_hist)


def test_evaluate_ranks_markov_above_popularity(tmp_path) -> None:
    ds = cyclic_dataset()
    cfg = EvalConfig(dataset="cyclic", systems=("most_popular", "markov", "sasrec_ce"), sasrec_epochs=3,
                     n_boot=100, n_boot_slow=20, out_dir=str(tmp_path))
    report = evaluate(cfg, dataset=ds)
    cat = report["tasks"]["category"]["slices"]["test"]
    assert cat["n"] == 60
    # the next category is a deterministic function of the last one: Markov is perfect, popularity is not
    assert cat["systems"]["markov"]["hit@1"]["mean"] == pytest.approx(1.0)
    assert cat["systems"]["most_popular"]["hit@1"]["mean"] < 0.5
    diff = cat["paired"]["most_popular - markov"]["hit@1"]
    assert diff["high"] < 0
    item = report["tasks"]["item"]["slices"]["test"]
    assert item["systems"]["markov"]["hit@10"]["mean"] > item["systems"]["most_popular"]["hit@10"]["mean"]
    # category x retrieval: Markov knows the next category, so its 3 items fill the top 3
    assert item["systems"]["markov*retrieval"]["hit@3"]["mean"] > 0.95
    assert report["tasks"]["item"]["notes"]["retrieval"]["priors"] == ["markov", "sasrec_ce"]
    for met in ("accuracy", "macro_f1", "auc_ovr", "ece"):
        assert met in cat["systems"]["markov"]
    json.dumps(report)  # JSON-able


def test_run_writes_report_files(tmp_path, monkeypatch) -> None:
    ds = cyclic_dataset(n_users=20)
    monkeypatch.setattr("llmint.loaders.load_dataset", lambda name, **kw: ds)
    cfg = EvalConfig(dataset="cyclic", systems=("most_popular", "markov"), n_boot=50, n_boot_slow=10,
                     out_dir=str(tmp_path))
    paths = run(cfg)
    for key in ("json", "md", "png"):
        assert paths[key].exists() and paths[key].stat().st_size > 0
    assert "markov" in paths["md"].read_text()


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="tasks"):
        EvalConfig(tasks=("weather",))
    with pytest.raises(ValueError, match="level"):
        EvalConfig(level=0)
