"""`TrainConfig`: every setting of a LoRA fine-tuning run, checked at construction.

Read from YAML with `TrainConfig.from_yaml` (unknown keys are an error), written
beside the adapter as `train_config.json` (sorted keys) and read back with
`TrainConfig.from_json` (unknown keys are warned about and skipped). This
module knows nothing about torch or models.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_MODULES = ("gate_proj", "up_proj", "down_proj")
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
RESUME = ("auto", "never")


@dataclass(frozen=True)
class TrainConfig:
    """A LoRA fine-tuning run: data, adapter, optimiser, schedule, outputs."""

    # model and data
    model: str = "smollm2-135m"  # registry name (llmint.models) or a local model folder / GGUF file
    dataset: str = "movielens"  # a name from llmint.loaders.DATASETS or a file path
    level: int | None = None  # category level; None = the dataset's default level
    prompt: str = "next_interest"  # template name in prompts/
    serialize: Mapping[str, Any] = field(default_factory=dict)  # SerializeConfig overrides
    split_seed: int = 0  # seed of the split's tie shuffle (same as the evaluation's)
    max_examples: int | None = (
        20_000  # training examples drawn from the training prefixes (None = all)
    )
    max_valid_examples: int = 500  # validation cases for validation loss (0 = none)
    min_history: int = 1  # shortest history a training example may have
    max_length: int = 1024  # longest prompt + completion in tokens; longer examples are skipped
    max_explanation_tokens: int = 60  # budget of the explanation target
    # LoRA
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ATTENTION_MODULES  # any of ATTENTION_MODULES + MLP_MODULES
    # optimisation
    epochs: int = 1
    max_steps: int | None = None  # optimiser steps in all; overrides epochs (None = epochs decide)
    # wall-clock budget of the optimiser loop: past it, stop after the current step, validate and write the
    # adapter (and a checkpoint, if save_every > 0, so a later run resumes); the schedule is not shortened
    max_train_seconds: float | None = None
    batch_size: int = 8  # examples per device per micro-batch
    grad_accum: int = 1  # micro-batches per optimiser step
    learning_rate: float = 3e-4
    weight_decay: float = 0.0
    warmup_ratio: float = (
        0.03  # share of optimiser steps with linear warm-up, then linear decay to 0
    )
    max_grad_norm: float = 1.0  # 0 = no clipping
    length_group: int = 50  # batches per length-sorted group (1 = plain shuffle)
    # runtime
    device: str = "auto"  # auto = the accelerator's choice; cpu forces CPU
    mixed_precision: str = "auto"  # auto = bf16 on a GPU that supports it, else no
    seed: int = 0  # example sampling, shuffling, LoRA init, dropout
    out_dir: str = "runs/lora"
    log_every: int = 10  # optimiser steps between loss log lines
    eval_every: int = 200  # optimiser steps between validation passes (0 = only at the end)
    save_every: int = 500  # optimiser steps between resumable checkpoints (0 = never)
    keep_checkpoints: int = 2  # newest checkpoint-* folders kept
    resume: str = (
        "auto"  # auto = continue from the newest out_dir/checkpoint-*; never = start afresh
    )
    progress: bool = True  # tqdm progress bar

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if isinstance(self.target_modules, str):
            set_(self, "target_modules", (self.target_modules,))
        set_(self, "target_modules", tuple(self.target_modules))
        if not isinstance(self.serialize, Mapping):
            raise ValueError(
                f"serialize={self.serialize!r}; expected a mapping of SerializeConfig fields"
            )
        set_(self, "serialize", dict(self.serialize))
        allowed = ATTENTION_MODULES + MLP_MODULES
        bad = [m for m in self.target_modules if m not in allowed]
        if bad or not self.target_modules:
            raise ValueError(
                f"target_modules={list(self.target_modules)}; allowed: {list(allowed)}"
            )
        _positive(
            self,
            "lora_r",
            "lora_alpha",
            "epochs",
            "batch_size",
            "grad_accum",
            "max_length",
            "log_every",
            "keep_checkpoints",
            "length_group",
            "max_explanation_tokens",
        )
        _non_negative(
            self,
            "eval_every",
            "save_every",
            "min_history",
            "max_valid_examples",
            "weight_decay",
            "max_grad_norm",
            "split_seed",
            "seed",
        )
        for name in ("max_examples", "max_steps", "level"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ValueError(f"{name}={v!r}; expected an int >= 1 or None")
        mts = self.max_train_seconds
        if mts is not None and (isinstance(mts, bool) or not isinstance(mts, int | float) or not mts > 0):
            raise ValueError(f"max_train_seconds={mts!r}; expected a number > 0 or None")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout={self.lora_dropout}; expected 0 <= dropout < 1")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio={self.warmup_ratio}; expected 0 <= ratio < 1")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate}; expected > 0")
        for name, allowed_values in (
            ("mixed_precision", MIXED_PRECISION),
            ("device", DEVICES),
            ("resume", RESUME),
        ):
            if getattr(self, name) not in allowed_values:
                raise ValueError(f"{name}={getattr(self, name)!r}; allowed: {list(allowed_values)}")
        if not self.model or not self.dataset or not self.out_dir:
            raise ValueError("model, dataset and out_dir must be non-empty strings")

    # --- (de)serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples as lists)."""
        d = dataclasses.asdict(self)
        d["target_modules"] = list(self.target_modules)
        d["serialize"] = dict(self.serialize)
        return d

    def to_json(self) -> str:
        """The config as JSON with sorted keys."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, strict: bool = True) -> TrainConfig:
        """Build from a mapping; unknown keys raise ValueError (strict) or are warned about."""
        if not isinstance(d, Mapping):
            raise ValueError(f"a train config must be a mapping, got {type(d).__name__}")
        known = cls.field_names()
        unknown = sorted(k for k in d if k not in known)
        if unknown:
            msg = f"unknown TrainConfig key(s) {unknown}; allowed: {known}"
            if strict:
                raise ValueError(msg)
            warnings.warn(msg + " (skipped)", stacklevel=2)
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a YAML file of TrainConfig fields; unknown keys are an error."""
        import yaml

        text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
        try:
            return cls.from_dict(data, strict=True)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from None

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        """Read a written `train_config.json`; unknown keys are warned about and skipped."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")), strict=False)


def _positive(cfg: TrainConfig, *names: str) -> None:
    for n in names:
        v = getattr(cfg, n)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{n}={v!r}; expected an int >= 1")


def _non_negative(cfg: TrainConfig, *names: str) -> None:
    for n in names:
        v = getattr(cfg, n)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"{n}={v!r}; expected a number >= 0")


__all__ = ["ATTENTION_MODULES", "MLP_MODULES", "TrainConfig"]
