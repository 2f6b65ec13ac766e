"""`llmint bench`: the product's speed figures, each a ratio to a baseline timed in the same process.

Sections (measured in `llmint.bench_parts` and `llmint.bench_infra`; each times its own baseline in the same run,
so the ratios survive a noisy, shared machine):

- scoring: category scoring per shopper, p50/p99, KV reuse (trie, flat, fused; batch 1 and batched;
  CUDA graphs on a GPU) vs one forward pass per label (`llmint.bench_scoring.run`), once per history
  token budget;
- throughput: shoppers scored per second at several batch sizes (trie and fused, after the cached
  shared prefix, as the service scores) vs trie at batch 1, and peak memory; prompts built per second
  in one process (the model's feed: below the scoring rate, the model waits) and by worker processes;
- levers: torch threads, SDPA vs eager attention, trie vs flat, batching: each predicted, then measured;
- generation: time to first token and decode tokens/s (greedy) with the KV cache vs without it;
- predict: `InterestService.predict` end to end (products + audit row), explain off and on,
  vs the bare scoring of the same shopper (the ratio is the serving overhead); concurrent clients'
  requests scored together as they arrive (`coalesce_max`) vs one pass per request;
- index: query latency and recall@10 of HNSW and IVF-PQ vs exact search (`index.bench` helpers);
- lora: LoRA fine-tuning examples/s (`finetune.train.main`) vs a forward-only pass on the same batches;
- roofline: FLOPs and bytes of a scoring pass against this machine's measured matmul rate and
  memory bandwidth: compute- or memory-bound.

This module holds the config, the run loop and the output (JSON and a Markdown table). It is a
front-end: `bench_infra` imports `index.bench` and `finetune.train` lazily; the library proper never
does. Timings go to files and the console, never into tests.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SECTIONS = ("scoring", "throughput", "levers", "generation", "predict", "index", "lora", "roofline")
DTYPES = ("float32", "bfloat16", "float16", "auto")
ATTN = ("sdpa", "eager")

logger = logging.getLogger(__name__)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _h(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class BenchConfig:
    """What `llmint bench` measures, and how much of it (defaults fit about 12 minutes on 2 CPU cores)."""

    dataset: str = field(default="office", metadata=_h("dataset whose test shoppers are scored"))
    level: int | None = field(default=None, metadata=_h("category level (None: the dataset's)"))
    model: str | None = field(default=None, metadata=_h("LLM (None: smollm2-135m)"))
    device: str = field(default="cpu", metadata=_h("'cpu', 'cuda' or 'cuda:N'"))
    dtype: str = field(default="float32", metadata=_h("model dtype"))
    history_tokens: tuple[int, ...] = field(default=(256, 512), metadata=_h(
        "SerializeConfig.token_budget values scored; the first is used by every other section"))
    n_shoppers: int = field(default=4, metadata=_h("shoppers timed per scoring method"))
    batch: int = field(default=4, metadata=_h("shoppers per pass in the batched scoring run"))
    n_naive: int = field(default=1, metadata=_h("shoppers timed with one forward pass per label"))
    naive_labels: int | None = field(default=8, metadata=_h(
        "labels timed naively per shopper, scaled to all (None: every label)"))
    batch_sizes: tuple[int, ...] = field(default=(1, 4, 8), metadata=_h("batch sizes tried for shoppers/s"))
    n_throughput: int = field(default=8, metadata=_h("shoppers scored per batch size"))
    prep_workers: int = field(default=2, metadata=_h(
        "throughput: prompts also built by this many worker processes (llmint.prompt_loader) vs in the scoring "
        "process; 0: skipped"))
    n_prep: int = field(default=512, metadata=_h("shoppers whose prompts are built, per prompt-building run"))
    threads: tuple[int, ...] = field(default=(1, 2), metadata=_h("torch intra-op threads tried (lever)"))
    attn: tuple[str, ...] = field(default=ATTN, metadata=_h("attention implementations tried (lever)"))
    compile: tuple[str, ...] = field(default=(), metadata=_h(
        f"torch.compile modes tried on each decoder layer vs eager (lever; of {COMPILE_MODES}; "
        "empty: skipped, compiling takes about a minute on 2 CPU cores)"))
    dtype_lever: bool = field(default=True, metadata=_h(
        "time the model in the other of float32/bfloat16 too (lever; a converted copy, interleaved)"))
    n_lever: int = field(default=3, metadata=_h("shoppers timed per lever setting"))
    gen_tokens: int = field(default=32, metadata=_h("new tokens per generation (fixed length)"))
    n_generate: int = field(default=2, metadata=_h("generations timed with the KV cache"))
    graph_bucket: int = field(default=64, metadata=_h(
        "scoring on CUDA: fused pass with CUDA graphs, prompt width rounded up to a multiple of this"))
    gen_batch: int = field(default=8, metadata=_h(
        "explanations decoded together vs one at a time (HFGenerator batch_size; same heads, same texts)"))
    no_cache_tokens: int = field(default=8, metadata=_h("new tokens of the no-cache baseline (1 shopper)"))
    n_draft: int = field(default=4, metadata=_h(
        "generation: explanations (the dataset's bundled adapter, to its end) drafted vs one token a pass "
        "(llmint.drafting; 0: skipped)"))
    n_predict: int = field(default=3, metadata=_h("shoppers sent through InterestService.predict"))
    concurrent: int = field(default=4, metadata=_h(
        "client threads calling predict(explain=False) at once: one pass each vs coalesced (coalesce_max)"))
    n_concurrent: int = field(default=3, metadata=_h("requests each concurrent client sends, one after another"))
    index_dir: str | None = field(default=None, metadata=_h(
        "the service's item index cache (None: <LLMINT_HOME>/cache/bench-index/<dataset>)"))
    index_size: int = field(default=100_000, metadata=_h("synthetic vectors in the index section"))
    index_queries: int = field(default=200, metadata=_h("queries for recall and latency"))
    index_embed: int = field(default=480, metadata=_h(
        "the dataset's items embedded by the bundled MiniLM: Embedder.encode vs sentence-transformers' "
        "own encode (0: skipped)"))
    lora_dataset: str = field(default="movielens", metadata=_h("dataset of the LoRA section"))
    lora_steps: int = field(default=3, metadata=_h("LoRA optimiser steps timed (the first is warm-up)"))
    lora_batch: int = field(default=4, metadata=_h("examples per LoRA step"))
    torch_threads: int = field(default=0, metadata=_h(
        "torch intra-op threads outside the threads lever (0: torch's default, all cores, as the service runs)"))
    sections: tuple[str, ...] = field(default=SECTIONS, metadata=_h(f"sections run, of {SECTIONS}"))
    seed: int = 0
    warmup: int = field(default=1, metadata=_h("untimed calls before each timed series"))

    def __post_init__(self) -> None:
        for name in ("history_tokens", "batch_sizes", "threads", "attn", "sections"):
            v = getattr(self, name)
            object.__setattr__(self, name, (v,) if isinstance(v, int | str) else tuple(v))
            if not getattr(self, name):
                raise ValueError(f"{name} is empty; expected at least one value")
        if not (self.device in ("cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device={self.device!r}; expected 'cpu', 'cuda' or 'cuda:N'")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r}; expected one of {DTYPES}")
        bad = [s for s in self.sections if s not in SECTIONS]
        if bad:
            raise ValueError(f"sections {bad} unknown; expected any of {SECTIONS}")
        bad = [a for a in self.attn if a not in ATTN]
        if bad:
            raise ValueError(f"attn {bad} unknown; expected any of {ATTN}")
        object.__setattr__(self, "compile", (self.compile,) if isinstance(self.compile, str) else tuple(self.compile))
        bad = [m for m in self.compile if m not in COMPILE_MODES]
        if bad:
            raise ValueError(f"compile modes {bad} unknown; expected any of {COMPILE_MODES}")
        for name in ("n_shoppers", "batch", "n_naive", "n_throughput", "n_lever", "gen_tokens", "n_generate",
                     "gen_batch", "no_cache_tokens", "n_predict", "concurrent", "n_concurrent", "n_prep",
                     "index_size", "index_queries", "lora_steps", "lora_batch", "graph_bucket"):
            _check_int(name, getattr(self, name), 1)
        _check_int("torch_threads", self.torch_threads, 0)
        _check_int("prep_workers", self.prep_workers, 0)
        _check_int("n_draft", self.n_draft, 0)
        _check_int("index_embed", self.index_embed, 0)
        for name in ("history_tokens", "batch_sizes", "threads"):
            for v in getattr(self, name):
                _check_int(name, v, 1)
        for name in ("naive_labels", "level"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        _check_int("warmup", self.warmup, 0)
        _check_int("seed", self.seed, 0)
        if self.index_size < self.index_queries + 100:
            raise ValueError(f"index_size={self.index_size}; expected >= index_queries + 100")


def _check_int(name: str, v: Any, low: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"{name}={v!r}; expected an int >= {low}")


def ratio(value: float | None, baseline: float | None, digits: int = 2) -> float | None:
    """`value / baseline`, rounded; None when either is missing or the baseline is 0.

    Example:
        >>> ratio(30.0, 10.0), ratio(1.0, 0.0), ratio(None, 2.0)
        (3.0, None, None)
    """
    if value is None or baseline is None or baseline == 0:
        return None
    return round(float(value) / float(baseline), digits)


def row(section: str, measure: str, value: float | None, unit: str, baseline: str = "",
        baseline_value: float | None = None, better: str = "lower") -> dict[str, Any]:
    """One line of the summary table. `speedup` > 1 means better than the baseline
    (baseline / value for times, value / baseline for rates: `better` = "lower" or "higher")."""
    if better not in ("lower", "higher"):
        raise ValueError(f"better={better!r}; expected 'lower' or 'higher'")
    sp = ratio(baseline_value, value) if better == "lower" else ratio(value, baseline_value)
    return {"section": section, "measure": measure, "value": value, "unit": unit, "baseline": baseline,
            "baseline_value": baseline_value, "speedup": sp}


def peak_memory_mb(device: str) -> dict[str, float | None]:
    """Peak memory so far: the process's max RSS (CPU) and torch's max allocated bytes (CUDA), in MiB."""
    import resource

    out: dict[str, float | None] = {"max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.startswith("cuda"):
        import torch

        out["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def format_table(res: dict[str, Any]) -> str:
    """The Markdown report: the summary table, the levers, the roofline and each section's notes."""
    m = res.get("machine", {})
    lines = [
        f"# llmint bench ({res['config']['device']}, {res['config']['dtype']})",
        "",
        f"{m.get('cpu', '?')}, {m.get('cpus', '?')} CPUs (load average {m.get('loadavg', '?')} at start), "
        f"torch {m.get('torch', '?')}, {m.get('torch_threads', res['config']['torch_threads'])} torch thread(s) "
        "unless a lever says "
        f"otherwise; dataset {res.get('dataset', res['config']['dataset'])}. "
        "Ratios compare with a baseline timed in the same run.",
        "",
        "| section | measure | value | unit | baseline | baseline value | speed-up vs baseline |",
        "|---|---|---:|---|---|---:|---:|",
    ]
    for r in res.get("rows", []):
        sp = r["speedup"]
        lines.append(f"| {r['section']} | {r['measure']} | {_fmt(r['value'])} | {r['unit']} | {r['baseline'] or '-'} "
                     f"| {_fmt(r['baseline_value'])} | {'-' if sp is None else f'{sp:g}x'} |")
    levers = res.get("sections", {}).get("levers", {}).get("levers", [])
    if levers:
        lines += ["", "| lever | prediction | predicted | measured | kept? |", "|---|---|---:|---:|---|"]
        for lv in levers:
            lines.append(f"| {lv['lever']} | {lv['prediction']} | {_fmt(lv.get('predicted'))} "
                         f"| {_fmt(lv.get('measured'))} | {lv['verdict']} |")
    roof = res.get("sections", {}).get("roofline")
    if roof and "summary" in roof:
        lines += ["", "Roofline: " + roof["summary"]]
    notes = [f"- {name}: {s['note']}" for name, s in res.get("sections", {}).items() if s.get("note")]
    if notes:
        lines += ["", "Notes:", *notes]
    failed = [f"- {name}: {s['error']}" for name, s in res.get("sections", {}).items() if s.get("error")]
    if failed:
        lines += ["", "Failed sections (the others ran):", *failed]
    return "\n".join(lines) + "\n"


