"""Optional vLLM engine for explanation generation, for users who have vLLM and a CUDA GPU.

vLLM is not a dependency (it pins its own CUDA build of torch): `VLLMGenerator` imports it
when built and says how to install it when missing. It loads the same weights the ranker
scores with (the HF folder of `LoadedModel.folder`: a GGUF's safetensors conversion) and
serves a peft adapter folder as a vLLM LoRA (`enable_lora`, `LoRARequest`), with automatic
prefix caching, so the system turn every prompt shares is computed once. Decoding is greedy
and stops at EOS, as `llmint.explanation.greedy_decode` does, so the texts match the
transformers path up to the engines' numerics; prompts go in as token ids, never re-tokenised.

Use it through `llmint.explanation.explain_predictions(..., generator=VLLMGenerator(...))` or
`llmint explain-eval --backend vllm`. Scoring stays on the `CategoryScorer` (vLLM has no
batched label pass through a prefix tree).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelError

INSTALL_HINT = ("vLLM is not installed: `pip install vllm` on a machine with a CUDA GPU (it brings its own "
                "torch build, so use a separate environment), or use the default transformers backend")
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts


def adapter_rank(adapter: str | Path) -> int:
    """The LoRA rank `r` in a peft adapter folder's adapter_config.json."""
    path = Path(adapter) / "adapter_config.json"
    try:
        r = json.loads(path.read_text(encoding="utf-8"))["r"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{path}: not a peft LoRA adapter config with a rank 'r' ({e})") from e
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ModelError(f"{path}: r={r!r}; expected an int >= 1")
    return r


def max_lora_rank(r: int) -> int:
    """The smallest `max_lora_rank` vLLM accepts that holds rank `r`."""
    for allowed in LORA_RANKS:
        if r <= allowed:
            return allowed
    raise ModelError(f"LoRA rank {r} exceeds vLLM's largest max_lora_rank {LORA_RANKS[-1]}")


@dataclass(frozen=True)
class VLLMConfig:
    """How the vLLM engine is started (`vllm.LLM` arguments)."""

    dtype: str = "auto"  # the folder's dtype ("bfloat16", "float16" also accepted)
    gpu_memory_utilization: float = 0.5  # leave room for the scorer on the same GPU
    max_model_len: int = 4096  # prompts (<= ~1,000 tokens) + explanation
    enforce_eager: bool = False  # True skips CUDA graph capture (faster start, slower decode)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ValueError(f"gpu_memory_utilization={self.gpu_memory_utilization!r}; expected in (0, 1]")
        if self.max_model_len < 64:
            raise ValueError(f"max_model_len={self.max_model_len!r}; expected >= 64")


class VLLMGenerator:
    """A `llmint.explanation.TextGenerator` on a vLLM engine: all heads of a call in one batch.

    Args:
        model_folder: the HF folder of the base model (`LLMCategoryRanker.model_folder`).
        eos_token_id: where decoding stops (the tokenizer's EOS).
        adapter: a peft LoRA adapter folder served with every request, or None (zero-shot).
        config: engine settings.
    """

    def __init__(self, model_folder: str | Path, eos_token_id: int, adapter: str | Path | None = None,
                 config: VLLMConfig | None = None) -> None:
        try:
            import vllm
            from vllm.lora.request import LoRARequest
        except ImportError as e:
            raise ModelError(INSTALL_HINT) from e
        folder = Path(model_folder)
        if not (folder / "config.json").is_file():
            raise ModelError(f"{folder}: not a Hugging Face model folder (no config.json)")
        self.config = cfg = config or VLLMConfig()
        kwargs: dict[str, Any] = dict(
            model=str(folder), tokenizer=str(folder), dtype=cfg.dtype, seed=cfg.seed,
            gpu_memory_utilization=cfg.gpu_memory_utilization, max_model_len=cfg.max_model_len,
            enforce_eager=cfg.enforce_eager, enable_prefix_caching=True,
        )
        self.lora = None
        if adapter is not None:
            kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=max_lora_rank(adapter_rank(adapter)))
            self.lora = LoRARequest("llmint-adapter", 1, str(Path(adapter).resolve()))
        self._vllm = vllm
        self.eos_token_id = int(eos_token_id)
        self.llm = vllm.LLM(**kwargs)

    def generate(self, heads: Sequence[Sequence[int]], max_new_tokens: int) -> list[str]:
        """Greedy text after each head, in order (vLLM returns outputs in request order)."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={max_new_tokens!r}; expected >= 1")
        params = self._vllm.SamplingParams(temperature=0.0, max_tokens=max_new_tokens,
                                           stop_token_ids=[self.eos_token_id], skip_special_tokens=True)
        prompts = [{"prompt_token_ids": [int(t) for t in h]} for h in heads]
        outs = self.llm.generate(prompts, params, lora_request=self.lora, use_tqdm=False)
        return [o.outputs[0].text.strip() for o in outs]


__all__ = ["INSTALL_HINT", "VLLMConfig", "VLLMGenerator", "adapter_rank", "max_lora_rank"]
