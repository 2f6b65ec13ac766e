"""Where llmint finds shared data and keeps its caches. Read at call time, never at import.

- `LLMINT_DATA_DIR`: folder holding the e-commerce datasets (default: the first
  of ./../shared/data and <repo>/../shared/data that exists).
- `LLMINT_HOME`: llmint's own folder for caches, converted models, saved item
  indexes, the audit database (default: ~/.cache/llmint).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path


def repo_root() -> Path:
    """The source checkout this package lives in (the folder holding pyproject.toml)."""
    return Path(__file__).resolve().parent.parent


def data_dir() -> Path | None:
    """The shared e-commerce data folder, or None when none is present."""
    env = os.environ.get("LLMINT_DATA_DIR")
    if env:
        return Path(env)
    for cand in (Path.cwd() / ".." / "shared" / "data", repo_root().parent / "shared" / "data"):
        if cand.is_dir():
            return cand.resolve()
    return None


def home() -> Path:
    """llmint's cache and state folder (created on demand by callers, not here)."""
    return Path(os.environ.get("LLMINT_HOME") or Path.home() / ".cache" / "llmint")


def index_dir(dataset: str) -> Path:
    """Where the app and the CLI keep the saved item index of `dataset` (a registry name, or an events
    file: its stem and a hash of its absolute path, so two files of one name do not share a folder).
    `llmint.index_cache` rebuilds an index that no longer matches the catalogue."""
    if re.fullmatch(r"[A-Za-z0-9_.-]+", dataset) and not Path(dataset).suffix:
        return home() / "index" / dataset
    path = Path(dataset).expanduser().resolve()
    tag = hashlib.sha256(str(path).encode()).hexdigest()[:10]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem) or "events"
    return home() / "index" / f"{stem}-{tag}"