def machine(device: str) -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    out = {"cpu": cpu, "cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
           "loadavg": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}
    if device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return out


def run(cfg: BenchConfig, progress: Callable[[str], None] | None = None, *, dataset: Any = None,
        loaded: Any = None, lora_dataset: Any = None,
        on_section: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the sections named in `cfg`; returns the JSON-able result ({config, machine, sections, rows}).

    `dataset` (the scored `Dataset`), `loaded` (a `LoadedModel`) and `lora_dataset` may be
    passed in; otherwise they are loaded by name. Torch's thread count is restored at the end.

    A section that raises is recorded as `{"error": "<Type>: <message>", "wall_s", "memory"}`
    (its name also listed in `res["failed"]`) and the next section runs: one broken lever on
    a borrowed GPU must not lose the other figures. `on_section(res)` is called after every
    section, finished or failed, with the result so far (the CLI writes it to disk each time, so
    a run stopped by a time limit keeps what it measured).
    """
    import torch

    from . import bench_infra, bench_parts
    from .loaders import load_dataset
    from .models import load_model

    say = progress or (lambda msg: None)
    threads = torch.get_num_threads()
    if cfg.device == "cpu" and cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    res: dict[str, Any] = {"config": asdict(cfg), "machine": {**machine(cfg.device),
                                                              "torch_threads": torch.get_num_threads()},
                           "sections": {}, "rows": [], "failed": []}
    try:
        ds = dataset if dataset is not None else load_dataset(cfg.dataset)
        loaded = loaded if loaded is not None else load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
        res["dataset"] = ds.name
        ctx = bench_parts.Context(cfg, ds, loaded, say, lora_dataset)
        for name in cfg.sections:
            say(f"section {name}")
            if cfg.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            try:
                out = getattr(bench_parts if hasattr(bench_parts, name) else bench_infra, name)(ctx)
            except Exception as err:  # recorded, and the other sections still run
                logger.exception("bench section %s failed", name)
                out = {"error": f"{type(err).__name__}: {err}"}
                res["failed"].append(name)
                say(f"section {name} failed: {out['error']}")
            out["wall_s"] = round(time.perf_counter() - t0, 1)
            out["memory"] = peak_memory_mb(cfg.device)
            res["rows"] += out.pop("rows", [])
            res["sections"][name] = out
            ctx.results[name] = out
            if on_section is not None:
                on_section(res)
    finally:
        torch.set_num_threads(threads)
    return res


def write(res: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write `out` (JSON, sorted keys) and the Markdown table beside it (`.md`); returns both paths."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    md = out.with_suffix(".md")
    md.write_text(format_table(res), encoding="utf-8")
    return out, md


__all__ = ["SECTIONS", "BenchConfig", "format_table", "peak_memory_mb", "ratio", "row", "run", "write"]
