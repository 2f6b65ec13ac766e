"""Explanations: generated after the category is chosen, checked, and measured for faithfulness.

The model writes the explanation *conditioned on the chosen category*: its
input is the prompt, then the category line exactly as fine-tuning taught it
(`label + "\\n"`), and greedy decoding continues until EOS. Every explanation
is checked (`llmint.evidence.check_faithfulness`: it cites at least one event,
every cited [n] is an event shown in the prompt, each cited event is in the category the text puts it
in, and the category is named). One that fails is kept for
the audit trail but not served: the grounded template built from the
shopper's own events and the training transition statistics is served instead
(`source="evidence"`), so what a user reads is always checkable.

Texts come from a `TextGenerator` (one call for a list of heads): `HFGenerator`, transformers'
greedy `generate` through the shared-prefix cache, by default; `llmint.vllm_backend.VLLMGenerator`
where vLLM is installed (batched, same greedy decoding, the adapter served as a vLLM LoRA).

`counterfactual` measures whether the cited events matter to the model:
removing them should lower the category's probability much more than removing
as many other shown events at random.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from .drafting import Drafter, drafted_greedy, drafter_for
from .evidence import CategoryStats, Verdict, check_faithfulness, explain, reason_kind, select_evidence, shown_labels
from .schema import Event


@dataclass(frozen=True)
class Explanation:
    """The explanation served for one prediction, and how it was obtained."""

    category: str
    text: str  # what is served
    source: str  # "model": the model's text passed the check; "evidence": the grounded template
    verdict: Verdict  # the check of the served text
    model_text: str  # what the model generated (kept even when it failed the check)
    model_verdict: Verdict
    shown_positions: tuple[int, ...]  # the [n] numbers the prompt showed

    @property
    def cited(self) -> tuple[int, ...]:
        return self.verdict.cited

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def label_head(tokenizer: Any, prompt_ids: Sequence[int], label: str) -> list[int]:
    """What the explanation continues: the prompt, then the category line as fine-tuning taught it."""
    return list(prompt_ids) + list(tokenizer(label + "\n", add_special_tokens=False)["input_ids"])


def greedy_decode(model: Any, tokenizer: Any, head: Sequence[int], *, max_new_tokens: int = 64,
                  cache: Any = None, drafter: Drafter | None = None) -> str:
    """Greedy continuation of the token ids `head` up to EOS or `max_new_tokens`, decoded and stripped.

    `cache`: a fresh K/V cache of a prefix of `head` (`LLMCategoryRanker.prefix_cache_for`),
    so only the tokens after it are run before decoding. `drafter`: read ahead through its
    guesses, each checked by the model (`llmint.drafting`); None: transformers' `generate`."""
    import torch

    from .scoring import _device

    head = list(head)
    if drafter is not None:
        ids, _ = drafted_greedy(model, tokenizer, head, max_new_tokens=max_new_tokens,
                                eos_token_id=tokenizer.eos_token_id, cache=cache, drafter=drafter)
        return tokenizer.decode(ids, skip_special_tokens=True).strip()
    ids = torch.tensor([head], device=_device(model))
    eos = tokenizer.eos_token_id
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
            do_sample=False, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id or eos,
            past_key_values=cache,
        )
    return tokenizer.decode(out[0, len(head):], skip_special_tokens=True).strip()


def generate_text(model: Any, tokenizer: Any, prompt_ids: Sequence[int], label: str, *,
                  max_new_tokens: int = 64, cache: Any = None) -> str:
    """Greedy continuation of `prompt + label + "\\n"` up to EOS or `max_new_tokens`, decoded."""
    return greedy_decode(model, tokenizer, label_head(tokenizer, prompt_ids, label),
                         max_new_tokens=max_new_tokens, cache=cache)


class TextGenerator(Protocol):
    """Greedy text after each head (token ids), in order: the seam between explanations and an engine."""

    def generate(self, heads: Sequence[Sequence[int]], max_new_tokens: int) -> list[str]: ...


