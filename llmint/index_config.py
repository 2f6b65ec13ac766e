"""The configuration, result type and input checks of the product-retrieval index.

`IndexConfig` says which FAISS index to build and how to search it; `Hit` is one
result. The helpers check query and item arrays where they enter the library, and
size an IVF-PQ index (`ivfpq_plan`: how many inverted lists, whether the catalogue
is large enough to train the quantizers).
This module knows nothing about embeddings, datasets or files; faiss is imported
inside the functions that need it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

SEP = " > "
KINDS = ("auto", "flat", "hnsw", "ivfpq")
PQ_CENTROIDS = 256  # 8-bit PQ codes: each sub-quantizer has 256 centroids
MIN_POINTS_PER_CENTROID = 39  # below this faiss's k-means warns (and fails below 1 point)
PQ_MIN_TRAIN = MIN_POINTS_PER_CENTROID * PQ_CENTROIDS  # 9,984 training vectors
DEVICES = ("auto", "cpu", "gpu")


@dataclass(frozen=True)
class Hit:
    """One retrieved item and its inner-product score (cosine for unit vectors)."""

    item_id: str
    score: float


@dataclass(frozen=True)
class IndexConfig:
    """Which FAISS index to build and how to search it."""

    kind: str = field(
        default="auto",
        metadata={
            "help": "'flat' (exact), 'hnsw', 'ivfpq' (IVF-PQ + exact re-rank, opt-in), "
            "or 'auto': flat below hnsw_threshold items, else hnsw"
        },
    )
    hnsw_threshold: int = field(
        default=10_000, metadata={"help": "auto picks HNSW from this many items up"}
    )
    hnsw_m: int = field(default=32, metadata={"help": "HNSW graph degree M"})
    ef_construction: int = field(default=200, metadata={"help": "HNSW efConstruction"})
    ef_search: int = field(default=128, metadata={"help": "HNSW efSearch for unfiltered queries"})
    sub_ef_search: int = field(
        default=1024, metadata={"help": "efSearch in a large category's HNSW sub-index"}
    )
    exact_filter_max: int = field(
        default=100_000,
        metadata={
            "help": "categories up to this size are searched exactly; larger: HNSW sub-index "
            "(ivfpq: the IVF with a category selector)"
        },
    )
    filter_ef_max: int = field(
        default=1024, metadata={"help": "cap on efSearch raised to skip HNSW tombstones"}
    )
    filter_cache_mb: int = field(
        default=1024, metadata={"help": "memory for the cached exact per-category indexes"}
    )
    single_query_threads: int = field(
        default=1,
        metadata={"help": "OpenMP threads while searching one query vector (0: faiss's setting)"},
    )
    device: str = field(
        default="auto", metadata={"help": "'cpu', 'gpu', or 'auto': a GPU when faiss has one"}
    )
    ivf_nlist: int = field(
        default=0,
        metadata={
            "help": "ivfpq inverted lists; 0: about 4 x sqrt(items) as a power of two, "
            "at most one list per 39 training vectors"
        },
    )
    pq_m: int = field(
        default=48, metadata={"help": "ivfpq code bytes per item (8-bit PQ); must divide dim"}
    )
    nprobe: int = field(default=64, metadata={"help": "ivfpq lists scanned per query"})
    rerank: int = field(
        default=100,
        metadata={"help": "ivfpq candidates re-scored exactly from float16 vectors (0: none)"},
    )
    train_max: int = field(
        default=200_000,
        metadata={"help": "ivfpq trains its quantizers on a seeded sample of this many vectors"},
    )
    train_seed: int = field(default=0, metadata={"help": "seed of the ivfpq training sample"})

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r}; expected one of {KINDS}")
        if self.device not in DEVICES:
            raise ValueError(f"device={self.device!r}; expected one of {DEVICES}")
        for name in ("hnsw_threshold", "hnsw_m", "ef_construction", "ef_search", "sub_ef_search", "filter_ef_max"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}; expected an int >= 1")
        for name in ("pq_m", "nprobe"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}; expected an int >= 1")
        for name in (
            "exact_filter_max",
            "filter_cache_mb",
            "single_query_threads",
            "ivf_nlist",
            "rerank",
            "train_seed",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name}={v!r}; expected an int >= 0")
        need = max(PQ_MIN_TRAIN, MIN_POINTS_PER_CENTROID * self.ivf_nlist)
        v = self.train_max
        if isinstance(v, bool) or not isinstance(v, int) or v < need:
            raise ValueError(
                f"train_max={v!r}; expected an int >= {need} (39 training vectors per centroid: "
                f"{PQ_CENTROIDS} per PQ codebook"
                + (f", ivf_nlist={self.ivf_nlist} inverted lists)" if self.ivf_nlist else ")")
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], strict: bool = True) -> IndexConfig:
        """Build from a mapping; unknown keys raise ValueError (strict) or are warned about."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            if strict:
                raise ValueError(
                    f"unknown IndexConfig keys {unknown}; expected some of {sorted(known)}"
                )
            logger.warning("ignoring unknown IndexConfig keys %s", unknown)
        return cls(**{k: v for k, v in d.items() if k in known})


