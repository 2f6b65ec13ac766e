"""The model-serving sections of `llmint bench` (scoring, throughput, levers, generation, predict)
and the `Context` every section shares; one function per section: `section(ctx) -> {"rows": [...], ...}`.

Every section times its baseline in the same process (see `llmint.bench`). Prompts are real:
test-split shoppers of the dataset, serialised with the section's token budget, in the chat
template the model reads. torch and transformers are imported inside the functions. The
index, LoRA and roofline sections are in `llmint.bench_infra`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .bench import BenchConfig, ratio, row


def _ms(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs, dtype=np.float64) * 1000.0
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "n": len(xs)}


class Context:
    """What the sections share: config, dataset, model, prompts per budget, earlier sections' results."""

    def __init__(self, cfg: BenchConfig, dataset: Any, loaded: Any, say: Callable[[str], None],
                 lora_dataset: Any = None) -> None:
        import torch

        from .split import SplitConfig, make_split

        self.cfg, self.ds, self.loaded, self.say = cfg, dataset, loaded, say
        self.lora_ds = lora_dataset
        self.model, self.tok = loaded.model, loaded.tokenizer
        self.split = make_split(dataset.histories(), SplitConfig(seed=cfg.seed))
        self.budget = cfg.history_tokens[0]  # the token budget of every section but scoring
        self.results: dict[str, Any] = {}
        self._rankers: dict[int, Any] = {}
        cuda = cfg.device.startswith("cuda")
        self.sync: Callable[[], None] = torch.cuda.synchronize if cuda else (lambda: None)

    def ranker(self, budget: int) -> Any:
        from .llm_ranker import LLMCategoryRanker, LLMRankerConfig

        if budget not in self._rankers:
            rcfg = LLMRankerConfig(model=self.cfg.model, device=self.cfg.device, dtype=self.cfg.dtype,
                                   serialize={"token_budget": budget})
            self._rankers[budget] = LLMCategoryRanker(
                "bench", self.ds, self.cfg.level or self.ds.default_level, rcfg, loaded=self.loaded)
        return self._rankers[budget]

    def histories(self, n: int) -> list[Any]:
        """`n` seeded test shoppers' histories (the same shoppers as `bench_scoring`)."""
        take = np.random.default_rng(self.cfg.seed).permutation(len(self.split.test))[:n]
        return [self.split.test[i].history for i in take]

    def prompts(self, n: int, budget: int | None = None) -> list[list[int]]:
        """Token ids of `n` seeded test shoppers' prompts (the same shoppers as `bench_scoring`)."""
        r = self.ranker(budget or self.budget)
        return [r.prompt_ids(h) for h in self.histories(n)]

    @property
    def labels(self) -> list[str]:
        return list(self.ranker(self.budget).taxonomy.labels)

    def scorer(self, mode: str = "trie", batch_size: int = 1, model: Any = None) -> Any:
        """A scorer of the bench's labels over `model` (default: the bench's model)."""
        from .scoring import CategoryScorer

        return CategoryScorer(self.model if model is None else model, self.tok, self.labels, label_prefix="",
                              terminator="\n", mode=mode, batch_size=batch_size)

    def free(self) -> None:
        """Give back what a failed step left allocated (CUDA's cache; nothing to do on a CPU)."""
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def time_each(self, fn: Callable[[Any], Any], items: list[Any], warmup: int | None = None,
                  ) -> tuple[list[float], list[Any]]:
        """Seconds per call of `fn` on each item (device synchronised), after `warmup` calls
        (default: the config's) on the first item; and the outputs."""
        for _ in range(self.cfg.warmup if warmup is None else warmup):
            fn(items[0])
        times, outs = [], []
        for it in items:
            self.sync()
            t0 = time.perf_counter()
            outs.append(fn(it))
            self.sync()
            times.append(time.perf_counter() - t0)
        return times, outs


# ------------------------------------------------------------------------------------------ scoring


def scoring(ctx: Context) -> dict[str, Any]:
    """`bench_scoring.run` once per token budget: naive vs flat vs trie vs trie batched."""
    from . import bench_scoring

    cfg, out, rows = ctx.cfg, {}, []
    for budget in cfg.history_tokens:
        ctx.say(f"scoring, history budget {budget} tokens")
        bcfg = bench_scoring.BenchScoringConfig(
            dataset=ctx.ds.name, level=cfg.level, model=cfg.model, n_shoppers=cfg.n_shoppers, batch=cfg.batch,
            device=cfg.device, dtype=cfg.dtype, seed=cfg.seed, warmup=cfg.warmup,
            serialize={"token_budget": budget}, n_naive=cfg.n_naive, naive_labels=cfg.naive_labels,
            graph_bucket=cfg.graph_bucket)
        r = bench_scoring.run(bcfg, ctx.say, dataset=ctx.ds, loaded=ctx.loaded)
        out[str(budget)] = r
        m = r["methods"]
        naive = m["naive"]["p50_ms"]
        tag = f"history {budget} tok (prompt {r['prompt_tokens']['mean']:.0f})"
        for name, label in (("trie", "trie, batch 1"), ("flat", "flat, batch 1"),
                            ("trie_prefix", "trie + shared prefix, batch 1"),
                            (f"trie_batch{cfg.batch}", f"trie, batch {cfg.batch}"),
                            (f"trie_prefix_batch{cfg.batch}", f"trie + shared prefix, batch {cfg.batch}"),
                            ("fused_prefix", "fused + shared prefix, batch 1"),
                            (f"fused_prefix_batch{cfg.batch}", f"fused + shared prefix, batch {cfg.batch}"),
                            ("fused_graphs", "fused + CUDA graphs (prefix run with each prompt), batch 1")):
            if name in m:
                rows.append(row("scoring", f"{label} p50, {tag}", m[name]["p50_ms"], "ms/shopper",
                                "one forward per label (naive) p50", naive))
        rows.append(row("scoring", f"trie, batch 1 p99, {tag}", m["trie"]["p99_ms"], "ms/shopper",
                        "naive p99", m["naive"]["p99_ms"]))
        rows.append(row("scoring", f"trie + shared prefix, batch 1 p99, {tag}", m["trie_prefix"]["p99_ms"],
                        "ms/shopper", "naive p99", m["naive"]["p99_ms"]))
        best = "fused_graphs" if "fused_graphs" in m else "fused_prefix"
        rows.append(row("scoring", f"{best.replace('_', ' ')}, batch 1 p99, {tag}", m[best]["p99_ms"],
                        "ms/shopper", "trie + shared prefix p99 (two passes)", m["trie_prefix"]["p99_ms"]))
    diffs = [v["max_abs_diff_vs_naive"] for r in out.values() for k, v in r["methods"].items() if k != "naive"]
    goal = out.get("256", {}).get("methods", {}).get("trie_prefix", {}).get("p50_ms")
    note = f"scores match naive within {max(diffs):.1e} (log-prob); naive: {next(iter(out.values()))['naive_note']}"
    if goal is not None and ctx.cfg.device == "cpu":
        met = "met" if goal <= 1000 else "not met"
        note += f"; CPU goal p50 <= 1000 ms at a 256-token history: {met} ({goal:.0f} ms)"
    errors = [f"{b}: {r['graphs_error']}" for b, r in out.items() if "graphs_error" in r]
    if errors:
        note += "; CUDA graphs failed (" + "; ".join(errors) + ")"
    graphs = out.get("512", {}).get("methods", {}).get("fused_graphs", {}).get("p99_ms")
    if graphs is not None:
        met = "met" if graphs <= 15 else "not met"
        note += f"; GPU goal p99 <= 15 ms at batch 1, 512-token history: {met} ({graphs:.1f} ms, CUDA graphs)"
    return {"budgets": out, "max_abs_diff_vs_naive": max(diffs), "rows": rows, "note": note}