class HFGenerator:
    """transformers' greedy `generate`, continuing the longest cached prefix it has.

    `prompt_kv`: K/V of scored prompts (`LLMCategoryRanker.logprobs_kv`); a head that
    continues one of them runs only its category line before decoding. Other heads start
    from the ranker's shared-prefix cache (the system turn), or from nothing.

    `batch_size` > 1 decodes that many heads together: decoding reads every weight once per
    pass whatever the batch, so on a memory-bound device the batch's tokens come almost for
    free. With drafters, the rows read ahead through their guesses in the same passes
    (`llmint.draft_batch`). The texts equal the one-at-a-time ones up to float error (a near
    tie between two tokens may break the other way), so the service, whose rows are replayed
    alone, explains one shopper at a time unless `ServiceConfig.explain_batch` says otherwise."""

    def __init__(self, ranker: Any, prompt_kv: Sequence[Any] = (), batch_size: int = 1) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}; expected an int >= 1")
        self.ranker = ranker
        self.prompt_kv = tuple(kv for kv in prompt_kv if kv is not None)
        self.batch_size = batch_size

    def cache_for(self, head: Sequence[int]) -> Any:
        """A fresh cache of the longest kept prefix of `head` (None: none)."""
        for kv in self.prompt_kv:
            cache = kv.cache_for(head)
            if cache is not None:
                return cache
        return self.ranker.prefix_cache_for(head)

    def generate(self, heads: Sequence[Sequence[int]], max_new_tokens: int,
                 drafters: Sequence[Drafter | None] | None = None) -> list[str]:
        """Greedy texts after `heads`; `drafters[i]` reads ahead through guesses for head i (`llmint.drafting`):
        one at a time, or `batch_size` together (`llmint.draft_batch`, each continuing its kept prompt K/V
        when every head of the batch has one, else the shared prefix). A batch without drafters decodes
        through `generate`; kept prompt K/V without drafters: one at a time."""
        r = self.ranker
        ds = list(drafters) if drafters is not None else [None] * len(heads)
        if len(ds) != len(heads):
            raise ValueError(f"{len(ds)} drafters for {len(heads)} heads")
        drafted = any(d is not None for d in ds)
        if self.batch_size == 1 or (self.prompt_kv and not drafted):
            return [greedy_decode(r.model, r.tokenizer, h, max_new_tokens=max_new_tokens, cache=self.cache_for(h),
                                  drafter=d) for h, d in zip(heads, ds, strict=True)]
        out: list[str] = []
        for i in range(0, len(heads), self.batch_size):
            part = [list(h) for h in heads[i : i + self.batch_size]]
            out += (self._drafted_batch(part, ds[i : i + self.batch_size], max_new_tokens) if drafted
                    else self._generate_batch(part, max_new_tokens))
        return out

    def _drafted_batch(self, heads: list[list[int]], drafters: Sequence[Drafter | None],
                       max_new_tokens: int) -> list[str]:
        """Greedy texts of `heads` decoded together, reading ahead through `drafters` (`drafted_greedy_batch`)."""
        from .draft_batch import drafted_greedy_batch, shared_cache, stack_caches
        from .scoring import starts_with

        r, tok = self.ranker, self.ranker.tokenizer
        kvs = [next((kv for kv in self.prompt_kv if starts_with(h, kv.ids) and len(h) > len(kv.ids)), None)
               for h in heads]
        if all(kv is not None for kv in kvs):
            cache, mask = stack_caches([kv.layers for kv in kvs])  # type: ignore[union-attr]
        else:
            pre = r.prefix_ids
            shared = bool(pre) and all(starts_with(h, pre) and len(h) > len(pre) for h in heads)
            cache, mask = shared_cache(r.prefix_cache_rows(len(heads)) if shared else None, len(heads))
        res = drafted_greedy_batch(r.model, tok, heads, max_new_tokens=max_new_tokens, eos_token_id=tok.eos_token_id,
                                   drafters=drafters, cache=cache, cache_mask=mask)
        return [tok.decode(ids, skip_special_tokens=True).strip() for ids, _ in res]

    def _generate_batch(self, heads: list[list[int]], max_new_tokens: int) -> list[str]:
        """Greedy texts of `heads` in one `generate`: [shared prefix][left padding][own tokens] per row,
        positions counted from the attention mask, as the scorer lays out a batch."""
        import torch

        from .scoring import _device, left_pad, starts_with

        r, tok = self.ranker, self.ranker.tokenizer
        pre = r.prefix_ids
        p = len(pre) if pre and all(starts_with(h, pre) for h in heads) else 0
        n = len(heads)
        eos = tok.eos_token_id
        pad = tok.pad_token_id if tok.pad_token_id is not None else eos
        ids, mask = left_pad([h[p:] for h in heads], pad)
        if p:  # the prefix's columns go first (its K/V is cached), then each row's padding and tokens
            ids = torch.cat([torch.tensor([pre] * n, dtype=torch.long), ids], dim=1)
            mask = torch.cat([torch.ones((n, p), dtype=torch.long), mask], dim=1)
        width = ids.shape[1]
        device = _device(r.model)
        with torch.inference_mode():
            out = r.model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                do_sample=False, eos_token_id=eos, pad_token_id=pad,
                past_key_values=r.prefix_cache_rows(n) if p else None,
            )
        return [x.strip() for x in tok.batch_decode(out[:, width:], skip_special_tokens=True)]


