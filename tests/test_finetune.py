"""The LoRA trainer (fast tier): a tiny random Llama and a WordLevel tokenizer built in-process."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from finetune.config import TrainConfig  # noqa: E402
from finetune.train import (  # noqa: E402
    IGNORE,
    Tokenized,
    checkpoints,
    collate,
    completion_loss,
    config_from_args,
    length_grouped_batches,
    main,
    make_parser,
    prompt_ids,
    tokenize_example,
)
from llmint.schema import Dataset, Event, Item  # noqa: E402

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["[PAD]", "[UNK]", "<|im_start|>", "<|im_end|>"]

EXAMPLE = {
    "prompt": [
        {"role": "system", "content": "You predict the next interest ."},
        {"role": "user", "content": "[1] bought pens in Office > Pens"},
    ],
    "completion": "Office > Paper\nNext interest : Office > Paper . Evidence : [1] bought pens",
}


def tiny_dataset() -> Dataset:
    cats = {"a": ("Office", "Paper"), "b": ("Office", "Pens"), "c": ("Tech", "Cables")}
    items = {
        f"{k}{n}": Item(f"{k}{n}", f"{word} number {n}", cats[k])
        for k, word in (("a", "notes"), ("b", "pens"), ("c", "cable"))
        for n in range(3)
    }
    seqs = ["a0 b0 a1 b1 a2 c0", "b0 b1 a0 c1 a1", "c0 c1 a2 b2 a0 b0", "a1 a2 b1 c2 c0"]
    events = [
        Event(f"u{u}", iid, "purchase", timestamp=float(t))
        for u, s in enumerate(seqs)
        for t, iid in enumerate(s.split())
    ]
    return Dataset("tinyshop", items, events, clock="unix", default_level=2)


def _corpus() -> list[str]:
    """Words the tiny tokenizer knows: the tiny shop's examples as this checkout renders them."""
    from llmint.examples import build_examples
    from llmint.prompts import load_prompt
    from llmint.serialize import SerializeConfig
    from llmint.split import make_split

    ds = tiny_dataset()
    split = make_split(ds.histories())
    exs = build_examples(
        split, ds, 2, prompt=load_prompt("next_interest"), serialize_cfg=SerializeConfig()
    ) + [EXAMPLE]
    exs += build_examples(
        split,
        ds,
        2,
        prompt=load_prompt("next_interest"),
        serialize_cfg=SerializeConfig(),
        source="valid",
    )
    return (
        ["system user assistant"]
        + [m["content"] for e in exs for m in e["prompt"]]
        + [e["completion"] for e in exs]
    )


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """A 16-wide model gains nothing from threads; on a busy 2-core machine they cost 30x."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(_corpus(), trainers.WordLevelTrainer(special_tokens=SPECIALS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        eos_token="<|im_end|>",
        chat_template=CHAT_TEMPLATE,
    )


@pytest.fixture(scope="session")
def tiny_model_once(tiny_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=32,
        vocab_size=len(tiny_tokenizer),
        max_position_embeddings=1024,
        eos_token_id=tiny_tokenizer.eos_token_id,
        pad_token_id=tiny_tokenizer.pad_token_id,
        bos_token_id=None,
    )
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture
def tiny_model(tiny_model_once):
    return copy.deepcopy(tiny_model_once)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model_once, tiny_tokenizer, tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-llama")
    tiny_model_once.save_pretrained(d)
    tiny_tokenizer.save_pretrained(d)
    return d


# --- the training target ---------------------------------------------------------------------


def test_supervised_tokens_are_exactly_completion_plus_eos(tiny_tokenizer):
    t = tokenize_example(EXAMPLE, tiny_tokenizer)
    completion = tiny_tokenizer(EXAMPLE["completion"], add_special_tokens=False)["input_ids"]
    supervised = [tok for tok in t.labels if tok != IGNORE]
    assert supervised == completion + [tiny_tokenizer.eos_token_id]
    n_prompt = len(t.input_ids) - len(supervised)
    assert t.labels[:n_prompt] == [IGNORE] * n_prompt  # the prompt is context only
    assert t.input_ids[n_prompt:] == supervised  # the supervised tokens are the sequence's tail
    assert t.input_ids[:n_prompt] == prompt_ids(tiny_tokenizer, EXAMPLE["prompt"])
    prompt_text = tiny_tokenizer.decode(t.input_ids[:n_prompt])
    assert prompt_text.startswith("<|im_start|> system") and prompt_text.endswith(
        "<|im_start|> assistant"
    )
    assert "UNK" not in tiny_tokenizer.decode(supervised)


def test_collate_left_pads_and_masks_padding(tiny_tokenizer):
    a = Tokenized([5, 6, 7, 8], [IGNORE, IGNORE, 7, 8])
    b = Tokenized([5, 9], [IGNORE, 9])
    batch = collate([a, b], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [0, 0, 5, 9]]
    assert batch["labels"].tolist() == [[IGNORE, IGNORE, 7, 8], [IGNORE, IGNORE, IGNORE, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3], [0, 0, 0, 1]]
    assert batch["keep"] == 3  # longest completion (2) + 1


def test_batched_completion_loss_equals_per_example_full_loss(tiny_model, tiny_tokenizer):
    """Left padding + logits_to_keep gives the same loss as a full pass per example."""
    import torch.nn.functional as F

    other = {**EXAMPLE, "completion": "Tech > Cables"}
    toks = [tokenize_example(e, tiny_tokenizer) for e in (EXAMPLE, other)]
    toks.append(
        Tokenized(
            toks[0].input_ids[:-3] + toks[1].input_ids[-4:],
            toks[0].labels[:-3] + toks[1].labels[-4:],
        )
    )
    with torch.no_grad():
        got, n = completion_loss(tiny_model, collate(toks, tiny_tokenizer.pad_token_id))
        want, n_want = 0.0, 0
        for t in toks:
            logits = tiny_model(torch.tensor([t.input_ids])).logits[0, :-1]
            y = torch.tensor(t.labels[1:])
            want += F.cross_entropy(logits, y, ignore_index=IGNORE, reduction="sum").item()
            n_want += int((y != IGNORE).sum())
    assert int(n) == n_want == sum(t.n_completion for t in toks)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_one_step_moves_lora_b_and_not_the_base(tiny_model, tiny_tokenizer):
    from peft import LoraConfig, get_peft_model

    from llmint.peft_compat import quiet_peft

    with quiet_peft():
        model = get_peft_model(
            tiny_model,
            LoraConfig(
                r=4,
                lora_alpha=8,
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                task_type="CAUSAL_LM",
            ),
        )
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss, n = completion_loss(
        model, collate([tokenize_example(EXAMPLE, tiny_tokenizer)], tiny_tokenizer.pad_token_id)
    )
    (loss / n).backward()
    opt.step()
    after = dict(model.named_parameters())
    lora_b = [k for k in before if "lora_B" in k]
    base = [k for k in before if "lora_" not in k]
    assert len(lora_b) == 2 * 4 and base
    assert all(not torch.equal(before[k], after[k]) for k in lora_b)
    assert all(torch.equal(before[k], after[k]) for k in base)
    assert all(not after[k].requires_grad for k in base)


@pytest.mark.parametrize("lengths, bs", [([5, 1, 4, 2, 3], 2), (list(range(20)), 3)])
def test_length_grouped_batches_cover_every_example_once(lengths, bs):
    batches = length_grouped_batches(lengths, bs, seed=3, group=2)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    assert batches == length_grouped_batches(lengths, bs, seed=3, group=2)
    assert all(len(b) <= bs for b in batches)


# --- the config ------------------------------------------------------------------------------


def test_config_checks_values_and_keys(tmp_path):
    with pytest.raises(ValueError, match="target_modules.*allowed"):
        TrainConfig(target_modules=("q_proj", "w_in"))
    with pytest.raises(ValueError, match="mixed_precision='fp8'; allowed"):
        TrainConfig(mixed_precision="fp8")
    with pytest.raises(ValueError, match="lora_r=0"):
        TrainConfig(lora_r=0)
    for bad_seconds in (0, -1.0, True, "60"):
        with pytest.raises(ValueError, match="max_train_seconds"):
            TrainConfig(max_train_seconds=bad_seconds)
    assert TrainConfig(max_train_seconds=90).max_train_seconds == 90
    bad = tmp_path / "bad.yaml"
    bad.write_text("lora_r: 8\nlearning_rat: 0.1\n")
    with pytest.raises(ValueError, match="unknown TrainConfig key.*learning_rat"):
        TrainConfig.from_yaml(bad)
    good = tmp_path / "good.yaml"
    good.write_text("lora_r: 8\ntarget_modules: [q_proj, v_proj]\nserialize: {}\n")
    cfg = TrainConfig.from_yaml(good)
    assert cfg.lora_r == 8 and cfg.target_modules == ("q_proj", "v_proj")
    js = tmp_path / "c.json"
    js.write_text(json.dumps({**cfg.to_dict(), "from_the_future": 1}))
    with pytest.warns(UserWarning, match="from_the_future"):
        assert TrainConfig.from_json(js) == cfg


def test_shipped_configs_load():
    folder = Path(__file__).resolve().parents[1] / "finetune" / "configs"
    files = sorted(folder.glob("*.yaml"))
    assert files
    for f in files:
        TrainConfig.from_yaml(f)


def test_cli_flags_override_the_config_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("dataset: office\nlora_r: 8\n")
    args = make_parser().parse_args(
        [
            "--config",
            str(f),
            "--lora-r",
            "4",
            "--max-steps",
            "3",
            "--target-modules",
            "[q_proj, v_proj]",
            "--level",
            "null",
            "--out-dir",
            "1e3",
        ]
    )
    cfg = config_from_args(args)
    assert (cfg.dataset, cfg.lora_r, cfg.max_steps, cfg.target_modules, cfg.level, cfg.out_dir) == (
        "office",
        4,
        3,
        ("q_proj", "v_proj"),
        None,
        "1e3",
    )


# --- end to end ------------------------------------------------------------------------------


def _cfg(tmp_path: Path, model: str, **kw) -> TrainConfig:
    base = dict(
        model=model,
        dataset="tinyshop",
        out_dir=str(tmp_path / "run"),
        max_steps=3,
        batch_size=2,
        grad_accum=1,
        learning_rate=5e-3,
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.1,
        save_every=1,
        keep_checkpoints=3,
        eval_every=2,
        log_every=1,
        max_valid_examples=3,
        max_length=512,
        device="cpu",
        progress=False,
        seed=1,
    )
    return TrainConfig(**{**base, **kw})


def _lora(adapter: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(adapter / "adapter_model.safetensors"))


def test_main_trains_writes_and_resumes(tmp_path, tiny_model_dir):
    cfg = _cfg(tmp_path, str(tiny_model_dir))
    seen: list[int] = []
    adapter = main(
        cfg,
        dataset=tiny_dataset(),
        eval_hook=lambda m, tok, step: seen.append(step) or {"hook_metric": 1.0},
    )
    assert adapter == tmp_path / "run" / "adapter"
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "train_config.json",
        "metrics.json",
    ):
        assert (adapter / name).is_file(), name
    text = (adapter / "train_config.json").read_text()
    assert list(json.loads(text)) == sorted(json.loads(text))
    written = TrainConfig.from_json(adapter / "train_config.json")
    assert written.level == 2 and written.lora_r == 4  # the resolved config
    metrics = json.loads((adapter / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["resumed_from"] is None
    assert metrics["valid_loss"] > 0 and metrics["final_eval"]["hook_metric"] == 1.0
    assert seen == [0, 2, 3]
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["event"] == "train"] == [1, 2, 3]
    assert all(r["loss"] > 0 for r in log if r["event"] == "train")
    assert [s for s, _ in checkpoints(tmp_path / "run")] == [1, 2, 3]
    first = _lora(adapter)
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in first.items())

    # interrupted after step 2: resuming replays step 3 exactly (data order, dropout RNG, optimiser)
    import shutil

    shutil.rmtree(tmp_path / "run" / "checkpoint-3")
    shutil.rmtree(adapter)
    again = main(cfg, dataset=tiny_dataset())
    metrics = json.loads((again / "metrics.json").read_text())
    assert metrics["resumed_from"] == 2 and metrics["steps"] == 3
    assert metrics["valid_loss_initial"] > 0  # the log (and metrics history) spans both sessions
    assert [r["step"] for r in metrics["history"] if r["event"] == "train"] == [1, 2, 3, 3]
    second = _lora(again)
    assert second.keys() == first.keys()
    for k in first:
        torch.testing.assert_close(second[k], first[k], rtol=1e-5, atol=1e-7)


def test_a_time_budget_stops_after_a_step_writes_the_adapter_and_a_later_run_resumes(tmp_path, tiny_model_dir):
    cfg = _cfg(tmp_path, str(tiny_model_dir), save_every=2, eval_every=0, max_train_seconds=1e-6)
    adapter = main(cfg, dataset=tiny_dataset())
    metrics = json.loads((adapter / "metrics.json").read_text())
    assert metrics["stopped_by_time"] is True
    assert (metrics["steps"], metrics["total_steps"]) == (1, 3)
    assert metrics["valid_loss"] > 0  # the final validation still ran
    assert [r for r in metrics["history"] if r["event"] == "time_limit"][0]["step"] == 1
    assert [s for s, _ in checkpoints(tmp_path / "run")] == [1]  # saved at the stop, off the save_every grid
    assert (adapter / "adapter_model.safetensors").is_file()

    rest = main(_cfg(tmp_path, str(tiny_model_dir), save_every=2, eval_every=0), dataset=tiny_dataset())
    metrics = json.loads((rest / "metrics.json").read_text())
    assert (metrics["resumed_from"], metrics["steps"], metrics["stopped_by_time"]) == (1, 3, False)
    assert [s for s, _ in checkpoints(tmp_path / "run")] == [1, 2, 3]


def test_main_accepts_an_injected_model_object(tmp_path, tiny_model, tiny_tokenizer):
    """...and wrapping it in LoRA prints no FutureWarning of peft's about `is_gradient_checkpointing`."""
    import warnings

    cfg = _cfg(tmp_path, "injected", max_steps=1, save_every=0, max_valid_examples=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adapter = main(cfg, dataset=tiny_dataset(), model=tiny_model, tokenizer=tiny_tokenizer)
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]
    assert (adapter / "adapter_model.safetensors").is_file()
    assert not checkpoints(tmp_path / "run")
    metrics = json.loads((adapter / "metrics.json").read_text())
    assert metrics["n_valid"] == 0 and metrics["valid_loss"] is None


