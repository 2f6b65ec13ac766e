"""Save and load an `ItemIndex`: `index.faiss` plus `meta.json` in one folder.

An IVF-PQ index also writes `vectors.f16.npy`: its exact vectors as float16 rows
indexed by label (`llmint.index_ivfpq.HalfVectors`, removed items' rows included),
read back memory-mapped so a 100M x 384 file (77 GB) need not fit in RAM.

`meta.json` (sorted keys) holds the format tag, item ids with their labels and
categories, the embedder's name and sha256, dim, index kind, build time,
catalogue version and the index config. Loading refuses (ModelError) an
embedder whose name or sha256 differs from the one the index was built with,
and warns about, then skips, config keys it does not know. Per-category caches
and sub-indexes are not saved: they are rebuilt on first use (or `prepare_categories`).
This module knows nothing about search; faiss is imported inside the functions.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ModelError
from .index_config import IndexConfig, import_faiss
from .index_faiss import wants_gpu
from .index_ivfpq import HalfVectors
from .index_labels import Catalogue

if TYPE_CHECKING:
    from .embed import Embedder
    from .index import ItemIndex

logger = logging.getLogger(__name__)

FORMAT = "llmint-index v1"
VECTORS = "vectors.f16.npy"


def save_index(idx: ItemIndex, folder: Path) -> Path:
    """Write `idx` to `folder` (created if needed); index.faiss and meta.json are each replaced
    atomically (written beside, then renamed), so a reader never sees half a file."""
    folder.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:12]  # two writers (processes or threads) never share a temporary file
    tmp_index = folder / f"index.faiss.{tag}.tmp"
    import_faiss().write_index(idx._index, str(tmp_index))
    tmp_index.replace(folder / "index.faiss")
    if idx._exact is not None:
        idx._exact.save(folder / VECTORS)
    live, item_ids, categories = idx._catalogue.live_entries()
    meta = {
        "format": FORMAT,
        "kind": idx.kind,
        "dim": idx.dim,
        "n_items": len(live),
        "n_tombstones": idx.n_tombstones,
        "embedder": idx.embedder_meta,
        "build_time_utc": idx.build_time_utc,
        "catalogue_version": idx.catalogue_version,
        "config": asdict(idx.cfg),
        "next_label": idx._catalogue.n_labels,
        "labels": live.tolist(),
        "item_ids": item_ids,
        "categories": categories,
    }
    tmp = folder / f"meta.json.{tag}.tmp"
    tmp.write_text(json.dumps(meta, sort_keys=True, ensure_ascii=False))
    tmp.replace(folder / "meta.json")
    return folder


def check_embedder(meta: dict, embedder: Embedder, where: Path) -> None:
    """Raise ModelError unless `embedder` is the one recorded in `meta`."""
    saved = meta.get("embedder")
    if saved is None:
        logger.warning("%s was built from raw vectors; cannot check %s", where, embedder.name)
    elif (saved.get("name"), saved.get("sha256")) != (embedder.name, embedder.sha256):
        raise ModelError(
            f"{where} was built with embedder {saved.get('name')!r} "
            f"(sha256 {str(saved.get('sha256'))[:12]}...) but embedder {embedder.name!r} "
            f"(sha256 {embedder.sha256[:12]}...) was given; rebuild the index "
            "(python -m index.build) or load the matching embedder"
        )
    if embedder.dim != meta["dim"]:
        raise ModelError(f"{where} has dim {meta['dim']} but the embedder gives {embedder.dim}")


def load_index(cls: type[ItemIndex], folder: Path, embedder: Embedder | None, meta: dict | None = None) -> ItemIndex:
    """Read the index in `folder`; `embedder`, when given, must match the recorded one. `meta`: its
    meta.json already parsed (`llmint.index_cache` reads it first), or None to read it here."""
    meta_path, index_path = folder / "meta.json", folder / "index.faiss"
    if not meta_path.is_file() or not index_path.is_file():
        raise ModelError(f"{folder} holds no saved index (needs meta.json and index.faiss)")
    if meta is None:
        meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ModelError(f"{meta_path}: format {meta.get('format')!r}; expected {FORMAT!r}")
    if embedder is not None:
        check_embedder(meta, embedder, folder)
    cfg = IndexConfig.from_dict(meta.get("config", {}), strict=False)
    index = import_faiss().read_index(str(index_path))
    if index.d != meta["dim"]:
        raise ModelError(f"{index_path} has dim {index.d} but meta.json says {meta['dim']}")
    idx = cls(
        index,
        meta["kind"],
        meta["dim"],
        cfg,
        embedder,
        meta.get("embedder"),
        meta.get("catalogue_version", ""),
        meta.get("build_time_utc", ""),
    )
    n = int(meta["next_label"])
    idx._catalogue = Catalogue.restore(n, meta["labels"], meta["item_ids"], meta["categories"])
    if idx.kind == "ivfpq":
        if not (folder / VECTORS).is_file():
            raise ModelError(f"{folder} holds an IVF-PQ index but no {VECTORS}")
        idx._exact = HalfVectors.load(folder / VECTORS, idx.dim)
        if len(idx._exact) != n:
            raise ModelError(
                f"{folder / VECTORS} has {len(idx._exact)} rows but meta.json has {n} labels"
            )
    idx._filter.use_gpu = wants_gpu(cfg)
    if idx.n_tombstones != meta.get("n_tombstones", idx.n_tombstones):
        raise ModelError(f"{folder}: index.faiss and meta.json disagree on the item count")
    return idx