def explain_predictions(ranker: Any, histories: Sequence[Sequence[Event]], labels: Sequence[str],
                        stats: CategoryStats, *, max_new_tokens: int = 64,
                        generator: TextGenerator | None = None,
                        prompt_kv: Sequence[Any] = (), draft: bool = False,
                        sers: Sequence[Any] | None = None) -> list[Explanation]:
    """Generate, check and (where needed) replace the explanation of `labels[i]` for `histories[i]`.

    `ranker` is a `llmint.llm_ranker.LLMCategoryRanker`; every label must be one of its
    taxonomy labels; `stats` are training-split category statistics (for the fallback).
    `generator` writes the texts of all heads in one call: `HFGenerator(ranker)` when None,
    or `llmint.vllm_backend.VLLMGenerator` (continuous batching, prefix caching, the LoRA
    adapter served by vLLM). `prompt_kv`: the scored prompts' K/V for the default generator
    (`LLMCategoryRanker.logprobs_kv`), so generation skips the prompt pass. `draft`: the default
    generator (or an `HFGenerator`, one at a time or its `batch_size` together) reads ahead through the
    explanation's guessable text (the evidence template's wordings, the cited events' titles:
    `llmint.drafting`, `llmint.draft_batch`), checked by the model; other generators ignore it.
    `sers`: the histories already serialised (`ranker.serialize`), one each, or None.
    """
    if len(histories) != len(labels):
        raise ValueError(f"{len(histories)} histories but {len(labels)} labels; expected one label each")
    for label in labels:
        if label not in ranker.taxonomy:
            raise ValueError(f"{label!r} is not a label of the taxonomy at level {ranker.taxonomy.level}")
    if sers is None:
        sers = [ranker.serialize(h) for h in histories]
    heads = [label_head(ranker.tokenizer, ids, label)
             for ids, label in zip(ranker.prompts(histories, sers), labels, strict=True)]
    gen = generator or HFGenerator(ranker, prompt_kv)
    if draft and isinstance(gen, HFGenerator) and heads:
        drafters = [drafter_for(ranker, ser, label, stats) for ser, label in zip(sers, labels, strict=True)]
        texts = gen.generate(heads, max_new_tokens, drafters=drafters)
    else:
        texts = gen.generate(heads, max_new_tokens) if heads else []
    if len(texts) != len(heads):
        raise RuntimeError(f"the generator returned {len(texts)} texts for {len(heads)} prompts")
    return [checked_explanation(ranker, ser, label, text, stats)
            for ser, label, text in zip(sers, labels, texts, strict=True)]


