"""The optional vLLM backend, through a stand-in `vllm` module.

vLLM needs a CUDA GPU and its own torch build, so it cannot run here. The stand-in implements
the part of vLLM's documented offline API the backend uses (`LLM`, `SamplingParams`,
`LoRARequest`, outputs in request order) with transformers + peft greedy decoding on the folder
and adapter it is asked to load. The tests check the wiring on the real model and a bundled
adapter: what the engine is asked to load and serve, the sampling settings, one batched call,
and explanations equal to the transformers path's.
"""

from __future__ import annotations

import copy
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from llmint.bundled import bundled_adapter
from llmint.errors import ModelError
from llmint.evidence import CategoryStats
from llmint.explanation import HFGenerator, explain_predictions
from llmint.llm_ranker import LLMCategoryRanker, LLMRankerConfig
from llmint.split import make_split
from llmint.vllm_backend import INSTALL_HINT, VLLMConfig, VLLMGenerator, adapter_rank, max_lora_rank

ADAPTER = bundled_adapter(None, "movielens")


@dataclass
class Calls:
    init: dict = field(default_factory=dict)
    generate: list = field(default_factory=list)


def stand_in_vllm(calls: Calls) -> dict[str, types.ModuleType]:
    """Modules `vllm`, `vllm.lora`, `vllm.lora.request` with vLLM's offline API, run by transformers."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmint.peft_compat import quiet_peft

    @dataclass(frozen=True)
    class SamplingParams:
        temperature: float = 1.0
        max_tokens: int = 16
        stop_token_ids: list | None = None
        skip_special_tokens: bool = True

    @dataclass(frozen=True)
    class LoRARequest:
        lora_name: str
        lora_int_id: int
        lora_path: str

    class LLM:
        def __init__(self, **kwargs) -> None:
            calls.init = kwargs
            self.tok = AutoTokenizer.from_pretrained(kwargs["tokenizer"], local_files_only=True)
            self.base = AutoModelForCausalLM.from_pretrained(kwargs["model"], local_files_only=True).eval()
            self.loras: dict[str, object] = {}

        def generate(self, prompts, params, lora_request=None, use_tqdm=True):
            calls.generate.append({"n": len(prompts), "params": params, "lora": lora_request})
            assert params.temperature == 0.0  # the backend only asks for greedy decoding
            model = self.base
            if lora_request is not None:
                path = lora_request.lora_path
                if path not in self.loras:
                    with quiet_peft():
                        self.loras[path] = PeftModel.from_pretrained(copy.deepcopy(self.base), path).eval()
                model = self.loras[path]
            outs = []
            for p in prompts:
                ids = torch.tensor([p["prompt_token_ids"]])
                with torch.inference_mode():
                    seq = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                         max_new_tokens=params.max_tokens, eos_token_id=params.stop_token_ids,
                                         pad_token_id=params.stop_token_ids[0])
                text = self.tok.decode(seq[0, ids.shape[1]:], skip_special_tokens=params.skip_special_tokens)
                outs.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(text=text)]))
            return outs

    vllm, lora, request = (types.ModuleType(n) for n in ("vllm", "vllm.lora", "vllm.lora.request"))
    vllm.LLM, vllm.SamplingParams, request.LoRARequest = LLM, SamplingParams, LoRARequest
    vllm.lora, lora.request = lora, request
    return {"vllm": vllm, "vllm.lora": lora, "vllm.lora.request": request}


def test_lora_rank_is_read_from_the_adapter_and_rounded_up_to_a_rank_vllm_accepts(tmp_path) -> None:
    assert adapter_rank(ADAPTER) == 8
    assert [max_lora_rank(r) for r in (1, 8, 9, 64, 300, 512)] == [8, 8, 16, 64, 320, 512]
    with pytest.raises(ModelError, match="exceeds vLLM's largest max_lora_rank 512"):
        max_lora_rank(513)
    with pytest.raises(ModelError, match="not a peft LoRA adapter config"):
        adapter_rank(tmp_path)
    (tmp_path / "adapter_config.json").write_text('{"r": 0}')
    with pytest.raises(ModelError, match="r=0; expected an int >= 1"):
        adapter_rank(tmp_path)
    with pytest.raises(ValueError, match="gpu_memory_utilization=0"):
        VLLMConfig(gpu_memory_utilization=0)


def test_without_vllm_the_backend_says_how_to_install_it(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # importing it raises ImportError
    with pytest.raises(ModelError, match="vLLM is not installed: `pip install vllm`") as e:
        VLLMGenerator(tmp_path, eos_token_id=2)
    assert str(e.value) == INSTALL_HINT


@pytest.mark.real
def test_explanations_through_vllm_equal_the_transformers_path(smollm2, ds, monkeypatch) -> None:
    calls = Calls()
    for name, module in stand_in_vllm(calls).items():
        monkeypatch.setitem(sys.modules, name, module)
    r = LLMCategoryRanker("llm", ds, 2, LLMRankerConfig(adapter=str(ADAPTER)), loaded=smollm2)
    split = make_split(ds.histories())
    stats = CategoryStats.from_sequences(split.train.values(), ds.items, r.taxonomy)
    hists = [c.history for c in split.test[:3]]
    labels = [r.taxonomy.labels[i % len(r.taxonomy.labels)] for i in range(3)]

    folder = r.model_folder
    assert isinstance(folder, Path) and (folder / "config.json").is_file()
    gen = VLLMGenerator(folder, r.tokenizer.eos_token_id, adapter=ADAPTER)
    assert calls.init["model"] == calls.init["tokenizer"] == str(folder)
    assert calls.init["enable_lora"] and calls.init["max_lora_rank"] == 8 and calls.init["max_loras"] == 1
    assert calls.init["enable_prefix_caching"] and calls.init["gpu_memory_utilization"] == 0.5

    via_vllm = explain_predictions(r, hists, labels, stats, max_new_tokens=24, generator=gen)
    via_hf = explain_predictions(r, hists, labels, stats, max_new_tokens=24, generator=HFGenerator(r))
    assert [e.model_text for e in via_vllm] == [e.model_text for e in via_hf]
    assert all(e.model_text for e in via_hf)
    assert [e.text for e in via_vllm] == [e.text for e in via_hf]
    assert [e.source for e in via_vllm] == [e.source for e in via_hf]
    (call,) = calls.generate  # all three heads in one batched call
    assert call["n"] == 3 and call["params"].max_tokens == 24
    assert call["params"].stop_token_ids == [r.tokenizer.eos_token_id]
    assert Path(call["lora"].lora_path) == Path(ADAPTER).resolve()


@pytest.mark.real
def test_explain_eval_with_the_vllm_backend_fails_cleanly_without_vllm(monkeypatch) -> None:
    from click.testing import CliRunner

    from llmint.cli import cli

    monkeypatch.setitem(sys.modules, "vllm", None)
    res = CliRunner().invoke(cli, ["explain-eval", "--dataset", "movielens", "--n", "1", "--backend", "vllm"])
    assert res.exit_code != 0
    assert "vLLM is not installed" in res.output and "Traceback" not in res.output
