"""`llmint.analysis.parallel.pmap`: order kept, real worker processes, one BLAS thread, same results
as the serial path; the trend and forecast analyses give identical output for any number of workers."""

from __future__ import annotations

import os

import numpy as np
import pytest

from llmint import Event, Item
from llmint.analysis import (
    ForecastConfig,
    TrendConfig,
    category_mix,
    compare_forecasters,
    held_out_windows,
    population_trends,
)
from llmint.analysis.parallel import pmap, resolve_workers
from llmint.taxonomy import Taxonomy

ITEMS = {k: Item(k, k.upper(), (k.upper(),)) for k in "abcd"}
TAX = Taxonomy.from_items(ITEMS.values(), 1)


def _square_and_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def _blas_threads(_: int) -> int:
    from threadpoolctl import threadpool_info

    return max(d["num_threads"] for d in threadpool_info())


def test_pmap_keeps_order_reports_progress_and_uses_worker_processes() -> None:
    seen: list[int] = []
    serial = pmap(_square_and_pid, list(range(100)), workers=1, progress=seen.append)
    pooled = pmap(_square_and_pid, list(range(100)), workers=2)
    assert [v for v, _ in serial] == [v for v, _ in pooled] == [x * x for x in range(100)]
    assert {pid for _, pid in serial} == {os.getpid()} and len(seen) == 100
    assert os.getpid() not in {pid for _, pid in pooled}  # computed in worker processes (which of the two: the pool's)
    assert {pid for _, pid in pmap(_square_and_pid, list(range(10)), workers=2)} == {os.getpid()}  # too few: serial


def test_pmap_runs_with_one_blas_thread_and_restores_the_callers() -> None:
    before = _blas_threads(0)
    assert set(pmap(_blas_threads, list(range(80)), workers=1)) == {1}
    assert set(pmap(_blas_threads, list(range(80)), workers=2)) == {1}
    assert _blas_threads(0) == before


def test_workers_are_checked() -> None:
    assert resolve_workers(0) >= 1 and resolve_workers(3) == 3
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError, match="workers"):
            resolve_workers(bad)


def _random_histories(n_users: int = 90, n_windows: int = 7, per: int = 3) -> dict[str, list[Event]]:
    rng = np.random.default_rng(5)
    out = {}
    for u in range(n_users):
        keys = rng.choice(list(ITEMS), size=n_windows * per, p=rng.dirichlet(np.ones(4)))
        out[f"u{u}"] = [Event(f"u{u}", str(k), "purchase", order=i) for i, k in enumerate(keys)]
    return out


def test_forecasts_and_trends_are_identical_for_any_number_of_workers() -> None:
    hist = _random_histories()
    cfg = ForecastConfig(window="orders:3", min_windows=4, n_boot=50)
    problems, train = held_out_windows(hist, ITEMS, TAX, cfg)
    assert len(problems) == 90
    one = compare_forecasters(problems, train, len(TAX.labels), cfg=cfg, workers=1)
    two = compare_forecasters(problems, train, len(TAX.labels), cfg=cfg, workers=2)
    assert one.metrics == two.metrics
    for name in one.per_case:
        for metric in one.per_case[name]:
            np.testing.assert_array_equal(one.per_case[name][metric], two.per_case[name][metric])

    mixes = {u: category_mix(h, ITEMS, TAX, window="orders:3") for u, h in hist.items()}
    a = population_trends(mixes, TrendConfig(min_windows=4), workers=1)
    b = population_trends(mixes, TrendConfig(min_windows=4), workers=2)
    assert a == b and a.n_shoppers == 90 and (a.rising or a.falling)
