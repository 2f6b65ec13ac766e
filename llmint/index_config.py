"""The configuration, result type and input checks of the product-retrieval index.

`IndexConfig` says which FAISS index to build and how to search it; `Hit` is one
result. The helpers check query and item arrays where they enter the library.
This module knows nothing about embeddings, datasets or files; faiss is imported
inside the functions that need it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

SEP = " > "
KINDS = ("auto", "flat", "hnsw")
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
        metadata={"help": "'flat' (exact), 'hnsw', or 'auto': flat below hnsw_threshold items"},
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
        metadata={"help": "categories up to this size are searched exactly; larger: sub-index"},
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

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r}; expected one of {KINDS}")
        if self.device not in DEVICES:
            raise ValueError(f"device={self.device!r}; expected one of {DEVICES}")
        for name in ("hnsw_threshold", "hnsw_m", "ef_construction", "ef_search", "sub_ef_search", "filter_ef_max"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}; expected an int >= 1")
        for name in ("exact_filter_max", "filter_cache_mb", "single_query_threads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name}={v!r}; expected an int >= 0")

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