def explain_prediction(ranker: Any, history: Sequence[Event], label: str, stats: CategoryStats, *,
                       max_new_tokens: int = 64, generator: TextGenerator | None = None,
                       prompt_kv: Any = None, draft: bool = False, ser: Any = None) -> Explanation:
    """`explain_predictions` for one history (`prompt_kv`: its scored prompt's K/V, or None; `ser`: the
    history already serialised, or None)."""
    return explain_predictions(ranker, [history], [label], stats, max_new_tokens=max_new_tokens,
                               generator=generator, prompt_kv=(prompt_kv,), draft=draft,
                               sers=None if ser is None else [ser])[0]


def checked_explanation(ranker: Any, ser: Any, label: str, model_text: str, stats: CategoryStats) -> Explanation:
    """Serve the model's text for the serialised history `ser` when it passes the check, else the grounded
    evidence template (the model's text and its verdict are kept for the audit either way)."""
    labels = shown_labels(ser.events, ser.positions, ranker.dataset.items, ranker.taxonomy)
    model_verdict = check_faithfulness(model_text, ser.positions, label, require_citation=True, event_labels=labels,
                                       stats=stats)
    if model_verdict.ok:
        text, source, verdict = model_text, "model", model_verdict
    else:
        ev = select_evidence(ser.events, ser.positions, ranker.dataset.items, ranker.taxonomy, label, stats)
        text = explain(ev)
        source, verdict = "evidence", check_faithfulness(text, ser.positions, label, event_labels=labels, stats=stats)
    return Explanation(label, text, source, verdict, model_text, model_verdict, tuple(ser.positions))


def _without(history: Sequence[Event], positions: set[int]) -> list[Event]:
    """`history` minus the events at 1-based `positions` (the prompt's [n] numbers)."""
    return [e for i, e in enumerate(history, start=1) if i not in positions]


def counterfactual(ranker: Any, histories: Sequence[Sequence[Event]], explanations: Sequence[Explanation], *,
                   seed: int = 0, n_boot: int = 1000) -> dict[str, Any]:
    """Drop in p(category) when the cited events are removed vs as many random other shown events.

    Cases whose explanation cites nothing, or whose prompt shows too few
    uncited events to draw a random set of the same size, are counted and
    skipped. Returns means, the share of cases where the cited drop is larger,
    and a paired bootstrap CI of (cited drop - random drop).
    """
    from .bootstrap import paired_bootstrap

    rng = np.random.default_rng(seed)
    full, cited_h, rand_h, idx = [], [], [], []
    skipped = {"cites nothing": 0, "too few other events": 0}
    for h, ex in zip(histories, explanations, strict=True):
        cited = {p for p in ex.cited if 1 <= p <= len(h)}
        if not cited:
            skipped["cites nothing"] += 1
            continue
        others = [p for p in ex.shown_positions if p not in cited]
        if len(others) < len(cited):
            skipped["too few other events"] += 1
            continue
        rand = {int(p) for p in rng.choice(others, size=len(cited), replace=False)}
        full.append(list(h))
        cited_h.append(_without(h, cited))
        rand_h.append(_without(h, rand))
        idx.append(ranker.taxonomy.index(ex.category))
    out: dict[str, Any] = {"n": len(idx), "skipped": skipped}
    if not idx:
        return out
    rows = np.arange(len(idx))
    p0 = ranker.predict_events(full)[rows, idx].astype(np.float64)
    pc = ranker.predict_events(cited_h)[rows, idx].astype(np.float64)
    pr = ranker.predict_events(rand_h)[rows, idx].astype(np.float64)
    drop_c, drop_r = p0 - pc, p0 - pr
    out.update({
        "mean_p": float(p0.mean()),
        "mean_drop_cited": float(drop_c.mean()),
        "mean_drop_random": float(drop_r.mean()),
        "share_cited_drop_larger": float((drop_c > drop_r).mean()),
        "difference": paired_bootstrap(drop_c, drop_r, n_boot=n_boot, seed=seed).to_dict(),
    })
    return out


