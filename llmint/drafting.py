"""Greedy decoding that reads ahead through text it can guess, each guess checked by the model.

Much of an explanation is predictable: fine-tuning taught the model to open with
"Next interest: <label>. Evidence: [" and to cite an event as "[n] rated <title> (r/5)", the title
shortened as the evidence template words it (`llmint.evidence`). A *drafter* guesses the text that
follows what has been generated so far; the model reads the guess's tokens in the same pass as its
next input and keeps the longest run of them that greedy decoding would have chosen itself, plus
its own token where the guess went wrong (speculative decoding with a rule for the draft model).
A decoding step reads every weight once whatever the number of tokens it runs, so each accepted
token saves most of a step; a wrong guess costs only its few extra positions in one pass.

The result is greedy decoding's: every kept token is the argmax given the tokens before it. The
sums run over several positions at once instead of one, so a near tie between two tokens may
break the other way (as between batch sizes); the service records whether an explanation was
drafted, and replay follows the record.

Example:
    >>> draft = explanation_drafter("Comedy", {3: " rated Heat (4/5)"})
    >>> draft("Next interest: Com")
    'edy. Evidence: ['
    >>> draft("Next interest: Comedy. Evidence: [3]")
    ' rated Heat (4/5)'
    >>> draft("Next interest: Comedy. Evidence: [3] rated Heat (4/5)")
    ' in this category.'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .evidence import Citation, _event_phrase, short_title

Drafter = Callable[[str], str]  # the text generated so far -> a guess of what follows ("" for none)

MAX_DRAFT_TOKENS = 32  # the most guessed tokens one pass checks
_CITED = re.compile(r"\[(\d+)\]$")


def citation_phrases(ser: Any, items: Mapping[str, Any]) -> dict[int, str]:
    """For each event of the serialised history `ser` that names a catalogue item: what follows its
    "[n]" in the evidence template's richest wording (" rated Heat (4/5)", " bought Swingline Stapler")."""
    out: dict[int, str] = {}
    for e, p in zip(ser.events, ser.positions, strict=True):
        item = items.get(e.item_id) if e.item_id else None
        if item is not None:
            phrase = _event_phrase(Citation(p, e.action, short_title(item.title), "", e.rating, "target"), 6)
            out[p] = phrase[len(f"[{p}]"):]
    return out


def explanation_drafter(label: str, phrases: Mapping[int, str]) -> Drafter:
    """Guesses for an explanation of `label`: the opening, an event's wording after its "[n]"
    (`phrases`, from `citation_phrases`), and " in this category." after that wording."""
    opening = f"Next interest: {label}. Evidence: ["
    endings = {f"[{p}]{w}": p for p, w in phrases.items()}

    def draft(text: str) -> str:
        if opening.startswith(text):
            return opening[len(text):]
        m = _CITED.search(text)
        if m is not None:
            return phrases.get(int(m.group(1)), "")
        tail = text[text.rfind("[") :] if "[" in text else ""
        return " in this category." if tail in endings else ""

    return draft


def drafter_for(ser: Any, label: str, items: Mapping[str, Any]) -> Drafter:
    """The drafter of an explanation of `label` for the serialised history `ser` (its shown events' wording)."""
    return explanation_drafter(label, citation_phrases(ser, items))


@dataclass
class DraftStats:
    """One drafted decode: model passes, tokens kept, guessed tokens checked and accepted."""

    passes: int = 0
    tokens: int = 0
    drafted: int = 0
    accepted: int = 0


def drafted_greedy(model: Any, tokenizer: Any, head: Sequence[int], *, max_new_tokens: int,
                   eos_token_id: int | None, cache: Any = None, drafter: Drafter | None = None,
                   on_tokens: Callable[[list[int]], None] | None = None) -> tuple[list[int], DraftStats]:
    """Greedy continuation of the token ids `head` (to `eos_token_id`, included, or `max_new_tokens`),
    reading ahead through `drafter`'s guesses. `cache`: a K/V cache of a prefix of `head` (it is
    extended in place). `on_tokens(ids)` is called with each pass's kept tokens, in order (streaming).
    Returns the new token ids and the pass counts."""
    import torch
    from transformers import DynamicCache

    from .scoring import _device

    if max_new_tokens < 1:
        return [], DraftStats()
    head = list(head)
    if cache is None:
        cache = DynamicCache()
    past = cache.get_seq_length()
    if past >= len(head):  # the cache holds the whole head: run its last token again for the next one's logits
        cache.crop(-(past - len(head) + 1))
        past = len(head) - 1
    device = _device(model)
    pending, out, st = head[past:], [], DraftStats()
    with torch.inference_mode():
        while True:
            guess: list[int] = []
            room = min(MAX_DRAFT_TOKENS, max_new_tokens - len(out) - 1)
            if drafter is not None and room > 0:
                text = drafter(tokenizer.decode(out, skip_special_tokens=True))
                if text:
                    guess = list(tokenizer(text, add_special_tokens=False)["input_ids"])[:room]
            ids = torch.tensor([pending + guess], device=device)
            logits = model(input_ids=ids, past_key_values=cache, use_cache=True).logits[0, len(pending) - 1 :]
            pred = logits.argmax(-1).tolist()
            j = 0
            while j < len(guess) and pred[j] == guess[j]:
                j += 1
            if len(guess) > j:  # the K/V of the rejected guesses goes
                cache.crop(-(len(guess) - j))
            st.passes += 1
            st.drafted += len(guess)
            st.accepted += j
            new = guess[:j] + [pred[j]]
            if eos_token_id is not None and eos_token_id in new:
                new = new[: new.index(eos_token_id) + 1]
            new = new[: max_new_tokens - len(out)]
            out += new
            if on_tokens is not None:
                on_tokens(new)
            if len(out) >= max_new_tokens or (eos_token_id is not None and out[-1] == eos_token_id):
                break
            pending = [pred[j]]
    st.tokens = len(out)
    return out, st


__all__ = ["MAX_DRAFT_TOKENS", "DraftStats", "Drafter", "citation_phrases", "drafted_greedy", "drafter_for",
           "explanation_drafter"]
