"""FAISS helpers of the product-retrieval index that know nothing about items.

They make empty indexes (`new_faiss_index`) and exact flat ones (`flat_index`), build
search parameters for an index kind, efSearch and id selector (`search_params`), make an
`IDSelectorBitmap` over int64 labels (`bitmap_selector`), decide on and make a GPU copy
(`wants_gpu`, `gpu_copy`) and run one search with OpenMP capped for a single query
(`run_search`). Labels are opaque int64s here: this module knows nothing about item
ids, categories, embeddings or files. faiss is imported inside the functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .index_config import IndexConfig, import_faiss, num_gpus


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


def reserve(index: Any, n: int) -> None:
    """Make room in a `new_faiss_index` (empty, or a resumed build's) for `n` vectors' codes,
    so adding them a chunk at a time never reallocates them: each reallocation of a growing
    std::vector holds the old and the new copy at once (measured: 200k x 384 flat added 8,192
    at a time peaked at 419 MB, 304 MB reserved). Resizing up then back keeps the capacity
    (std::vector never shrinks it).
    Anything else (IVF-PQ's per-list codes) is left alone."""
    inner = import_faiss().downcast_index(getattr(index, "index", index))
    store = import_faiss().downcast_index(inner.storage) if hasattr(inner, "storage") else inner
    codes = getattr(store, "codes", None)
    if n <= index.ntotal or codes is None or not hasattr(codes, "resize"):
        return
    held = codes.size()
    codes.resize(n * store.code_size)
    codes.resize(held)


def flat_index(vectors: np.ndarray) -> Any:
    """An `IndexFlatIP` holding `vectors` (n, d) float32; its labels are the row positions."""
    index = import_faiss().IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index


def search_params(kind: str, ef: int, sel: Any = None) -> Any:
    """Search parameters: efSearch `ef` for kind 'hnsw' (ignored otherwise) and the id
    selector `sel` when given; None for a non-HNSW index without a selector."""
    faiss = import_faiss()
    if kind == "hnsw":
        return (
            faiss.SearchParametersHNSW(efSearch=int(ef), sel=sel)
            if sel is not None
            else faiss.SearchParametersHNSW(efSearch=int(ef))
        )
    return faiss.SearchParameters(sel=sel) if sel is not None else None


def bitmap_selector(labels: np.ndarray, n: int) -> tuple[Any, np.ndarray]:
    """An `IDSelectorBitmap` keeping `labels` out of 0..n-1, and the bitmap it reads:
    the selector points into the bitmap, so keep the bitmap alive as long as the selector."""
    faiss = import_faiss()
    mask = np.zeros(n, dtype=bool)
    mask[labels] = True
    bits = np.packbits(mask, bitorder="little")
    return faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits)), bits


def run_search(
    index: Any, q: np.ndarray, k: int, params: Any, threads: int
) -> tuple[np.ndarray, np.ndarray]:
    """index.search(q, k), with OpenMP capped at `threads` for one query (0: no cap).

    faiss parallelises over queries, so one query gains nothing from more threads;
    on a busy 2-core box the idle threads' barrier cost p50 8 ms instead of 0.5 ms
    (index/bench.py). The cap is process-wide while the call runs and then restored.
    """
    if len(q) != 1 or threads <= 0:
        return index.search(q, k, params=params)
    faiss = import_faiss()
    before = faiss.omp_get_max_threads()
    if before <= threads:
        return index.search(q, k, params=params)
    faiss.omp_set_num_threads(threads)
    try:
        return index.search(q, k, params=params)
    finally:
        faiss.omp_set_num_threads(before)


def wants_gpu(cfg: IndexConfig) -> bool:
    """Does `cfg` ask for the GPU ('gpu', or 'auto' when faiss sees one)?"""
    return cfg.device == "gpu" or (cfg.device == "auto" and num_gpus() > 0)


def gpu_copy(index: Any) -> Any:
    """A copy of `index` on every GPU faiss sees; raises when it cannot make one."""
    return import_faiss().index_cpu_to_all_gpus(index)


__all__ = [
    "bitmap_selector",
    "flat_index",
    "gpu_copy",
    "new_faiss_index",
    "run_search",
    "search_params",
    "wants_gpu",
]
