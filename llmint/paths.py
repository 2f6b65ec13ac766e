"""Where llmint finds shared data and keeps its caches. Read at call time, never at import.

- `LLMINT_DATA_DIR`: folder holding the e-commerce datasets (default: the first
  of ./../shared/data and <repo>/../shared/data that exists).
- `LLMINT_HOME`: llmint's own folder for caches, converted models, the audit
  database (default: ~/.cache/llmint).
"""

from __future__ import annotations

import os
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