# --------------------------------------------------------------------------------------- throughput


def throughput(ctx: Context) -> dict[str, Any]:
    """Shoppers/s at each batch size on the same prompts (label pass included), after the cached shared
    prefix as the service scores: trie (two passes) and fused (one pass)."""
    from .llm_ranker import shared_prefix_ids

    cfg = ctx.cfg
    prompts = ctx.prompts(cfg.n_throughput)
    prefix = shared_prefix_ids(ctx.tok, ctx.ranker(ctx.budget).prompt_template)
    modes: dict[str, dict[str, float]] = {}
    errors: dict[str, str] = {}
    for mode in ("trie", "fused"):
        per = modes.setdefault(mode, {})
        for bs in cfg.batch_sizes:
            ctx.say(f"throughput, {mode}, batch {bs}")
            sc = ctx.scorer(mode, bs)
            sc.set_prefix(prefix)
            try:  # a batch too large for the device's memory is recorded; the other sizes still run
                for _ in range(cfg.warmup):
                    sc.score(prompts[:bs])
                ctx.sync()
                t0 = time.perf_counter()
                sc.score(prompts)
                ctx.sync()
            except RuntimeError as e:  # torch.OutOfMemoryError is one
                errors[f"{mode}_{bs}"] = f"{type(e).__name__}: {e}"[:300]
                del sc
                ctx.free()
                continue
            per[str(bs)] = round(len(prompts) / (time.perf_counter() - t0), 3)
    modes = {m: per for m, per in modes.items() if per}
    if not modes:
        raise RuntimeError(f"every batch size failed: {errors}")
    base_mode = "trie" if "trie" in modes else next(iter(modes))
    base_bs = min(modes[base_mode], key=int)
    base = modes[base_mode][base_bs]
    from .bench import peak_memory_mb

    mem = peak_memory_mb(cfg.device)
    rows, best_of = [], {}
    for mode, per in modes.items():
        best = max(per, key=per.get)
        best_of[mode] = int(best)
        rows.append(row("throughput", f"shoppers/s, {mode} + shared prefix, best batch ({best})", per[best],
                        "shoppers/s", f"{base_mode} + shared prefix, batch {base_bs}", base, better="higher"))
    rows.append(row("throughput", "peak memory so far (RSS)", mem["max_rss_mb"], "MiB"))
    if "cuda_max_allocated_mb" in mem:
        rows.append(row("throughput", "peak CUDA memory", mem["cuda_max_allocated_mb"], "MiB"))
    best_mode = max(modes, key=lambda m: modes[m][str(best_of[m])])
    best_rate = modes[best_mode][str(best_of[best_mode])]
    prep = _prep_rates(ctx)
    rows.append(row("throughput", "prompts built/s in the scoring process (the model's feed; < 1x: the model "
                    "waits for prompts)", prep["0"], "shoppers/s", f"best scoring rate ({best_mode}, batch "
                    f"{best_of[best_mode]})", best_rate, better="higher"))
    if cfg.prep_workers:
        rows.append(row("throughput", f"prompts built/s by {cfg.prep_workers} worker processes (llmint.prompt_loader, "
                        "fork included)", prep[str(cfg.prep_workers)], "shoppers/s", "in the scoring process",
                        prep["0"], better="higher"))
    crowd = _concurrent_scoring(ctx, prefix)
    lone, co = crowd["one_at_a_time"], crowd["coalesced"]
    rows.append(row("throughput", f"{cfg.concurrent} concurrent clients, one shopper per request, trie + shared "
                    f"prefix, requests/s, scored together as they arrive (llmint.coalesce, up to {cfg.concurrent}; "
                    f"p99 {co['p99_ms']} ms vs {lone['p99_ms']} ms)", co["per_s"], "requests/s",
                    "one scoring pass per request", lone["per_s"], better="higher"))
    return {"shoppers_per_s": modes.get("trie", {}), "shoppers_per_s_by_mode": modes, "best_mode": best_mode,
            "best_batch": best_of[best_mode], "shared_prefix_tokens": len(prefix), "n": len(prompts),
            "prompts_built_per_s": prep, "concurrent": crowd, "errors": errors, "rows": rows}


