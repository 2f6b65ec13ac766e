"""Shared fixtures. Tests are hermetic: nothing is downloaded; the real tier reads ../shared/data."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from llmint import Dataset, Event, Item

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Property tests draw the same examples on every run (CI stays stable); no example database, no
# per-example deadline (CPU speed on a shared box varies). HYPOTHESIS_PROFILE=explore draws fresh ones.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", default=False,
        help="rewrite the golden files in tests/golden/ instead of comparing against them",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets folder (CI always has it)."""
    from llmint.paths import data_dir

    d = data_dir()
    if d is None or not d.is_dir():
        pytest.fail("../shared/data is missing: the real tier needs it (set LLMINT_DATA_DIR)")
    return d


@pytest.fixture(autouse=True)
def _llmint_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own LLMINT_HOME unless a test sets one; model caches are shared per run."""
    if "LLMINT_HOME" not in os.environ:
        monkeypatch.setenv("LLMINT_HOME", str(tmp_path_factory.getbasetemp() / "llmint-home"))


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory: pytest.TempPathFactory):
    """The real bundled SmolLM2-135M-Instruct in float32 on CPU, loaded once per run (do not mutate)."""
    import torch

    from llmint.models import load_model

    # Session fixtures run before the per-test LLMINT_HOME: name the cache explicitly.
    cache = tmp_path_factory.getbasetemp() / "llmint-home" / "models"
    return load_model("smollm2-135m", dtype=torch.float32, device="cpu", cache_root=cache)


# ---------------------------------------------------------------- a small shop with a known structure

CATS = [("Office", "Paper"), ("Office", "Ink"), ("Electronics", "Phones"), ("Electronics", "Cables")]
TITLES = {
    "Paper": ["Printer paper 500 sheets", "Sticky notes", "Legal pads"],
    "Ink": ["Black ink cartridge", "Colour toner", "Ink refill kit"],
    "Phones": ["Cordless phone", "Desk phone", "Phone headset"],
    "Cables": ["USB-C cable", "HDMI cable", "Ethernet cable"],
}


@pytest.fixture(scope="session")
def _tiny_st():
    """The tiny in-process sentence transformer of test_embed (StaticEmbedding, dim 8)."""
    from test_embed import tiny_sentence_transformer

    return tiny_sentence_transformer()


@pytest.fixture
def emb(_tiny_st):
    """A fresh `Embedder` over a copy of the tiny sentence transformer."""
    import copy

    from llmint.embed import Embedder

    return Embedder.from_model(copy.deepcopy(_tiny_st), "tiny")


def shop(n_users: int = 12, length: int = 6, seed: int = 0) -> Dataset:
    """Shoppers walk the four categories in a cycle, reviewing now and then."""
    rng = np.random.default_rng(seed)
    items = {
        f"{leaf}{k}": Item(f"{leaf}{k}", title, (top, leaf))
        for top, leaf in CATS for k, title in enumerate(TITLES[leaf])
    }
    events = []
    for u in range(n_users):
        c = int(rng.integers(len(CATS)))
        for t in range(length):
            leaf = CATS[c][1]
            iid = f"{leaf}{int(rng.integers(3))}"
            ts = 1_600_000_000 + 86_400 * (10 * u + t)
            if t % 3 == 2:
                events.append(Event(f"u{u}", iid, "review", timestamp=ts, rating=4, text="Works fine."))
            else:
                events.append(Event(f"u{u}", iid, "purchase", timestamp=ts))
            c = (c + 1) % len(CATS)
    return Dataset("shop", items, events, clock="unix", default_level=2)


@pytest.fixture(scope="module")
def ds():
    """`shop()`: 12 shoppers cycling through 4 level-2 categories, with reviews."""
    return shop()


AUDIT_T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class StepClock:
    """An audit-log clock: each call returns one minute later than the previous one, from AUDIT_T0."""

    def __init__(self) -> None:
        self.n, self.lock = 0, threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            self.n += 1
            return AUDIT_T0 + timedelta(minutes=self.n - 1)


@contextmanager
def one_thread_service(dataset: Dataset, cfg, loaded):
    """A real `InterestService` over `dataset`, with one torch intra-op thread while it is open
    (on a busy 2-core CI box, 2 OpenMP threads made a forward pass 3-10x slower)."""
    import torch

    from llmint import InterestService

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with InterestService.from_dataset(dataset, cfg, loaded=loaded) as s:
            yield s
    finally:
        torch.set_num_threads(threads)


def at_once(fn, args, timeout: float = 600.0) -> dict:
    """`fn(arg)` for each of `args`, each in its own thread, released together; {arg: result}.
    Fails if a call raised or is still running after `timeout` seconds."""
    out: dict = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(args))

    def call(x) -> None:
        start.wait()
        try:
            out[x] = fn(x)
        except BaseException as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=call, args=(x,)) for x in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "a call was left waiting"
    assert not errors, errors
    return out
