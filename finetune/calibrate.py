"""Fit an adapter's softmax temperature on validation cases and write `calibration.json` beside it.

    python -m finetune.calibrate --adapter runs/lora-movielens-cpu/adapter --dataset movielens

The temperature minimises the negative log-likelihood of the validation targets
(`llmint.scoring.fit_temperature`; never the test split). `InterestService` reads
it when its config leaves `temperature` unset (`llmint.bundled.calibrated_temperature`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger("finetune.calibrate")


def calibrate(adapter: str, dataset: str, *, level: int | None = None, model: str | None = None,
              n_valid: int = 200, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Fit the temperature of `adapter` on `n_valid` seeded validation cases; write and return the record."""
    from tqdm import tqdm

    from llmint.llm_ranker import LLMCategoryRanker, LLMRankerConfig
    from llmint.loaders import load_dataset
    from llmint.service import adapter_sha256
    from llmint.split import SplitConfig, make_split

    if not (Path(adapter) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter} is not a peft adapter folder (no adapter_config.json)")
    ds = load_dataset(dataset)
    split = make_split(ds.histories(), SplitConfig(seed=seed))
    rcfg = LLMRankerConfig(model=model, adapter=adapter, max_valid=n_valid, seed=seed)
    ranker = LLMCategoryRanker("llm+adapter", ds, level or ds.default_level, rcfg)
    with tqdm(desc="calibrate", total=min(n_valid, len(split.valid)), disable=not progress) as bar:
        ranker.fit_events(split.valid, progress=bar.update)
    record = {"dataset": ds.name, "level": ranker.taxonomy.level, "seed": seed,
              "adapter_sha256": adapter_sha256(adapter), **ranker.fit_note}
    out = Path(adapter) / "calibration.json"
    out.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    logger.info("wrote %s: temperature %.4f on %d validation cases", out, ranker.temperature,
                record.get("n_valid", 0))
    return record


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m finetune.calibrate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--adapter", required=True, help="peft adapter folder (calibration.json is written there)")
    p.add_argument("--dataset", required=True, help="dataset the adapter predicts (name or events file)")
    p.add_argument("--level", type=int, default=None, help="category level (default: the dataset's)")
    p.add_argument("--model", default=None, help="base model (default: smollm2-135m)")
    p.add_argument("--n-valid", type=int, default=200, help="validation cases (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="split and sampling seed (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    a = make_parser().parse_args(argv)
    if a.n_valid < 1:
        print("--n-valid must be >= 1", file=sys.stderr)
        return 2
    try:
        rec = calibrate(a.adapter, a.dataset, level=a.level, model=a.model, n_valid=a.n_valid, seed=a.seed)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(rec, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
