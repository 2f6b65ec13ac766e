"""Save and load an `ItemIndex`: `index.faiss`, `meta.json` and the catalogue's `items.ids` and `items.npz`.

An IVF-PQ index also writes `vectors.f16.npy`: its exact vectors as float16 rows
indexed by label (`llmint.index_ivfpq.HalfVectors`, removed items' rows included),
read back memory-mapped so a 100M x 384 file (77 GB) need not fit in RAM.

`meta.json` (sorted keys) holds the format, the item files' digests, the category names, the
embedder's name and sha256, dim, index kind, build time, catalogue version and the index
config; the item ids, labels and category codes are in their own files
(`llmint.index_ids`), so a 100M-item catalogue is never one JSON document. Format v1
folders, ids inside meta.json, are still read. Loading refuses (ModelError) an
embedder whose name or sha256 differs from the one the index was built with,
and warns about, then skips, config keys it does not know. Per-category caches
and sub-indexes are not saved: they are rebuilt on first use (or `prepare_categories`).
This module knows nothing about search; faiss is imported inside the functions.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ModelError
from .index_config import IndexConfig, import_faiss
from .index_faiss import wants_gpu
from .index_ids import ENTRIES, IDS, Mismatch, read_entries, read_id_bytes, write_entries, write_ids
from .index_ivfpq import HalfVectors
from .index_labels import Catalogue

if TYPE_CHECKING:
    from .embed import Embedder
    from .index import ItemIndex

logger = logging.getLogger(__name__)

FORMAT = "llmint-index v2"
FORMAT_V1 = "llmint-index v1"  # ids, labels and categories inside meta.json; still read
VECTORS = "vectors.f16.npy"


def save_index(idx: ItemIndex, folder: Path) -> Path:
    """Write `idx` to `folder` (created if needed). Each file is written beside and renamed
    (a reader never sees half a file): index.faiss, the float16 rows, items.ids and items.npz,
    then meta.json last, which records the item files' digests."""
    folder.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:12]  # two writers (processes or threads) never share a temporary file
    write_faiss(idx._index, folder / "index.faiss")
    if idx._exact is not None:
        idx._exact.save(folder / VECTORS)
    meta = {
        "format": FORMAT,
        **write_catalogue(idx._catalogue, folder),
        "kind": idx.kind,
        "dim": idx.dim,
        "n_tombstones": idx.n_tombstones,
        "embedder": idx.embedder_meta,
        "build_time_utc": idx.build_time_utc,
        "catalogue_version": idx.catalogue_version,
        "config": asdict(idx.cfg),
    }
    tmp = folder / f"meta.json.{tag}.tmp"
    tmp.write_text(json.dumps(meta, sort_keys=True, ensure_ascii=False), encoding="utf-8")
    tmp.replace(folder / "meta.json")
    return folder


def write_faiss(index: Any, path: Path) -> None:
    """Write a faiss `index` to `path`, beside and then renamed."""
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        import_faiss().write_index(index, str(tmp))
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_catalogue(cat: Catalogue, folder: Path) -> dict[str, Any]:
    """Write `cat` to `folder`'s `items.ids` and `items.npz`; return what a reader needs besides
    (`read_catalogue`): the files' digests, the live count, the next label and the category names."""
    live = cat.live_labels()
    files = {"ids": write_ids(folder / IDS, cat.ids.blobs(live)),  # a chunk at a time: no copy of every id
             "entries": write_entries(folder / ENTRIES, live, cat.cat_code[live])}
    return {"item_files": files, "n_items": len(live), "next_label": cat.n_labels, "category_names": cat.cat_names}


def read_catalogue(folder: Path, fields: Mapping[str, Any]) -> Catalogue:
    """The `Catalogue` that `write_catalogue` wrote to `folder` and described by `fields`
    (Mismatch when a file comes from another save)."""
    n = int(fields["n_items"])
    labels, codes = read_entries(folder / ENTRIES, fields["item_files"]["entries"], n)
    blob = read_id_bytes(folder / IDS, fields["item_files"]["ids"], n)
    return Catalogue.restore(int(fields["next_label"]), labels, blob, codes, fields["category_names"])


def read_meta(folder: Path) -> dict:
    """The parsed meta.json of the index in `folder`: ModelError when there is none, it
    cannot be read, or its format is not one this version reads."""
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise ModelError(f"{folder} holds no saved index (needs meta.json and index.faiss)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{meta_path}: cannot read the saved index ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") not in (FORMAT, FORMAT_V1):
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise ModelError(f"{meta_path}: format {fmt!r}; expected {FORMAT!r} (or {FORMAT_V1!r})")
    if not (folder / "index.faiss").is_file():
        raise ModelError(f"{folder} holds no saved index (needs meta.json and index.faiss)")
    return meta


def saved_catalogue(folder: Path, meta: dict) -> Catalogue:
    """The `Catalogue` saved in `folder` beside `meta` (Mismatch when its files come from another save)."""
    n = int(meta["next_label"])
    try:
        if meta["format"] == FORMAT_V1:  # categories by name, item by item
            names = list(dict.fromkeys(c for c in meta["categories"] if c is not None))
            code_of = {c: i for i, c in enumerate(names)}
            codes = [-1 if c is None else code_of[c] for c in meta["categories"]]
            return Catalogue.restore(n, meta["labels"], meta["item_ids"], codes, names)
        return read_catalogue(folder, meta)
    except (ValueError, KeyError, TypeError) as err:  # a field missing or of the wrong type in meta.json too
        raise ModelError(f"{folder}: the saved catalogue is inconsistent: {err!r}") from err


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


def load_index(
    cls: type[ItemIndex],
    folder: Path,
    embedder: Embedder | None,
    meta: dict | None = None,
    catalogue: Catalogue | None = None,
) -> ItemIndex:
    """Read the index in `folder`; `embedder`, when given, must match the recorded one. `meta`
    (its meta.json, from `read_meta`) and `catalogue` (`saved_catalogue`): when already read
    (`llmint.index_cache` reads them first), else None to read them here. A save that lands
    while this reads (`Mismatch`) is read again, once."""
    for attempt in (0, 1):
        meta = read_meta(folder) if meta is None else meta
        try:
            return _load(cls, folder, embedder, meta, catalogue)
        except Mismatch:
            if attempt:
                raise
            logger.info("the index in %s was saved again while being read: reading it again", folder)
            meta, catalogue = None, None
    raise AssertionError("unreachable")


def _load(cls: type[ItemIndex], folder: Path, embedder: Embedder | None, meta: dict,
          catalogue: Catalogue | None) -> ItemIndex:
    if embedder is not None:
        check_embedder(meta, embedder, folder)
    index_path = folder / "index.faiss"
    cfg = IndexConfig.from_dict(meta.get("config", {}), strict=False)
    if catalogue is None:
        catalogue = saved_catalogue(folder, meta)
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
    n = catalogue.n_labels
    idx._catalogue = catalogue
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
