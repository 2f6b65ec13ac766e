"""Dynamic batching of concurrent single-item calls (llmint.coalesce): each caller gets its own result."""

from __future__ import annotations

import doctest
import threading
import time

import pytest
from conftest import at_once

import llmint.coalesce
from llmint.coalesce import Coalescer


def test_docstring_example_holds():
    assert doctest.testmod(llmint.coalesce).failed == 0


def _run_threads(c: Coalescer, items: list[int]) -> dict[int, tuple[int, int]]:
    return at_once(c, items, timeout=30)


def test_callers_that_arrive_while_the_model_is_busy_run_together_and_each_gets_its_own_result():
    calls: list[list[int]] = []

    def slow_square(xs: list[int]) -> list[int]:
        calls.append(list(xs))
        time.sleep(0.2)  # the model is busy: the others queue up behind it
        return [x * x for x in xs]

    c = Coalescer(slow_square, max_batch=64)
    out = _run_threads(c, list(range(12)))
    assert {x: r for x, (r, _) in out.items()} == {x: x * x for x in range(12)}
    assert sorted(x for call in calls for x in call) == list(range(12))  # each item run exactly once
    assert len(calls) < 12 and max(map(len, calls)) > 1  # batched
    assert all(out[x][1] == len(next(call for call in calls if x in call)) for x in range(12))
    assert c.stats.items == 12 and c.stats.batches == len(calls) and c.stats.largest == max(map(len, calls))


def test_a_batch_never_exceeds_max_batch():
    sizes: list[int] = []

    def f(xs: list[int]) -> list[int]:
        sizes.append(len(xs))
        time.sleep(0.05)
        return xs

    c = Coalescer(f, max_batch=3, wait_s=0.05)
    out = _run_threads(c, list(range(10)))
    assert {x: r for x, (r, _) in out.items()} == {x: x for x in range(10)}
    assert max(sizes) <= 3 and sum(sizes) == 10


def test_waiting_for_company_gathers_callers_that_arrive_within_the_wait():
    sizes: list[int] = []

    def f(xs: list[int]) -> list[int]:
        sizes.append(len(xs))
        return xs

    c = Coalescer(f, max_batch=8, wait_s=0.5)
    out: dict[int, tuple[int, int]] = {}
    ts = [threading.Thread(target=lambda x=x: out.__setitem__(x, c(x))) for x in range(3)]
    for t in ts:
        t.start()
        time.sleep(0.02)  # staggered: idle model, but within the wait
    for t in ts:
        t.join(timeout=10)
    assert sizes == [3] and all(size == 3 for _, size in out.values())


def test_callers_whose_batch_is_running_do_not_gather_an_empty_one():
    calls: list[int] = []

    def f(xs: list[int]) -> list[int]:
        calls.append(len(xs))
        time.sleep(0.3)  # the others wake while their batch runs
        return xs

    c = Coalescer(f, max_batch=4, wait_s=1.0)
    out = _run_threads(c, [0, 1, 2, 3])
    assert calls == [4] and c.stats.sizes == {4: 1} and all(size == 4 for _, size in out.values())
    assert c.stats.summary() == {"batches": 1, "items": 4, "largest": 4, "mean": 4.0, "sizes": {"4": 1}}


def test_the_wait_for_company_starts_when_the_model_is_free():
    lock = threading.Lock()
    sizes: list[int] = []
    c = Coalescer(lambda xs: sizes.append(len(xs)) or xs, max_batch=8, wait_s=0.3, lock=lock)
    out: dict[int, tuple[int, int]] = {}
    lock.acquire()  # the model is busy with another user for 0.5 s, longer than the wait
    first = threading.Thread(target=lambda: out.__setitem__(1, c(1)))
    first.start()
    time.sleep(0.5)
    lock.release()
    time.sleep(0.1)  # a second caller arrives just after the model became free, within the wait
    second = threading.Thread(target=lambda: out.__setitem__(2, c(2)))
    second.start()
    first.join(timeout=10)
    second.join(timeout=10)
    assert sizes == [2] and out == {1: (1, 2), 2: (2, 2)}


def test_a_full_batch_does_not_wait_out_the_window():
    c = Coalescer(lambda xs: xs, max_batch=1, wait_s=5.0)
    t0 = time.monotonic()
    assert c(7) == (7, 1)
    assert time.monotonic() - t0 < 1.0


def test_an_error_reaches_every_caller_of_its_batch_and_later_calls_still_work():
    def f(xs: list[int]) -> list[int]:
        time.sleep(0.1)
        if 13 in xs:
            raise ValueError("bad batch")
        return xs

    c = Coalescer(f, max_batch=64)
    got: dict[int, object] = {}
    gate = threading.Barrier(4)

    def work(x: int) -> None:
        gate.wait()
        try:
            got[x] = c(x)
        except ValueError as e:
            got[x] = e

    ts = [threading.Thread(target=work, args=(x,)) for x in (1, 2, 13, 4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=10)
    assert len(got) == 4
    failed = {x for x, v in got.items() if isinstance(v, ValueError)}
    assert 13 in failed  # and whoever shared its batch; the others got their results
    assert all(got[x] == (x, got[x][1]) for x in got if x not in failed)
    assert c(5) == (5, 1)


def test_a_wrong_number_of_results_is_an_error_not_a_silent_mix_up():
    c = Coalescer(lambda xs: xs[:-1], max_batch=4)
    with pytest.raises(RuntimeError, match="returned 0 results for 1 items"):
        c(1)


def test_the_lock_is_shared_with_the_models_other_users():
    lock = threading.Lock()
    c = Coalescer(lambda xs: [lock.locked() for _ in xs], max_batch=4, lock=lock)
    assert c(0) == (True, 1)  # held during the call
    assert not lock.locked()  # and released after


@pytest.mark.parametrize("kwargs", [{"max_batch": 0}, {"max_batch": True}, {"max_batch": 2, "wait_s": -1},
                                    {"max_batch": 2, "wait_s": 120}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        Coalescer(lambda xs: xs, **kwargs)
