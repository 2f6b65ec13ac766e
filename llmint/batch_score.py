"""Score a whole shopper table: every shopper's next-category distribution, split across processes.

    llmint score --dataset movielens --out runs/scores                           # one process
    torchrun --nproc_per_node 4 -m llmint.batch_score --dataset office --out DIR  # 4 CPU processes
    accelerate launch --num_processes 8 -m llmint.batch_score --device cuda --dataset office --out DIR

Processes are dealt round-robin over the GPUs there are, so several may share one: building a
prompt (serialising the history, the chat template, tokenising) is Python on one CPU core, about
1.5-1.8 ms per shopper (Office, MovieLens), so one process feeds a GPU at most ~550-670 shoppers/s.

Each process (`accelerate.PartialState`: torchrun, accelerate launch or a plain
`python`) takes a contiguous slice of the sorted shopper ids, scores it in chunks
with the same ranker, temperature and cold-start blend as `InterestService`
(category only: no explanation, no products), and writes `DIR/part-RRRRR.parquet`.
After all ranks finish, the main process writes `DIR/manifest.json` (labels,
versions with hashes, counts, timings). `read_scores(DIR)` joins the parts.

The history scored is a shopper's whole stored history (its newest
`max_events` events), i.e. the prediction of what comes after their latest event.
Batch scores are a table for backends, not served predictions: they are not written
to the audit log (one row per shopper per night would drown it); the manifest
records what produced them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .coldstart import COLD_MAX, COLD_STRENGTH

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ScoreConfig:
    """What to score and how; every field has a working default but `out_dir`."""

    out_dir: str
    dataset: str = "movielens"  # registered name or canonical events file
    level: int | None = None  # taxonomy level (None: the dataset's)
    model: str | None = None  # registry name, HF folder or GGUF (None: default)
    adapter: str | None = "auto"  # as ServiceConfig.adapter: 'auto', 'none'/None or a folder
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 8  # prompts per forward pass
    mode: str = "trie"  # CategoryScorer mode: "trie" (two passes) or "fused" (one); "flat" for reference
    # prompts per logprobs call (and progress step); the scorer sorts each call's prompts by length,
    # so a chunk of several batches pads little (Office, 512-token budget, batch 64: 5.9% of prompt
    # tokens are padding with chunks of 8 batches, 34.7% with one batch per chunk); None: max(64, 8 x batch_size)
    chunk: int | None = None
    limit: int | None = None  # a seeded sample of this many shoppers (None: all)
    max_events: int = 500  # newest events kept per shopper, as the service does
    top_k: int = 5
    cold_start_max: int = COLD_MAX
    cold_start_strength: float = COLD_STRENGTH
    seed: int = 0  # tie shuffle of events, sampling
    progress: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.out_dir, str) or not self.out_dir:
            raise ValueError(f"out_dir={self.out_dir!r}; expected a folder path")
        if self.chunk is None:
            object.__setattr__(self, "chunk", max(64, 8 * self.batch_size) if isinstance(self.batch_size, int) else 64)
        for name in ("batch_size", "chunk", "max_events", "top_k"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}; expected an int >= 1")
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int)
                                       or self.limit < 1):
            raise ValueError(f"limit={self.limit!r}; expected None or an int >= 1")
        if self.mode not in ("trie", "flat", "fused"):
            raise ValueError(f"mode={self.mode!r}; expected 'trie', 'flat' or 'fused'")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device={self.device!r}; expected 'cpu', 'cuda' or 'auto'")


def _user_ids(histories: dict[str, list[Any]], cfg: ScoreConfig) -> list[str]:
    ids = sorted(histories)
    if cfg.limit is not None and cfg.limit < len(ids):
        take = np.random.default_rng(cfg.seed).permutation(len(ids))[: cfg.limit]
        ids = sorted(ids[i] for i in take)
    return ids


def process_device(device: str, local_index: int, n_gpus: int) -> str:
    """This process's device: on CUDA, GPUs dealt round-robin over the node's processes (several may
    share one, so prompt building runs on several CPU cores).

    Example:
        >>> [process_device("cuda", i, 2) for i in range(4)], process_device("cpu", 3, 0)
        (['cuda:0', 'cuda:1', 'cuda:0', 'cuda:1'], 'cpu')
    """
    if device != "cuda":
        return device
    if n_gpus < 1:
        raise ValueError("device='cuda' but no CUDA device is visible")
    return f"cuda:{local_index % n_gpus}"


def _state(cfg: ScoreConfig) -> Any:
    import torch
    from accelerate import PartialState

    cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    return PartialState(cpu=not cuda)


def run(cfg: ScoreConfig, say: Any = None) -> dict[str, Any]:
    """Score this process's slice and write its part; the main process also writes the manifest.

    Returns this process's summary (the manifest on the main process).
    """
    import pandas as pd
    from tqdm import tqdm

    from .bundled import resolve_adapter
    from .coldstart import blend_prior
    from .evidence import CategoryStats
    from .llm_ranker import LLMCategoryRanker, LLMRankerConfig
    from .loaders import load_dataset
    from .models import dtype_name
    from .scoring import to_distribution
    from .service import adapter_sha256
    from .split import SplitConfig, make_split, ordered_histories

    say = say or (lambda msg: None)
    state = _state(cfg)
    t0 = time.perf_counter()
    ds = load_dataset(cfg.dataset)
    adapter = resolve_adapter(cfg.adapter, cfg.model, ds.name)
    import torch

    device = str(state.device) if cfg.device == "auto" else cfg.device
    device = process_device(device.split(":")[0] if device.startswith("cuda") else device,
                            state.local_process_index, torch.cuda.device_count())
    level = cfg.level or ds.default_level
    ranker = LLMCategoryRanker("score", ds, level, LLMRankerConfig(
        model=cfg.model, adapter=adapter, device=device, dtype=cfg.dtype, batch_size=cfg.batch_size,
        mode=cfg.mode, seed=cfg.seed))
    labels = list(ranker.taxonomy.labels)
    temperature = ranker.temperature  # the adapter's calibration.json, else 1.0
    grouped = ds.histories()  # grouped once: the split and the scored histories read it
    split = make_split(grouped, SplitConfig(seed=cfg.seed))
    stats = CategoryStats.from_sequences(split.train.values(), ds.items, ranker.taxonomy)
    prior = stats.prior(labels)
    histories = ordered_histories(grouped, cfg.seed, cfg.max_events)
    users = _user_ids(histories, cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    t_score = time.perf_counter()
    with state.split_between_processes(users) as mine:
        mine = list(mine)
        bar = tqdm(total=len(mine), desc=f"score [{state.process_index}]", unit="shopper",
                   disable=not (cfg.progress and state.is_main_process))
        for s in range(0, len(mine), cfg.chunk):
            ids = mine[s : s + cfg.chunk]
            warm = [u for u in ids if histories[u]]
            lp = ranker.logprobs([histories[u] for u in warm]) if warm else np.zeros((0, len(labels)))
            model_p = dict(zip(warm, to_distribution(lp, temperature), strict=True)) if warm else {}
            for u in ids:
                n = len(histories[u])
                p, w_prior = blend_prior(model_p.get(u), n, prior, cold_max=cfg.cold_start_max,
                                         strength=cfg.cold_start_strength)
                top = np.argsort(-p, kind="stable")[: cfg.top_k]
                rows.append({"user_id": u, "n_events": n, "top_category": labels[int(top[0])],
                             "top_probability": float(p[top[0]]), "top_k": [labels[int(i)] for i in top],
                             "top_k_probability": [float(p[i]) for i in top],
                             "prior_weight": float(w_prior), "probabilities": p.astype(np.float32).tolist()})
            bar.update(len(ids))
        bar.close()
    elapsed = time.perf_counter() - t_score
    part = out / f"part-{state.process_index:05d}.parquet"
    pd.DataFrame(rows, columns=["user_id", "n_events", "top_category", "top_probability", "top_k",
                                "top_k_probability", "prior_weight", "probabilities"]).to_parquet(part, index=False)
    mine_summary = {"rank": state.process_index, "n": len(rows), "part": part.name, "score_s": round(elapsed, 3)}
    (out / f"part-{state.process_index:05d}.json").write_text(json.dumps(mine_summary), encoding="utf-8")
    say(f"rank {state.process_index}: {len(rows)} shoppers in {elapsed:.1f} s -> {part}")
    state.wait_for_everyone()
    if not state.is_main_process:
        return mine_summary
    parts = [json.loads((out / f"part-{r:05d}.json").read_text(encoding="utf-8"))
             for r in range(state.num_processes)]
    n_total = sum(p["n"] for p in parts)
    slowest = max(p["score_s"] for p in parts)
    manifest = {
        "config": asdict(cfg), "dataset": ds.name, "level": level, "labels": labels,
        "model_id": str(ranker.loaded.spec.name), "model_sha256": str(ranker.loaded.weights_sha256),
        "dtype": dtype_name(ranker.model),  # "auto" resolved
        "adapter": adapter, "adapter_sha256": adapter_sha256(adapter) if adapter else None,
        "prompt": {"name": ranker.prompt_template.name, "version": ranker.prompt_template.version,
                   "sha256": ranker.prompt_template.sha256},
        "temperature": temperature, "world_size": state.num_processes, "distributed": str(state.distributed_type),
        "n_users": n_total, "parts": parts, "wall_s": round(time.perf_counter() - t0, 2),
        "score_s_slowest_rank": slowest,
        "shoppers_per_s": round(n_total / slowest, 3) if slowest > 0 else None,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def read_scores(out_dir: str | Path) -> Any:
    """All parts of a finished run as one pandas DataFrame, sorted by user id (checks the manifest)."""
    import pandas as pd

    out = Path(out_dir)
    if not (out / MANIFEST).is_file():
        raise FileNotFoundError(f"{out} has no {MANIFEST}: the run did not finish")
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    df = pd.concat([pd.read_parquet(out / p["part"]) for p in manifest["parts"]], ignore_index=True)
    if len(df) != manifest["n_users"] or df["user_id"].duplicated().any():
        raise ValueError(f"{out}: parts hold {len(df)} rows for {manifest['n_users']} shoppers")
    return df.sort_values("user_id", ignore_index=True)


def make_parser() -> argparse.ArgumentParser:
    d = ScoreConfig(out_dir="-")
    p = argparse.ArgumentParser(prog="python -m llmint.batch_score", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", dest="out_dir", required=True, help="folder for the parts and manifest.json")
    p.add_argument("--dataset", default=d.dataset, help="dataset name or events file (default: %(default)s)")
    p.add_argument("--level", type=int, default=None, help="category level (default: the dataset's)")
    p.add_argument("--model", default=None, help="LLM (default: smollm2-135m)")
    p.add_argument("--adapter", default=d.adapter, help="adapter folder, 'none' or 'auto' (default: %(default)s)")
    p.add_argument("--device", default=d.device, choices=["cpu", "cuda", "auto"])
    p.add_argument("--dtype", default=d.dtype, choices=["float32", "bfloat16", "float16", "auto"])
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="prompts per forward pass")
    p.add_argument("--scorer-mode", dest="mode", default=d.mode, choices=["trie", "fused", "flat"],
                   help="trie: prompt pass then label-tree pass; fused: both in one pass (default: %(default)s)")
    p.add_argument("--chunk", type=int, default=None,
                   help="prompts per scoring call, sorted by length before batching (default: max(64, 8 x batch size))")
    p.add_argument("--limit", type=int, default=None, help="a seeded sample of this many shoppers")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: list[str] | None = None) -> int:
    from .errors import LlmintError

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    a = vars(make_parser().parse_args(argv))
    try:
        cfg = ScoreConfig(**a)
        res = run(cfg, lambda msg: print(msg, file=sys.stderr))
    except (LlmintError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if "n_users" in res:
        print(json.dumps({k: res[k] for k in ("n_users", "world_size", "wall_s", "shoppers_per_s")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
