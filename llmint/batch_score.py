"""Score a whole shopper table: every shopper's next-category distribution, split across processes.

    llmint score --dataset movielens --out runs/scores                           # one process
    torchrun --nproc_per_node 4 -m llmint.batch_score --dataset office --out DIR  # 4 CPU processes
    accelerate launch --num_processes 8 -m llmint.batch_score --device cuda --dataset office --out DIR

Building a prompt (serialising the history, the chat template, tokenising) is Python on one CPU
core, about 1.3-1.6 ms per shopper (Office, MovieLens), so one process feeds a GPU at most ~640-770
shoppers/s: `prep_workers` (`--prep-workers 4`) builds the prompts in worker processes ahead of the
model (`llmint.prompt_loader`; the same ids, so the same scores), or several processes share one
GPU (they are dealt round-robin over the GPUs there are).

The sorted shopper ids are cut into *segments* (`segment_size` shoppers, the unit of work and of
output): segment k goes to process k mod N (`accelerate.PartialState`: torchrun, accelerate launch
or a plain `python`), which scores it in chunks with the same ranker, temperature and cold-start
blend as `InterestService` (category only: no explanation, no products) and writes
`DIR/seg-KKKKKK.parquet` (written under a temporary name, then renamed: a file there is whole).
Only one segment's rows are held in memory at a time.

A run that stops (a killed job, a lost node) is resumed by running the same command again: the
segments already written are skipped, with any number of processes, because the segments do not
depend on it. `DIR/run.json` records what the run scores (dataset, shoppers, model, adapter and
prompt hashes, dtype, scorer mode, cold-start settings, segment size); a second run into the same
folder with other settings stops with the differences named (`overwrite=True` starts afresh).
After all ranks finish, the main process writes `DIR/manifest.json` (labels, versions with
hashes, segments, this attempt's timings). `read_scores(DIR)` joins the segments.

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
from .errors import RunFolderError

MANIFEST = "manifest.json"
RUN = "run.json"  # what a run scores: a resumed run must match it
SEGMENT_MAX = 16384  # default segment size at most (~2.9 MB of Parquet with 43 labels)
SEGMENTS_PER_PROCESS = 4  # default segments per process at least, so that processes finish together


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
    # shoppers per output file, the unit of work and of resuming; None: the folder's run.json if it has
    # one, else default_segment_size(shoppers, processes)
    segment_size: int | None = None
    overwrite: bool = False  # start afresh in a folder that holds another run (else: resume it, or stop)
    # processes building prompts ahead of the model (llmint.prompt_loader; 0: the scoring process itself,
    # which feeds at most ~550-900 shoppers/s: a GPU wants 2-4); the scores do not depend on it
    prep_workers: int = 0
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
        if isinstance(self.prep_workers, bool) or not isinstance(self.prep_workers, int) or self.prep_workers < 0:
            raise ValueError(f"prep_workers={self.prep_workers!r}; expected an int >= 0")
        for name in ("limit", "segment_size"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name}={v!r}; expected None or an int >= 1")
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


def default_segment_size(n_users: int, n_processes: int) -> int:
    """Shoppers per segment when none is asked for: at least `SEGMENTS_PER_PROCESS` segments per
    process (so that processes finish together), at most `SEGMENT_MAX` shoppers each.

    Example:
        >>> default_segment_size(943, 1), default_segment_size(4, 2), default_segment_size(10**8, 8)
        (236, 1, 16384)
    """
    per = -(-n_users // (SEGMENTS_PER_PROCESS * max(n_processes, 1)))
    return max(1, min(SEGMENT_MAX, per))


def segment_file(k: int) -> str:
    """The file of segment `k` (0-based) in a run folder."""
    return f"seg-{k:06d}.parquet"


def scores_table(users: list[str], n_events: np.ndarray, p: np.ndarray, prior_weight: np.ndarray,
                 labels: list[str], top_k: int) -> Any:
    """One segment's rows as a pyarrow Table (column by column, no per-shopper Python objects).

    `p`: the served distributions (shoppers x labels, float64); `top_k` categories by probability,
    ties in label order (a stable sort); `probabilities` stored as float32.
    """
    import pyarrow as pa

    n, n_lab = p.shape
    k = min(top_k, n_lab)
    top = np.argsort(-p, axis=1, kind="stable")[:, :k]
    top_p = np.take_along_axis(p, top, axis=1)
    names = np.asarray(labels, dtype=object)

    def lists(values: np.ndarray, width: int) -> Any:
        return pa.ListArray.from_arrays(pa.array(np.arange(0, n * width + 1, width, dtype=np.int32)),
                                        pa.array(values.reshape(-1)))

    return pa.table({
        "user_id": pa.array(users, pa.string()),
        "n_events": pa.array(n_events, pa.int64()),
        "top_category": pa.array(names[top[:, 0]], pa.string()),
        "top_probability": pa.array(top_p[:, 0], pa.float64()),
        "top_k": lists(names[top], k),
        "top_k_probability": lists(top_p, k),
        "prior_weight": pa.array(prior_weight, pa.float64()),
        "probabilities": lists(p.astype(np.float32), n_lab),
    })


def _rows_in(path: Path) -> int | None:
    """Rows of a finished segment file, or None if it is missing or unreadable."""
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(path).num_rows
    except (OSError, ValueError):  # missing, or not a whole Parquet file
        return None


def _write_atomic(table: Any, path: Path) -> None:
    """Write a Parquet file under a temporary name, then rename it: a file under `path` is whole."""
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _read_run(out: Path) -> dict[str, Any] | None:
    path = out / RUN
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunFolderError(f"{path} is unreadable ({e}); pass overwrite (--overwrite) to start afresh") from e
    if not isinstance(data, dict):
        raise RunFolderError(f"{path} is not a JSON object; pass overwrite (--overwrite) to start afresh")
    return data


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`key: old -> new` for each setting that differs (long values shortened)."""
    def short(v: Any) -> str:
        t = json.dumps(v)
        return t if len(t) <= 60 else t[:57] + "..."
    return [f"{k}: {short(old.get(k))} -> {short(new.get(k))}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]


def _clear(out: Path) -> None:
    """Remove a run's files from `out` (segments, parts of the earlier layout, summaries, run.json)."""
    for pattern in ("seg-*.parquet", "part-*.parquet", "part-*.json", "rank-*.json", ".*.tmp", MANIFEST, RUN):
        for f in out.glob(pattern):
            f.unlink()


def run(cfg: ScoreConfig, say: Any = None) -> dict[str, Any]:
    """Score this process's segments not yet written; the main process then writes the manifest.

    Returns this process's summary (the manifest on the main process). Raises RunFolderError if
    `cfg.out_dir` holds a run with other settings and `cfg.overwrite` is not set.
    """
    import hashlib

    from tqdm import tqdm

    from .bundled import resolve_adapter
    from .coldstart import blend_prior
    from .evidence import CategoryStats
    from .llm_ranker import LLMCategoryRanker, LLMRankerConfig
    from .loaders import load_dataset
    from .models import dtype_name
    from .prompt_loader import prompt_chunks
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

    # what this run scores; every rank reads the folder's record before the main rank writes one
    prev = None if cfg.overwrite else _read_run(out)
    size = cfg.segment_size or (prev or {}).get("segment_size") or default_segment_size(len(users),
                                                                                      state.num_processes)
    adapter_hash = adapter_sha256(adapter) if adapter else None
    record = {
        "dataset": ds.name, "level": level, "n_users": len(users),
        "users_sha256": hashlib.sha256("\n".join(users).encode("utf-8")).hexdigest(),
        "labels": labels, "model_sha256": str(ranker.loaded.weights_sha256), "adapter_sha256": adapter_hash,
        "prompt_sha256": ranker.prompt_template.sha256, "dtype": dtype_name(ranker.model), "mode": cfg.mode,
        "temperature": temperature, "max_events": cfg.max_events, "top_k": cfg.top_k,
        "cold_start_max": cfg.cold_start_max, "cold_start_strength": cfg.cold_start_strength,
        "limit": cfg.limit, "seed": cfg.seed, "segment_size": size,
    }
    if prev is not None and prev != record:
        raise RunFolderError(f"{out} holds a run with other settings ({'; '.join(_differences(prev, record))}); "
                         "run into another folder, or pass overwrite (--overwrite) to start afresh")
    state.wait_for_everyone()
    if state.is_main_process:
        if cfg.overwrite:
            _clear(out)
        # the last attempt's summaries, and files a killed attempt left half-written (no rank writes yet)
        for f in [*out.glob("rank-*.json"), *out.glob(".*.tmp"), out / MANIFEST]:
            f.unlink(missing_ok=True)
        _write_json(out / RUN, record)
    state.wait_for_everyone()

    segments = [users[s : s + size] for s in range(0, len(users), size)]
    mine = list(range(state.process_index, len(segments), state.num_processes))
    todo = [k for k in mine if _rows_in(out / segment_file(k)) != len(segments[k])]
    n_todo = sum(len(segments[k]) for k in todo)
    n_skipped = sum(len(segments[k]) for k in mine) - n_todo
    if n_skipped:
        say(f"rank {state.process_index}: {len(mine) - len(todo)} of {len(mine)} segment(s) already written "
            f"({n_skipped} shoppers), resuming")
    t_score = time.perf_counter()
    bar = tqdm(total=n_todo, desc=f"score [{state.process_index}]", unit="shopper",
               disable=not (cfg.progress and state.is_main_process))
    chunks: dict[int, list[tuple[range, list[int]]]] = {}  # segment -> its chunks: (rows, warm rows)
    for k in todo:
        seg = segments[k]
        for s in range(0, len(seg), cfg.chunk):
            rows = range(s, min(s + cfg.chunk, len(seg)))
            chunks.setdefault(k, []).append((rows, [i for i in rows if histories[seg[i]]]))
    work = [[histories[segments[k][i]] for i in warm] for k in todo for _, warm in chunks[k]]
    prompts = prompt_chunks(ranker, work, workers=cfg.prep_workers)  # in the order scored below
    for k in todo:
        ids = segments[k]
        n_events = np.array([len(histories[u]) for u in ids], dtype=np.int64)
        p = np.empty((len(ids), len(labels)))
        w_prior = np.empty(len(ids))
        for (rows, warm), chunk_ids in zip(chunks[k], prompts, strict=False):  # prompts: the whole run's
            lp = ranker.logprobs_ids(chunk_ids) if warm else np.zeros((0, len(labels)))
            model_p = dict(zip(warm, to_distribution(lp, temperature), strict=True)) if warm else {}
            for i in rows:
                p[i], w_prior[i] = blend_prior(model_p.get(i), int(n_events[i]), prior,
                                               cold_max=cfg.cold_start_max, strength=cfg.cold_start_strength)
            bar.update(len(rows))
        _write_atomic(scores_table(ids, n_events, p, w_prior, labels, cfg.top_k), out / segment_file(k))
    bar.close()
    elapsed = time.perf_counter() - t_score
    mine_summary = {"rank": state.process_index, "segments": len(mine), "segments_scored": len(todo),
                    "n_scored": n_todo, "n_skipped": n_skipped, "score_s": round(elapsed, 3)}
    _write_json(out / f"rank-{state.process_index:05d}.json", mine_summary)
    say(f"rank {state.process_index}: {n_todo} shoppers in {len(todo)} segment(s) in {elapsed:.1f} s -> {out}")
    state.wait_for_everyone()
    if not state.is_main_process:
        return mine_summary
    ranks = [json.loads((out / f"rank-{r:05d}.json").read_text(encoding="utf-8"))
             for r in range(state.num_processes)]
    files = []
    for k, seg in enumerate(segments):
        n = _rows_in(out / segment_file(k))
        if n != len(seg):
            raise RuntimeError(f"{out / segment_file(k)} holds {n} rows for {len(seg)} shoppers after the run")
        files.append({"file": segment_file(k), "n": n})
    n_scored = sum(r["n_scored"] for r in ranks)
    slowest = max(r["score_s"] for r in ranks)
    manifest = {
        "config": asdict(cfg), "dataset": ds.name, "level": level, "labels": labels,
        "model_id": str(ranker.loaded.spec.name), "model_sha256": record["model_sha256"],
        "dtype": record["dtype"],  # "auto" resolved
        "adapter": adapter, "adapter_sha256": adapter_hash,
        "prompt": {"name": ranker.prompt_template.name, "version": ranker.prompt_template.version,
                   "sha256": ranker.prompt_template.sha256},
        "temperature": temperature, "world_size": state.num_processes, "distributed": str(state.distributed_type),
        "n_users": len(users), "segment_size": size, "segments": files, "ranks": ranks,
        "n_scored": n_scored, "n_resumed": sum(r["n_skipped"] for r in ranks),
        "wall_s": round(time.perf_counter() - t0, 2), "score_s_slowest_rank": slowest,
        "shoppers_per_s": round(n_scored / slowest, 3) if n_scored and slowest > 0 else None,
    }
    _write_json(out / MANIFEST, manifest)
    return manifest


def read_scores(out_dir: str | Path) -> Any:
    """All segments of a finished run as one pandas DataFrame, sorted by user id (checks the manifest)."""
    import pandas as pd

    out = Path(out_dir)
    if not (out / MANIFEST).is_file():
        raise FileNotFoundError(f"{out} has no {MANIFEST}: the run did not finish")
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    files = [s["file"] for s in manifest["segments"]] if "segments" in manifest else [
        p["part"] for p in manifest["parts"]]  # the layout before segments (one part per process)
    df = pd.concat([pd.read_parquet(out / f) for f in files], ignore_index=True)
    if len(df) != manifest["n_users"] or df["user_id"].duplicated().any():
        raise ValueError(f"{out}: the files hold {len(df)} rows for {manifest['n_users']} shoppers")
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
    p.add_argument("--segment-size", type=int, default=None,
                   help="shoppers per output file, the unit of resuming (default: the folder's run, else "
                        f"at least {SEGMENTS_PER_PROCESS} per process, at most {SEGMENT_MAX})")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in a folder that holds another run (default: resume the same run, "
                        "refuse another)")
    p.add_argument("--prep-workers", type=int, default=d.prep_workers,
                   help="processes building prompts ahead of the model (default: %(default)s, the scoring "
                        "process itself; one process feeds ~550-900 shoppers/s, so a GPU wants 2-4)")
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
        print(json.dumps({k: res[k] for k in ("n_users", "n_scored", "n_resumed", "world_size", "wall_s",
                                              "shoppers_per_s")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
