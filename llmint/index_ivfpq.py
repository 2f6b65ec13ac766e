"""IVF-PQ for catalogues of ~100M items: training, the exact float16 vectors, exact re-ranking.

IVF-PQ (`kind="ivfpq"`, never picked by "auto"; for catalogues of ~100M items) keeps
`pq_m`-byte codes in `IndexIVFPQ` inverted lists, trained once on a seeded sample of
at most `train_max` vectors (later `add`s are encoded, never retrained), plus the exact
vectors as float16 rows by label (`HalfVectors`: 2 bytes x dim per item, 77 GB at 100M
x 384, memory-mapped from `vectors.f16.npy` after `load`; removed and replaced items
keep their rows). A query scans `nprobe` lists for max(k, `rerank`) candidates and
re-scores them exactly from the float16 vectors (20k x 64 clustered vectors, PQ16, 256
lists: recall@10 0.96 re-ranked, 0.45 from the codes alone; 200k x 64, 2048 lists: 0.82
and 0.35). `vectors_of` (profiles) and the exact category search read the float16
vectors, never the PQ reconstruction. Removal is real (`remove_ids` scans the lists:
remove in batches). A category above `exact_filter_max` is searched over the whole IVF
with its `IDSelectorBitmap`, nprobe raised to nprobe / sqrt(its share of the items), and
re-ranked. The selector only filters the lists nearest the query, so recall depends on
where the query is: on 200k x 64 (2048 lists, nprobe 64 raised to 287) a clustered 5%
category had recall@10 0.83 for queries near it but 0.15 for queries from elsewhere,
while a random 0.5% subset had 1.00. Keep `exact_filter_max` high for this kind.

`ItemIndex` (llmint.index) and its search routing (llmint.index_filter) use these for
`kind="ivfpq"`; this module knows nothing about item ids or categories (a selector is
opaque here). faiss is imported inside the functions.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError
from .index_config import IndexConfig, import_faiss, ivfpq_plan
from .index_faiss import run_search

logger = logging.getLogger(__name__)


def training_rows(n: int, dim: int, cfg: IndexConfig) -> np.ndarray:
    """The sorted rows (int64) of a catalogue of `n` vectors of dimension `dim` that train its
    IVF-PQ: a sample of min(n, train_max) seeded by `train_seed`, all rows when n <= train_max.

    Known before any vector is: a build can embed these rows first, train, then stream the rest.
    Raises ValueError (`ivfpq_plan`) when `pq_m` does not divide `dim` or `n` is too few.
    """
    _, n_train = ivfpq_plan(n, dim, cfg)
    return np.sort(np.random.default_rng(cfg.train_seed).choice(n, n_train, replace=False))


def trained_ivfpq(sample: np.ndarray, n: int, cfg: IndexConfig) -> Any:
    """An empty `IndexIVFPQ` (inner product, flat coarse quantizer, 8-bit codes of `pq_m`
    bytes) for a catalogue of `n` vectors, trained on `sample`: their `training_rows`.

    The labels are its own ids (no id map). Raises ValueError (`ivfpq_plan`) when
    `pq_m` does not divide the dimension or `n` is too few to train on.
    """
    dim = sample.shape[1]
    nlist, n_train = ivfpq_plan(n, dim, cfg)
    if len(sample) != n_train:
        raise ValueError(f"{len(sample)} training vectors; expected {n_train} (training_rows of {n})")
    faiss = import_faiss()
    index = faiss.IndexIVFPQ(
        faiss.IndexFlatIP(dim), dim, nlist, cfg.pq_m, 8, faiss.METRIC_INNER_PRODUCT
    )
    t0 = time.perf_counter()
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    logger.info(
        "trained IVF%d,PQ%d on %d of %d vectors in %.1fs",
        nlist,
        cfg.pq_m,
        n_train,
        n,
        time.perf_counter() - t0,
    )
    return index


def search_ivfpq(
    index: Any,
    exact: HalfVectors,
    q: np.ndarray,
    k: int,
    nprobe: int,
    cfg: IndexConfig,
    sel: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The `IndexIVFPQ`'s top max(k, rerank) over `nprobe` lists (of the labels `sel` keeps),
    re-scored exactly from the float16 vectors `exact` when rerank > 0; the top k, best first."""
    faiss = import_faiss()
    nprobe = min(nprobe, index.nlist)
    params = (
        faiss.SearchParametersIVF(nprobe=nprobe, sel=sel)
        if sel is not None
        else faiss.SearchParametersIVF(nprobe=nprobe)
    )
    scores, labels = run_search(index, q, max(k, cfg.rerank), params, cfg.single_query_threads)
    if cfg.rerank == 0:
        return scores, labels
    return rerank(exact, q, labels, k)


