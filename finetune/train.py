"""LoRA fine-tuning of the bundled LLM on next-interest examples; the same script on CPU, one
GPU or several (accelerate).

    python -m finetune.train --config finetune/configs/office.yaml [--max-steps 100 ...]
    accelerate launch -m finetune.train --config finetune/configs/office.yaml

Training target: the prompt (system + user, through the tokenizer's chat
template with the assistant generation prompt) is context only; the loss falls
on the completion tokens, "<label>\\n<explanation>", followed by EOS. Labels
are -100 on the prompt and on padding. Batches are left-padded to their own
longest example, grouped by length; only the logits of the completion positions
are computed (`logits_to_keep`), so the vocabulary projection costs ~1/8 of a
full pass. The loss of an optimiser step is the mean over all its supervised
tokens (across gradient-accumulation micro-batches).

Outputs in `out_dir`: `adapter/` (peft `save_pretrained`, plus
`train_config.json` with sorted keys and `metrics.json` beside the weights),
`log.jsonl` (one line per log/eval event) and `checkpoint-<step>/` folders
(accelerate state with the LoRA weights only) from which a run resumes.

`--max-train-seconds N` boxes the optimiser loop in wall-clock time: past it the run stops after
the current step (every process at the same step), validates and writes the adapter as usual,
with `stopped_by_time` in `metrics.json`, and saves a checkpoint (when `save_every` > 0) so
the same command resumes there later. The learning-rate schedule keeps its planned length.

This script imports the library; the library never imports it.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import math
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import TrainConfig

logger = logging.getLogger(__name__)

IGNORE = -100
EvalHook = Callable[[Any, Any, int], Mapping[str, float]]
"""eval_hook(model, tokenizer, step) -> {metric: value}, called on the main process at each eval."""


# --- tokenisation and batching ---------------------------------------------------------------


@dataclass(frozen=True)
class Tokenized:
    """One example as token ids; `labels` is -100 on the prompt."""

    input_ids: list[int]
    labels: list[int]

    @property
    def n_completion(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


def eos_id(tokenizer: Any) -> int:
    """The tokenizer's EOS id (the token that ends an assistant turn and a scored label)."""
    eid = tokenizer.eos_token_id
    if eid is None:
        raise ValueError("the tokenizer has no eos_token; set one (e.g. '<|im_end|>')")
    return int(eid)


def prompt_ids(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """Token ids of the chat-formatted prompt, ending with the assistant generation prompt.

    The same function scores prompts at prediction time (`llmint.llm_ranker`).
    """
    from llmint.llm_ranker import chat_prompt_ids

    return chat_prompt_ids(tokenizer, messages)


def tokenize_example(example: Mapping[str, Any], tokenizer: Any) -> Tokenized:
    """prompt ids (chat template) + completion ids + EOS; labels supervise the completion + EOS.

    Example (schematic ids):
        prompt "<|im_start|>user ... <|im_start|>assistant" -> [5, 9, 7, 5, 8]
        completion "Paper" -> [42];  EOS = 2
        input_ids [5, 9, 7, 5, 8, 42, 2],  labels [-100, -100, -100, -100, -100, 42, 2]
    """
    p = prompt_ids(tokenizer, example["prompt"])
    c = list(tokenizer(example["completion"], add_special_tokens=False)["input_ids"]) + [
        eos_id(tokenizer)
    ]
    return Tokenized(p + c, [IGNORE] * len(p) + c)


def collate(batch: Sequence[Tokenized], pad_id: int) -> dict[str, Any]:
    """Left-pad a batch to its longest example: input_ids, attention_mask, position_ids, labels.

    Left padding puts every completion at the end of its row, so the loss needs
    only the last `keep` logits (`keep` = longest completion + 1).
    """
    import torch

    n = max(len(t.input_ids) for t in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), n), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    for r, t in enumerate(batch):
        k = len(t.input_ids)
        ids[r, n - k :] = torch.tensor(t.input_ids)
        labels[r, n - k :] = torch.tensor(t.labels)
        mask[r, n - k :] = 1
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    keep = max(t.n_completion for t in batch) + 1
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "position_ids": pos,
        "labels": labels,
        "keep": min(keep, n),
    }


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, group: int = 50
) -> list[list[int]]:
    """Shuffled batches of indices; within groups of `group` batches, examples are sorted by
    length so a batch pads little. Deterministic for a seed.

    Example:
        >>> sorted(map(sorted, length_grouped_batches([5, 1, 4, 2], 2, seed=0)))
        [[0, 2], [1, 3]]
    """
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(lengths))
    span = batch_size * max(group, 1)
    batches: list[list[int]] = []
    for s in range(0, len(perm), span):
        chunk = sorted(perm[s : s + span].tolist(), key=lambda i: -lengths[i])
        batches.extend(chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def completion_loss(model: Any, batch: Mapping[str, Any]) -> tuple[Any, Any]:
    """(sum of token cross-entropies over supervised tokens, number of supervised tokens)."""
    import torch.nn.functional as F

    keep = int(batch["keep"])
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        logits_to_keep=keep,
        use_cache=False,
    )
    logits = out.logits[:, -keep:, :]
    labels = batch["labels"][:, -keep:]
    tgt = labels[:, 1:]
    loss = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]),
        tgt.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    return loss, (tgt != IGNORE).sum()