def _concurrent_scoring(ctx: Context, prefix: list[int]) -> dict[str, Any]:
    """`cfg.concurrent` client threads each score `cfg.n_concurrent` shoppers, one request at a time (a
    backend calling `predict(explain=False)`, without the service around it): one pass per request, in
    the order they queued, vs `Coalescer` running the requests queued meanwhile as one call (what
    `ServiceConfig.coalesce_max` does). The same scorer (trie + shared prefix, as the service scores) and
    prompts for both; their scores are compared."""
    import threading

    from .coalesce import Coalescer

    cfg = ctx.cfg
    prompts = ctx.prompts(cfg.concurrent * cfg.n_concurrent)
    sc = ctx.scorer("trie", cfg.concurrent)
    sc.set_prefix(prefix)
    for _ in range(max(cfg.warmup, 1)):  # both sizes the coalesced calls range over
        sc.score(prompts[:1])
        sc.score(prompts[: cfg.concurrent])
    lock = threading.Lock()
    # the baseline runs through a Coalescer of 1: requests served in the order they queued, as the
    # coalesced run serves them (a bare lock lets a client that asks again at once barge ahead)
    one, co = (Coalescer(sc.score, max_batch=n, lock=lock) for n in (1, cfg.concurrent))
    res: dict[str, Any] = {}
    for name, c in (("one_at_a_time", one), ("coalesced", co)):
        ctx.say(f"throughput: {cfg.concurrent} clients x {cfg.n_concurrent} requests, {name}")
        res[name] = _crowd(ctx, lambda p, c=c: c(p)[0], prompts, cfg.concurrent)
    a = np.asarray(res["one_at_a_time"].pop("outputs"), dtype=np.float64)
    b = np.asarray(res["coalesced"].pop("outputs"), dtype=np.float64)
    res["coalesced"]["passes"] = co.stats.summary()["sizes"]
    res["max_abs_diff"] = float(np.max(np.abs(a - b))) if a.size else 0.0
    res["same_top"] = int(np.sum(a.argmax(axis=1) == b.argmax(axis=1)))
    return res


def _prep_rates(ctx: Context) -> dict[str, Any]:
    """Prompts built per second for `n_prep` shoppers in chunks of 64: here, then by `prep_workers` workers
    (the same ids, checked)."""
    from .prompt_loader import prompt_chunks

    cfg = ctx.cfg
    ranker = ctx.ranker(ctx.budget)
    hs = ctx.histories(cfg.n_prep)
    chunks = [hs[s : s + 64] for s in range(0, len(hs), 64)]
    rates: dict[str, Any] = {"n": len(hs)}
    built = {}
    for w in sorted({0, cfg.prep_workers}):
        ctx.say(f"throughput, prompts built by {w} worker process(es)")
        t0 = time.perf_counter()
        built[w] = list(prompt_chunks(ranker, chunks, workers=w))
        rates[str(w)] = round(len(hs) / (time.perf_counter() - t0), 1)
    rates["same_ids"] = all(built[w] == built[0] for w in built)
    return rates


# ------------------------------------------------------------------------------------------- levers


def _decoder_layers(model: Any) -> Any:
    """The decoder layers' ModuleList of a (peft-wrapped) transformers causal LM, or None."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(getattr(inner, "model", None), "layers", None)


def _compile_lever(ctx: Context, prompts: list[list[int]], mode: str, detail: dict[str, Any]) -> dict[str, Any]:
    """Trie + shared-prefix scoring with each decoder layer compiled (`mode`) vs eager, interleaved on the
    same prompts; a failed compile (no C++ compiler, an unsupported op) is reported, not raised."""
    import copy

    import torch

    from .llm_ranker import shared_prefix_ids

    prefix = shared_prefix_ids(ctx.tok, ctx.ranker(ctx.budget).prompt_template)
    eager = ctx.scorer("trie", 1)
    eager.set_prefix(prefix)
    cuda = ctx.cfg.device.startswith("cuda")
    pred = 1.5 if cuda else 1.0
    lever = {"lever": f"torch.compile ({mode}) vs eager", "predicted": pred, "measured": None,
             "prediction": ("batch 1 on a GPU is launch-bound (~20 kernels per layer and pass): fused kernels "
                            "and CUDA graphs (reduce-overhead) cut launches" if cuda else
                            "the matmuls are most of the time and already near this CPU's matmul rate; "
                            "compile only fuses the elementwise rest (norms, rotary, SiLU): within noise")}
    model = copy.deepcopy(ctx.model)
    layers = _decoder_layers(model)
    try:
        t0 = time.perf_counter()
        if layers is None:
            model = torch.compile(model, mode=mode, dynamic=True)
        else:
            for layer in layers:
                layer.compile(mode=mode, dynamic=True)
        comp = ctx.scorer("trie", 1, model=model)
        comp.set_prefix(prefix)
        got = comp.score(prompts)  # compiles (every new length may recompile once)
        ctx.sync()
        compile_s = time.perf_counter() - t0
    except Exception as e:  # noqa: BLE001 - inductor raises many types; the bench reports and goes on
        torch.compiler.reset()
        lever.update(verdict=f"not measured: compile failed ({type(e).__name__}: {str(e)[:160]})")
        detail[f"compile_{mode}"] = {"error": f"{type(e).__name__}: {e}"[:500]}
        return lever
    ref = eager.score(prompts)
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    pairs = [("eager", eager), ("compiled", comp)]
    for order in (pairs, pairs[::-1]):  # interleaved, so a noisy minute hits both
        for name, sc in order:
            times[name] += ctx.time_each(lambda p, sc=sc: sc.score([p]), prompts, warmup=0)[0]
    del comp, model
    torch.compiler.reset()  # drop the compiled code, so later sections time the eager model alone
    t = {k: _ms(v) for k, v in times.items()}
    lever["measured"] = ratio(t["eager"]["p50_ms"], t["compiled"]["p50_ms"])
    lever["verdict"] = _verdict(lever["measured"], "compile pays (report; opt-in)", "eager faster (keep eager)")
    detail[f"compile_{mode}"] = {**t, "compile_and_first_calls_s": round(compile_s, 1),
                                 "max_abs_diff": float(np.abs(got - ref).max()),
                                 "regional": layers is not None}
    return lever


def _dtype_lever(ctx: Context, prompts: list[list[int]], detail: dict[str, Any]) -> dict[str, Any]:
    """Trie + shared-prefix scoring in bfloat16 vs float32 (a converted copy of the model), interleaved on the
    same prompts, with the largest score difference and the top-1 agreement."""
    import copy

    import torch

    from .llm_ranker import shared_prefix_ids
    from .models import dtype_name, native_bf16

    have = dtype_name(ctx.model)
    if have not in ("float32", "bfloat16"):
        return {"lever": "bfloat16 vs float32", "predicted": None, "measured": None,
                "verdict": f"not measured: the model is {have}"}
    other = copy.deepcopy(ctx.model).to(torch.bfloat16 if have == "float32" else torch.float32)
    models = {have: ctx.model, dtype_name(other): other}
    prefix = shared_prefix_ids(ctx.tok, ctx.ranker(ctx.budget).prompt_template)
    scorers = {}
    for name, m in models.items():
        scorers[name] = ctx.scorer("trie", 1, model=m)
        scorers[name].set_prefix(prefix)
    cuda = ctx.cfg.device.startswith("cuda")
    native = native_bf16(ctx.cfg.device)
    pred = 1.2 if cuda else 1.6 if native else 0.5
    scores = {k: sc.score(prompts) for k, sc in scorers.items()}  # warm-up and the score comparison
    times: dict[str, list[float]] = {k: [] for k in scorers}
    order = list(scorers.items())
    for o in (order, order[::-1]):  # interleaved, so a noisy minute hits both
        for name, sc in o:
            times[name] += ctx.time_each(lambda p, sc=sc: sc.score([p]), prompts, warmup=0)[0]
    del other, scorers
    t = {k: _ms(v) for k, v in times.items()}
    meas = ratio(t["float32"]["p50_ms"], t["bfloat16"]["p50_ms"])
    detail["dtype"] = {**t, "max_abs_diff": float(np.abs(scores["float32"] - scores["bfloat16"]).max()),
                       "top1_agreement": float((scores["float32"].argmax(1) == scores["bfloat16"].argmax(1)).mean()),
                       "native_bf16": native}
    why = ("on a GPU at batch 1 the kernels are launch-bound; bf16 halves the bytes and uses tensor cores"
           if cuda else "this CPU has native bf16 dot products (AVX512-BF16/AMX): ~2x on the matmuls, ~76% "
           "of the time" if native else "no native bf16 on this CPU: every matmul converts in software")
    return {"lever": "bfloat16 vs float32", "predicted": pred, "measured": meas, "prediction": why,
            "verdict": _verdict(meas, "bfloat16 pays (opt-in: --dtype bfloat16 or auto; ranking checked "
                                      "separately)", "float32 faster here (keep)")}


def _flops(ctx: Context, prompt_tokens: float, label_tokens: int) -> dict[str, float]:
    """FLOPs of one shopper's scoring: prompt pass + trie pass (matmuls, attention, logits)."""
    c = ctx.model.config
    d, n_layers, vocab = c.hidden_size, c.num_hidden_layers, c.vocab_size
    params = sum(p.numel() for p in ctx.model.parameters())
    body = params - vocab * d  # embedding table (tied with the output head in SmolLM2) is a lookup
    p, t = float(prompt_tokens), float(label_tokens)
    linear = 2.0 * body * (p + t)
    attn = 4.0 * n_layers * d * (p * p / 2 + t * (p + t / 2))  # QK^T and AV, causal prompt
    logits = 2.0 * vocab * d * (1 + t)  # the prompt keeps one logit row, the trie one per node
    return {"params": params, "linear": linear, "attention": attn, "logits": logits,
            "total": linear + attn + logits, "attention_share": attn / (linear + attn + logits)}