def evaluate_explanations(ranker: Any, cases: Sequence[Any], stats: CategoryStats, *, n: int = 100,
                          seed: int = 0, n_boot: int = 1000, n_examples: int = 3,
                          progress: Any = None, generator: TextGenerator | None = None,
                          chunk: int = 16, draft: bool = True) -> dict[str, Any]:
    """Faithfulness figures on a seeded sample of `n` evaluation cases (`llmint.split.Case`).

    For each case the top category of the calibrated distribution is explained;
    reports the share of generated explanations that pass the check (and why the
    others fail), the share of served explanations that pass, the counterfactual
    test on the served citations, and `n_examples` full examples. `draft`: the default generator (or an
    `HFGenerator`, its `batch_size` shoppers together) reads ahead through guessed text, as the service
    does (`llmint.drafting`; greedy's text, fewer passes), and, as the service does, each shopper is
    scored with its batch and its explanation continues its prompt's K/V (`LLMCategoryRanker.logprobs_kv`):
    the prompt is not run twice.
    """
    from collections import Counter

    from .scoring import to_distribution

    rng = np.random.default_rng(seed)
    take = sorted(rng.permutation(len(cases))[:n].tolist())
    hists = [list(cases[i].history) for i in take]
    labels = ranker.taxonomy.labels
    exs: list[Explanation] = []
    if draft and (generator is None or type(generator) is HFGenerator):  # as the service explains
        batch = generator.batch_size if generator is not None else 1
        rows = []
        for i in range(0, len(hists), batch):  # `batch` shoppers scored, then explained together
            part = hists[i : i + batch]
            sers = [ranker.serialize(h) for h in part]
            lp, kvs = ranker.logprobs_kv(part, sers)
            rows += list(lp)
            tops = [labels[int(row.argmax())] for row in lp]
            exs += explain_predictions(ranker, part, tops, stats, draft=True, sers=sers,
                                       generator=HFGenerator(ranker, kvs, batch_size=batch))
            if progress:
                progress(len(part))
        probs = to_distribution(np.stack(rows), ranker.temperature).astype(np.float32) if rows else np.zeros((0, 0))
    else:
        probs = ranker.predict_events(hists)
        for i in range(0, len(hists), chunk):  # `chunk` heads per generator call (a batch for vLLM)
            part = hists[i : i + chunk]
            tops = [labels[int(row.argmax())] for row in probs[i : i + chunk]]
            exs += explain_predictions(ranker, part, tops, stats, generator=generator, draft=draft)
            if progress:
                progress(len(part))
    reasons: Counter[str] = Counter()
    for ex in exs:
        for r in ex.model_verdict.reasons:
            reasons[reason_kind(r)] += 1
    examples = []
    for k in range(min(n_examples, len(exs))):
        ser = ranker.serialize(hists[k])
        top = np.argsort(-probs[k])[:3]
        examples.append({
            "user_id": cases[take[k]].user_id,
            "history_shown": ser.text,
            "top3": [{"category": labels[j], "p": round(float(probs[k, j]), 4)} for j in top],
            "explanation": exs[k].text, "source": exs[k].source, "model_text": exs[k].model_text,
            "truth": cases[take[k]].target.item_id,
        })
    return {
        "n": len(exs),
        "model_pass_rate": float(np.mean([ex.model_verdict.ok for ex in exs])) if exs else None,
        "model_fail_reasons": dict(reasons.most_common()),
        "served_pass_rate": float(np.mean([ex.verdict.ok for ex in exs])) if exs else None,
        "served_from_model": float(np.mean([ex.source == "model" for ex in exs])) if exs else None,
        "counterfactual": counterfactual(ranker, hists, exs, seed=seed, n_boot=n_boot),
        "examples": examples,
    }


__all__ = [
    "Explanation", "HFGenerator", "TextGenerator", "counterfactual", "evaluate_explanations", "explain_prediction",
    "explain_predictions", "generate_text", "greedy_decode", "label_head",
]
