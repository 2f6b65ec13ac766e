"""Where a query of the product-retrieval index runs, and the derived state that serves it.

`FilteredSearch.search` routes one batch of queries. Unrestricted: the whole index (its
GPU copy for a flat index on a GPU box), or, while HNSW holds tombstones, the index with
a selector of the live labels and efSearch raised (`filter_ef`). Restricted to a
category: an exact flat index over the category's own vectors up to `exact_filter_max`
live items (cached per category within `filter_cache_mb`); above it, the whole flat
index with the category's `IDSelectorBitmap` (still exact), IVF-PQ with the selector and
nprobe raised to nprobe / sqrt(share), or the category's own HNSW sub-index (built on
its first query or by `prepare`, kept current by `added`, filtered by a selector while it
holds tombstones). Why these paths, with measured recall and latency: `llmint.index`.

A `FilteredSearch` owns the state derived from one `ItemIndex`: the per-category cache
(candidates, exact flat indexes, selectors), the sub-indexes and the GPU copy. The
selectors (SWIG objects over numpy bitmaps) and the GPU copy cannot be pickled, so
`copy.deepcopy` and `pickle` leave the cache and the GPU copy behind (rebuilt on first
use, as after `changed()`); the sub-indexes are copied, being slow to rebuild.

It reads the `ItemIndex` it is handed (faiss index, kind, config, catalogue, exact
vectors) and never changes it; it knows nothing about item ids, embeddings or files.
faiss is imported inside the functions.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .index_config import IndexConfig, category_label
from .index_faiss import (
    bitmap_selector,
    flat_index,
    gpu_copy,
    new_faiss_index,
    run_search,
    search_params,
)
from .index_ivfpq import search_ivfpq
from .index_labels import within

if TYPE_CHECKING:
    from .index import ItemIndex

logger = logging.getLogger(__name__)

Result = tuple[np.ndarray, np.ndarray]  # scores (q, k) float32, labels (q, k) int64, -1: none


def filter_ef(cfg: IndexConfig, n_selected: int, n_total: int) -> int:
    """efSearch for a selector keeping `n_selected` of `n_total`: ef_search / sqrt(share),
    between ef_search and filter_ef_max."""
    frac = n_selected / max(1, n_total)
    ef = math.ceil(cfg.ef_search / math.sqrt(max(frac, 1e-9)))
    return min(cfg.filter_ef_max, max(cfg.ef_search, ef))


class FilteredSearch:
    """The search routing of one `ItemIndex` and its derived, rebuildable state."""

    def __init__(self, use_gpu: bool = False) -> None:
        self.cache: dict[str, Any] = {}  # "cands:", "flat:", "sel:" + category prefix
        self.subs: dict[str, Any] = {}  # large category -> HNSW over its labels (kept by added)
        self.gpu: Any = None  # a GPU copy of a flat index, made on first unfiltered search
        self.use_gpu = use_gpu

    def __getstate__(self) -> dict[str, Any]:
        """What `copy.deepcopy` and `pickle` copy: everything but the cache and the GPU copy."""
        state = self.__dict__.copy()
        state["cache"] = {}
        state["gpu"] = None
        return state

    # ------------------------------------------------------------- upkeep

    def changed(self, *, drop_subs: bool = False) -> None:
        """Forget what the index's last change made stale (and the sub-indexes, when asked)."""
        if drop_subs:
            self.subs.clear()  # rebuilt on their next query
        self.cache.clear()
        self.gpu = None

    def added(self, vectors: np.ndarray, labels: np.ndarray, cats: Sequence[str | None]) -> None:
        """Add new items' vectors to the sub-indexes of the categories they are in."""
        for prefix, sub in self.subs.items():
            inside = np.array([within(c, prefix) for c in cats], dtype=bool)
            if inside.any():
                sub.add_with_ids(vectors[inside], labels[inside])

    def prepare(self, idx: ItemIndex, categories: Iterable[str | Sequence[str]]) -> None:
        """Build now the sub-indexes that the first query to these categories would build."""
        for c in categories:
            prefix = category_label(c)
            if prefix is None:
                continue
            cands = self.candidates(idx, prefix)
            if idx.kind == "hnsw" and len(cands) > idx.cfg.exact_filter_max:
                self.subindex(idx, prefix, cands)

    # ------------------------------------------------------------- routing

    def search(self, idx: ItemIndex, q: np.ndarray, k: int, prefix: str | None) -> Result:
        """Top-`k` (scores, labels) of queries `q` over `idx`, within category `prefix`."""
        if prefix is None:
            return self._search_all(idx, q, k)
        return self._search_category(idx, q, k, prefix)

    def _search_all(self, idx: ItemIndex, q: np.ndarray, k: int) -> Result:
        cfg, index = idx.cfg, idx._index
        if idx.kind == "ivfpq":  # removal is real: no tombstones to filter
            return search_ivfpq(index, idx._exact, q, k, cfg.nprobe, cfg)
        n_live = len(idx._catalogue)
        if idx.n_tombstones == 0:
            if idx.kind == "flat" and self._gpu_ready(index):
                return self.gpu.search(q, k)  # GPU: no OpenMP cap
            return _run(idx, index, q, k, search_params(idx.kind, cfg.ef_search))
        sel = self.selector(idx, "", idx._catalogue.live_labels())
        ef = filter_ef(cfg, n_live, int(index.ntotal))
        return _run(idx, index, q, k, search_params(idx.kind, ef, sel))

    def _search_category(self, idx: ItemIndex, q: np.ndarray, k: int, prefix: str) -> Result:
        cfg, index = idx.cfg, idx._index
        cands = self.candidates(idx, prefix)
        if len(cands) == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        if len(cands) <= cfg.exact_filter_max:
            return self.exact_subset(idx, q, k, prefix, cands)
        if idx.kind == "ivfpq":  # IVF with the category's selector, more lists, re-ranked
            share = len(cands) / max(1, index.ntotal)
            nprobe = math.ceil(cfg.nprobe / math.sqrt(share))
            return search_ivfpq(index, idx._exact, q, k, nprobe, cfg, self.selector(idx, prefix, cands))
        if idx.kind == "flat":  # a selector on a flat index is still exact
            sel = self.selector(idx, prefix, cands)
            return _run(idx, index, q, k, search_params(idx.kind, 0, sel))
        sub = self.subindex(idx, prefix, cands)
        ef = max(cfg.sub_ef_search, cfg.ef_search)
        if sub.ntotal == len(cands):
            return _run(idx, sub, q, k, search_params("hnsw", ef))
        sel = self.selector(idx, prefix, cands)  # the sub-index holds tombstones: keep live items
        ef = max(ef, filter_ef(cfg, len(cands), sub.ntotal))
        return _run(idx, sub, q, k, search_params("hnsw", ef, sel))

    # ------------------------------------------------------- derived state

    def candidates(self, idx: ItemIndex, prefix: str) -> np.ndarray:
        """The live labels of category `prefix` and below (`Catalogue.candidates`), cached."""
        key = "cands:" + prefix
        if key not in self.cache:
            self.cache[key] = idx._catalogue.candidates(prefix)
        return self.cache[key]

    def selector(self, idx: ItemIndex, prefix: str, labels: np.ndarray) -> Any:
        """An IDSelectorBitmap over `labels`, cached per prefix ('' = all live items)."""
        key = "sel:" + prefix
        if key not in self.cache:
            # keep the bitmap alive as long as the selector
            self.cache[key] = bitmap_selector(labels, idx._catalogue.n_labels)
        return self.cache[key][0]

    def exact_subset(
        self, idx: ItemIndex, q: np.ndarray, k: int, prefix: str, cands: np.ndarray
    ) -> Result:
        """Exact search over the category's own vectors: a flat index cached per category
        (faiss rather than numpy: its single-query path avoids BLAS thread wake-ups)."""
        key = "flat:" + prefix
        sub = self.cache.get(key)
        if sub is None:
            sub = flat_index(idx._vectors(cands))
            used = sum(v.ntotal for kk, v in self.cache.items() if kk.startswith("flat:"))
            if (used + sub.ntotal) * idx.dim * 4 <= idx.cfg.filter_cache_mb * 2**20:
                self.cache[key] = sub
        scores, pos = _run(idx, sub, q, min(k, len(cands)), None)
        return scores, np.where(pos >= 0, cands[np.maximum(pos, 0)], -1)

    def subindex(self, idx: ItemIndex, prefix: str, cands: np.ndarray) -> Any:
        """The HNSW index over one large category, built on its first query and then kept
        up to date by added(); rebuilt when more than half of it is tombstones."""
        sub = self.subs.get(prefix)
        if sub is None or sub.ntotal > 2 * len(cands):
            t0 = time.perf_counter()
            sub = new_faiss_index("hnsw", idx.dim, idx.cfg)
            sub.add_with_ids(idx._vectors(cands), cands)
            self.subs[prefix] = sub
            logger.info(
                "built the HNSW sub-index of category %r (%d items) in %.1fs",
                prefix,
                len(cands),
                time.perf_counter() - t0,
            )
        return sub

    def _gpu_ready(self, index: Any) -> bool:
        if not self.use_gpu:
            return False
        if self.gpu is None:
            try:
                self.gpu = gpu_copy(index)
            except Exception as e:  # noqa: BLE001 - fall back to the CPU index, say why once
                logger.warning("cannot move the index to the GPU (%s); searching on the CPU", e)
                self.use_gpu = False
                return False
        return True


def _run(idx: ItemIndex, index: Any, q: np.ndarray, k: int, params: Any) -> Result:
    """`run_search` with the index's `single_query_threads` cap."""
    return run_search(index, q, k, params, idx.cfg.single_query_threads)


__all__ = ["FilteredSearch", "filter_ef"]