def _verdict(measured: float | None, better: str, worse: str, margin: float = 0.1) -> str:
    """`better` when measured > 1 + margin, `worse` when < 1 - margin, else "no difference beyond noise"."""
    if measured is None:
        return "not measured"
    return better if measured > 1 + margin else worse if measured < 1 - margin else "no difference beyond noise"


def levers(ctx: Context) -> dict[str, Any]:
    """Threads, attention implementation, bfloat16, compile, trie vs flat, batching: predicted, then measured."""
    import torch

    cfg = ctx.cfg
    prompts = ctx.prompts(cfg.n_lever)
    out: list[dict[str, Any]] = []
    detail: dict[str, Any] = {}
    sc = ctx.scorer("trie", 1)
    if cfg.device == "cpu" and len(cfg.threads) > 1:
        keep = torch.get_num_threads()
        times = {}
        for n in cfg.threads:
            ctx.say(f"lever: {n} torch threads")
            torch.set_num_threads(n)
            times[n] = _ms(ctx.time_each(lambda p: sc.score([p]), prompts)[0])
        torch.set_num_threads(keep)
        lo, hi = min(cfg.threads), max(cfg.threads)
        meas = ratio(times[lo]["p50_ms"], times[hi]["p50_ms"])
        pred = round(min(hi / lo, 1.6), 2)
        out.append({"lever": f"torch threads {hi} vs {lo}", "predicted": pred, "measured": meas,
                    "prediction": f"up to {pred}x on idle cores (matmul-bound); ~1x or worse when other jobs "
                                  "hold the cores (OpenMP threads wait on each other)",
                    "verdict": _verdict(meas, f"{hi} threads pay", f"{lo} thread(s) faster here (keep)", 0.15)})
        detail["threads"] = times
    if len(cfg.attn) > 1:
        impl0 = ctx.model.config._attn_implementation
        times, scores = {}, {}
        for impl in cfg.attn:
            ctx.say(f"lever: {impl} attention")
            try:
                ctx.model.set_attn_implementation(impl)
            except (ValueError, ImportError, AttributeError) as e:
                times[impl] = {"error": str(e)}
                continue
            t, o = ctx.time_each(lambda p: sc.score([p]), prompts)
            times[impl], scores[impl] = _ms(t), np.vstack(o)
        ctx.model.set_attn_implementation(impl0)
        a, b = cfg.attn[0], cfg.attn[1]
        share = _flops(ctx, np.mean([len(p) for p in prompts]), sc.n_label_tokens)["attention_share"]
        meas = ratio(times[b].get("p50_ms"), times[a].get("p50_ms")) if a in scores and b in scores else None
        out.append({"lever": f"{a} vs {b} attention", "predicted": 1.0, "measured": meas,
                    "prediction": f"attention is {share:.0%} of the FLOPs at this length and the trie pass "
                                  "passes a 4-D mask (SDPA's math path on CPU): within noise",
                    "verdict": _verdict(meas, f"{a} faster (keep)", f"{b} faster (report)")})
        if a in scores and b in scores:
            detail["attn_max_abs_diff"] = float(np.abs(scores[a] - scores[b]).max())
        detail["attn"] = times
    if cfg.dtype_lever:
        ctx.say("lever: bfloat16 vs float32")
        out.append(_dtype_lever(ctx, prompts, detail))
    for mode in cfg.compile:
        ctx.say(f"lever: torch.compile ({mode}) of each decoder layer")
        out.append(_compile_lever(ctx, prompts, mode, detail))
    sb = ctx.results.get("scoring", {}).get("budgets", {}).get(str(ctx.budget))
    if sb:
        flat_tokens = ctx.scorer("flat", 1).n_label_tokens
        p = sb["prompt_tokens"]["mean"]
        pred = round((p + flat_tokens) / (p + sc.n_label_tokens), 2)
        meas = ratio(sb["methods"]["flat"]["p50_ms"], sb["methods"]["trie"]["p50_ms"])
        out.append({"lever": "trie vs flat label pass", "predicted": pred, "measured": meas,
                    "prediction": f"tokens fed: prompt {p:.0f} + labels {sc.n_label_tokens} (trie) vs "
                                  f"{flat_tokens} (flat)",
                    "verdict": _verdict(meas, "trie faster (the default; keep)", "flat faster (report)", 0.05)})
        pb = sb["methods"].get(f"trie_batch{cfg.batch}")
        if pb:
            meas = ratio(sb["methods"]["trie"]["p50_ms"], pb["p50_ms"])
            out.append({"lever": f"batch {cfg.batch} vs 1 (scoring)", "predicted": 1.0, "measured": meas,
                        "prediction": f"a {p:.0f}-token prompt already fills the matmuls on a CPU; "
                                      "left padding adds work",
                        "verdict": _verdict(meas, "batching pays", "batch 1 faster here")})
    if sb and "trie_prefix" in sb["methods"]:
        shared, p, t = sb["shared_prefix_tokens"], sb["prompt_tokens"]["mean"], sc.n_label_tokens
        meas = ratio(sb["methods"]["trie"]["p50_ms"], sb["methods"]["trie_prefix"]["p50_ms"])
        out.append({"lever": "shared prompt prefix K/V computed once (CategoryScorer.set_prefix)",
                    "predicted": round((p + t) / (p - shared + t), 2), "measured": meas,
                    "prediction": f"every prompt starts with the same {shared} tokens (system turn + chat header) "
                                  f"of {p:.0f}; their K/V is the same for all shoppers (exact up to float error)",
                    "verdict": _verdict(meas, "prefix cache pays (the default; keep)", "no gain here (report)",
                                        0.05)})
        detail["shared_prefix_tokens"] = shared
    return {"levers": out, "detail": detail, "rows": []}