def test_resume_refuses_other_data(tmp_path, tiny_model_dir):
    cfg = _cfg(tmp_path, str(tiny_model_dir), max_steps=1, max_valid_examples=0)
    main(cfg, dataset=tiny_dataset())
    with pytest.raises(ValueError, match="data_sha256"):
        main(TrainConfig(**{**cfg.to_dict(), "seed": 2}), dataset=tiny_dataset())


# --- launched as accelerate and torchrun run it -----------------------------------------------

_RUNNER = """
import json, sys
sys.path.insert(0, {tests!r})
from test_finetune import tiny_dataset
from finetune.config import TrainConfig
from finetune.train import main
main(TrainConfig.from_json(sys.argv[1]), dataset=tiny_dataset())
"""


def _launch(tmp_path: Path, tiny_model_dir: Path, launcher: list[str], **kw) -> dict:
    import os
    import subprocess
    import sys

    cfg = _cfg(tmp_path, str(tiny_model_dir), **{"max_steps": 2, "save_every": 0, "eval_every": 0,
                                                 "max_valid_examples": 2, **kw})
    cfg_path = tmp_path / "train_config.json"
    cfg_path.write_text(json.dumps(cfg.to_dict()))
    runner = tmp_path / "runner.py"
    runner.write_text(_RUNNER.format(tests=str(Path(__file__).parent)))
    bindir = Path(sys.executable).parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([str(bindir / launcher[0]), *launcher[1:], str(runner), str(cfg_path)], env=env,
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    adapter = tmp_path / "run" / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()
    return json.loads((adapter / "metrics.json").read_text())


def test_accelerate_launch_on_one_device(tmp_path, tiny_model_dir):
    """The documented `accelerate launch --num_processes 1 -m finetune.train` path, on CPU."""
    m = _launch(tmp_path, tiny_model_dir, ["accelerate", "launch", "--cpu", "--num_processes", "1",
                                           "--num_machines", "1", "--mixed_precision", "no",
                                           "--dynamo_backend", "no"])
    assert m["steps"] == 2 and m["num_processes"] == 1 and m["valid_loss"] > 0


def test_two_processes_train_one_adapter_with_ddp(tmp_path, tiny_model_dir):
    """Two CPU processes (torchrun, gloo): each rank takes its batches, the main one writes the adapter."""
    m = _launch(tmp_path, tiny_model_dir, ["torchrun", "--nproc_per_node", "2"])
    assert m["steps"] == 2 and m["num_processes"] == 2 and m["valid_loss"] > 0


def test_two_processes_agree_to_stop_on_the_time_budget(tmp_path, tiny_model_dir):
    """max_train_seconds under DDP: the ranks agree (one all-reduce a step), stop at the same step, no hang."""
    m = _launch(tmp_path, tiny_model_dir, ["torchrun", "--nproc_per_node", "2"], max_steps=3, max_train_seconds=1e-6)
    assert (m["steps"], m["stopped_by_time"], m["num_processes"]) == (1, True, 2) and m["valid_loss"] > 0
