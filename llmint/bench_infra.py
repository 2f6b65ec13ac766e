"""The machine-level sections of `llmint bench`: item index, LoRA training throughput, roofline.

Like `llmint.bench_parts` (the model-serving sections, and the `Context` they share), each
section is `section(ctx) -> {"rows": [...], ...details}` and times its baseline in the same
process. A front-end helper: `index.bench` and `finetune.train` are imported inside the
sections that use them; torch and faiss inside the functions.
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .bench import ratio, row
from .bench_parts import Context, _flops

# -------------------------------------------------------------------------------------------- index


def index(ctx: Context) -> dict[str, Any]:
    """HNSW (the library's) and IVF-PQ (raw faiss, the 100M-item candidate) vs exact flat search."""
    import faiss

    from index.bench import ids, recall, synthetic, timed_single
    from llmint.index import IndexConfig, ItemIndex

    cfg, k = ctx.cfg, 10
    n, nq, d = cfg.index_size, cfg.index_queries, 384
    x, cats = synthetic(n + nq, d, cfg.seed)
    xb, xq, item_ids = x[:n], x[n:], [str(i) for i in range(n)]
    threads = faiss.omp_get_max_threads()
    out: dict[str, Any] = {"n": n, "dim": d, "queries": nq}
    ctx.say(f"index: exact flat over {n:,} vectors")
    flat = ItemIndex.build(item_ids, xb, cats[:n], IndexConfig(kind="flat", device="cpu"))
    exact = ids(flat.search(xq, k))
    faiss.omp_set_num_threads(1)
    out["flat"] = {**timed_single(lambda q: flat.search(q, k), xq[: min(nq, 100)]), "bytes_per_vector": 4 * d}
    faiss.omp_set_num_threads(threads)
    ctx.say("index: HNSW build (library defaults)")
    t0 = time.perf_counter()
    hnsw = ItemIndex.build(item_ids, xb, cats[:n], IndexConfig(kind="hnsw", device="cpu"))
    out["hnsw"] = {"build_s": round(time.perf_counter() - t0, 1), "ef_search": hnsw.cfg.ef_search,
                   "recall@10": recall(ids(hnsw.search(xq, k)), exact, k),
                   "bytes_per_vector": len(faiss.serialize_index(hnsw._index)) / n}
    faiss.omp_set_num_threads(1)
    out["hnsw"] |= timed_single(lambda q: hnsw.search(q, k), xq)
    faiss.omp_set_num_threads(threads)
    nlist, m = int(4 * np.sqrt(n)), 48
    ctx.say(f"index: IVF{nlist},PQ{m} train + add")
    t0 = time.perf_counter()
    ivf = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
    ivf.train(xb[: min(n, 64 * nlist)])
    ivf.add(xb)
    out["ivfpq"] = {"nlist": nlist, "m": m, "build_s": round(time.perf_counter() - t0, 1),
                    "bytes_per_vector": len(faiss.serialize_index(ivf)) / n, "sweep": []}
    rows = [row("index", f"HNSW query p50 ({n:,} x {d}, ef {out['hnsw']['ef_search']}, "
                f"recall@10 {out['hnsw']['recall@10']:.3f})", round(out["hnsw"]["p50_ms"], 3), "ms",
                "exact flat p50", round(out["flat"]["p50_ms"], 3))]
    for nprobe in (16, 64):
        ivf.nprobe = nprobe
        got = [[str(j) for j in r] for r in ivf.search(xq, k)[1]]
        faiss.omp_set_num_threads(1)
        lat = timed_single(lambda q: ivf.search(q, k), xq)
        faiss.omp_set_num_threads(threads)
        s = {"nprobe": nprobe, "recall@10": recall(got, exact, k), **lat}
        out["ivfpq"]["sweep"].append(s)
        rows.append(row("index", f"IVF-PQ query p50 (nprobe {nprobe}, recall@10 {s['recall@10']:.3f}, "
                        f"{out['ivfpq']['bytes_per_vector']:.0f} B/vector)", round(s["p50_ms"], 3), "ms",
                        "exact flat p50", round(out["flat"]["p50_ms"], 3)))
    ivf.nprobe, kr = 64, 10 * k

    def reranked(q: np.ndarray) -> np.ndarray:  # exact inner products over IVF-PQ's top kr
        cand = ivf.search(q, kr)[1]
        return np.stack([c[np.argsort(-(xb[c] @ v))[:k]] for c, v in zip(cand, q, strict=True)])

    got = [[str(j) for j in r] for r in reranked(xq)]
    faiss.omp_set_num_threads(1)
    lat = timed_single(reranked, xq)
    faiss.omp_set_num_threads(threads)
    s = {"nprobe": 64, "rerank": kr, "recall@10": recall(got, exact, k), **lat}
    out["ivfpq"]["sweep"].append(s)
    rows.append(row("index", f"IVF-PQ nprobe 64 + exact rerank of {kr} (recall@10 {s['recall@10']:.3f})",
                    round(s["p50_ms"], 3), "ms", "exact flat p50", round(out["flat"]["p50_ms"], 3)))
    out["rows"] = rows
    out["note"] = (f"synthetic clustered unit vectors (index.bench.synthetic), 1 faiss thread per query, CPU; "
                   f"bytes/vector: flat {4 * d}, HNSW {out['hnsw']['bytes_per_vector']:.0f}, "
                   f"IVF-PQ {out['ivfpq']['bytes_per_vector']:.0f}")
    if cfg.index_embed:
        try:
            out["embedding"] = embedding(ctx)
            rows.append(out["embedding"].pop("row"))
        except Exception as err:  # noqa: BLE001 - no embedder here (e.g. a GPU box without it): the index figures stay
            out["embedding"] = {"error": f"{type(err).__name__}: {err}"}
            out["note"] += f"; item embedding not measured ({out['embedding']['error']})"
    return out


def embedding(ctx: Context) -> dict[str, Any]:
    """Item texts through the bundled MiniLM: `Embedder.encode` (longest first by token count, its
    default batch) vs sentence-transformers' own `encode` (ordered by characters, batch 64), same texts."""
    from .embed import item_text, load_embedder, review_digests

    cfg, ds = ctx.cfg, ctx.ds
    items = list(ds.items.values())
    take = np.random.default_rng(cfg.seed).permutation(len(items))[: cfg.index_embed]
    digests = review_digests(ds.events)
    texts = [item_text(items[i], digests.get(items[i].item_id)) for i in take]
    emb = load_embedder(device="cuda" if cfg.device.startswith("cuda") else "cpu")
    tokens = emb.token_counts(texts)
    ctx.say(f"index: embedding {len(texts)} {ds.name} item texts, two ways")
    emb.encode(texts[:8])  # warm-up
    t0 = time.perf_counter()
    base = emb.model.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
    ctx.sync()
    t1 = time.perf_counter()
    ours = emb.encode(texts)
    ctx.sync()
    t2 = time.perf_counter()

    def padding(order: np.ndarray, bs: int) -> float:  # share of the padded batches that is padding
        lens = tokens[order]
        padded = sum(int(lens[i : i + bs].max()) * len(lens[i : i + bs]) for i in range(0, len(lens), bs))
        return round(1 - int(lens.sum()) / padded, 3)

    by_chars = np.argsort([-len(t) for t in texts], kind="stable")
    bs = emb.default_batch_size
    out = {"texts": len(texts), "tokens_mean": round(float(tokens.mean()), 1), "batch": bs,
           "baseline_s": round(t1 - t0, 2), "s": round(t2 - t1, 2),
           "padding": padding(np.argsort(-tokens, kind="stable"), bs), "baseline_padding": padding(by_chars, 64),
           "max_abs_diff": float(np.abs(ours - base).max())}
    out["row"] = row("index", f"item embedding ({len(texts)} {ds.name} items, {out['tokens_mean']:.0f} tokens "
                     f"each, token-sorted batches of {bs}, padding {out['padding']:.0%} vs "
                     f"{out['baseline_padding']:.0%})", round(len(texts) / (t2 - t1), 1), "texts/s",
                     "sentence-transformers encode, batch 64", round(len(texts) / (t1 - t0), 1), better="higher")
    return out


# --------------------------------------------------------------------------------------------- lora


def lora(ctx: Context) -> dict[str, Any]:
    """`finetune.train.main` for a few steps on a small slice; baseline: forward-only on the same batches."""
    import torch

    from finetune.config import TrainConfig
    from finetune.train import build_data, collate, completion_loss, eos_id, length_grouped_batches
    from finetune.train import main as train_main

    from .loaders import load_dataset

    cfg = ctx.cfg
    ds = ctx.lora_ds if ctx.lora_ds is not None else load_dataset(cfg.lora_dataset)
    with tempfile.TemporaryDirectory() as tmp:
        tcfg = TrainConfig(
            model=cfg.model or "smollm2-135m", dataset=ds.name, serialize={"token_budget": ctx.budget},
            max_examples=cfg.lora_steps * cfg.lora_batch, max_valid_examples=0, max_steps=cfg.lora_steps,
            batch_size=cfg.lora_batch, warmup_ratio=0.0, eval_every=0, save_every=0, log_every=1,
            device="cpu" if cfg.device == "cpu" else "cuda", out_dir=tmp, resume="never", progress=False,
            seed=cfg.seed)
        ctx.say(f"lora: {cfg.lora_steps} steps of {cfg.lora_batch} examples")
        base = copy.deepcopy(ctx.model).float()  # finetune trains a float32 base (autocast on GPUs)
        adapter = train_main(tcfg, dataset=ds, model=base, tokenizer=ctx.tok)
        metrics = json.loads((adapter / "metrics.json").read_text())
        steps = [h["step_s"] for h in metrics["history"] if h["event"] == "train"]
        data = build_data(tcfg, ds, ctx.tok)
    del base
    train = data["train"]
    batches = length_grouped_batches([len(t.input_ids) for t in train], cfg.lora_batch, cfg.seed, tcfg.length_group)
    batches = (batches * cfg.lora_steps)[: cfg.lora_steps]  # the batches the run trained on, in order
    pad = ctx.tok.pad_token_id if ctx.tok.pad_token_id is not None else eos_id(ctx.tok)
    dev = next(ctx.model.parameters()).device
    fwd = []
    ctx.say("lora: forward-only baseline on the same batches")
    with torch.no_grad():
        for b in batches:
            c = {k: (v.to(dev) if hasattr(v, "to") else v) for k, v in collate([train[i] for i in b], pad).items()}
            ctx.sync()
            t0 = time.perf_counter()
            completion_loss(ctx.model, c)
            ctx.sync()
            fwd.append(time.perf_counter() - t0)
    timed = steps[1:] if len(steps) > 1 else steps  # the first step is warm-up
    step_s, fwd_s = float(np.median(timed)), float(np.median(fwd[1:] if len(fwd) > 1 else fwd))
    tokens = [sum(len(train[i].input_ids) for i in b) for b in batches]
    rows = [row("lora", f"LoRA training, batch {cfg.lora_batch}", round(cfg.lora_batch / step_s, 3), "examples/s",
                "forward-only on the same batches", round(cfg.lora_batch / fwd_s, 3), better="higher")]
    return {"step_s": [round(s, 3) for s in steps], "forward_s": [round(s, 3) for s in fwd],
            "examples_per_s": round(cfg.lora_batch / step_s, 3), "tokens_per_batch": tokens,
            "mixed_precision": metrics.get("mixed_precision"), "trainable_params": metrics.get("trainable_params"),
            "dataset": ds.name, "rows": rows,
            "note": f"{ds.name}, history budget {ctx.budget} tokens, {metrics.get('mixed_precision')} mixed "
                    f"precision, median step after the first; train/forward time ratio "
                    f"{ratio(step_s, fwd_s)}"}


# ----------------------------------------------------------------------------------------- roofline


def machine_rates(device: str, dtype: Any = None, reps: int = 5) -> dict[str, float]:
    """This machine's matmul rates and memory bandwidth, in `dtype` (default float32), at torch's
    current thread count: `matmul_gflops` at SmolLM2's MLP shape (512x576 @ 576x1536: what one
    shopper's forward pass does; on a GPU a product this small is bound by kernel launches),
    `peak_matmul_gflops` on a large square product (4096 on a GPU, 1024 on a CPU: what batching
    can reach), and `bandwidth_gbs` copying 256 MiB."""
    import torch

    dev = torch.device(device)
    dt = dtype or torch.float32
    a, b = torch.randn(512, 576, device=dev, dtype=dt), torch.randn(576, 1536, device=dev, dtype=dt)
    n = 4096 if device.startswith("cuda") else 1024
    big = torch.randn(n, n, device=dev, dtype=dt)
    src = torch.empty(64 * 2**20, device=dev)
    dst = torch.empty_like(src)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def best(fn: Callable[[], Any]) -> float:
        fn()
        ts = []
        for _ in range(reps):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    t_mm = best(lambda: [a @ b for _ in range(10)])
    t_big = best(lambda: [big @ big for _ in range(3)])
    t_cp = best(lambda: dst.copy_(src))
    return {"matmul_gflops": round(10 * 2 * 512 * 576 * 1536 / t_mm / 1e9, 1),
            "peak_matmul_gflops": round(3 * 2 * n**3 / t_big / 1e9, 1),
            "bandwidth_gbs": round(2 * src.numel() * 4 / t_cp / 1e9, 1), "dtype": str(dt).removeprefix("torch.")}


def roofline(ctx: Context) -> dict[str, Any]:
    """FLOPs and bytes of one shopper's scoring (trie, batch 1) and of one decode step, vs measured rates."""
    sb = ctx.results.get("scoring", {}).get("budgets", {}).get(str(ctx.budget))
    gen = ctx.results.get("generation")
    sc = ctx.scorer("trie", 1)
    p = sb["prompt_tokens"]["mean"] if sb else float(np.mean([len(x) for x in ctx.prompts(2)]))
    f = _flops(ctx, p, sc.n_label_tokens)
    bpp = next(ctx.model.parameters()).element_size()
    weight_bytes = f["params"] * bpp
    c = ctx.model.config
    kv = 2 * c.num_hidden_layers * c.num_key_value_heads * (c.hidden_size // c.num_attention_heads) * bpp
    score_bytes = 2 * weight_bytes + kv * (p + sc.n_label_tokens) * 2  # 2 passes read the weights; KV written+read
    rates = machine_rates(ctx.cfg.device, next(ctx.model.parameters()).dtype)
    ridge = rates["matmul_gflops"] / rates["bandwidth_gbs"]
    out: dict[str, Any] = {"prompt_tokens": p, "label_tokens": sc.n_label_tokens, "flops": f,
                           "bytes_scoring": score_bytes, "intensity_flop_per_byte": f["total"] / score_bytes,
                           "rates": rates, "ridge_flop_per_byte": round(ridge, 1)}
    t_compute = f["total"] / (rates["matmul_gflops"] * 1e9)
    t_memory = score_bytes / (rates["bandwidth_gbs"] * 1e9)
    out["scoring_floor_ms"] = {"compute": round(t_compute * 1000, 1), "memory": round(t_memory * 1000, 1)}
    rows = []
    if sb:
        meas = sb["methods"]["trie"]["p50_ms"] / 1000
        out["attained_gflops"] = round(f["total"] / meas / 1e9, 1)
        rows.append(row("roofline", f"scoring: {f['total'] / 1e9:.0f} GFLOP/shopper attained rate",
                        out["attained_gflops"], "GFLOP/s", "matmul rate of this machine", rates["matmul_gflops"],
                        better="higher"))
    # batched, the weights are read once per batch: the floor is the FLOPs at the large-product rate
    out["throughput_floor_shoppers_per_s"] = round(rates["peak_matmul_gflops"] * 1e9 / f["total"], 1)
    thr = ctx.results.get("throughput", {})
    by_mode = thr.get("shoppers_per_s_by_mode") or {"trie": thr.get("shoppers_per_s") or {}}
    best = max((v for per in by_mode.values() for v in per.values()), default=None)
    if best is not None:
        rows.append(row("roofline", "shoppers/s at the best batch vs the FLOP floor at the peak matmul rate",
                        best, "shoppers/s", "floor (peak rate / FLOPs per shopper)",
                        out["throughput_floor_shoppers_per_s"], better="higher"))
    step_flops, step_bytes = 2.0 * f["params"], weight_bytes + kv * (p + ctx.cfg.gen_tokens)
    out["decode_step"] = {"flops": step_flops, "bytes": step_bytes, "intensity": step_flops / step_bytes,
                          "floor_ms": {"compute": round(step_flops / rates["matmul_gflops"] / 1e6, 2),
                                       "memory": round(step_bytes / rates["bandwidth_gbs"] / 1e6, 2)}}
    if gen:
        out["decode_step"]["measured_ms"] = round(1000 / gen["tokens_per_s"], 1)
    bound = "compute" if out["intensity_flop_per_byte"] > ridge else "memory"
    out["summary"] = (
        f"scoring one shopper = {f['total'] / 1e9:.0f} GFLOP ({p:.0f} prompt + {sc.n_label_tokens} trie tokens; "
        f"attention {f['attention_share']:.0%}) over {score_bytes / 1e6:.0f} MB of weights and KV: "
        f"{out['intensity_flop_per_byte']:.0f} FLOP/byte vs this machine's ridge {ridge:.1f} "
        f"({rates['matmul_gflops']} GFLOP/s matmul, {rates['bandwidth_gbs']} GB/s copy), so {bound}-bound; floor "
        f"{out['scoring_floor_ms']['compute']} ms compute vs {out['scoring_floor_ms']['memory']} ms memory"
        + (f", measured {sb['methods']['trie']['p50_ms']:.0f} ms ({out['attained_gflops']} GFLOP/s attained)"
           if sb else "")
        + f". Batched, at the peak {rates['dtype']} matmul rate ({rates['peak_matmul_gflops']} GFLOP/s on a "
        f"large product) the floor is {out['throughput_floor_shoppers_per_s']} shoppers/s"
        + (f", measured {best} at the best batch" if best is not None else "")
        + f". A decode step: {step_flops / 1e9:.2f} GFLOP over {step_bytes / 1e6:.0f} MB = "
        f"{out['decode_step']['intensity']:.1f} FLOP/byte, memory-bound; floor "
        f"{out['decode_step']['floor_ms']['memory']} ms"
        + (f", measured {out['decode_step']['measured_ms']} ms." if gen else "."))
    out["rows"] = rows
    return out
