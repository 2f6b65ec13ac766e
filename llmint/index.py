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

`ItemIndex` here owns the items' lifecycle (build, add, remove, update, compact), the
single `search` entry point, save and load. It delegates, one concern per module: the
item ids, labels and categories to `llmint.index_labels`, the routing of a query and
its caches and sub-indexes to `llmint.index_filter`, faiss-only helpers to
`llmint.index_faiss`, profile vectors to `llmint.index_profile`, files to
`llmint.index_io`. This module knows nothing about datasets, loaders or LLMs; faiss is
imported inside the functions that need it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .embed import Embedder, item_text
from .errors import HistoryError, ModelError, UnknownIdError  # noqa: F401 - importable from here
from .index_config import (
    SEP,
    Hit,
    IndexConfig,
    category_label,
    check_vectors,
    import_faiss,
    num_gpus,
)
from .index_faiss import new_faiss_index, reserve, wants_gpu
from .index_filter import FilteredSearch
from .index_ivfpq import HalfVectors, rerank, trained_ivfpq, training_rows
from .index_labels import Catalogue
from .index_profile import ProfileConfig, profile_vector, profile_weights
from .schema import Event, Item

if TYPE_CHECKING:
    from .index_checkpoint import Checkpoint

logger = logging.getLogger(__name__)

