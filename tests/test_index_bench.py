"""`python -m index.bench`'s category-filter table measures the paths the library takes."""

from __future__ import annotations

import numpy as np

from llmint.index import IndexConfig, ItemIndex


def test_sub_index_column_searches_with_the_library_s_sub_ef_search() -> None:
    """A large category's sub-index is searched with `sub_ef_search` (here 300, with `ef_search` 16),
    so the bench's sub-index recall is the one `search(category=...)` gets, not the unfiltered ef's."""
    from index.bench import BenchConfig, bench_filters, synthetic

    n, nq = 3_000, 20
    x, cats = synthetic(n + nq, 32, 0)
    ids = [str(i) for i in range(n)]
    flat = ItemIndex.build(ids, x[:n], cats[:n], IndexConfig(kind="flat", device="cpu"))
    hnsw = ItemIndex.build(ids, x[:n], cats[:n], IndexConfig(kind="hnsw", device="cpu", hnsw_m=16,
                                                              ef_search=16, sub_ef_search=300))
    out = bench_filters(flat, hnsw, x[n:], cats[:n], BenchConfig(dim=32, selectivities=(0.2,), n_filter_queries=nq))
    rows = out["rows"]
    assert [r["filter"] for r in rows] == ["clustered", "clustered", "random"]
    assert all(r["subindex"]["ef"] == 300 for r in rows)
    assert all(r["subindex"]["recall@10"] >= 0.99 for r in rows)  # a sub-index of <= 20% at ef 300: near exact
    assert np.isfinite([r["subindex"]["p50_ms"] for r in rows]).all()
