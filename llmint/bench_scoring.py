"""Benchmark of category scoring: per-shopper latency of the KV-reuse scorer against the naive way.

Every method scores the same real prompts (shoppers' histories serialised as
the LLM reads them) against every label of the taxonomy, in the same run:

- naive: one full forward pass per (shopper, label), no cache (`scoring.naive_scores`);
- flat: one prompt pass, the cache repeated per label, one label pass;
- trie: one prompt pass, one pass over the labels' prefix tree (the default);
- trie, batched: the same with `batch` shoppers per pass (latency per shopper = batch time / batch).

Reports p50/p99 latency per shopper, the ratio of each method's p50 to the
naive p50, and the largest score difference from naive (the methods must agree).
Timings go to the console and a JSON file, never into tests.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass
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


def _pct(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs) * 1000.0
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2)}


def run(cfg: BenchScoringConfig, progress: Any = None) -> dict[str, Any]:
    """Time every method on the same prompts; returns the JSON-able result."""
    import torch

    from .llm_ranker import LLMCategoryRanker, LLMRankerConfig
    from .loaders import load_dataset
    from .scoring import CategoryScorer, naive_scores
    from .split import SplitConfig, make_split

    say = progress or (lambda msg: None)
    ds = load_dataset(cfg.dataset)
    split = make_split(ds.histories(), SplitConfig(seed=cfg.seed))
    rcfg = LLMRankerConfig(model=cfg.model, adapter=cfg.adapter, device=cfg.device, dtype=cfg.dtype)
    ranker = LLMCategoryRanker("llm", ds, cfg.level or ds.default_level, rcfg)
    rng = np.random.default_rng(cfg.seed)
    take = rng.permutation(len(split.test))[: cfg.n_shoppers]
    prompts = [ranker.prompt_ids(split.test[i].history) for i in take]
    model, tok, labels = ranker.model, ranker.tokenizer, list(ranker.taxonomy.labels)
    kw = dict(label_prefix="", terminator="\n")
    sync = torch.cuda.synchronize if cfg.device.startswith("cuda") else (lambda: None)

    def timed(fn: Any, items: list[Any]) -> tuple[list[float], list[np.ndarray]]:
        for _ in range(cfg.warmup):
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
    say(f"naive: {len(prompts)} shoppers x {len(labels)} labels")
    t_naive, ref = timed(lambda p: naive_scores(model, tok, [p], labels, **kw), prompts)
    ref_all = np.vstack(ref)
    res["methods"]["naive"] = _pct(t_naive)
    for mode in ("flat", "trie"):
        say(mode)
        sc = CategoryScorer(model, tok, labels, mode=mode, batch_size=1, **kw)
        t, out = timed(lambda p, sc=sc: sc.score([p]), prompts)
        res["methods"][mode] = {**_pct(t), "max_abs_diff_vs_naive": float(np.abs(np.vstack(out) - ref_all).max())}
    say(f"trie, batches of {cfg.batch}")
    sc = CategoryScorer(model, tok, labels, mode="trie", batch_size=cfg.batch, **kw)
    groups = [prompts[i : i + cfg.batch] for i in range(0, len(prompts), cfg.batch)]
    t, out = timed(lambda g: sc.score(g), groups)
    per = [tt / len(g) for tt, g in zip(t, groups, strict=True)]
    res["methods"][f"trie_batch{cfg.batch}"] = {
        **_pct(per), "max_abs_diff_vs_naive": float(np.abs(np.vstack(out) - ref_all).max())}
    base = res["methods"]["naive"]["p50_ms"]
    for m in res["methods"].values():
        m["speedup_p50_vs_naive"] = round(base / m["p50_ms"], 1) if m["p50_ms"] else None
    return res


def format_table(res: dict[str, Any]) -> str:
    lines = [
        f"{res['n_labels']} labels, prompts {res['prompt_tokens']['mean']} tokens on average, "
        f"device {res['device']}, {res['threads']} threads",
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
