"""The LLM as a next-category ranker: chat prompt in, calibrated distribution over the taxonomy out.

`LLMCategoryRanker` turns a shopper's events into the `next_interest` prompt
(the serialised history inside the chat template, exactly as fine-tuning sees
it), scores every taxonomy label with `CategoryScorer` (one prompt pass, the
KV cache reused for all labels) and returns softmax(logprobs / T), with T
fitted on validation cases. The scored label is the first line of the
fine-tuning completion: `label + "\\n"`, so zero-shot and LoRA models are read
the same way. Every output column is a taxonomy label, whatever the prompt says.

In the evaluation harness it is an *event-level* system: besides the `Ranker`
members it has `fit_events(valid_cases)` and `predict_events(histories)`, and
the harness feeds it events (`llmint.split.Case`) instead of integer tokens.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .bundled import calibrated_temperature
from .schema import Dataset, Event
from .split import Case
from .taxonomy import Taxonomy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LLMRankerConfig:
    """Which model and adapter, how the prompt is built, how much validation to calibrate on."""

    model: str | None = None  # registry name, HF folder or GGUF file (None = the default model)
    adapter: str | None = None  # a peft adapter folder (None = zero-shot)
    prompt: str = "next_interest"  # template in prompts/
    serialize: Mapping[str, Any] = field(default_factory=dict)  # SerializeConfig overrides
    batch_size: int = 4  # prompts per forward pass
    mode: str = "trie"  # CategoryScorer mode
    cuda_graphs: bool = False  # "fused" mode on CUDA: each input shape's pass captured once, then replayed
    bucket: int | None = None  # "fused" mode: prompt width rounded up to a multiple (None: 64 with graphs, else 1)
    max_valid: int = 200  # validation cases used to fit the temperature (seeded sample)
    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}; expected >= 1")
        if self.max_valid < 0:
            raise ValueError(f"max_valid={self.max_valid}; expected >= 0 (0 = temperature 1)")
        object.__setattr__(self, "serialize", dict(self.serialize))


def chat_prompt_ids(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """Token ids of the chat-formatted prompt, ending with the assistant generation prompt.

    The one place where messages become tokens: fine-tuning and scoring share it.
    """
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def token_counter(tokenizer: Any) -> Callable[[str], int]:
    """Tokens in a text without special tokens: how history lines are costed against the budget.

    Fine-tuning and scoring share it, so both keep the same events. A fast tokenizer is asked
    through its Rust backend directly (the same ids as `tokenizer(text)`, without building a
    `BatchEncoding`: 41 vs 61 us per history line measured, the counts equal)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return lambda text: len(backend.encode(text, add_special_tokens=False).ids)
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def shared_prefix_ids(tokenizer: Any, prompt: Any) -> list[int]:
    """The token ids every rendered prompt of `prompt` starts with (the system turn and chat header).

    Found as the common prefix of two renders with different histories, less two
    tokens so that a merge across the boundary cannot make a real prompt differ.
    The scorer caches its K/V once instead of recomputing it for every shopper.
    """
    ids = []
    for history in ("a", "b"):
        r = prompt.render(history=history)
        ids.append(chat_prompt_ids(tokenizer, [{"role": "system", "content": r.system},
                                               {"role": "user", "content": r.user}]))
    n = 0
    while n < min(map(len, ids)) and ids[0][n] == ids[1][n]:
        n += 1
    return ids[0][: max(n - 2, 0)]


def load_adapter(model: Any, adapter: str) -> Any:
    """`model` with the peft adapter folder `adapter` applied, in eval mode (raises on a bad folder)."""
    from pathlib import Path

    from peft import PeftModel

    from .errors import ModelError
    from .peft_compat import quiet_peft

    folder = Path(adapter)
    if not (folder / "adapter_config.json").is_file():
        raise ModelError(f"{folder} is not a peft adapter folder (no adapter_config.json)")
    with quiet_peft():
        m = PeftModel.from_pretrained(model, str(folder), is_trainable=False)
    m.eval()
    return m


