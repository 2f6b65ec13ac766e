"""A long index build that can stop and go on: the partial index saved every few minutes.

Embedding 100M item texts takes hours; a build that dies at 90% should not start over.
`Checkpoint(folder)` handed to `ItemIndex.from_texts` saves, at a window boundary and at
most every `every_s` seconds, what the build has made so far into `folder/.partial`:

- `index.faiss` (the faiss index of the rows added so far),
- `items.ids` and `items.npz` (their catalogue, `llmint.index_ids`),
- `train.npy` (IVF-PQ: the training sample's vectors, saved once: the rows of it not yet
  added are taken from it, as an uninterrupted build does),
- `state.json` last, the commit point: how many rows are done, and the `key` of the build.

IVF-PQ's float16 rows are already in a file (the build's spill, `vectors.f16.npy.building`
beside): a checkpoint flushes it, and a resumed build maps it again. The next build of the
same folder whose key matches (the catalogue's version and size, the embedder's name,
digest and dtype, the index config, the window and batch size) goes on from the first row
not done: the same windows, the same vectors, the same index as an uninterrupted build
(tested byte for byte). A key that differs is a different build: the partial state is
cleared, with a warning saying what differs. `clear()` removes it once the index is saved.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ModelError
from .index_io import read_catalogue, write_catalogue, write_faiss

if TYPE_CHECKING:
    from .index import ItemIndex

logger = logging.getLogger(__name__)

PARTIAL = ".partial"
STATE = "state.json"
TRAIN = "train.npy"


class Checkpoint:
    """Where a build saves its partial index (`folder/.partial`), and how often."""

    def __init__(self, folder: str | Path, every_s: float = 600.0) -> None:
        self.folder = Path(folder)
        self.partial = self.folder / PARTIAL
        self.every_s = every_s
        self.key: dict[str, Any] = {}
        self.saves = 0  # checkpoints written by this build
        self._last = time.monotonic()

    def start(self, key: dict[str, Any]) -> dict[str, Any] | None:
        """The saved state of the build with `key`, or None to start afresh (a partial state of
        another build is cleared, saying why)."""
        self.key = json.loads(json.dumps(key))  # as it reads back from state.json
        self._last = time.monotonic()
        path = self.partial / STATE
        if not path.is_file():
            self.clear()
            return None
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            logger.warning("cannot read %s (%s): starting the build afresh", path, err)
            self.clear()
            return None
        saved = state.get("key", {})
        differs = sorted(k for k in set(saved) | set(self.key) if saved.get(k) != self.key.get(k))
        if differs:
            logger.warning("the partial build in %s is of another build (%s differ): starting afresh",
                           self.partial, ", ".join(differs))
            self.clear()
            return None
        logger.info("resuming the build in %s from row %d of %d", self.folder, state["rows_done"],
                    self.key.get("n_items", -1))
        return state

    def begin(self, train: np.ndarray | None) -> None:
        """A fresh build starts: keep IVF-PQ's training vectors (`train`) for a resumed one."""
        self.partial.mkdir(parents=True, exist_ok=True)
        if train is not None:
            tmp = self.partial / f"{TRAIN}.{uuid.uuid4().hex[:12]}.tmp.npy"
            np.save(tmp, train)
            os.replace(tmp, self.partial / TRAIN)

    def train(self) -> np.ndarray:
        """The training vectors `begin` kept."""
        return np.load(self.partial / TRAIN)

    def after(self, idx: ItemIndex, rows_done: int) -> None:
        """A window was added: save if `every_s` has passed since the last save (or the start)."""
        if time.monotonic() - self._last >= self.every_s:
            self.save(idx, rows_done)

    def save(self, idx: ItemIndex, rows_done: int) -> None:
        """Save the index of the first `rows_done` rows; `state.json` last, so a build that dies
        while saving resumes from the checkpoint before."""
        self.partial.mkdir(parents=True, exist_ok=True)
        write_faiss(idx._index, self.partial / "index.faiss")
        if idx._exact is not None:
            idx._exact.flush()
        state = {
            "key": self.key,
            "rows_done": rows_done,
            "build_time_utc": idx.build_time_utc,
            **write_catalogue(idx._catalogue, self.partial),
        }
        tmp_state = self.partial / f"{STATE}.{uuid.uuid4().hex[:12]}.tmp"
        tmp_state.write_text(json.dumps(state, sort_keys=True, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp_state, self.partial / STATE)
        self.saves += 1
        self._last = time.monotonic()
        logger.info("checkpoint: %d of %d rows saved in %s", rows_done, self.key.get("n_items", -1), self.partial)

    def resume(self, cls: type[ItemIndex], state: dict[str, Any], cfg: Any, embedder: Any,
               catalogue_version: str, spill: Path | None) -> tuple[ItemIndex, np.ndarray | None] | None:
        """(`restore`'s index, IVF-PQ's training vectors), or None when the saved files cannot be
        read back whole (a save cut short, a file lost): the state is cleared, the build starts
        afresh, and says why."""
        try:
            idx = self.restore(cls, state, cfg, embedder, catalogue_version, spill)
            train = self.train() if idx.kind == "ivfpq" else None
        except (ModelError, OSError, ValueError, KeyError, RuntimeError) as err:  # faiss: RuntimeError
            logger.warning("cannot go on from %s (%s): starting the build afresh", self.partial, err)
            self.clear()
            return None
        return idx, train

    def restore(self, cls: type[ItemIndex], state: dict[str, Any], cfg: Any, embedder: Any,
                catalogue_version: str, spill: Path | None) -> ItemIndex:
        """The partial index `state` describes (what `ItemIndex.empty` made for this build, with
        the rows done), IVF-PQ's spilled rows (`spill`) mapped again, room reserved for the rest."""
        from .index_config import import_faiss
        from .index_faiss import reserve, wants_gpu

        n = int(state["rows_done"])
        index = import_faiss().read_index(str(self.partial / "index.faiss"))
        kind, dim = self.key["kind"], int(self.key["dim"])
        if index.ntotal != n or index.d != dim:
            raise ModelError(f"{self.partial}: index.faiss holds {index.ntotal} rows of dim {index.d}; "
                             f"state.json says {n} of dim {dim}")
        idx = cls(index, kind, dim, cfg, embedder, catalogue_version=catalogue_version,
                  build_time_utc=state["build_time_utc"])
        idx._filter.use_gpu = wants_gpu(cfg) and kind != "ivfpq"
        idx._catalogue = read_catalogue(self.partial, state)
        if idx._exact is not None:
            if spill is None or not spill.is_file():
                raise ModelError(f"{self.partial}: the spilled float16 rows ({spill}) are gone; cannot resume")
            idx._exact.resume(spill, n, int(self.key["n_items"]))
        else:
            reserve(index, int(self.key["n_items"]))
        return idx

    def resumable(self) -> bool:
        """Is there a saved partial state (a later build of the same key goes on from it)?"""
        return (self.partial / STATE).is_file()

    def clear(self) -> None:
        """Remove the partial state (the build is saved, or another build starts)."""
        shutil.rmtree(self.partial, ignore_errors=True)


__all__ = ["PARTIAL", "Checkpoint"]
