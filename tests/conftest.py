"""Shared fixtures. Tests are hermetic: nothing is downloaded; the real tier reads ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


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
