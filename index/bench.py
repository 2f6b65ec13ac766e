"""Benchmark product retrieval: recall@10 against exact search, latency, build time, memory.

    python -m index.bench                       # 100k and 1M synthetic items + Office quality
    python -m index.bench --sizes 100000 --no-real

Synthetic vectors are 384-d, unit norm and clustered in a two-level hierarchy
(20 top categories x 25 leaves, so a top category holds ~5% of the items and a
leaf ~0.2%), with held-out queries drawn from the same distribution. For each
size the exact `IndexFlatIP` is built and timed in the same run as the baseline,
and ratios against it are printed. Single-query latency is timed one query at a
time with `--threads` OpenMP threads (1 by default: faiss parallelises over
queries, so one query gains nothing from more threads and an oversubscribed
box loses); the library's own cap (`IndexConfig.single_query_threads`) is also
measured on and off with faiss set to all cores. Category filters compare three
mechanisms against exact search within the category: exact search over the
category's vectors, HNSW over the whole catalogue with an id selector, and an
HNSW sub-index of the category alone; on clustered
categories (a top level ~5%, a leaf ~0.2%) and random subsets (0.2% to 20%); plus
the public `search(category=...)`, which picks exact or sub-index by size.
Real-item quality: Office items encoded with the bundled MiniLM, precision@10 of
a category-name query. Results go to `--out` as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from llmint.index import IndexConfig, ItemIndex

logger = logging.getLogger("index.bench")


@dataclass(frozen=True)
class BenchConfig:
    """What to measure."""

    sizes: tuple[int, ...] = field(default=(100_000, 1_000_000), metadata={"help": "items"})
    dim: int = field(default=384, metadata={"help": "vector size (MiniLM: 384)"})
    n_queries: int = field(default=1000, metadata={"help": "queries for recall and latency"})
    n_flat_latency: int = field(default=200, metadata={"help": "single queries timed on flat"})
    k: int = 10
    ef_search: tuple[int, ...] = field(default=(32, 64, 128, 256), metadata={"help": "sweep"})
    hnsw_m: int = IndexConfig.hnsw_m
    ef_construction: int = IndexConfig.ef_construction
    selectivities: tuple[float, ...] = (0.002, 0.01, 0.05, 0.2)
    n_filter_queries: int = 200
    threads: int = field(default=1, metadata={"help": "OpenMP threads for single queries"})
    real: bool = field(default=True, metadata={"help": "measure Office items with MiniLM"})
    seed: int = 0
    out: str = "runs/bench/index"


# ------------------------------------------------------------------- data


def synthetic(n: int, d: int, seed: int, n_top: int = 20, n_leaf: int = 25):
    """(unit vectors (n, d) float32, category labels "T3 > L57"): clustered, not uniform."""
    rng = np.random.default_rng(seed)
    top = rng.standard_normal((n_top, d)).astype(np.float32)
    top /= np.linalg.norm(top, axis=1, keepdims=True)
    leaf = np.repeat(top, n_leaf, 0) + 0.8 * rng.standard_normal((n_top * n_leaf, d)).astype(
        np.float32
    ) / np.sqrt(d)
    leaf /= np.linalg.norm(leaf, axis=1, keepdims=True)
    lab = rng.integers(0, n_top * n_leaf, n)
    x = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 100_000):  # chunked: 1M x 384 noise at once would double memory
        e = min(n, s + 100_000)
        x[s:e] = leaf[lab[s:e]] + 0.9 * rng.standard_normal((e - s, d)).astype(
            np.float32
        ) / np.sqrt(d)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    names = [f"T{t} > L{t * n_leaf + j}" for t in range(n_top) for j in range(n_leaf)]
    return x, [names[i] for i in lab.tolist()]


# ---------------------------------------------------------------- helpers


def recall(got: list[list[str]], want: list[list[str]], k: int) -> float:
    return float(
        np.mean([len(set(g[:k]) & set(w[:k])) / k for g, w in zip(got, want, strict=True)])
    )


def ids(hits) -> list[list[str]]:
    return [[h.item_id for h in row] for row in hits]


def timed_single(fn, queries: np.ndarray) -> dict[str, float]:
    """p50/p99/mean milliseconds of fn(one query) over the rows of `queries`."""
    lat = []
    for i in range(len(queries)):
        t = time.perf_counter()
        fn(queries[i : i + 1])
        lat.append(time.perf_counter() - t)
    ms = np.array(lat) * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


def index_bytes(idx: ItemIndex) -> int:
    import faiss

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.faiss")
        faiss.write_index(idx._index, path)
        return os.path.getsize(path)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------- one size


def bench_size(n: int, cfg: BenchConfig) -> dict[str, Any]:
    import faiss

    build_threads = os.cpu_count() or 1
    out: dict[str, Any] = {"n": n}
    x, cats = synthetic(n + cfg.n_queries, cfg.dim, cfg.seed)
    xb, xq, cb = x[:n], x[n:], cats[:n]
    item_ids = [str(i) for i in range(n)]
    del x

    faiss.omp_set_num_threads(build_threads)
    r0, t = rss_mb(), time.perf_counter()
    flat = ItemIndex.build(item_ids, xb, cb, IndexConfig(kind="flat", device="cpu"))
    out["flat"] = {
        "build_s": time.perf_counter() - t,
        "index_mb": index_bytes(flat) / 2**20,
        "rss_delta_mb": rss_mb() - r0,
    }
    t = time.perf_counter()
    exact = ids(flat.search(xq, cfg.k))
    out["flat"]["batch_qps"] = len(xq) / (time.perf_counter() - t)
    faiss.omp_set_num_threads(cfg.threads)
    out["flat"] |= timed_single(lambda q: flat.search(q, cfg.k), xq[: cfg.n_flat_latency])
    logger.info("n=%d flat: %s", n, out["flat"])

    faiss.omp_set_num_threads(build_threads)
    hcfg = IndexConfig(
        kind="hnsw", device="cpu", hnsw_m=cfg.hnsw_m, ef_construction=cfg.ef_construction
    )
    r0, t = rss_mb(), time.perf_counter()
    hnsw = ItemIndex.build(item_ids, xb, cb, hcfg)
    out["hnsw"] = {
        "build_s": time.perf_counter() - t,
        "index_mb": index_bytes(hnsw) / 2**20,
        "rss_delta_mb": rss_mb() - r0,
        "M": cfg.hnsw_m,
        "ef_construction": cfg.ef_construction,
        "sweep": [],
    }
    logger.info("n=%d hnsw built in %.1fs", n, out["hnsw"]["build_s"])
    for ef in cfg.ef_search:
        hnsw.cfg = replace(hcfg, ef_search=ef)
        faiss.omp_set_num_threads(build_threads)
        t = time.perf_counter()
        got = ids(hnsw.search(xq, cfg.k))
        qps = len(xq) / (time.perf_counter() - t)
        faiss.omp_set_num_threads(cfg.threads)
        row = {"ef_search": ef, "recall@10": recall(got, exact, cfg.k), "batch_qps": qps}
        row |= timed_single(lambda q: hnsw.search(q, cfg.k), xq)
        out["hnsw"]["sweep"].append(row)
        logger.info("n=%d hnsw ef=%d: %s", n, ef, row)
    # faiss's global setting at all cores: the library's one-query thread cap on and off
    faiss.omp_set_num_threads(build_threads)
    for cap in (1, 0):
        hnsw.cfg = replace(hcfg, single_query_threads=cap)
        out["hnsw"][f"all_cores_cap{cap}"] = timed_single(lambda q: hnsw.search(q, cfg.k), xq[:300])
    hnsw.cfg = hcfg
    faiss.omp_set_num_threads(cfg.threads)
    out["filters"] = bench_filters(flat, hnsw, xq, cb, cfg)
    return out


def bench_filters(
    flat: ItemIndex, hnsw: ItemIndex, xq: np.ndarray, cb: list[str], cfg: BenchConfig
) -> dict[str, Any]:
    """Category restriction: three mechanisms and the public path, recall vs exact.

    Filters: a top-level category (~5%) and a leaf (~0.2%) of the clustered hierarchy
    (their items sit together, mostly away from the query), and random subsets (spread out).
    """
    from llmint.index import new_faiss_index
    from llmint.index_faiss import search_params
    from llmint.index_filter import filter_ef

    qs = xq[: cfg.n_filter_queries]
    nq = len(qs)
    n = len(cb)
    rng = np.random.default_rng(cfg.seed + 1)
    counts: dict[str, int] = {}
    for c in cb:
        counts[c] = counts.get(c, 0) + 1
    leaf = max(counts, key=counts.get)
    filters: list[tuple[str, str, np.ndarray]] = []
    for cat in (leaf.split(" > ")[0], leaf):
        filters.append(("clustered", cat, flat._catalogue.candidates(cat)))
    for s in cfg.selectivities:
        cands = np.sort(rng.choice(n, max(cfg.k, int(s * n)), replace=False)).astype(np.int64)
        filters.append(("random", f"random {s:.1%}", cands))
    rows = []
    for kind, name, cands in filters:
        vecs = flat._index.reconstruct_batch(cands)
        want = [[str(cands[j]) for j in np.argsort(-r)[: cfg.k]] for r in qs @ vecs.T]
        row: dict[str, Any] = {
            "filter": kind,
            "name": name,
            "items": len(cands),
            "share": len(cands) / n,
        }
        key = "bench:" + name

        def exact(q, key=key, cands=cands):
            return hnsw._filter.exact_subset(hnsw, q, cfg.k, key, cands)

        t = time.perf_counter()
        exact(qs[:1])
        first = (time.perf_counter() - t) * 1e3  # copies the category's vectors
        cached = len(cands) * flat.dim * 4 <= hnsw.cfg.filter_cache_mb * 2**20
        row["exact"] = {"first_query_ms": first, "recall@10": 1.0, "cached": cached}
        row["exact"] |= timed_single(exact, qs if cached else qs[:10])
        hnsw._filter.cache.pop("flat:" + key, None)

        sel = hnsw._filter.selector(hnsw, key, cands)
        ef = filter_ef(hnsw.cfg, len(cands), n)
        params = search_params(hnsw.kind, ef, sel)
        got = [
            [
                str(lab)
                for lab in hnsw._index.search(qs[i : i + 1], cfg.k, params=params)[1][0]
                if lab >= 0
            ]
            for i in range(nq)
        ]
        row["selector"] = {"ef": ef, "recall@10": recall(got, want, cfg.k)}
        row["selector"] |= timed_single(
            lambda q, p=params: hnsw._index.search(q, cfg.k, params=p), qs
        )
        hnsw._filter.cache.pop("sel:" + key, None)

        t = time.perf_counter()
        sub = new_faiss_index("hnsw", flat.dim, hnsw.cfg)
        sub.add_with_ids(vecs, cands)
        build_s = time.perf_counter() - t
        sub_ef = max(hnsw.cfg.sub_ef_search, hnsw.cfg.ef_search)  # what the library searches a sub-index with
        sp = search_params(hnsw.kind, sub_ef)
        got = [
            [str(lab) for lab in sub.search(qs[i : i + 1], cfg.k, params=sp)[1][0] if lab >= 0]
            for i in range(nq)
        ]
        row["subindex"] = {"build_s": build_s, "ef": sub_ef, "recall@10": recall(got, want, cfg.k)}
        row["subindex"] |= timed_single(lambda q, s=sub, p=sp: s.search(q, cfg.k, params=p), qs)
        del sub
        if kind == "clustered":  # the public path, which picks exact or sub-index by size
            t = time.perf_counter()
            hnsw.search(qs[:1], cfg.k, category=name)
            public_first = (time.perf_counter() - t) * 1e3
            got = ids(hnsw.search(qs, cfg.k, category=name))
            row["public"] = {
                "path": "exact" if len(cands) <= hnsw.cfg.exact_filter_max else "sub-index",
                "first_query_ms": public_first,
                "recall@10": recall(got, want, cfg.k),
            }
            row["public"] |= timed_single(lambda q, c=name: hnsw.search(q, cfg.k, category=c), qs)
        rows.append(row)
        logger.info("filter %s", row)
    return {"rows": rows}


# --------------------------------------------------------------- real items


def bench_real(cfg: BenchConfig) -> dict[str, Any]:
    """Office items with the bundled MiniLM: encode time and category-name precision@10."""
    import faiss

    from llmint.embed import item_text, load_embedder
    from llmint.loaders import load_dataset

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    ds = load_dataset("office")
    items = list(ds.items.values())
    t = time.perf_counter()
    emb = load_embedder()
    out: dict[str, Any] = {
        "items": len(items),
        "embedder": emb.name,
        "load_s": time.perf_counter() - t,
    }
    variants = {
        "item_text": [item_text(it) for it in items],
        "title_only": [it.title for it in items],
    }
    for name, texts in variants.items():
        t = time.perf_counter()
        vecs = emb.encode(texts)
        out[f"encode_s_{name}"] = time.perf_counter() - t
        idx = ItemIndex.build(
            [it.item_id for it in items],
            vecs,
            [it.category_path or None for it in items],
            IndexConfig(kind="flat", device="cpu"),
            embedder=emb,
        )
        for level in (2, 3):
            groups: dict[tuple[str, ...], int] = {}
            for it in items:
                if len(it.category_path) >= level:
                    p = it.category_path[:level]
                    groups[p] = groups.get(p, 0) + 1
            paths = sorted(p for p, c in groups.items() if c >= cfg.k)
            hits = idx.search_text([p[-1] for p in paths], cfg.k)
            precs = [
                np.mean([ds.items[h.item_id].category_path[:level] == p for h in row])
                for p, row in zip(paths, hits, strict=True)
            ]
            out[f"p@10_level{level}_{name}"] = float(np.mean(precs))
            out[f"n_categories_level{level}"] = len(paths)
    logger.info("real: %s", out)
    return out


# ------------------------------------------------------------------- main


def main(cfg: BenchConfig) -> Path:
    import faiss

    results: dict[str, Any] = {
        "config": asdict(cfg),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "faiss": faiss.__version__,
            "numpy": np.__version__,
        },
        "sizes": [],
    }
    outdir = Path(cfg.out)
    outdir.mkdir(parents=True, exist_ok=True)
    for n in cfg.sizes:
        results["sizes"].append(bench_size(n, cfg))
        (outdir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    if cfg.real:
        results["real"] = bench_real(cfg)
    (outdir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    print(report(results))
    return outdir


def report(results: dict[str, Any]) -> str:
    """The tables printed at the end (also rebuildable from results.json)."""
    lines = [
        "| items | index | build s | index MB | recall@10 | p50 ms | p99 ms | batch q/s |"
        " p99 vs flat |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["sizes"]:
        f, h = r["flat"], r["hnsw"]
        lines.append(
            f"| {r['n']:,} | flat (exact) | {f['build_s']:.1f} | {f['index_mb']:.0f} | 1.000"
            f" | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} | {f['batch_qps']:.0f} | 1.00 |"
        )
        for s in h["sweep"]:
            lines.append(
                f"| {r['n']:,} | HNSW M={h['M']} efC={h['ef_construction']} ef={s['ef_search']} "
                f"| {h['build_s']:.1f} | {h['index_mb']:.0f} | {s['recall@10']:.4f} "
                f"| {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['batch_qps']:.0f} "
                f"| {s['p99_ms'] / f['p99_ms']:.3f} |"
            )
    lines += [
        "",
        "| items | faiss threads | one-query cap | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for r in results["sizes"]:
        for cap in (1, 0):
            t = r["hnsw"].get(f"all_cores_cap{cap}")
            if t:
                lines.append(
                    f"| {r['n']:,} | {results['machine']['cpus']} | {cap or 'off'} "
                    f"| {t['p50_ms']:.2f} | {t['p99_ms']:.2f} |"
                )
    lines += [
        "",
        "| items | filter | items in it | exact: p50/p99 ms (1st query ms) "
        "| HNSW+selector: ef, recall, p50/p99 ms | sub-index: build s, ef, recall, p50/p99 ms "
        "| public search(category=): path, recall, p50/p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["sizes"]:
        for m in r["filters"]["rows"]:
            e, h, b = m["exact"], m["selector"], m["subindex"]
            p = m.get("public")
            pub = (
                f"{p['path']}, {p['recall@10']:.4f}, {p['p50_ms']:.2f}/{p['p99_ms']:.2f}"
                if p
                else ""
            )
            lines.append(
                f"| {r['n']:,} | {m['name']} | {m['items']:,} ({m['share']:.1%}) "
                f"| {e['p50_ms']:.2f}/{e['p99_ms']:.2f} ({e['first_query_ms']:.1f}) "
                f"| {h['ef']}, {h['recall@10']:.4f}, {h['p50_ms']:.2f}/{h['p99_ms']:.2f} "
                f"| {b['build_s']:.1f}, {b.get('ef', '-')}, {b['recall@10']:.4f}, {b['p50_ms']:.2f}/{b['p99_ms']:.2f} "
                f"| {pub} |"
            )
    if "real" in results:
        lines += ["", "real (Office): " + json.dumps(results["real"], sort_keys=True)]
    return "\n".join(lines)


def make_parser() -> argparse.ArgumentParser:
    d = BenchConfig()
    p = argparse.ArgumentParser(prog="python -m index.bench", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=list(d.sizes))
    p.add_argument("--queries", type=int, default=d.n_queries)
    p.add_argument("--ef-search", type=int, nargs="+", default=list(d.ef_search))
    p.add_argument("--hnsw-m", type=int, default=d.hnsw_m)
    p.add_argument("--ef-construction", type=int, default=d.ef_construction)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--no-real", action="store_true")
    p.add_argument("--out", default=d.out)
    return p


def config_from_args(a: argparse.Namespace) -> BenchConfig:
    return BenchConfig(
        sizes=tuple(a.sizes),
        n_queries=a.queries,
        ef_search=tuple(a.ef_search),
        hnsw_m=a.hnsw_m,
        ef_construction=a.ef_construction,
        threads=a.threads,
        real=not a.no_real,
        out=a.out,
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    main(config_from_args(make_parser().parse_args()))