SPILL = "vectors.f16.npy.building"  # an IVF-PQ build's float16 rows, until `save` renames them


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
        self._catalogue = Catalogue()  # item ids <-> labels, live labels, categories
        self._filter = FilteredSearch()  # query routing; caches, sub-indexes, GPU copy
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
        train = vectors[training_rows(n, dim, cfg)] if cfg.kind == "ivfpq" else None
        idx = cls.empty(dim, n, cfg, train=train, embedder=embedder, catalogue_version=catalogue_version)
        t0 = time.perf_counter()
        idx.add(item_ids, vectors, categories)
        logger.info(
            "built %s index of %d items (d=%d) in %.1fs", idx.kind, n, dim, time.perf_counter() - t0
        )
        return idx

    @staticmethod
    def _kind_for(cfg: IndexConfig, n_items: int) -> str:
        """The kind of index `empty` makes for `n_items` ("auto": flat on a GPU or below
        `hnsw_threshold`, else HNSW)."""
        if cfg.kind != "auto":
            return cfg.kind
        return "flat" if wants_gpu(cfg) or n_items < cfg.hnsw_threshold else "hnsw"

    @classmethod
    def empty(
        cls,
        dim: int,
        n_items: int,
        cfg: IndexConfig | None = None,
        *,
        train: np.ndarray | None = None,
        embedder: Embedder | None = None,
        catalogue_version: str = "",
        spill_dir: str | Path | None = None,
    ) -> ItemIndex:
        """An index of dimension `dim` with no items yet, set up for a catalogue of `n_items`
        that `add` then fills, in chunks if need be (`from_items` does); room for them is
        reserved, so no chunk reallocates what the ones before it added.

        `n_items` picks the kind when `cfg.kind` is "auto" and sizes IVF-PQ's inverted lists;
        IVF-PQ trains on `train`, the vectors of `training_rows(n_items, dim, cfg)` (required
        for that kind, ignored by the others). `spill_dir` (IVF-PQ only): keep its float16
        rows in a file there (`SPILL`) rather than in RAM; `save` to that folder renames it
        into place, so pass the folder the index will be saved to.
        """
        cfg = cfg or IndexConfig()
        use_gpu = wants_gpu(cfg)
        if cfg.device == "gpu" and num_gpus() == 0:
            raise ModelError(
                "IndexConfig.device='gpu' but faiss sees no GPU (is faiss-gpu installed?)"
            )
        kind = cls._kind_for(cfg, n_items)
        if kind == "ivfpq":
            if train is None:
                raise ValueError("kind='ivfpq' needs `train`: the vectors of training_rows(n_items, dim, cfg)")
            if cfg.device == "gpu":
                logger.warning("kind='ivfpq' searches on the CPU; the GPU is not used")
            use_gpu = False
            index = trained_ivfpq(check_vectors(train, dim), n_items, cfg)
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
        idx._filter.use_gpu = use_gpu
        if kind == "ivfpq":
            spill = None
            if spill_dir is not None:
                Path(spill_dir).mkdir(parents=True, exist_ok=True)
                spill = Path(spill_dir) / SPILL
            idx._exact.reserve(n_items, spill=spill)
        else:
            reserve(index, n_items)  # chunked adds then never reallocate the codes
        return idx

    @classmethod
    def from_items(
        cls,
        items: Iterable[Item],
        embedder: Embedder,
        cfg: IndexConfig | None = None,
        *,
        review_digests: Mapping[str, str] | None = None,
        batch_size: int | None = None,
        show_progress: bool = False,
        catalogue_version: str = "",
    ) -> ItemIndex:
        """Embed `items` with `item_text` and index them under their full category path
        (`from_texts`: a window of vectors at a time)."""
        items = list(items)
        digests = review_digests or {}
        return cls.from_texts(
            [it.item_id for it in items],
            [item_text(it, digests.get(it.item_id)) for it in items],
            [it.category_path or None for it in items],
            embedder,
            cfg,
            batch_size=batch_size,
            show_progress=show_progress,
            catalogue_version=catalogue_version,
        )

    @classmethod
    def from_texts(
        cls,
        item_ids: Sequence[str],
        texts: Sequence[str],
        categories: Sequence[str | Sequence[str] | None] | None,
        embedder: Embedder,
        cfg: IndexConfig | None = None,
        *,
        batch_size: int | None = None,
        show_progress: bool = False,
        catalogue_version: str = "",
        spill_dir: str | Path | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> ItemIndex:
        """Embed `texts` (one per item id) and index them under `categories` (as `build`);
        `spill_dir` as for `empty`. `checkpoint` (`llmint.index_checkpoint`): save the partial
        index every few minutes, and go on from the one a matching earlier build saved.

        Items are embedded and added `embedder.window(batch_size)` at a time (8,192 on a CPU),
        so besides the index only that many vectors are ever held: the same vectors as one
        `encode` of every text. IVF-PQ embeds its training sample first and keeps it until its
        rows are added (at most `train_max` vectors).
        """
        from tqdm.auto import tqdm

        cfg = cfg or IndexConfig()
        n, dim = len(texts), embedder.dim
        if len(item_ids) != n or (categories is not None and len(categories) != n):
            raise ValueError(f"{len(item_ids)} item ids and {n} texts"
                             + ("" if categories is None else f" and {len(categories)} categories"))
        t0 = time.perf_counter()
        step = embedder.window(batch_size)
        sample = training_rows(n, dim, cfg) if cfg.kind == "ivfpq" else np.zeros(0, np.int64)
        state = None
        if checkpoint is not None:
            state = checkpoint.start({
                "n_items": n, "catalogue_version": catalogue_version, "dim": dim, "window": step,
                "batch_size": batch_size, "config": asdict(cfg), "kind": cls._kind_for(cfg, n),
                "embedder": {"name": embedder.name, "sha256": embedder.sha256, "dtype": str(embedder.dtype)},
            })
        resumed = None
        if state is not None:  # a matching earlier build saved these rows: go on after them
            spill = None if spill_dir is None else Path(spill_dir) / SPILL
            resumed = checkpoint.resume(cls, state, cfg, embedder, catalogue_version, spill)  # type: ignore[union-attr]
        with tqdm(total=n, desc="embedding", unit="item", disable=not show_progress) as bar:
            if resumed is not None:
                idx, train = resumed
                first = int(state["rows_done"])  # type: ignore[index]
                bar.update(first + int((sample >= first).sum()))
            else:
                first, train = 0, None
                if cfg.kind == "ivfpq":
                    train = embedder.encode([texts[i] for i in sample], batch_size, progress=bar.update)
                idx = cls.empty(dim, n, cfg, train=train, embedder=embedder, catalogue_version=catalogue_version,
                                spill_dir=spill_dir)
                if checkpoint is not None:
                    checkpoint.begin(train)
                    if train is not None:  # the sample (2.6M texts at 100M items) is not embedded twice
                        checkpoint.save(idx, 0)
            for start in range(first, n, step):
                rows = np.arange(start, min(start + step, n))
                vecs = np.empty((len(rows), dim), np.float32)
                lo, hi = np.searchsorted(sample, [rows[0], rows[-1] + 1])  # sorted: the window's sample rows
                known = np.zeros(len(rows), dtype=bool)  # embedded already, to train IVF-PQ
                known[sample[lo:hi] - start] = True
                if hi > lo:  # (np.isin here took 2.2 s a window against a 2.6M-row sample)
                    vecs[known] = train[lo:hi]
                if not known.all():
                    vecs[~known] = embedder.encode(
                        [texts[i] for i in rows[~known]], batch_size, progress=bar.update
                    )
                stop = start + len(rows)
                idx.add(item_ids[start:stop], vecs, None if categories is None else categories[start:stop])
                if checkpoint is not None and stop < n:
                    checkpoint.after(idx, stop)
        logger.info(
            "embedded and indexed %d items (%s, d=%d) in %.1fs", n, idx.kind, dim, time.perf_counter() - t0
        )
        return idx

    # ------------------------------------------------------------ incremental

    def __len__(self) -> int:
        return len(self._catalogue)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._catalogue

    @property
    def item_ids(self) -> list[str]:
        """The live item ids, in the order they were added."""
        return self._catalogue.live_ids()

    @property
    def n_tombstones(self) -> int:
        """Removed vectors still inside the FAISS index (HNSW only; 0 after `compact()`)."""
        return int(self._index.ntotal) - len(self._catalogue)

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
        cats = self._catalogue.check_new(ids, categories)
        half = None if self._exact is None else HalfVectors.half(vectors)  # ivfpq: exact, float16
        labels = self._catalogue.next_labels(len(ids))
        if len(ids):
            self._index.add_with_ids(vectors, labels)  # ivfpq: encoded, never retrained
        if half is not None:
            self._exact.append(half)
        self._catalogue.append(ids, cats)
        self._filter.added(vectors, labels, cats)  # keeps the large categories' sub-indexes current
        self._filter.changed()

    def remove(self, item_ids: Iterable[str]) -> None:
        """Remove items; unknown ids raise UnknownIdError and nothing is removed."""
        labels = self._catalogue.drop(item_ids)
        if self.kind in ("flat", "ivfpq") and len(labels):  # real removal, no tombstones
            self._index.remove_ids(import_faiss().IDSelectorBatch(labels))
        elif self.n_tombstones > 0.25 * max(1, self._index.ntotal):
            logger.warning(
                "%d of %d HNSW vectors are tombstones; call compact() to rebuild",
                self.n_tombstones,
                self._index.ntotal,
            )
        self._filter.changed()

    def update(
        self,
        item_ids: Sequence[str],
        vectors: np.ndarray,
        categories: Sequence[str | Sequence[str] | None] | None = None,
    ) -> None:
        """Replace the vectors (and categories, when given) of indexed items."""
        ids = list(item_ids)
        self._catalogue.require(ids)
        if categories is None:
            categories = self._catalogue.categories_of(ids)
        vectors = check_vectors(vectors, self.dim)
        if len(vectors) != len(ids):
            raise ValueError(f"{len(ids)} item ids but {len(vectors)} vectors")
        self.remove(ids)
        self.add(ids, vectors, categories)

    def compact(self) -> None:
        """Rebuild the FAISS index from the live vectors only (drops HNSW tombstones)."""
        if self.n_tombstones == 0:
            return
        labels = self._catalogue.live_labels()
        index = new_faiss_index(self.kind, self.dim, self.cfg)  # only hnsw has tombstones
        if len(labels):
            index.add_with_ids(self._vectors(labels), labels)
        self._index = index
        self._filter.changed(drop_subs=True)  # sub-indexes: rebuilt without tombstones

    def vectors_of(self, item_ids: Sequence[str]) -> np.ndarray:
        """The stored vectors (len(item_ids), d) float32 of indexed items (ivfpq: the exact
        vectors rounded to float16, not the PQ reconstruction)."""
        return self._vectors(self._catalogue.labels_of(item_ids))

    def _vectors(self, labels: np.ndarray) -> np.ndarray:
        """The exact vectors (len(labels), d) float32 of int64 `labels`."""
        if not len(labels):
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._exact is not None:
            return self._exact.get(labels)
        return np.ascontiguousarray(self._index.reconstruct_batch(labels), dtype=np.float32)

    # ----------------------------------------------------------------- search

    @property
    def categories(self) -> list[str]:
        """Every category label the index has seen (full paths, sorted)."""
        return sorted(self._catalogue.cat_names)

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
        scores, labels = self._filter.search(self, q, k, category_label(category))
        return self._catalogue.hits(scores, labels)

    def search_text(
        self, texts: Sequence[str], k: int = 10, category: str | Sequence[str] | None = None
    ) -> list[list[Hit]]:
        """Embed `texts` with the index's embedder and `search` them."""
        if isinstance(texts, str):  # list("printer ink") would search eleven one-letter queries
            raise TypeError("search_text() takes a sequence of str, not a single str; wrap it in a list")
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
        return profile_vector(events, self.vectors_of, self._catalogue, now, cfg)

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

    def prepare_categories(self, categories: Iterable[str | Sequence[str]]) -> None:
        """Build now the sub-indexes that the first query to these categories would build."""
        self._filter.prepare(self, categories)

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


__all__ = [  # with the names importable from here before the split into index_* modules
    "SEP", "HalfVectors", "Hit", "IndexConfig", "Item", "ItemIndex", "ProfileConfig",
    "category_label", "check_vectors", "import_faiss", "item_text", "new_faiss_index",
    "num_gpus", "profile_weights", "rerank", "trained_ivfpq", "training_rows",
]