# --- model, data -----------------------------------------------------------------------------


def _mixed_precision(cfg: TrainConfig) -> str:
    if cfg.mixed_precision != "auto":
        return cfg.mixed_precision
    import torch

    if cfg.device != "cpu" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def load_base(cfg: TrainConfig) -> tuple[Any, Any, dict[str, Any]]:
    """(model, tokenizer, provenance) of the base model named by `cfg.model`, in float32."""
    import torch

    from llmint.models import load_model

    lm = load_model(cfg.model, dtype=torch.float32, device="cpu")
    prov = {"model": cfg.model, "weights_sha256": getattr(lm, "weights_sha256", None)}
    spec = getattr(lm, "spec", None)
    if spec is not None and getattr(spec, "name", None):
        prov["spec"] = spec.name
    return lm.model, lm.tokenizer, prov


def _fingerprint(examples: Sequence[Mapping[str, Any]]) -> str:
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps(ex, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()


def build_data(cfg: TrainConfig, dataset: Any, tokenizer: Any) -> dict[str, Any]:
    """Training and validation examples (tokenised) plus facts about them for metrics.json."""
    from llmint.evidence import EXPLANATION_VERSION
    from llmint.examples import EXAMPLES_VERSION, build_examples
    from llmint.llm_ranker import token_counter
    from llmint.prompts import load_prompt
    from llmint.serialize import SerializeConfig
    from llmint.split import SplitConfig, make_split

    level = cfg.level or dataset.default_level
    split = make_split(dataset.histories(), SplitConfig(seed=cfg.split_seed))
    prompt = load_prompt(cfg.prompt)
    scfg = SerializeConfig(**cfg.serialize)

    count = token_counter(tokenizer)
    common = dict(
        prompt=prompt,
        serialize_cfg=scfg,
        min_history=cfg.min_history,
        count_tokens=count,
        max_explanation_tokens=cfg.max_explanation_tokens,
    )
    train_ex = build_examples(
        split,
        dataset,
        level,
        source="train",
        max_examples=cfg.max_examples,
        seed=cfg.seed,
        **common,
    )
    valid_ex = (
        build_examples(
            split,
            dataset,
            level,
            source="valid",
            max_examples=cfg.max_valid_examples,
            seed=cfg.seed,
            **common,
        )
        if cfg.max_valid_examples
        else []
    )
    out: dict[str, Any] = {"level": level}
    for name, exs in (("train", train_ex), ("valid", valid_ex)):
        toks = [tokenize_example(e, tokenizer) for e in exs]
        kept = [t for t in toks if len(t.input_ids) <= cfg.max_length]
        if len(kept) < len(toks):
            logger.warning(
                "%s: %d of %d examples are longer than max_length=%d tokens; skipped",
                name,
                len(toks) - len(kept),
                len(toks),
                cfg.max_length,
            )
        out[name] = kept
        out[f"{name}_skipped_too_long"] = len(toks) - len(kept)
    if not out["train"]:
        raise ValueError(
            f"no training examples from {cfg.dataset!r} (max_length={cfg.max_length}, "
            f"min_history={cfg.min_history}); expected at least one"
        )
    out["provenance"] = {
        "data_sha256": _fingerprint(train_ex),
        "examples_version": EXAMPLES_VERSION,
        "explanation_version": EXPLANATION_VERSION,
        "prompt": {
            "name": cfg.prompt,
            "version": getattr(prompt, "version", None),
            "sha256": getattr(prompt, "sha256", None),
        },
        "serialize_version": _serialize_version(),
        "example": train_ex[0],
    }
    return out


def _serialize_version() -> str | None:
    from llmint import serialize

    return getattr(serialize, "SERIALIZE_VERSION", None)


# --- checkpoints -----------------------------------------------------------------------------

_CKPT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete `checkpoint-<step>` in out_dir, oldest first."""
    if not out_dir.is_dir():
        return []
    found = []
    for p in out_dir.iterdir():
        m = _CKPT.match(p.name)
        if m and (p / "trainer_state.json").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def _register_lora_state_hooks(accelerator: Any, unwrap: Callable[[], Any]) -> None:
    """Checkpoints keep only the trainable (LoRA) weights, not the frozen base model."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    def save_hook(models: list, weights: list, output_dir: str) -> None:
        weights.clear()  # accelerate would save the full base model otherwise
        if accelerator.is_main_process:
            sd = {
                k: v.detach().cpu().contiguous()
                for k, v in get_peft_model_state_dict(unwrap()).items()
            }
            save_file(sd, str(Path(output_dir) / "lora_weights.safetensors"))

    def load_hook(models: list, input_dir: str) -> None:
        models.clear()
        res = set_peft_model_state_dict(
            unwrap(), load_file(str(Path(input_dir) / "lora_weights.safetensors"))
        )
        unexpected = getattr(res, "unexpected_keys", [])
        if unexpected:
            raise RuntimeError(f"checkpoint {input_dir} has unexpected keys {unexpected[:5]}")

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


# --- the run ---------------------------------------------------------------------------------


def main(
    cfg: TrainConfig,
    *,
    dataset: Any | None = None,
    model: Any | None = None,
    tokenizer: Any | None = None,
    eval_hook: EvalHook | None = None,
) -> Path:
    """Fine-tune a LoRA adapter as `cfg` says; returns the `out_dir/adapter` folder.

    `dataset` (a `llmint.Dataset`), `model` and `tokenizer` may be passed in
    (tests, notebooks); otherwise they are loaded from `cfg.dataset` and
    `cfg.model` (a registry name or a local folder, via `llmint.models`). An
    injected model gets its LoRA layers in place: pass a copy to keep the original.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from peft import LoraConfig, get_peft_model
    from tqdm.auto import tqdm

    from llmint.peft_compat import quiet_peft

    t_start = time.perf_counter()
    out_dir = Path(cfg.out_dir)
    mp = _mixed_precision(cfg)
    accelerator = Accelerator(cpu=cfg.device == "cpu", mixed_precision=mp)
    set_seed(cfg.seed)
    main_proc = accelerator.is_main_process

    if dataset is None:
        from llmint.loaders import load_dataset

        dataset = load_dataset(cfg.dataset)
    if model is None:
        model, tok2, base_prov = load_base(cfg)
        tokenizer = tokenizer or tok2
    else:
        if tokenizer is None:
            raise ValueError("pass tokenizer= together with model=")
        base_prov = {"model": cfg.model, "weights_sha256": None, "injected": True}
    data = build_data(cfg, dataset, tokenizer)
    train, valid = data["train"], data["valid"]

    for p in model.parameters():
        p.requires_grad_(False)
    lcfg = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules),
        task_type="CAUSAL_LM",
        bias="none",
    )
    with quiet_peft():
        model = get_peft_model(model, lcfg)
    params = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)

    # the schedule: batches per epoch are fixed by the data and the seed
    world, rank = accelerator.num_processes, accelerator.process_index
    lengths = [len(t.input_ids) for t in train]
    n_batches = math.ceil(len(train) / cfg.batch_size)
    steps_per_epoch = max(n_batches // world // cfg.grad_accum, 1)
    micro_per_epoch = steps_per_epoch * cfg.grad_accum
    total_steps = cfg.max_steps if cfg.max_steps is not None else steps_per_epoch * cfg.epochs
    n_epochs = math.ceil(total_steps / steps_per_epoch)
    warmup = int(round(cfg.warmup_ratio * total_steps))

    def lr_lambda(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(total_steps - warmup, 1))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    _register_lora_state_hooks(accelerator, lambda: accelerator.unwrap_model(model))

    @functools.lru_cache(maxsize=1)
    def epoch_batches(epoch: int) -> list[list[int]]:
        b = length_grouped_batches(lengths, cfg.batch_size, cfg.seed + epoch, cfg.length_group)
        if len(b) < world * micro_per_epoch:  # fewer batches than one step needs: repeat
            b = b * math.ceil(world * micro_per_epoch / len(b))
        return b[: world * micro_per_epoch][rank::world]

    # resume
    step = 0
    resumed_from = None
    found = checkpoints(out_dir) if cfg.resume == "auto" else []
    if found:
        ck_step, ck = found[-1]
        state = json.loads((ck / "trainer_state.json").read_text())
        if state.get("data_sha256") != data["provenance"]["data_sha256"]:
            raise ValueError(
                f"{ck} was trained on other examples (data_sha256 differs); use "
                "resume='never' or another out_dir"
            )
        accelerator.load_state(str(ck))
        step = resumed_from = ck_step
        logger.info("resumed from %s (step %d of %d)", ck, step, total_steps)
    elif cfg.resume == "never" and checkpoints(out_dir) and main_proc:
        logger.warning("resume='never': ignoring the checkpoints in %s", out_dir)

    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "log.jsonl"
    if resumed_from is None and main_proc and log_path.exists():
        log_path.unlink()  # a fresh run starts a fresh log; a resumed run appends to its own

    def log(rec: dict[str, Any]) -> None:
        if main_proc:
            with log_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(rec, sort_keys=True) + "\n")

    device = accelerator.device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id(tokenizer)

    def to_device(b: dict[str, Any]) -> dict[str, Any]:
        return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in b.items()}

    @torch.no_grad()
    def evaluate() -> dict[str, float]:
        res: dict[str, float] = {}
        m = accelerator.unwrap_model(model)
        m.eval()
        if valid:
            order = sorted(range(len(valid)), key=lambda i: -len(valid[i].input_ids))
            vb = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
            tot = torch.zeros(2, dtype=torch.float64, device=device)
            for b in vb[rank::world]:
                with accelerator.autocast():
                    ls, nt = completion_loss(m, to_device(collate([valid[i] for i in b], pad)))
                tot += torch.stack([ls.double(), nt.double()])
            tot = accelerator.reduce(tot, reduction="sum")
            res["valid_loss"] = float(tot[0] / tot[1].clamp(min=1))
        if eval_hook is not None and main_proc:
            res.update({k: float(v) for k, v in eval_hook(m, tokenizer, step).items()})
        m.train()
        return res

    def run_eval() -> None:
        t0 = time.perf_counter()
        r = evaluate()
        rec = {"event": "eval", "step": step, **r, "eval_s": round(time.perf_counter() - t0, 3)}
        log(rec)
        if main_proc and r:
            logger.info("step %d: %s", step, ", ".join(f"{k}={v:.4f}" for k, v in r.items()))

    def save_checkpoint() -> None:
        ck = out_dir / f"checkpoint-{step}"
        accelerator.wait_for_everyone()
        accelerator.save_state(str(ck))
        if main_proc:
            (ck / "trainer_state.json").write_text(
                json.dumps(
                    {
                        "step": step,
                        "total_steps": total_steps,
                        "steps_per_epoch": steps_per_epoch,
                        "data_sha256": data["provenance"]["data_sha256"],
                    },
                    sort_keys=True,
                    indent=2,
                )
            )
            for _, old in checkpoints(out_dir)[: -cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    if main_proc:
        logger.info(
            "training %d LoRA parameters on %d examples (%d valid), %d steps of %d x %d x %d, "
            "device %s, mixed precision %s",
            n_trainable,
            len(train),
            len(valid),
            total_steps,
            cfg.batch_size,
            cfg.grad_accum,
            world,
            device,
            mp,
        )
    if resumed_from is None:
        log(
            {
                "event": "start",
                "total_steps": total_steps,
                "n_train": len(train),
                "n_valid": len(valid),
                "trainable_params": n_trainable,
            }
        )
        if valid or eval_hook is not None:
            run_eval()
    else:
        log({"event": "resume", "step": step, "total_steps": total_steps})

    model.train()
    bar = tqdm(
        total=total_steps,
        initial=step,
        disable=not (cfg.progress and main_proc),
        desc="lora",
        dynamic_ncols=True,
    )
    window_loss, window_tok, step_times = 0.0, 0, []
    tokens_seen = 0
    last_loss = float("nan")
    stopped_by_time = False
    t_loop = time.perf_counter()

    def out_of_time() -> bool:
        """Past max_train_seconds on any process (all processes agree, so they stop at the same step)."""
        if cfg.max_train_seconds is None:
            return False
        late = torch.tensor([float(time.perf_counter() - t_loop >= cfg.max_train_seconds)], device=device)
        return bool(accelerator.reduce(late, reduction="sum").item() > 0)

    while step < total_steps:
        epoch, in_epoch = divmod(step, steps_per_epoch)
        if epoch >= n_epochs:
            break
        batches = epoch_batches(epoch)
        micro = batches[in_epoch * cfg.grad_accum : (in_epoch + 1) * cfg.grad_accum]
        t0 = time.perf_counter()
        cols = [collate([train[i] for i in b], pad) for b in micro]
        n_tok = sum(int((c["labels"] != IGNORE).sum()) for c in cols)
        step_loss = 0.0
        for j, c in enumerate(cols):
            sync = j == len(cols) - 1
            with nullcontext() if sync else accelerator.no_sync(model):
                ls, _ = completion_loss(model, to_device(c))
                accelerator.backward(ls / max(n_tok, 1))
            step_loss += float(ls.detach())
        if cfg.max_grad_norm > 0:
            accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        step_times.append(time.perf_counter() - t0)
        tokens_seen += n_tok
        window_loss += step_loss
        window_tok += n_tok
        last_loss = step_loss / max(n_tok, 1)
        bar.update(1)
        bar.set_postfix(loss=f"{last_loss:.4f}")
        if step % cfg.log_every == 0 or step == total_steps:
            rec = {
                "event": "train",
                "step": step,
                "epoch": round(step / steps_per_epoch, 4),
                "loss": window_loss / max(window_tok, 1),
                "lr": scheduler.get_last_lr()[0],
                "step_s": round(float(np.mean(step_times[-cfg.log_every :])), 4),
            }
            log(rec)
            window_loss, window_tok = 0.0, 0
        if cfg.save_every and (step % cfg.save_every == 0 or step == total_steps):
            save_checkpoint()
        if step < total_steps and out_of_time():
            stopped_by_time = True
            if main_proc:
                logger.warning("max_train_seconds=%s reached: stopping at step %d of %d",
                               cfg.max_train_seconds, step, total_steps)
            log({"event": "time_limit", "step": step, "total_steps": total_steps,
                 "loop_s": round(time.perf_counter() - t_loop, 3)})
            if cfg.save_every and step % cfg.save_every != 0:
                save_checkpoint()  # a later run with the same out_dir resumes here
            break
        if cfg.eval_every and step % cfg.eval_every == 0 and step != total_steps:
            run_eval()
    bar.close()
    if valid or eval_hook is not None:
        run_eval()

    adapter_dir = out_dir / "adapter"
    accelerator.wait_for_everyone()
    if main_proc:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.save_pretrained(str(adapter_dir))
        resolved = TrainConfig.from_dict({**cfg.to_dict(), "level": data["level"]})
        (adapter_dir / "train_config.json").write_text(resolved.to_json(), encoding="utf-8")
        full = [json.loads(x) for x in log_path.read_text(encoding="utf-8").splitlines() if x]
        evals = [h for h in full if h["event"] == "eval"]
        metrics = {
            "steps": step,
            "total_steps": total_steps,
            "resumed_from": resumed_from,
            "stopped_by_time": stopped_by_time,
            "train_loss_last": last_loss if step_times else None,
            "valid_loss": evals[-1].get("valid_loss") if evals else None,
            "valid_loss_initial": evals[0].get("valid_loss") if evals else None,
            "final_eval": evals[-1] if evals else None,
            "n_train": len(train),
            "n_valid": len(valid),
            "skipped_too_long": {
                "train": data["train_skipped_too_long"],
                "valid": data["valid_skipped_too_long"],
            },
            "tokens_supervised_this_run": tokens_seen,
            "step_s_mean": round(float(np.mean(step_times)), 4) if step_times else None,
            "run_s": round(time.perf_counter() - t_start, 2),
            "trainable_params": n_trainable,
            "device": str(device),
            "num_processes": world,
            "mixed_precision": mp,
            "base": base_prov,
            "dataset": getattr(dataset, "name", cfg.dataset),
            "level": data["level"],
            **data["provenance"],
            "history": full,
        }
        (adapter_dir / "metrics.json").write_text(
            json.dumps(metrics, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8"
        )
        logger.info("wrote %s", adapter_dir)
    accelerator.wait_for_everyone()
    return adapter_dir


# --- command line ----------------------------------------------------------------------------


def make_parser() -> argparse.ArgumentParser:
    """`--config file.yaml` plus a `--<field>` flag per TrainConfig field (values read as YAML)."""
    import dataclasses

    p = argparse.ArgumentParser(
        prog="python -m finetune.train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, default=None, help="YAML file of TrainConfig fields")
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else "{}"
        p.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            default=argparse.SUPPRESS,
            metavar="VALUE",
            help=f"(default: {default}; overrides the config file)",
        )
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The config file (if any) with the command-line flags applied on top."""
    import yaml

    base = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    overrides = {
        k: yaml.safe_load(v) if isinstance(v, str) else v
        for k, v in vars(args).items()
        if k != "config"
    }
    for k in ("model", "dataset", "out_dir", "prompt"):  # strings stay strings ("1e3", "null")
        if k in overrides:
            overrides[k] = getattr(args, k)
    return TrainConfig.from_dict({**base.to_dict(), **overrides})


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    print(main(config_from_args(make_parser().parse_args())))
