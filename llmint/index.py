"""Product retrieval: a FAISS inner-product index of item embeddings.

`ItemIndex` maps item ids to unit vectors and answers top-k queries by vector,
by text (with its `Embedder`) or by shopper profile, optionally restricted to
a category or subtree ("A > B" matches "A > B" and "A > B > C"). It is exact
(`IndexFlatIP`) for small catalogues and HNSW for large ones (`IndexConfig`), or
IVF-PQ when asked for (below). Items can be added, updated and removed without a
rebuild: the flat and IVF-PQ indexes remove vectors; HNSW cannot, so removed labels
become tombstones excluded by an id selector on every search (a removed item never
comes back).

Category restriction ("A > B" also matches "A > B > C") keeps recall: a category
with at most `exact_filter_max` live items is searched exactly over its own vectors
(a flat index cached per category: about 1-2 ms for 20k x 384 on one core, 3-6 ms
for 50k, 10 ms for 100k); a larger one gets its own HNSW sub-index, built on its
first query (or by `prepare_categories`), searched with `sub_ef_search` and kept
current by `add`. HNSW over the whole catalogue with an id selector is not used for
categories: `index/bench.py` measured recall@10 of 0.04-0.07 for a clustered 5%
category queried from elsewhere (100k-1M items) and 0.33-0.86 for a random 0.2%
subset of 100k. A sub-index has recall 1.0 for queries near its category but not
for queries far from it (the shopper moving to a new category: measured on a 50k
category, recall@10 0.48 at efSearch 128, 0.81 at 512, 0.92 at 1024, p99 14 ms),
hence the generous exact threshold: exact search is both exact and faster there. A flat index filters with an
`IDSelectorBitmap` (exact); HNSW removals are tombstones filtered the same way.

IVF-PQ (`kind="ivfpq"`, opt-in, for ~100M items) is described in `llmint.index_ivfpq`.

This module knows nothing about datasets, loaders or LLMs; faiss is imported
inside the functions that need it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .embed import Embedder, item_text
from .errors import HistoryError, ModelError, UnknownIdError
from .index_config import (
    SEP,
    Hit,
    IndexConfig,
    category_label,
    check_vectors,
    import_faiss,
    num_gpus,
)
from .index_ivfpq import HalfVectors, rerank, trained_ivfpq
from .index_profile import ProfileConfig, profile_weights
from .schema import Event, Item

logger = logging.getLogger(__name__)


def _within(category: str | None, prefix: str) -> bool:
    """Is `category` the category `prefix` or below it?"""
    return category is not None and (category == prefix or category.startswith(prefix + SEP))


def new_faiss_index(kind: str, dim: int, cfg: IndexConfig) -> Any:
    """An empty inner-product `IndexIDMap2` over `IndexFlatIP` or `IndexHNSWFlat`."""
    faiss = import_faiss()
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if kind != "hnsw":
        raise ValueError(f"new_faiss_index makes 'flat' or 'hnsw' indexes, not {kind!r}")
    inner = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    inner.hnsw.efConstruction = cfg.ef_construction
    inner.hnsw.efSearch = cfg.ef_search
    return faiss.IndexIDMap2(inner)


class ItemIndex:
    """A FAISS inner-product index over item vectors, with item ids and categories.

    Build with `ItemIndex.build(...)` or `ItemIndex.from_items(...)`; load with
    `ItemIndex.load(dir, embedder)`. Internally each vector has an int64 label;
    labels are never reused, so an updated item gets a new label. `copy.deepcopy` and
    `pickle` work at any time; a copy rebuilds its per-category caches on first use.
    """

    def __init__(
        self,
        index: Any,
        kind: str,
        dim: int,
        cfg: IndexConfig,
        embedder: Embedder | None = None,
        embedder_meta: Mapping[str, str] | None = None,
        catalogue_version: str = "",
        build_time_utc: str = "",
    ) -> None:
        self._index = index  # IndexIDMap2 over IndexFlatIP or IndexHNSWFlat, or IndexIVFPQ
        self.kind = kind
        self.dim = dim
        self.cfg = cfg
        self.embedder = embedder
        self.embedder_meta = (
            dict(embedder_meta)
            if embedder_meta
            else ({"name": embedder.name, "sha256": embedder.sha256} if embedder else None)
        )
        self.catalogue_version = catalogue_version
        self.build_time_utc = build_time_utc
        self._item_ids: list[str | None] = []  # label -> item id (None once removed)
        self._label_of: dict[str, int] = {}
        self._alive = np.zeros(0, dtype=bool)  # label -> live?
        self._cat_code = np.zeros(0, dtype=np.int32)  # label -> category code, -1 for none
        self._cat_names: list[str] = []
        self._cat_code_of: dict[str, int] = {}
        self._cache: dict[str, Any] = {}  # per-category candidates, matrices, selectors
        self._subs: dict[str, Any] = {}  # large category -> HNSW over its labels (kept by add)
        self._gpu: Any = None  # a GPU copy of a flat index, made on first unfiltered search
        self._use_gpu = False
        # ivfpq: the exact vectors (float16, by label) that re-ranking and vectors_of read
        self._exact = HalfVectors(dim) if kind == "ivfpq" else None

    # ---------------------------------------------------------------- building

    @classmethod
    def build(
        cls,
        item_ids: Sequence[str],
        vectors: np.ndarray,
        categories: Sequence[str | Sequence[str] | None] | None = None,
        cfg: IndexConfig | None = None,
        *,
        embedder: Embedder | None = None,
        catalogue_version: str = "",
    ) -> ItemIndex:
        """Index `vectors` (n, d) float32, unit rows, for `item_ids` (n) and `categories` (n).

        A category is a label "A > B" or a path ("A", "B"); None for none.
        """
        cfg = cfg or IndexConfig()
        vectors = check_vectors(vectors, embedder.dim if embedder else None)
        n, dim = vectors.shape
        kind = cfg.kind
        use_gpu = cfg.device == "gpu" or (cfg.device == "auto" and num_gpus() > 0)
        if cfg.device == "gpu" and num_gpus() == 0:
            raise ModelError(
                "IndexConfig.device='gpu' but faiss sees no GPU (is faiss-gpu installed?)"
            )
        if kind == "auto":
            kind = "flat" if use_gpu or n < cfg.hnsw_threshold else "hnsw"
        if kind == "ivfpq":
            if cfg.device == "gpu":
                logger.warning("kind='ivfpq' searches on the CPU; the GPU is not used")
            use_gpu = False
            index = trained_ivfpq(vectors, cfg)
        else:
            index = new_faiss_index(kind, dim, cfg)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        idx = cls(
            index,
            kind,
            dim,
            cfg,
            embedder,
            catalogue_version=catalogue_version,
            build_time_utc=stamp,
        )
        idx._use_gpu = use_gpu
        t0 = time.perf_counter()
        idx.add(item_ids, vectors, categories)
        logger.info(
            "built %s index of %d items (d=%d) in %.1fs", kind, n, dim, time.perf_counter() - t0
        )
        return idx

    @classmethod
    def from_items(
        cls,
        items: Iterable[Item],
        embedder: Embedder,
        cfg: IndexConfig | None = None,
        *,
        review_digests: Mapping[str, str] | None = None,
        batch_size: int = 64,
        show_progress: bool = False,
        catalogue_version: str = "",
    ) -> ItemIndex:
        """Embed `items` with `item_text` and index them under their full category path."""
        items = list(items)
        digests = review_digests or {}
        texts = [item_text(it, digests.get(it.item_id)) for it in items]
        vecs = embedder.encode(texts, batch_size=batch_size, show_progress=show_progress)
        return cls.build(
            [it.item_id for it in items],
            vecs,
            [it.category_path or None for it in items],
            cfg,
            embedder=embedder,
            catalogue_version=catalogue_version,
        )

    # ------------------------------------------------------------ incremental

    def __len__(self) -> int:
        return len(self._label_of)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._label_of

    @property
    def item_ids(self) -> list[str]:
        """The live item ids, in the order they were added."""
        return [i for i in self._item_ids if i is not None]

    @property
    def n_tombstones(self) -> int:
        """Removed vectors still inside the FAISS index (HNSW only; 0 after `compact()`)."""
        return int(self._index.ntotal) - len(self._label_of)

    def add(
        self,
        item_ids: Sequence[str],
        vectors: np.ndarray,
        categories: Sequence[str | Sequence[str] | None] | None = None,
    ) -> None:
        """Add new items: `vectors` (n, d) float32 unit rows; ids must not be in the index yet."""
        ids = list(item_ids)
        vectors = check_vectors(vectors, self.dim)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} item ids but {len(vectors)} vectors")
        if not all(isinstance(i, str) and i for i in ids):
            raise TypeError("item ids must be non-empty str")
        if len(set(ids)) != len(ids):
            raise ValueError("item ids must be unique within one add()")
        present = [i for i in ids if i in self._label_of]
        if present:
            raise ValueError(
                f"{len(present)} item ids are already indexed (use update()), e.g. {present[:3]}"
            )
        cats = [None] * len(ids) if categories is None else [category_label(c) for c in categories]
        if len(cats) != len(ids):
            raise ValueError(f"{len(ids)} item ids but {len(cats)} categories")
        half = None
        if self._exact is not None:  # ivfpq keeps the exact vectors as float16
            if len(vectors) and np.abs(vectors).max() > np.finfo(np.float16).max:
                raise ValueError("vectors overflow float16 (|x| > 65504); expected unit rows")
            half = vectors.astype(np.float16)
        start = len(self._item_ids)
        labels = np.arange(start, start + len(ids), dtype=np.int64)
        if len(ids):
            self._index.add_with_ids(vectors, labels)  # ivfpq: encoded, never retrained
        if half is not None:
            self._exact.append(half)
        codes = np.array([self._code(c) for c in cats], dtype=np.int32)
        self._item_ids.extend(ids)
        self._label_of.update(zip(ids, labels.tolist(), strict=True))
        self._alive = np.concatenate([self._alive, np.ones(len(ids), dtype=bool)])
        self._cat_code = np.concatenate([self._cat_code, codes])
        for prefix, sub in self._subs.items():  # keep the large categories' sub-indexes current
            inside = np.array([_within(c, prefix) for c in cats], dtype=bool)
            if inside.any():
                sub.add_with_ids(vectors[inside], labels[inside])
        self._changed()

    def remove(self, item_ids: Iterable[str]) -> None:
        """Remove items; unknown ids raise UnknownIdError and nothing is removed."""
        ids = list(dict.fromkeys(item_ids))
        missing = [i for i in ids if i not in self._label_of]
        if missing:
            raise UnknownIdError(
                f"{len(missing)} item ids are not in the index, e.g. {missing[:3]}"
            )
        labels = np.array([self._label_of.pop(i) for i in ids], dtype=np.int64)
        for lab in labels.tolist():
            self._item_ids[lab] = None
        self._alive[labels] = False
        if self.kind in ("flat", "ivfpq") and len(labels):  # real removal, no tombstones
            self._index.remove_ids(import_faiss().IDSelectorBatch(labels))
        elif self.n_tombstones > 0.25 * max(1, self._index.ntotal):
            logger.warning(
                "%d of %d HNSW vectors are tombstones; call compact() to rebuild",
                self.n_tombstones,
                self._index.ntotal,
            )
        self._changed()

    def update(
        self,
        item_ids: Sequence[str],
        vectors: np.ndarray,
        categories: Sequence[str | Sequence[str] | None] | None = None,
    ) -> None:
        """Replace the vectors (and categories, when given) of indexed items."""
        ids = list(item_ids)
        missing = [i for i in ids if i not in self._label_of]
        if missing:
            raise UnknownIdError(
                f"{len(missing)} item ids are not in the index, e.g. {missing[:3]}"
            )
        if categories is None:
            codes = self._cat_code[[self._label_of[i] for i in ids]]
            categories = [self._cat_names[c] if c >= 0 else None for c in codes.tolist()]
        vectors = check_vectors(vectors, self.dim)
        if len(vectors) != len(ids):
            raise ValueError(f"{len(ids)} item ids but {len(vectors)} vectors")
        self.remove(ids)
        self.add(ids, vectors, categories)

    def compact(self) -> None:
        """Rebuild the FAISS index from the live vectors only (drops HNSW tombstones)."""
        if self.n_tombstones == 0:
            return
        labels = np.flatnonzero(self._alive).astype(np.int64)
        index = new_faiss_index(self.kind, self.dim, self.cfg)  # only hnsw has tombstones
        if len(labels):
            index.add_with_ids(self._vectors(labels), labels)
        self._index = index
        self._subs.clear()  # rebuilt without tombstones on their next query
        self._changed()

    def vectors_of(self, item_ids: Sequence[str]) -> np.ndarray:
        """The stored vectors (len(item_ids), d) float32 of indexed items (ivfpq: the exact
        vectors rounded to float16, not the PQ reconstruction)."""
        missing = [i for i in item_ids if i not in self._label_of]
        if missing:
            raise UnknownIdError(
                f"{len(missing)} item ids are not in the index, e.g. {missing[:3]}"
            )
        labels = np.array([self._label_of[i] for i in item_ids], dtype=np.int64)
        return self._vectors(labels)

    def _vectors(self, labels: np.ndarray) -> np.ndarray:
        """The exact vectors (len(labels), d) float32 of int64 `labels`."""
        if not len(labels):
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._exact is not None:
            return self._exact.get(labels)
        return np.ascontiguousarray(self._index.reconstruct_batch(labels), dtype=np.float32)

    def _code(self, cat: str | None) -> int:
        if cat is None:
            return -1
        code = self._cat_code_of.get(cat)
        if code is None:
            code = self._cat_code_of[cat] = len(self._cat_names)
            self._cat_names.append(cat)
        return code

    def _changed(self) -> None:
        self._cache.clear()
        self._gpu = None

    # ----------------------------------------------------------------- search

    @property
    def categories(self) -> list[str]:
        """Every category label the index has seen (full paths, sorted)."""
        return sorted(self._cat_names)

    def search(
        self, vectors: np.ndarray, k: int = 10, category: str | Sequence[str] | None = None
    ) -> list[list[Hit]]:
        """Top-`k` items for each query row of `vectors` (q, d), best first.

        `category` restricts results to a label and everything below it
        ("A > B" also matches "A > B > C"); an unknown category raises UnknownIdError.
        Fewer than k hits come back when fewer items qualify.

        Example:
            >>> idx.search(emb.encode(["cordless phone"]), k=2)  # doctest: +SKIP
            [[Hit(item_id='0', score=0.71), Hit(item_id='5', score=0.64)]]
        """
        q = check_vectors(vectors, self.dim, "query vectors")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k={k!r}; expected an int >= 1")
        if len(q) == 0:
            return []
        prefix = category_label(category)
        if prefix is None:
            scores, labels = self._search_all(q, k)
        else:
            scores, labels = self._search_category(q, k, prefix)
        return self._hits(scores, labels)

    def search_text(
        self, texts: Sequence[str], k: int = 10, category: str | Sequence[str] | None = None
    ) -> list[list[Hit]]:
        """Embed `texts` with the index's embedder and `search` them."""
        if self.embedder is None:
            raise ModelError(
                "this index has no embedder; pass one to ItemIndex.load(dir, embedder)"
            )
        return self.search(self.embedder.encode(list(texts)), k, category)

    def profile_vector(
        self, events: Iterable[Event], now: float | None = None, cfg: ProfileConfig | None = None
    ) -> np.ndarray:
        """A shopper's profile (d,): the normalised, weighted mean of their recent items' vectors.

        Weights come from `profile_weights` (action x recency). Items not in the
        index are skipped; raises HistoryError when no event has an indexed item.
        """
        pairs = [(i, w) for i, w in profile_weights(events, now, cfg) if i in self._label_of]
        if not pairs:
            raise HistoryError("no recent event of this shopper has an item in the index")
        vecs = self.vectors_of([i for i, _ in pairs])
        w = np.array([w for _, w in pairs], dtype=np.float32)
        v = (w[:, None] * vecs).sum(axis=0)
        norm = float(np.linalg.norm(v))
        if norm == 0.0:
            raise HistoryError("the shopper's weighted item vectors cancel out to zero")
        return (v / norm).astype(np.float32)

    def search_profile(
        self,
        events: Iterable[Event],
        k: int = 10,
        category: str | Sequence[str] | None = None,
        now: float | None = None,
        exclude_seen: bool = False,
        profile: ProfileConfig | None = None,
    ) -> list[Hit]:
        """Top-`k` items for a shopper profile; `exclude_seen` drops items in `events`."""
        events = list(events)
        seen = {e.item_id for e in events if e.item_id is not None} if exclude_seen else set()
        vec = self.profile_vector(events, now, profile)
        hits = self.search(vec[None, :], k + len(seen), category)[0]
        return [h for h in hits if h.item_id not in seen][:k]

    def _run(self, index: Any, q: np.ndarray, k: int, params: Any) -> tuple[np.ndarray, np.ndarray]:
        """index.search(q, k), with OpenMP capped at `single_query_threads` for one query.

        faiss parallelises over queries, so one query gains nothing from more threads;
        on a busy 2-core box the idle threads' barrier cost p50 8 ms instead of 0.5 ms
        (index/bench.py). The cap is process-wide while the call runs and then restored.
        """
        n = self.cfg.single_query_threads
        if len(q) != 1 or n <= 0:
            return index.search(q, k, params=params)
        faiss = import_faiss()
        before = faiss.omp_get_max_threads()
        if before <= n:
            return index.search(q, k, params=params)
        faiss.omp_set_num_threads(n)
        try:
            return index.search(q, k, params=params)
        finally:
            faiss.omp_set_num_threads(before)

    def _params(self, ef: int, sel: Any = None) -> Any:
        faiss = import_faiss()
        if self.kind == "hnsw":
            return (
                faiss.SearchParametersHNSW(efSearch=int(ef), sel=sel)
                if sel is not None
                else faiss.SearchParametersHNSW(efSearch=int(ef))
            )
        return faiss.SearchParameters(sel=sel) if sel is not None else None

    def _search_all(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "ivfpq":  # removal is real: no tombstones to filter
            return self._search_ivf(q, k, self.cfg.nprobe)
        n_live = len(self._label_of)
        if self.n_tombstones == 0:
            if self.kind == "flat" and self._gpu_ready():
                return self._gpu.search(q, k)  # GPU: no OpenMP cap
            return self._run(self._index, q, k, self._params(self.cfg.ef_search))
        sel = self._selector("", np.flatnonzero(self._alive))
        ef = self._filter_ef(n_live, int(self._index.ntotal))
        return self._run(self._index, q, k, self._params(ef, sel))

    def _search_category(self, q: np.ndarray, k: int, prefix: str) -> tuple[np.ndarray, np.ndarray]:
        cands = self._candidates(prefix)
        if len(cands) == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        if len(cands) <= self.cfg.exact_filter_max:
            return self._exact_subset(q, k, prefix, cands)
        if self.kind == "ivfpq":  # IVF with the category's selector, more lists, re-ranked
            share = len(cands) / max(1, self._index.ntotal)
            nprobe = math.ceil(self.cfg.nprobe / math.sqrt(share))
            return self._search_ivf(q, k, nprobe, self._selector(prefix, cands))
        if self.kind == "flat":  # a selector on a flat index is still exact
            sel = self._selector(prefix, cands)
            return self._run(self._index, q, k, self._params(0, sel))
        sub = self._subindex(prefix, cands)
        ef = max(self.cfg.sub_ef_search, self.cfg.ef_search)
        if sub.ntotal == len(cands):
            return self._run(sub, q, k, self._params(ef))
        sel = self._selector(prefix, cands)  # the sub-index holds tombstones: keep live items
        return self._run(sub, q, k, self._params(max(ef, self._filter_ef(len(cands), sub.ntotal)), sel))

    def _search_ivf(
        self, q: np.ndarray, k: int, nprobe: int, sel: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """IVF-PQ's top max(k, rerank) over `nprobe` lists (of items `sel` keeps), re-scored
        exactly from the float16 vectors when rerank > 0; the top k, best first."""
        faiss = import_faiss()
        nprobe = min(nprobe, self._index.nlist)
        params = (
            faiss.SearchParametersIVF(nprobe=nprobe, sel=sel)
            if sel is not None
            else faiss.SearchParametersIVF(nprobe=nprobe)
        )
        scores, labels = self._run(self._index, q, max(k, self.cfg.rerank), params)
        if self.cfg.rerank == 0:
            return scores, labels
        return rerank(self._exact, q, labels, k)

    def _subindex(self, prefix: str, cands: np.ndarray) -> Any:
        """The HNSW index over one large category, built on its first query and then kept
        up to date by add(); rebuilt when more than half of it is tombstones."""
        sub = self._subs.get(prefix)
        if sub is None or sub.ntotal > 2 * len(cands):
            t0 = time.perf_counter()
            sub = new_faiss_index("hnsw", self.dim, self.cfg)
            sub.add_with_ids(self._vectors(cands), cands)
            self._subs[prefix] = sub
            logger.info(
                "built the HNSW sub-index of category %r (%d items) in %.1fs",
                prefix,
                len(cands),
                time.perf_counter() - t0,
            )
        return sub

    def prepare_categories(self, categories: Iterable[str | Sequence[str]]) -> None:
        """Build now the sub-indexes that the first query to these categories would build."""
        for c in categories:
            prefix = category_label(c)
            if prefix is None:
                continue
            cands = self._candidates(prefix)
            if self.kind == "hnsw" and len(cands) > self.cfg.exact_filter_max:
                self._subindex(prefix, cands)

    def _filter_ef(self, n_selected: int, n_total: int) -> int:
        """efSearch for a selector keeping `n_selected` of `n_total`: ef_search / sqrt(share)."""
        frac = n_selected / max(1, n_total)
        ef = math.ceil(self.cfg.ef_search / math.sqrt(max(frac, 1e-9)))
        return min(self.cfg.filter_ef_max, max(self.cfg.ef_search, ef))

    def _candidates(self, prefix: str) -> np.ndarray:
        key = "cands:" + prefix
        if key not in self._cache:
            codes = [c for name, c in self._cat_code_of.items() if _within(name, prefix)]
            if not codes:
                last = prefix.split(SEP)[-1].lower()
                close = sorted({n for n in self._cat_names if last in n.lower()})[:3]
                roots = sorted({n.split(SEP)[0] for n in self._cat_names})
                raise UnknownIdError(
                    f"unknown category {prefix!r}: no indexed item is in it or below it; "
                    + (f"close: {close}" if close else f"top-level categories: {roots[:8]}")
                )
            mask = np.isin(self._cat_code, np.array(codes, dtype=np.int32)) & self._alive
            self._cache[key] = np.flatnonzero(mask).astype(np.int64)
        return self._cache[key]

    def _selector(self, prefix: str, labels: np.ndarray) -> Any:
        """An IDSelectorBitmap over `labels`, cached per prefix ('' = all live items)."""
        key = "sel:" + prefix
        if key not in self._cache:
            faiss = import_faiss()
            mask = np.zeros(len(self._item_ids), dtype=bool)
            mask[labels] = True
            bits = np.packbits(mask, bitorder="little")
            sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
            self._cache[key] = (sel, bits)  # keep the bitmap alive as long as the selector
        return self._cache[key][0]

    def _exact_subset(
        self, q: np.ndarray, k: int, prefix: str, cands: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact search over the category's own vectors: a flat index cached per category
        (faiss rather than numpy: its single-query path avoids BLAS thread wake-ups)."""
        key = "flat:" + prefix
        sub = self._cache.get(key)
        if sub is None:
            sub = import_faiss().IndexFlatIP(self.dim)
            sub.add(self._vectors(cands))
            used = sum(v.ntotal for kk, v in self._cache.items() if kk.startswith("flat:"))
            if (used + sub.ntotal) * self.dim * 4 <= self.cfg.filter_cache_mb * 2**20:
                self._cache[key] = sub
        scores, pos = self._run(sub, q, min(k, len(cands)), None)
        return scores, np.where(pos >= 0, cands[np.maximum(pos, 0)], -1)

    def _hits(self, scores: np.ndarray, labels: np.ndarray) -> list[list[Hit]]:
        out = []
        ids = self._item_ids
        for srow, lrow in zip(scores.tolist(), labels.tolist(), strict=True):
            row = []
            for s, lab in zip(srow, lrow, strict=True):
                if lab >= 0 and ids[lab] is not None:  # never return a removed item
                    row.append(Hit(ids[lab], float(s)))
            out.append(row)
        return out

    def _gpu_ready(self) -> bool:
        if not self._use_gpu:
            return False
        if self._gpu is None:
            try:
                faiss = import_faiss()
                self._gpu = faiss.index_cpu_to_all_gpus(self._index)
            except Exception as e:  # noqa: BLE001 - fall back to the CPU index, say why once
                logger.warning("cannot move the index to the GPU (%s); searching on the CPU", e)
                self._use_gpu = False
                return False
        return True

    # ------------------------------------------------------- copy and pickle

    def __getstate__(self) -> dict[str, Any]:
        """What `copy.deepcopy` and `pickle` copy: everything but the derived caches.

        The per-category cache holds faiss `IDSelectorBitmap`s (SWIG objects over a
        numpy bitmap, which cannot be pickled) and the GPU copy of a flat index cannot be
        serialized; both are rebuilt on first use, as after `load`. The HNSW sub-indexes
        of large categories are kept: faiss indexes pickle, and they are slow to rebuild.
        """
        state = self.__dict__.copy()
        state["_cache"] = {}
        state["_gpu"] = None
        return state

    # ---------------------------------------------------------- save and load

    def save(self, folder: str | Path) -> Path:
        """Write `index.faiss` and `meta.json` (ids, categories, embedder, config) to `folder`."""
        from .index_io import save_index

        return save_index(self, Path(folder))

    @classmethod
    def load(cls, folder: str | Path, embedder: Embedder | None = None) -> ItemIndex:
        """Read an index written by `save`; refuses (ModelError) a different embedder."""
        from .index_io import load_index

        return load_index(cls, Path(folder), embedder)

    def __repr__(self) -> str:
        emb = self.embedder_meta["name"] if self.embedder_meta else None
        return (
            f"ItemIndex(kind={self.kind!r}, items={len(self)}, dim={self.dim}, "
            f"tombstones={self.n_tombstones}, embedder={emb!r})"
        )