def adapter_train_config(adapter: str) -> dict[str, Any]:
    """The `train_config.json` written beside an adapter by finetune (empty dict if none)."""
    import json
    from pathlib import Path

    from .errors import ModelError

    path = Path(adapter) / "train_config.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}: unreadable training config ({e})") from e
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


class LLMCategoryRanker:
    """Next-category distribution from an LLM (zero-shot or with a LoRA adapter).

    Args:
        name: the system's name in reports ("llm", "llm+lora").
        dataset: gives the items (titles, categories) and the clock of the prompts.
        level: the taxonomy level predicted.
        cfg: model, adapter, prompt and batching.
        loaded: an already loaded `llmint.models.LoadedModel` (shared between rankers);
            loaded from `cfg.model` when None. An adapter is applied to a copy of it.
    """

    def __init__(
        self, name: str, dataset: Dataset, level: int, cfg: LLMRankerConfig | None = None,
        loaded: Any | None = None,
    ) -> None:
        self.name = name
        self.cfg = cfg or LLMRankerConfig()
        self.dataset = dataset
        self.taxonomy = Taxonomy.from_items(dataset.items.values(), level)
        # the adapter's calibrated temperature (its calibration.json) until fit_events refits it
        self.temperature = calibrated_temperature(self.cfg.adapter) or 1.0
        self.fit_note: dict[str, Any] = {}
        self._loaded = loaded
        self._scorer: Any = None
        self._counter: Callable[[str], int] | None = None

    # --- model -------------------------------------------------------------------------------

    def _ensure(self) -> None:
        if self._scorer is not None:
            return
        from .models import load_model
        from .prompts import load_prompt
        from .scoring import CategoryScorer
        from .serialize import SerializeConfig

        shared = self._loaded is not None
        if self._loaded is None:
            self._loaded = load_model(self.cfg.model, dtype=self.cfg.dtype, device=self.cfg.device)
        model, tok = self._loaded.model, self._loaded.tokenizer
        if self.cfg.adapter:  # peft injects its layers in place: never into a model we were lent
            model = load_adapter(copy.deepcopy(model) if shared else model, self.cfg.adapter)
        self._model = model
        self._tok = tok
        prompt, serialize = self.cfg.prompt, dict(self.cfg.serialize)
        trained = adapter_train_config(self.cfg.adapter) if self.cfg.adapter else {}
        if trained:  # score with the prompt and serialisation the adapter was trained on
            prompt = trained.get("prompt", prompt)
            serialize = {**trained.get("serialize", {}), **serialize}
            if trained.get("level") not in (None, self.taxonomy.level):
                logger.warning(
                    "%s: adapter trained for level %s, scoring level %s",
                    self.name, trained.get("level"), self.taxonomy.level,
                )
        self._prompt = load_prompt(prompt)
        self._scfg = SerializeConfig(**serialize)
        self._scorer = CategoryScorer(
            model, tok, self.taxonomy.labels, label_prefix="", terminator="\n",
            mode=self.cfg.mode, batch_size=self.cfg.batch_size, cuda_graphs=self.cfg.cuda_graphs,
            bucket=self.cfg.bucket or (64 if self.cfg.cuda_graphs else 1),
        )
        self._scorer.set_prefix(shared_prefix_ids(tok, self._prompt) or None)

    def _count(self, s: str) -> int:
        if self._counter is None:
            self._counter = token_counter(self._tok)
        return self._counter(s)

    def serialize(self, history: Sequence[Event]) -> Any:
        """The `SerializedHistory` the prompt shows for `history` (which events, with which [n])."""
        from .serialize import serialize_history

        self._ensure()
        return serialize_history(
            list(history), self.dataset.items, self._scfg, clock=self.dataset.clock,
            taxonomy_level=self.taxonomy.level, count_tokens=self._count,
        )

    def prompt_ids(self, history: Sequence[Event], ser: Any = None) -> list[int]:
        """The token ids the model reads for one history (chat template included)."""
        from .examples import render_prompt

        ser = self.serialize(history) if ser is None else ser
        r = render_prompt(self._prompt, ser)
        return chat_prompt_ids(self._tok, [{"role": "system", "content": r.system},
                                           {"role": "user", "content": r.user}])

    @property
    def model(self) -> Any:
        """The scoring model (with its adapter, if any)."""
        self._ensure()
        return self._model

    @property
    def scorer(self) -> Any:
        """The `CategoryScorer` (its mode, batch size, bucket and shared prefix)."""
        self._ensure()
        return self._scorer

    def prefix_cache_for(self, ids: Sequence[int]) -> Any:
        """A fresh K/V cache of the shared prompt prefix when `ids` start with it (else None), for `generate`."""
        self._ensure()
        return self._scorer.prefix_cache_for(ids)

    @property
    def prefix_ids(self) -> tuple[int, ...]:
        """Token ids of the prompt prefix every shopper shares (the system turn), whose K/V is cached."""
        self._ensure()
        return self._scorer.prefix_ids

    def prefix_cache_rows(self, n: int) -> Any:
        """A fresh K/V cache of the shared prefix for `n` rows (None: no prefix), for a batched `generate`."""
        self._ensure()
        return self._scorer.prefix_cache_rows(n)

    @property
    def loaded(self) -> Any:
        """The `LoadedModel` (base weights, spec, hash) under the scoring model."""
        self._ensure()
        return self._loaded

    @property
    def tokenizer(self) -> Any:
        self._ensure()
        return self._tok

    @property
    def model_folder(self) -> Any:
        """The HF folder of the base weights (a `pathlib.Path`; None for a model loaded another way)."""
        self._ensure()
        return getattr(self._loaded, "folder", None)

    @property
    def prompt_template(self) -> Any:
        """The `PromptTemplate` in use (the adapter's training prompt when it names one)."""
        self._ensure()
        return self._prompt

    @property
    def serialize_config(self) -> Any:
        """The `SerializeConfig` in use (the adapter's training serialisation, then overrides)."""
        self._ensure()
        return self._scfg

    def logprobs(self, histories: Sequence[Sequence[Event]],
                 progress: Callable[[int], None] | None = None, sers: Sequence[Any] | None = None) -> np.ndarray:
        """log p(label + newline | prompt), float64 (n, n_labels). `sers`: the histories already serialised
        (`serialize`), one each, or None.

        Prompts go to the scorer `max(64, 8 x batch_size)` at a time: it sorts each call's prompts
        by length before cutting batches, so a call of several batches pads little (a call of one
        batch, as when this was 64 at batch size 64, padded 34.8% of the prompt tokens of 2,048
        Office prompts at the 512-token budget; 8 batches: 5.9%), and batches above 64 are not capped."""
        self._ensure()
        out = np.zeros((len(histories), len(self.taxonomy.labels)), dtype=np.float64)
        for s in range(0, len(histories), self._step):  # prompts built one call's worth at a time
            ids = self.prompts(histories, sers, s, s + self._step)
            out[s : s + len(ids)] = self.logprobs_ids(ids)
            if progress:
                progress(len(ids))
        return out

    def prompts(self, histories: Sequence[Sequence[Event]], sers: Sequence[Any] | None = None, start: int = 0,
                stop: int | None = None) -> list[list[int]]:
        """`prompt_ids` of `histories[start:stop]`, from `sers` (one per history, checked) when given."""
        if sers is not None and len(sers) != len(histories):
            raise ValueError(f"{len(sers)} serialised histories for {len(histories)} histories")
        return [self.prompt_ids(h, None if sers is None else sers[start + k])
                for k, h in enumerate(histories[start:stop])]

    @property
    def _step(self) -> int:
        return max(64, 8 * self.cfg.batch_size)

    def logprobs_ids(self, prompts: Sequence[Sequence[int]]) -> np.ndarray:
        """`logprobs` of prompts already built (`prompt_ids`, e.g. by `llmint.prompt_loader` workers),
        scored in the same calls of `max(64, 8 x batch_size)`: the same numbers."""
        self._ensure()
        out = np.zeros((len(prompts), len(self.taxonomy.labels)), dtype=np.float64)
        for s in range(0, len(prompts), self._step):
            out[s : s + self._step] = self._scorer.score(list(prompts[s : s + self._step]))
        return out

    def logprobs_kv(self, histories: Sequence[Sequence[Event]], sers: Sequence[Any] | None = None
                    ) -> tuple[np.ndarray, list[Any]]:
        """`logprobs(histories)` and each prompt's K/V (`llmint.scoring.PromptKV`) from the same passes
        (`batch_size` prompts a pass, each K/V cut out of its batch's: `CategoryScorer.score_kv`).

        Pass the K/V to the explanations (`explain_predictions(..., prompt_kv=kvs)`) so the generation
        after the category runs only the category line, not the prompt again. Every K/V is held until
        dropped: SmolLM2-135M in float32 keeps ~46 KB a prompt token (~21 MB for 450 tokens)."""
        self._ensure()
        rows, kvs = self._scorer.score_kv(self.prompts(histories, sers))
        return rows.astype(np.float64), kvs

    def logprobs_one(self, history: Sequence[Event], ser: Any = None) -> tuple[np.ndarray, Any]:
        """`logprobs_kv([history])`, the prompt scored alone (`ser`: the history already serialised, or None)."""
        rows, kvs = self.logprobs_kv([history], None if ser is None else [ser])
        return rows[0], kvs[0]

    # --- event-level ranker ---------------------------------------------------------------------

    def fit_events(self, valid_cases: Sequence[Case], progress: Callable[[int], None] | None = None
                   ) -> LLMCategoryRanker:
        """Fit the temperature on a seeded sample of validation cases (targets with a category)."""
        from .evidence import label_of_event
        from .scoring import fit_temperature

        self._ensure()
        labelled = [(c, label_of_event(c.target, self.dataset.items, self.taxonomy)) for c in valid_cases]
        labelled = [(c, lab) for c, lab in labelled if lab is not None]
        if self.cfg.max_valid == 0 or not labelled:  # keep the adapter's calibration (else 1.0)
            self.fit_note = {"temperature": round(self.temperature, 4), "n_valid": 0}
            return self
        rng = np.random.default_rng(self.cfg.seed)
        take = rng.permutation(len(labelled))[: self.cfg.max_valid]
        t0 = time.perf_counter()
        lp = self.logprobs([labelled[i][0].history for i in take], progress)
        y = np.array([self.taxonomy.index(labelled[i][1]) for i in take])
        self.temperature = fit_temperature(lp, y)
        self.fit_note = {
            "temperature": round(self.temperature, 4), "n_valid": len(take),
            "valid_hit@1": round(float((lp.argmax(1) == y).mean()), 4),
            "score_s_per_case": round((time.perf_counter() - t0) / len(take), 4),
        }
        return self

    def predict_events(self, histories: Sequence[Sequence[Event]],
                       progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Calibrated distribution over `taxonomy.labels`, float32 (n, n_labels)."""
        from .scoring import to_distribution

        return to_distribution(self.logprobs(histories, progress), self.temperature).astype(np.float32)

    # --- the token-level Ranker members (the harness uses the event-level ones) ------------------

    def fit(self, sequences: Any, n_classes: int, *, valid: Any = None) -> LLMCategoryRanker:
        if n_classes != len(self.taxonomy.labels):
            raise ValueError(f"n_classes={n_classes} but the taxonomy has {len(self.taxonomy.labels)} labels")
        return self

    def predict_proba(self, histories: Any) -> np.ndarray:
        raise TypeError(f"{self.name} reads events, not tokens: call predict_events(histories of Event)")


__all__ = ["LLMCategoryRanker", "LLMRankerConfig", "chat_prompt_ids", "load_adapter", "shared_prefix_ids"]
