"""The service's saved item index: reused while it matches the catalogue, rebuilt when it does not.

A folder (`ServiceConfig.index_dir`; the app and the CLI use `<LLMINT_HOME>/index/<dataset>`)
holds an index the service built itself, or one built beforehand (`python -m index.build`).
Loading one that no longer matches the items would serve products that are not in the
catalogue, or miss new ones, so before an index is reused:

- one the service built (catalogue version "service:<hash>") must have been built from the
  same item texts (the hash of every (item id, `item_text`) pair) with the same embedder;
  otherwise it is rebuilt and saved over (or, with `build=False`, refused);
- one built beforehand keeps its own texts (`index.build` adds review digests), so it must
  index exactly the catalogue's item ids, and `ItemIndex.load` refuses another embedder.

A folder without an index is built and saved (`index.faiss` and `meta.json` each replaced
atomically, so a process loading meanwhile never reads half a file).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ModelError
from .index_ids import Mismatch

logger = logging.getLogger(__name__)

SERVICE_PREFIX = "service:"


def catalogue_fingerprint(ids_texts: Iterable[tuple[str, str]]) -> str:
    """A short hash of the indexed (item id, text) pairs, in any order: a changed catalogue shows."""
    h = hashlib.sha256()
    for iid, text in sorted(ids_texts):
        h.update(iid.encode() + b"\t" + text.encode() + b"\n")
    return h.hexdigest()[:16]


def service_version(items: Mapping[str, Any], texts: Sequence[str] | None = None) -> str:
    """The catalogue version the service stamps on an index it builds from `items` (id -> Item);
    `texts`: their `item_text`s in the same order, when already made."""
    from .embed import item_text

    if texts is None:
        texts = [item_text(it) for it in items.values()]
    return SERVICE_PREFIX + catalogue_fingerprint(zip(items, texts, strict=True))


def stale_reason(meta: Mapping[str, Any], item_ids: set[str], version: str, embedder: Any,
                 saved: Callable[[], Any] | None = None) -> str | None:
    """Why the saved index described by `meta` (its meta.json) cannot serve the catalogue of `item_ids`,
    whose service version is `version`, with `embedder`; None when it can. `saved()`: the `Catalogue`
    it indexes, read only for an index built beforehand, whose embedder is left to `ItemIndex.load`
    (None: the ids inside a format v1 meta.json)."""
    saved_version = str(meta.get("catalogue_version") or "")
    if saved_version.startswith(SERVICE_PREFIX):
        if saved_version != version:
            return f"was built from other item texts (catalogue {saved_version}, now {version})"
        emb = meta.get("embedder") or {}
        if (emb.get("name"), emb.get("sha256")) != (embedder.name, embedder.sha256):
            return f"was built with embedder {emb.get('name')!r}, not {embedder.name!r}"
        return None
    if saved is None:
        have = set(meta.get("item_ids", ()))
        n_saved, n_found = len(have), len(have & item_ids)
    else:  # the saved ids are looked up, not decoded into a set of 100M strs
        catalogue = saved()
        n_saved = len(catalogue)
        n_found = int((catalogue.ids.find(list(item_ids), catalogue.alive) >= 0).sum())
    if n_saved != len(item_ids) or n_found != n_saved:
        return (f"indexes {n_saved} items, {n_saved - n_found} of them not in the catalogue, "
                f"and misses {len(item_ids) - n_found} of its {len(item_ids)}")
    return None


def load_or_build(folder: Path | None, items: Mapping[str, Any], embedder: Any, *, build: bool = True,
                  cfg: Any = None) -> Any:
    """The `ItemIndex` of `items` (id -> Item) for `embedder`: the one saved in `folder` when it still
    matches them (see the module), else built (`IndexConfig` `cfg`, default when None) and saved there.
    `folder` None: built, not saved. `build=False`: a missing or stale index raises ModelError."""
    from .embed import item_text
    from .index import ItemIndex
    from .index_io import load_index, read_meta, saved_catalogue

    texts = [item_text(it) for it in items.values()]  # made once: for the version and, if built, the vectors
    version = service_version(items, texts)
    if folder is not None and (folder / "meta.json").is_file():
        meta = read_meta(folder)
        read = []

        def saved() -> Any:
            read.append(saved_catalogue(folder, meta))
            return read[0]

        try:
            why = stale_reason(meta, set(items), version, embedder, saved)
            if why is None:  # what was just read is not read again (a large catalogue's ids are large)
                return load_index(ItemIndex, folder, embedder, meta, read[0] if read else None)
        except Mismatch as err:  # two processes saved different catalogues here at once
            why = f"mixes the files of two saves ({err})"
        if not build:
            raise ModelError(f"the saved index in {folder} {why}, and build_index=False")
        logger.warning("the saved index in %s %s: rebuilding it", folder, why)
    elif not build:
        raise ModelError(f"no saved index in {folder} and build_index=False")
    t0 = time.perf_counter()
    index = ItemIndex.from_texts(list(items), texts, [it.category_path or None for it in items.values()],
                                 embedder, cfg, catalogue_version=version)
    logger.info("built the item index (%d items) in %.1f s", len(index), time.perf_counter() - t0)
    if folder is not None:
        index.save(folder)
    return index


__all__ = ["SERVICE_PREFIX", "catalogue_fingerprint", "load_or_build", "service_version", "stale_reason"]