# --------------------------------------------------------------------------------------- generation


def _clock_streamer(sync: Callable[[], None]) -> Any:
    from transformers.generation.streamers import BaseStreamer

    class Clock(BaseStreamer):
        """Records the time of every `put` (the first is the prompt, then one per new token)."""

        def __init__(self) -> None:
            self.times: list[float] = []

        def put(self, value: Any) -> None:
            sync()
            self.times.append(time.perf_counter())

        def end(self) -> None:
            pass

    return Clock()


def _generate(ctx: Context, head: list[int], n: int, use_cache: bool, cache: Any = None,
              ) -> tuple[float, list[float], list[int]]:
    import torch

    from .scoring import _device

    ids = torch.tensor([head], device=_device(ctx.model))
    clock = _clock_streamer(ctx.sync)
    eos = ctx.tok.eos_token_id
    ctx.sync()
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = ctx.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                 min_new_tokens=n, do_sample=False, use_cache=use_cache, streamer=clock,
                                 eos_token_id=eos, pad_token_id=ctx.tok.pad_token_id or eos,
                                 past_key_values=cache)
    return t0, clock.times[1:], out[0, len(head):].tolist()


def generation(ctx: Context) -> dict[str, Any]:
    """Greedy explanation after `prompt + label + newline` (as the service generates): TTFT, tokens/s,
    with the KV cache vs the same generation without it (every step re-reads the whole prompt)."""
    from .explanation import HFGenerator

    cfg = ctx.cfg
    label = ctx.labels[0]
    tail = list(ctx.tok(label + "\n", add_special_tokens=False)["input_ids"])
    heads = [p + tail for p in ctx.prompts(cfg.n_generate)]
    ttft, rate, first_tokens = [], [], []
    _generate(ctx, heads[0], 2, True)  # warm-up
    for h in heads:
        ctx.say(f"generation, {cfg.gen_tokens} tokens with the KV cache")
        t0, times, toks = _generate(ctx, h, cfg.gen_tokens, True)
        ttft.append(times[0] - t0)
        rate.append((len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan"))
        first_tokens.append(toks)
    ctx.say("generation, first tokens from the cached shared prefix")
    ranker = ctx.ranker(ctx.budget)
    pre_ttft, pre_same = [], True
    for h, toks in zip(heads, first_tokens, strict=True):
        cache = ranker.prefix_cache_for(h)
        pre_len = cache.get_seq_length() if cache is not None else 0
        t0, times, pt = _generate(ctx, h, 2, True, cache=cache)
        pre_ttft.append(times[0] - t0)
        pre_same = pre_same and pt == toks[:2]
    ctx.say("generation, first tokens from the scored prompt's kept K/V")
    kv_ttft, kv_same = [], True
    for hist, h, toks in zip(ctx.histories(cfg.n_generate), heads, first_tokens, strict=True):
        _, kv = ranker.logprobs_one(hist)  # what predict(explain=True) keeps from its scoring pass
        t0, times, kt = _generate(ctx, h, 2, True, cache=kv.cache_for(h))
        kv_ttft.append(times[0] - t0)
        kv_same = kv_same and kt == toks[:2]
    ctx.say(f"generation, {cfg.gen_batch} explanations decoded together vs one at a time")
    batch_heads = [p + tail for p in ctx.prompts(cfg.gen_batch)]
    one_gen, many_gen = HFGenerator(ranker), HFGenerator(ranker, batch_size=cfg.gen_batch)
    ctx.sync()
    t0 = time.perf_counter()
    one_texts = one_gen.generate(batch_heads, cfg.gen_tokens)
    ctx.sync()
    t1 = time.perf_counter()
    many_texts = many_gen.generate(batch_heads, cfg.gen_tokens)
    ctx.sync()
    t2 = time.perf_counter()
    batched = {"n": len(batch_heads), "one_at_a_time_s": round(t1 - t0, 3), "batched_s": round(t2 - t1, 3),
               "same_texts": sum(a == b for a, b in zip(one_texts, many_texts, strict=True)),
               "explanations_per_s": round(len(batch_heads) / max(t2 - t1, 1e-9), 3),
               "one_at_a_time_per_s": round(len(batch_heads) / max(t1 - t0, 1e-9), 3)}
    drafted = _drafted_explanations(ctx)
    ctx.say(f"generation, {cfg.no_cache_tokens} tokens without the cache (baseline)")
    t0, times, toks = _generate(ctx, heads[0], cfg.no_cache_tokens, False)
    nc_ttft = times[0] - t0
    nc_rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")
    common = min(len(toks), len(first_tokens[0]))  # compared over the tokens both generated
    same = toks[:common] == first_tokens[0][:common]
    ttft_ms, tps = _ms(ttft), round(float(np.median(rate)), 2)
    score = ctx.results.get("scoring", {}).get("budgets", {}).get(str(ctx.budget), {}).get("methods", {})
    rows = [row("generation", "decode tokens/s (KV cache)", tps, "tokens/s", "no KV cache", round(nc_rate, 2),
                better="higher"),
            row("generation", "time to first token p50", ttft_ms["p50_ms"], "ms", "trie scoring p50 (same budget)",
                score.get("trie", {}).get("p50_ms")),
            row("generation", f"time to first token p50, shared prefix ({pre_len} tokens) cached",
                _ms(pre_ttft)["p50_ms"], "ms", "time to first token p50, whole prompt", ttft_ms["p50_ms"]),
            row("generation", "time to first token p50, scored prompt's K/V kept (as predict explains)",
                _ms(kv_ttft)["p50_ms"], "ms", "time to first token p50, shared prefix cached",
                _ms(pre_ttft)["p50_ms"]),
            row("generation", f"explanations/s, {cfg.gen_batch} decoded together (up to {cfg.gen_tokens} tokens)",
                batched["explanations_per_s"], "explanations/s", "one at a time", batched["one_at_a_time_per_s"],
                better="higher"),
            row("generation", f"explanation of {cfg.gen_tokens} tokens, total",
                round(ttft_ms["p50_ms"] + 1000 * (cfg.gen_tokens - 1) / tps, 1), "ms")]
    if "drafted" in drafted:
        d = drafted
        rows.append(row("generation", f"explanation to its end, drafted ({d['tokens_per_pass']} tokens a pass; "
                        f"{d['same_texts']}/{d['n']} same texts), p50", d["drafted"]["p50_ms"], "ms",
                        "one token a pass (transformers generate)", d["generate"]["p50_ms"]))
        if d.get("together"):
            t = d["together"]
            rows.append(row("generation", f"drafted explanations, {t['n']} decoded together ({t['same_ids']}/{t['n']} "
                            f"same texts), per shopper", t["together_ms_per_shopper"], "ms",
                            "drafted one at a time", t["one_at_a_time_ms_per_shopper"]))
            rows.append(row("generation", f"scoring with each prompt's K/V kept, {t['n']} in one pass ({t['same_top']}/"
                            f"{t['n']} same top category), per shopper", t["score_together_ms_per_shopper"], "ms",
                            "one at a time", t["score_one_at_a_time_ms_per_shopper"]))
            both = t["scored_and_explained_ms_per_shopper"]
            rows.append(row("generation", f"scored and explained together ({t['n']}, as predict_batch), per shopper",
                            both["together"], "ms", "one at a time", both["one_at_a_time"]))
    return {"ttft": ttft_ms, "tokens_per_s": tps, "no_cache": {"ttft_ms": round(nc_ttft * 1000, 1),
            "tokens_per_s": round(nc_rate, 3), "tokens": len(toks), "same_tokens_as_cached": same},
            "prefix_ttft": {**_ms(pre_ttft), "prefix_tokens": pre_len, "same_first_tokens": pre_same},
            "kept_kv_ttft": {**_ms(kv_ttft), "label_line_tokens": len(tail), "same_first_tokens": kv_same},
            "batched": batched, "drafted": drafted,
            "prompt_tokens": [len(h) for h in heads], "label": label, "rows": rows,
            "note": f"greedy, fixed {cfg.gen_tokens} new tokens (min_new_tokens); the no-cache baseline generates "
                    f"{cfg.no_cache_tokens} tokens and {'matches' if same else 'DIFFERS from'} the cached ones"}


def _drafted_explanations(ctx: Context) -> dict[str, Any]:
    """The dataset's bundled adapter explains its top category for `n_draft` shoppers to the end (up to
    the service's `max_new_tokens`), reading ahead through guessed text (`llmint.drafting`) vs
    one token a pass: transformers' `generate` (the service's path without drafting) and the drafted
    loop without guesses (the same loop); interleaved per shopper, after one warm-up shopper."""
    from .bundled import bundled_adapter
    from .drafting import drafted_greedy, drafter_for
    from .evidence import CategoryStats
    from .explanation import greedy_decode, label_head
    from .llm_ranker import LLMCategoryRanker, LLMRankerConfig
    from .service_config import ServiceConfig

    cfg, cap = ctx.cfg, ServiceConfig.max_new_tokens  # the service's explanation length cap
    adapter = bundled_adapter(cfg.model, ctx.ds.name)
    if cfg.n_draft == 0 or adapter is None:
        return {"skipped": "n_draft is 0" if cfg.n_draft == 0 else f"no bundled adapter for {ctx.ds.name}"}
    ctx.say(f"generation, {cfg.n_draft} explanations drafted vs one token a pass ({adapter.name})")
    r = LLMCategoryRanker("bench-draft", ctx.ds, cfg.level or ctx.ds.default_level,
                          LLMRankerConfig(model=cfg.model, adapter=str(adapter), device=cfg.device, dtype=cfg.dtype,
                                          batch_size=cfg.n_draft),  # `_drafted_together` scores them in one pass
                          loaded=ctx.loaded)
    stats = CategoryStats.from_sequences(ctx.split.train.values(), ctx.ds.items, r.taxonomy)
    tok, eos = r.tokenizer, r.tokenizer.eos_token_id
    times: dict[str, list[float]] = {"generate": [], "loop": [], "drafted": []}
    same = tokens = passes = guessed = accepted = 0
    kept: list[_Drafted] = []  # for the batch
    for i, h in enumerate(ctx.histories(cfg.n_draft + 1)):  # the first shopper warms up
        ser = r.serialize(h)
        row_, kv = r.logprobs_one(h)
        label = r.taxonomy.labels[int(np.argmax(row_))]
        head = label_head(tok, r.prompt_ids(h, ser), label)
        drafter = drafter_for(r, ser, label, stats)
        out: dict[str, Any] = {}
        for kind in times:
            ctx.sync()
            t0 = time.perf_counter()
            if kind == "generate":
                out[kind] = greedy_decode(r.model, tok, head, max_new_tokens=cap, cache=kv.cache_for(head))
            else:
                out[kind] = drafted_greedy(r.model, tok, head, max_new_tokens=cap, eos_token_id=eos,
                                           cache=kv.cache_for(head), drafter=drafter if kind == "drafted" else None)
            ctx.sync()
            if i:
                times[kind].append(time.perf_counter() - t0)
        if i:
            ids, st = out["drafted"]
            same += tok.decode(ids, skip_special_tokens=True).strip() == out["generate"] and ids == out["loop"][0]
            tokens, passes = tokens + st.tokens, passes + st.passes
            guessed, accepted = guessed + st.drafted, accepted + st.accepted
            kept.append(_Drafted(h, head, drafter, ids))
    together = _drafted_together(ctx, r, kept, cap) if len(kept) > 1 else None
    del r
    ctx.free()
    return {"adapter": adapter.name, "n": cfg.n_draft, "max_new_tokens": cap, "same_texts": same,
            "tokens": tokens, "passes": passes, "tokens_per_pass": round(tokens / max(passes, 1), 2),
            "guessed": guessed, "accepted": accepted, **{k: _ms(v) for k, v in times.items()},
            "together": together}


@dataclass(frozen=True)
class _Drafted:
    """One shopper of the drafted-explanation rows: its history, explanation head, drafter and drafted ids
    (drafted from its prompt's K/V, scored alone)."""

    history: list[Any]
    head: list[int]
    drafter: Any
    ids: list[int]


def _drafted_together(ctx: Context, r: Any, kept: list[_Drafted], cap: int) -> dict[str, Any]:
    """The drafted shoppers again, as `predict_batch` explains them, alternating twice (the faster of each
    kept): scored one at a time (`logprobs_one`) vs in one pass (`logprobs_kv`, each prompt's K/V cut out of
    it), and their explanations decoded one after another vs in one batch from the stacked K/V
    (`llmint.draft_batch`)."""
    from .draft_batch import drafted_greedy_batch, stack_caches
    from .drafting import drafted_greedy

    tok, eos = r.tokenizer, r.tokenizer.eos_token_id
    best = {k: float("inf") for k in ("score_one_at_a_time", "score_together", "one_at_a_time", "together")}
    res: list[tuple[list[int], Any]] = []
    lp = lp_alone = np.zeros(0)
    for _ in range(2):
        ctx.sync()
        t0 = time.perf_counter()
        alone = [r.logprobs_one(k.history) for k in kept]
        ctx.sync()
        best["score_one_at_a_time"] = min(best["score_one_at_a_time"], time.perf_counter() - t0)
        t0 = time.perf_counter()
        lp, kvs = r.logprobs_kv([k.history for k in kept])
        ctx.sync()
        best["score_together"] = min(best["score_together"], time.perf_counter() - t0)
        t0 = time.perf_counter()
        for k, (_, kv) in zip(kept, alone, strict=True):
            drafted_greedy(r.model, tok, k.head, max_new_tokens=cap, eos_token_id=eos, cache=kv.cache_for(k.head),
                           drafter=k.drafter)
        ctx.sync()
        best["one_at_a_time"] = min(best["one_at_a_time"], time.perf_counter() - t0)
        t0 = time.perf_counter()
        cache, mask = stack_caches([kv.layers for kv in kvs])
        res = drafted_greedy_batch(r.model, tok, [k.head for k in kept], max_new_tokens=cap, eos_token_id=eos,
                                   drafters=[k.drafter for k in kept], cache=cache, cache_mask=mask)
        ctx.sync()
        best["together"] = min(best["together"], time.perf_counter() - t0)
        lp_alone = np.stack([row for row, _ in alone])
        del alone, kvs, cache
    n = len(kept)
    both = {"one_at_a_time": best["score_one_at_a_time"] + best["one_at_a_time"],
            "together": best["score_together"] + best["together"]}
    return {"n": n, "same_ids": sum(ids == k.ids for (ids, _), k in zip(res, kept, strict=True)),
            "same_top": int((lp.argmax(1) == lp_alone.argmax(1)).sum()),
            "max_abs_logprob_diff": float(np.abs(lp - lp_alone).max()),
            "passes": max(st.passes for _, st in res), "row_passes": sum(st.passes for _, st in res),
            **{f"{k}_ms_per_shopper": round(1000 * v / n, 1) for k, v in best.items()},
            "speedup": round(best["one_at_a_time"] / best["together"], 2),
            "score_speedup": round(best["score_one_at_a_time"] / best["score_together"], 2),
            "scored_and_explained_ms_per_shopper": {k: round(1000 * v / n, 1) for k, v in both.items()},
            "scored_and_explained_speedup": round(both["one_at_a_time"] / both["together"], 2)}


# ------------------------------------------------------------------------------------------ predict


def _crowd(ctx: Context, fn: Callable[[Any], Any], items: list[Any], clients: int) -> dict[str, Any]:
    """`clients` threads each send their share of `items` to `fn`, one after another (a request waits for its
    answer before the next): requests/s, latency, and `fn`'s outputs in the order of `items`."""
    import threading

    lat: list[float] = []
    outs: list[Any] = [None] * len(items)
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(k: int) -> None:
        start.wait()
        for i in range(k, len(items), clients):
            t0 = time.perf_counter()
            outs[i] = fn(items[i])
            with lock:
                lat.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    ctx.sync()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    ctx.sync()
    wall = time.perf_counter() - t0
    if len(lat) != len(items):
        raise RuntimeError(f"{len(items) - len(lat)} of {len(items)} concurrent requests failed")
    return {"requests": len(items), "clients": clients, "wall_s": round(wall, 3),
            "per_s": round(len(items) / wall, 3), **_ms(lat), "outputs": outs}


def predict(ctx: Context) -> dict[str, Any]:
    """`InterestService.predict` (products + audit row), explain off and on, vs bare scoring of the same shopper."""
    from .paths import home
    from .service import InterestService
    from .service_config import ServiceConfig

    cfg = ctx.cfg
    folder = cfg.index_dir or str(home() / "cache" / "bench-index" / ctx.ds.name)
    with tempfile.TemporaryDirectory() as tmp:
        scfg = ServiceConfig(audit_path=str(Path(tmp) / "audit.sqlite"), serialize={"token_budget": ctx.budget},
                             max_new_tokens=cfg.gen_tokens, device="cuda" if cfg.device.startswith("cuda") else "cpu",
                             dtype=cfg.dtype, index_dir=folder, level=cfg.level)
        ctx.say("predict: building the service (item index cached in " + folder + ")")
        t0 = time.perf_counter()
        with InterestService.from_dataset(ctx.ds, scfg, loaded=ctx.loaded) as svc:
            start_s = time.perf_counter() - t0
            users = svc.user_ids()
            take = np.random.default_rng(cfg.seed).permutation(len(users))[: cfg.n_predict + 1]
            uids = [users[i] for i in take]
            warm, uids = uids[0], uids[1:] or uids
            svc.predict(warm, explain=False)
            res: dict[str, Any] = {"service_start_s": round(start_s, 1)}
            texts: dict[str, list[str | None]] = {}
            for name, fn in (
                ("bare_scoring", lambda u: svc.ranker.logprobs([svc.history(u)])),
                ("predict", lambda u: svc.predict(u, explain=False)),
                ("predict_explain", lambda u: svc.predict(u, explain=True)),
                ("predict_explain_no_draft", lambda u: svc.predict(u, explain=True)),
                ("predict_explain_prompt_again", lambda u: svc.predict(u, explain=True)),
            ):
                if name == "predict_explain_no_draft":  # the baseline of reading ahead through guessed text
                    svc.config = replace(svc.config, draft_explanations=False)
                if name == "predict_explain_prompt_again":  # the baseline of the kept prompt K/V
                    svc.config = replace(svc.config, keep_prompt_kv=False, draft_explanations=True)
                ctx.say(f"predict: {name}")
                t, outs = ctx.time_each(fn, uids, warmup=0)  # warmed up above: no extra audit rows
                res[name] = _ms(t)
                if name.startswith("predict_explain"):
                    texts[name] = [o.model_text for o in outs]
                if name != "bare_scoring":
                    keys = sorted({k for o in outs for k in o.timings_ms})
                    res[name]["timings_ms_p50"] = {
                        k: round(float(np.median([o.timings_ms.get(k, 0.0) for o in outs])), 2) for k in keys}
            svc.config = replace(svc.config, keep_prompt_kv=True, draft_explanations=True)
            res["predict_explain_no_draft"]["same_texts"] = sum(
                a == b for a, b in zip(texts["predict_explain"], texts["predict_explain_no_draft"], strict=True))
            group = [users[i] for i in np.random.default_rng(cfg.seed + 1).permutation(len(users))[: cfg.gen_batch]]
            for k in (1, cfg.gen_batch):  # a backend's batch with explanations: one at a time, then decoded together
                ctx.say(f"predict: predict_batch of {len(group)} with explanations, explain_batch={k}")
                svc.config = replace(svc.config, explain_batch=k)
                ctx.sync()
                t0 = time.perf_counter()
                preds = svc.predict_batch(group, explain=True)
                ctx.sync()
                res[f"predict_batch_explain_{k}"] = {"n": len(group), "s": round(time.perf_counter() - t0, 3),
                                                     "texts": [p.model_text for p in preds]}
            one, many = res["predict_batch_explain_1"], res[f"predict_batch_explain_{cfg.gen_batch}"]
            many["same_texts"] = sum(a == b for a, b in zip(one.pop("texts"), many.pop("texts"), strict=True))
            crowd = [users[i] for i in np.random.default_rng(cfg.seed + 2).permutation(len(users))[
                : cfg.concurrent * cfg.n_concurrent]]
            # the same service with lone requests coalesced, sharing the model, index and audit log
            co = InterestService.from_dataset(ctx.ds, replace(scfg, coalesce_max=cfg.concurrent), loaded=ctx.loaded,
                                              embedder=svc.embedder, index=svc.index, audit=svc.audit)
            for name, s in (("concurrent_one_at_a_time", svc), ("concurrent_coalesced", co)):
                ctx.say(f"predict: {cfg.concurrent} clients x {cfg.n_concurrent} requests, {name}")
                res[name] = _crowd(ctx, lambda u, s=s: s.predict(u, explain=False), crowd, cfg.concurrent)
                del res[name]["outputs"]
            st = co.coalesce_stats
            res["concurrent_coalesced"]["passes"] = st.summary()["sizes"]
            res["audit_rows"] = svc.audit.count()
    bare = res["bare_scoring"]["p50_ms"]
    rows = [row("predict", "predict, explain=False p50 (products + audit)", res["predict"]["p50_ms"], "ms",
                "bare scoring of the same shopper p50", bare),
            row("predict", "predict, explain=True p50", res["predict_explain"]["p50_ms"], "ms",
                "bare scoring p50", bare),
            row("predict", "predict, explain=True p50, explanation continues the scored prompt's K/V",
                res["predict_explain"]["p50_ms"], "ms", "explain=True, generation runs the prompt again",
                res["predict_explain_prompt_again"]["p50_ms"]),
            row("predict", "predict, explain=True p50, the explanation reads ahead through guessed text "
                "(llmint.drafting: the evidence template's wordings, the cited events' titles)",
                res["predict_explain"]["p50_ms"], "ms",
                "explain=True, one token per pass", res["predict_explain_no_draft"]["p50_ms"]),
            row("predict", f"predict_batch of {len(group)} with explanations, decoded together (explain_batch="
                f"{cfg.gen_batch}), per shopper", round(1000 * many["s"] / len(group), 1), "ms",
                "explain_batch=1 (one at a time)", round(1000 * one["s"] / len(group), 1))]
    lone, co_res = res["concurrent_one_at_a_time"], res["concurrent_coalesced"]
    rows.append(row("predict", f"{cfg.concurrent} concurrent clients, predict explain=False, requests/s, scored "
                    f"together as they arrive (coalesce_max={cfg.concurrent}; p99 {co_res['p99_ms']} ms vs "
                    f"{lone['p99_ms']} ms)", co_res["per_s"], "requests/s", "one scoring pass per request",
                    lone["per_s"], better="higher"))
    res.update(rows=rows, note=f"{len(uids)} stored shoppers, history budget {ctx.budget} tokens, "
                               f"{cfg.gen_tokens}-token explanations; speed-up < 1 is the serving overhead")
    return res