def ivfpq_plan(n: int, dim: int, cfg: IndexConfig) -> tuple[int, int]:
    """(nlist, n_train) for an IVF-PQ index of `n` items of dimension `dim`.

    n_train = min(n, train_max) vectors train the quantizers; nlist is `ivf_nlist`, or
    about 4 x sqrt(n) rounded to a power of two, at most n_train // 39 and at least 1.
    Raises ValueError when `pq_m` does not divide `dim` or when fewer than
    max(9,984, 39 x nlist) vectors are there to train on (faiss's k-means needs 39 per
    centroid to train without warnings, and fails below one per centroid).

    Example:
        >>> ivfpq_plan(20_000, 64, IndexConfig(kind="ivfpq", pq_m=16))
        (512, 20000)
    """
    if dim % cfg.pq_m:
        valid = [m for m in range(1, dim + 1) if dim % m == 0]
        raise ValueError(
            f"pq_m={cfg.pq_m} does not divide the dimension {dim}; choose one of {valid}"
        )
    n_train = min(n, cfg.train_max)
    nlist = cfg.ivf_nlist
    if nlist == 0:
        auto = 2 ** round(math.log2(4 * math.sqrt(max(n, 1))))
        nlist = max(1, min(auto, n_train // MIN_POINTS_PER_CENTROID))
    need = max(PQ_MIN_TRAIN, MIN_POINTS_PER_CENTROID * nlist)
    if n_train < need:
        raise ValueError(
            f"kind='ivfpq' needs at least {need} items to train its quantizers "
            f"({PQ_MIN_TRAIN} for the {PQ_CENTROIDS}-centroid PQ codebooks"
            + (f", 39 per inverted list x ivf_nlist={nlist}" if cfg.ivf_nlist else "")
            + f"); got {n}. Use kind='flat' or 'hnsw' for a catalogue this small"
        )
    return nlist, n_train


def import_faiss() -> Any:
    import faiss

    return faiss


def num_gpus() -> int:
    faiss = import_faiss()
    try:
        return int(faiss.get_num_gpus()) if hasattr(faiss, "StandardGpuResources") else 0
    except Exception:  # noqa: BLE001 - a CPU build or a broken driver means no GPU
        return 0


def check_vectors(vectors: Any, dim: int | None, what: str = "vectors") -> np.ndarray:
    arr = np.asarray(vectors)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (n, d), got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{what} must have {dim} columns, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{what} must be floating point, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    return arr


def category_label(c: str | Sequence[str] | None) -> str | None:
    if c is None:
        return None
    if isinstance(c, str):
        return c.strip() or None
    return SEP.join(c) or None