def rerank(exact: HalfVectors, q: np.ndarray, labels: np.ndarray, k: int, chunk: int = 256,
           ) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner products of queries `q` (n, d) with their candidates `labels` (n, c)
    (-1: none) from the float16 vectors; the top k (n, k) scores and labels, best first, -1 padded."""
    n, c = labels.shape
    scores = np.full((n, c), -np.inf, dtype=np.float32)
    for i in range(0, n, chunk):  # bounds the (chunk, c, d) float32 gather
        lab = labels[i : i + chunk]
        ok = lab >= 0
        vecs = exact.get(np.where(ok, lab, 0).ravel()).reshape(*lab.shape, exact.dim)
        s = np.einsum("ncd,nd->nc", vecs, q[i : i + chunk])
        scores[i : i + chunk] = np.where(ok, s, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(scores, order, axis=1)
    labs = np.where(np.isfinite(top), np.take_along_axis(labels, order, axis=1), -1)
    return top, labs


class HalfVectors:
    """Exact item vectors as float16 rows (2 bytes x dim each), row i for label i.

    The rows loaded from `vectors.f16.npy` stay a read-only memory map; rows appended
    later live in an in-memory tail whose capacity doubles, so `append` never copies the
    mapped rows (`reserve` sizes the tail up front, in a file when asked: a build's).
    `get` returns float32. `copy.deepcopy` shares the mapped rows (nothing writes to them)
    and copies only the tail, so copying a loaded 100M-item index does not read 77 GB into
    RAM; `pickle` still carries every row (a pickle must stand alone).
    """

    def __init__(self, dim: int, base: np.ndarray | None = None) -> None:
        self.dim = dim
        self._base = np.zeros((0, dim), np.float16) if base is None else base
        self._tail = np.zeros((0, dim), np.float16)
        self._n_tail = 0

    def __len__(self) -> int:
        return len(self._base) + self._n_tail

    def __deepcopy__(self, memo: dict[int, Any]) -> HalfVectors:
        twin = HalfVectors(self.dim, self._base if self.memory_mapped else self._base.copy())
        twin._tail, twin._n_tail = np.array(self._tail[: self._n_tail]), self._n_tail  # RAM, even if spilled
        memo[id(self)] = twin
        return twin

    def __getstate__(self) -> dict[str, Any]:
        """Every row in RAM (a memory map's rows read from its file): a pickle stands alone."""
        state = self.__dict__.copy()
        state["_base"] = np.asarray(self._base)
        state["_tail"] = np.array(self._tail[: self._n_tail])  # a plain copy, even of a spilled map
        return state

    @property
    def memory_mapped(self) -> bool:
        """Are the loaded rows a memory map of a file (rather than in RAM)?"""
        return isinstance(self._base, np.memmap)

    @staticmethod
    def half(vectors: np.ndarray) -> np.ndarray:
        """`vectors` rounded to float16; ValueError when a value overflows float16."""
        if len(vectors) and np.abs(vectors).max() > np.finfo(np.float16).max:
            raise ValueError("vectors overflow float16 (|x| > 65504); expected unit rows")
        return vectors.astype(np.float16)

    def reserve(self, n: int, spill: Path | None = None) -> None:
        """Room for `n` more rows without growing: an index built a chunk at a time knows its size,
        and doubling would hold the old and new tail at once (up to 3x the rows at 100M items).

        `spill`: keep the rows of an empty store in that file (a writable memory map, float16
        .npy) instead of RAM, so a 100M-item build holds no 77 GB of them: the kernel writes
        them out and can evict them. `save` to the file's folder renames it into place.
        """
        need = self._n_tail + n
        if spill is not None and len(self) == 0 and n > 0:
            self._tail = np.lib.format.open_memmap(spill, mode="w+", dtype=np.float16, shape=(n, self.dim))
            return
        if need > len(self._tail):
            grown = np.zeros((need, self.dim), np.float16)
            grown[: self._n_tail] = self._tail[: self._n_tail]
            self._tail = grown

    def flush(self) -> None:
        """Write a spilled store's rows to its file (a build's checkpoint)."""
        if isinstance(self._tail, np.memmap):
            self._tail.flush()

    def resume(self, spill: Path, n: int, capacity: int) -> None:
        """Take the first `n` rows of `spill`, a build's spilled file of `capacity` rows (`reserve`),
        as this empty store's rows, mapped writable: a resumed build appends the rest there."""
        tail = np.load(spill, mmap_mode="r+")
        if tail.dtype != np.float16 or tail.shape != (capacity, self.dim) or len(self) or n > capacity:
            raise ModelError(f"{spill} holds {tail.dtype} {tail.shape}; expected float16 ({capacity}, {self.dim})")
        self._tail, self._n_tail = tail, n

    def append(self, vectors: np.ndarray) -> None:
        """Add rows (n, dim) for the next n labels (rounded to float16)."""
        need = self._n_tail + len(vectors)
        if need > len(self._tail):
            grown = np.zeros((max(need, 2 * len(self._tail), 1024), self.dim), np.float16)
            grown[: self._n_tail] = self._tail[: self._n_tail]
            self._tail = grown
        self._tail[self._n_tail : need] = vectors
        self._n_tail = need

    def get(self, labels: np.ndarray) -> np.ndarray:
        """The rows (len(labels), dim) of int64 `labels`, as float32."""
        labels = np.asarray(labels, dtype=np.int64)
        out = np.empty((len(labels), self.dim), dtype=np.float32)
        nb = len(self._base)
        inb = labels < nb
        out[inb] = self._base[labels[inb]]
        out[~inb] = self._tail[labels[~inb] - nb]
        return out

    def save(self, path: Path, chunk: int = 1 << 20) -> None:
        """Write every row to `path` (.npy, float16) in chunks, via a temporary file that
        then replaces `path`: safe when `path` is the file this store maps. A spilled store
        (`reserve(spill=)`) whose file is full and in `path`'s folder is flushed and renamed."""
        spilled = getattr(self._tail, "filename", None)
        if spilled and not len(self._base) and self._n_tail == len(self._tail) and (
            Path(spilled).parent.resolve() == path.parent.resolve()
        ):
            self._tail.flush()
            os.replace(spilled, path)
            self._tail.filename = str(path)  # the map's file is the same inode under its new name
            return
        tmp = path.with_name(path.name + ".tmp")
        shape = (len(self), self.dim)
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
        nb = len(self._base)
        for i in range(0, nb, chunk):
            out[i : min(i + chunk, nb)] = self._base[i : i + chunk]
        out[nb:] = self._tail[: self._n_tail]
        out.flush()
        del out
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, dim: int) -> HalfVectors:
        """Memory-map `path` read-only; it must hold float16 rows of `dim` columns."""
        base = np.load(path, mmap_mode="r")
        if base.dtype != np.float16 or base.ndim != 2 or base.shape[1] != dim:
            raise ModelError(
                f"{path} holds {base.dtype} {base.shape}; expected float16 (n, {dim})"
            )
        return cls(dim, base)


__all__ = ["HalfVectors", "rerank", "search_ivfpq", "trained_ivfpq", "training_rows"]
