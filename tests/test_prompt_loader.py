"""Prompts built ahead of the model in worker processes (llmint.prompt_loader): same ids, same order."""

from __future__ import annotations

import doctest
import os
import time

import pytest

import llmint.prompt_loader
from llmint.prompt_loader import prompt_chunks


class SlowRanker:
    """prompt_ids(history) -> [pid, *history]: which process built it, and what from; later chunks are faster,
    so workers finish out of order."""

    def prompt_ids(self, history: list[int]) -> list[int]:
        time.sleep(0.02 / (1 + history[0]))
        return [os.getpid(), *history]


def test_docstring_example_holds():
    assert doctest.testmod(llmint.prompt_loader).failed == 0


def test_workers_build_the_same_ids_in_the_same_order_in_other_processes():
    chunks = [[[j, i] for i in range(j % 3)] for j in range(12)]  # chunks of 0, 1 or 2 histories
    here = list(prompt_chunks(SlowRanker(), chunks, workers=0))
    there = list(prompt_chunks(SlowRanker(), chunks, workers=2, prefetch=1))
    strip = lambda out: [[ids[1:] for ids in c] for c in out]  # noqa: E731
    assert strip(here) == strip(there) == [[list(h) for h in c] for c in chunks]
    assert {ids[0] for c in here for ids in c} == {os.getpid()}
    pids = {ids[0] for c in there for ids in c}
    assert os.getpid() not in pids and len(pids) == 2  # built in two other processes


def test_no_chunks_and_bad_settings():
    assert list(prompt_chunks(SlowRanker(), [], workers=4)) == []
    for kw in ({"workers": -1}, {"workers": True}, {"prefetch": 0}):
        with pytest.raises(ValueError):
            prompt_chunks(SlowRanker(), [[[1]]], **kw)
