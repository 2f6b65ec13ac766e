"""Benchmark of category scoring: per-shopper latency of the KV-reuse scorer against the naive way.

Every method scores the same real prompts (shoppers' histories serialised as
the LLM reads them) against every label of the taxonomy, in the same run:

- naive: one full forward pass per (shopper, label), no cache (`scoring.naive_scores`);
- flat: one prompt pass, the cache repeated per label, one label pass;
- trie: one prompt pass, one pass over the labels' prefix tree (the default);
- trie, batched: the same with `batch` shoppers per pass (latency per shopper = batch time / batch);
- fused: the prompt and the trie in one pass (batch 1 and batched), after the cached shared prefix;
- fused + CUDA graphs (on a GPU only): the same pass, the prefix run with each prompt, captured once
  per prompt bucket and replayed;
  every bucket is captured before the timed calls (`graph_capture_s` reports what that cost).

Reports p50/p99 latency per shopper, the ratio of each method's p50 to the
naive p50, and the largest score difference from naive (the methods must agree).
Naive costs one full forward per label: `n_naive` and `naive_labels` time it on
fewer shoppers and an evenly spaced subset of labels, and scale each shopper's
time by n_labels / naive_labels (the forwards differ only by a few label tokens;
the result says so under "naive_note").
Timings go to the console and a JSON file, never into tests.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class BenchScoringConfig:
    dataset: str = "office"
    level: int | None = None
    model: str | None = None
    adapter: str | None = None
    n_shoppers: int = 8  # shoppers timed (naive costs n_labels forwards each)
    batch: int = 8  # shoppers per pass for the batched run
    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0
    warmup: int = 1
    serialize: Mapping[str, Any] = field(default_factory=dict)  # SerializeConfig overrides (token_budget)
    n_naive: int | None = None  # shoppers timed naively (None = all n_shoppers)
    naive_labels: int | None = None  # labels timed naively per shopper (None = all; else scaled up)
    graph_bucket: int = 64  # CUDA graphs: prompt width rounded up to a multiple of this (one graph per bucket)

    def __post_init__(self) -> None:
        object.__setattr__(self, "serialize", dict(self.serialize))
        for name in ("n_shoppers", "batch", "n_naive", "naive_labels", "graph_bucket"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name}={v!r}; expected an int >= 1")


def _pct(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs) * 1000.0
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2)}


def run(cfg: BenchScoringConfig, progress: Any = None, *, dataset: Any = None, loaded: Any = None) -> dict[str, Any]:
    """Time every method on the same prompts; returns the JSON-able result.

    `dataset` (a `llmint.Dataset`) and `loaded` (a `LoadedModel`) may be passed in
    instead of being loaded from `cfg.dataset` and `cfg.model`."""
    import torch

    from .llm_ranker import LLMCategoryRanker, LLMRankerConfig, shared_prefix_ids
    from .loaders import load_dataset
    from .scoring import CategoryScorer, naive_scores
    from .split import SplitConfig, make_split

    say = progress or (lambda msg: None)
    ds = dataset if dataset is not None else load_dataset(cfg.dataset)
    split = make_split(ds.histories(), SplitConfig(seed=cfg.seed))
    rcfg = LLMRankerConfig(model=cfg.model, adapter=cfg.adapter, device=cfg.device, dtype=cfg.dtype,
                           serialize=cfg.serialize)
    ranker = LLMCategoryRanker("llm", ds, cfg.level or ds.default_level, rcfg, loaded=loaded)
    rng = np.random.default_rng(cfg.seed)
    take = rng.permutation(len(split.test))[: cfg.n_shoppers]
    prompts = [ranker.prompt_ids(split.test[i].history) for i in take]
    model, tok, labels = ranker.model, ranker.tokenizer, list(ranker.taxonomy.labels)
    kw = dict(label_prefix="", terminator="\n")
    sync = torch.cuda.synchronize if cfg.device.startswith("cuda") else (lambda: None)

    def timed(fn: Any, items: list[Any], warmup: int = cfg.warmup) -> tuple[list[float], list[np.ndarray]]:
        for _ in range(warmup):
            fn(items[0])
        times, outs = [], []
        for it in items:
            sync()
            t0 = time.perf_counter()
            outs.append(fn(it))
            sync()
            times.append(time.perf_counter() - t0)
        return times, outs

    res: dict[str, Any] = {
        "config": asdict(cfg), "n_labels": len(labels),
        "prompt_tokens": {"mean": round(float(np.mean([len(p) for p in prompts])), 1),
                          "max": int(max(len(p) for p in prompts))},
        "device": cfg.device if cfg.device == "cpu" else torch.cuda.get_device_name(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
        "methods": {},
    }
    n_naive = min(cfg.n_naive or len(prompts), len(prompts))
    k = min(cfg.naive_labels or len(labels), len(labels))
    cols = np.unique(np.linspace(0, len(labels) - 1, k).round().astype(int))  # evenly spaced subset
    say(f"naive: {n_naive} shoppers x {len(cols)} of {len(labels)} labels")
    for _ in range(cfg.warmup):  # one forward warms up as well as k would
        naive_scores(model, tok, prompts[:1], labels[:1], **kw)
    t_naive, ref = timed(lambda p: naive_scores(model, tok, [p], [labels[j] for j in cols], **kw),
                         prompts[:n_naive], warmup=0)
    ref_all = np.vstack(ref)
    scale = len(labels) / len(cols)
    res["methods"]["naive"] = _pct([t * scale for t in t_naive])
    res["naive_note"] = (f"{n_naive} shoppers; {len(cols)} of {len(labels)} labels timed, x{scale:.2f}"
                         if len(cols) < len(labels) else f"{n_naive} shoppers, every label")

    def diff(out: list[np.ndarray]) -> float:
        return float(np.abs(np.vstack(out)[:n_naive][:, cols] - ref_all).max())

    for mode in ("flat", "trie"):
        say(mode)
        sc = CategoryScorer(model, tok, labels, mode=mode, batch_size=1, **kw)
        t, out = timed(lambda p, sc=sc: sc.score([p]), prompts)
        res["methods"][mode] = {**_pct(t), "max_abs_diff_vs_naive": diff(out)}
    prefix = shared_prefix_ids(tok, ranker.prompt_template)
    say(f"trie + shared prefix ({len(prefix)} tokens cached once)")
    sc = CategoryScorer(model, tok, labels, mode="trie", batch_size=1, **kw)
    sc.set_prefix(prefix)
    t, out = timed(lambda p, sc=sc: sc.score([p]), prompts)
    res["methods"]["trie_prefix"] = {**_pct(t), "max_abs_diff_vs_naive": diff(out)}
    res["shared_prefix_tokens"] = len(prefix)
    groups = [prompts[i : i + cfg.batch] for i in range(0, len(prompts), cfg.batch)]
    for name, pre in ((f"trie_batch{cfg.batch}", None), (f"trie_prefix_batch{cfg.batch}", prefix)):
        say(f"{name}: trie, batches of {cfg.batch}" + (", shared prefix" if pre else ""))
        sc = CategoryScorer(model, tok, labels, mode="trie", batch_size=cfg.batch, **kw)
        sc.set_prefix(pre)
        t, out = timed(lambda g, sc=sc: sc.score(g), groups)
        per = [tt / len(g) for tt, g in zip(t, groups, strict=True)]
        res["methods"][name] = {**_pct(per), "max_abs_diff_vs_naive": diff(out)}
    say("fused + shared prefix: the prompt and the trie in one pass")
    sc = CategoryScorer(model, tok, labels, mode="fused", batch_size=1, **kw)
    sc.set_prefix(prefix)
    t, out = timed(lambda p, sc=sc: sc.score([p]), prompts)
    res["methods"]["fused_prefix"] = {**_pct(t), "max_abs_diff_vs_naive": diff(out)}
    name = f"fused_prefix_batch{cfg.batch}"
    say(f"{name}: fused, batches of {cfg.batch}, shared prefix")
    sc = CategoryScorer(model, tok, labels, mode="fused", batch_size=cfg.batch, **kw)
    sc.set_prefix(prefix)
    t, out = timed(lambda g, sc=sc: sc.score(g), groups)
    res["methods"][name] = {**_pct([tt / len(g) for tt, g in zip(t, groups, strict=True)]),
                            "max_abs_diff_vs_naive": diff(out)}
    if cfg.device.startswith("cuda"):
        say(f"fused + CUDA graphs (prompt bucket {cfg.graph_bucket} tokens; the prefix runs with each prompt)")
        try:  # never run before on this GPU stack: a failed capture is recorded, the other methods kept
            sc = CategoryScorer(model, tok, labels, mode="fused", batch_size=1, bucket=cfg.graph_bucket,
                                cuda_graphs=True, **kw)
            sc.set_prefix(prefix)
            sync()
            t0 = time.perf_counter()
            for p in prompts:  # capture every bucket first: a service captures each once, then replays
                sc.score([p])
            sync()
            res["graph_capture_s"] = round(time.perf_counter() - t0, 2)
            res["graphs"] = sc.n_graphs
            t, out = timed(lambda p, sc=sc: sc.score([p]), prompts, warmup=0)
            res["methods"]["fused_graphs"] = {**_pct(t), "max_abs_diff_vs_naive": diff(out)}
        except Exception as e:  # noqa: BLE001 - reported in the result, not raised
            res["graphs_error"] = f"{type(e).__name__}: {e}"[:500]
    base = res["methods"]["naive"]["p50_ms"]
    for m in res["methods"].values():
        m["speedup_p50_vs_naive"] = round(base / m["p50_ms"], 1) if m["p50_ms"] else None
    return res


def format_table(res: dict[str, Any]) -> str:
    lines = [
        f"{res['n_labels']} labels, prompts {res['prompt_tokens']['mean']} tokens on average, "
        f"device {res['device']}, {res['threads']} threads; naive: {res.get('naive_note', 'every label')}",
        "| method | p50 ms/shopper | p99 ms/shopper | speed-up (p50) vs naive | max |diff| vs naive |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, m in res["methods"].items():
        diff = m.get("max_abs_diff_vs_naive")
        lines.append(f"| {name} | {m['p50_ms']} | {m['p99_ms']} | {m['speedup_p50_vs_naive']}x | "
                     f"{'-' if diff is None else f'{diff:.1e}'} |")
    return "\n".join(lines)


def write(res: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2), encoding="utf-8")
