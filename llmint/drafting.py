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

The guesses, in order of trust: the grounded evidence template's own wordings of the predicted
category (`llmint.evidence.wordings`, what fine-tuning taught), while the text still follows one of
them; else the wording of the event the text just cited (or of another shown event: the model
sometimes cites a neighbour's title); else the usual opening.

Example:
    >>> draft = explanation_drafter("Comedy", {2: (" rated Babe (5/5)",), 3: (" rated Heat (4/5)",)})
    >>> draft("Next interest: Com")
    'edy. Evidence: ['
    >>> draft("Next interest: Comedy. Evidence: [3")
    '] rated Heat (4/5) in this category.'
    >>> draft("Next interest: Comedy. Evidence: [3] rated Heat (4/5) and")
    ' [2] rated Babe (5/5) in this category.'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .evidence import (
    _UNSAFE,
    CategoryStats,
    Evidence,
    _rating,
    event_wording,
    select_evidence,
    short_title,
    shown_labels,
    wordings,
)

Drafter = Callable[[str], str]  # the text generated so far -> a guess of what follows ("" for none)

MAX_DRAFT_TOKENS = 32  # the most guessed tokens one pass checks
ENDING = " in this category."
_NUMBER = re.compile(r"\[(\d+)$")  # "[12": a citation being written
_CITED = re.compile(r"\[(\d+)\]")
_RATING = re.compile(r" \(\d(\.\d)?$")  # " (4": a rating being written


def citation_wordings(ser: Any, items: Mapping[str, Any]) -> dict[int, tuple[str, ...]]:
    """For each event of the serialised history `ser` that names a catalogue item: what may follow
    its "[n]", richest first: the evidence template's wordings (the title cut to 6, 4 and 3 words:
    " rated Heat (4/5)", " bought Swingline Stapler"), then the title as far as its first
    separator, then the whole title (as the model sometimes copies it from the prompt); a rated
    event's wordings come again without the rating, up to its " (" (the model may state another)."""
    out: dict[int, tuple[str, ...]] = {}
    for e, p in zip(ser.events, ser.positions, strict=True):
        item = items.get(e.item_id) if e.item_id else None
        if item is None:
            continue
        titles = [short_title(item.title, max_words=w) for w in (6, 4, 3)]
        titles += [short_title(item.title, max_words=24, max_chars=160), " ".join(_UNSAFE.sub(" ", item.title).split())]
        phrases = [event_wording(e.action, t, e.rating) for t in titles if t]
        if e.rating is not None:  # " rated Heat (4/5)" -> " rated Heat ("
            phrases += [w.removesuffix(_rating(e.rating)) + " (" for w in phrases]
        out[p] = tuple(dict.fromkeys(phrases))
    return out


def explanation_drafter(label: str, phrases: Mapping[int, Sequence[str]], templates: Sequence[str] = (),
                        end: str = "", in_label: Sequence[int] = ()) -> Drafter:
    """Guesses for an explanation of `label`: the rest of the first of `templates` (whole explanations,
    richest first) that the text so far still follows; else, after a citation "[n" or "[n]", the
    rest of the first wording in `phrases` (from `citation_wordings`: n's own, then any shown
    event's) that the text after "[n]" follows, then " in this category." or a second citation
    (the latest event before n of `in_label`, the shown events in `label`, else n - 1); else the
    opening "Next interest: <label>. Evidence: [". `end`: the text of the end-of-sequence token,
    guessed after a finished explanation ("": not guessed)."""
    opening = f"Next interest: {label}. Evidence: ["
    close = ENDING + end
    whole = [t + end for t in templates]
    first = {p: ws[0] for p, ws in phrases.items() if ws}

    def second(p: int) -> str:  # " and [m] <m's wording> in this category."
        m = max((q for q in in_label if q < p), default=p - 1)
        return f" and [{m}]" + (first[m] + close if m in first else "")

    own: dict[int, list[str]] = {}
    for p, ws in phrases.items():  # a whole wording ends the explanation or goes on to a second citation
        own[p] = [c for w in ws for c in ((w,) if w.endswith(" (") else (w + close, w + second(p)))]
    anyone = list(dict.fromkeys(c for p in sorted(own, reverse=True) for c in own[p]))  # newest events first

    def rest(text: str, options: Sequence[str]) -> str:
        for c in options:
            if len(c) > len(text) and c.startswith(text):
                return c[len(text):]
        return ""

    def draft(text: str) -> str:
        guess = rest(text, whole) or (opening[len(text):] if opening.startswith(text) else "")
        if guess:
            return guess
        m = _NUMBER.search(text)
        if m is not None:
            w = first.get(int(m.group(1)))
            return "]" + (w + close if w else "")
        start = text.rfind("[")
        m = _CITED.match(text, start) if start >= 0 else None
        if m is None:
            return ""
        said, n = text[m.end():], int(m.group(1))
        guess = rest(said, own.get(n, ()))
        if guess or not said:
            return guess
        if _RATING.search(said):  # a rating other than the event's: " (4" -> "/5) in this category."
            return "/5)" + close
        guess = rest(said, anyone)  # the title of another event than the one cited
        if guess:
            return guess
        if said.endswith(" and"):  # a wording of the model's own, then a second citation
            return second(n)[len(" and"):]
        for k in range(len(close) - 1, 2, -1):  # ... " in" -> " this category."
            if said.endswith(close[:k]):
                return close[k:]
        return ""

    return draft


def drafter_for(ranker: Any, ser: Any, label: str, stats: CategoryStats | None = None) -> Drafter:
    """The drafter of an explanation of `label` for the serialised history `ser` of `ranker`'s
    dataset: its shown events' wordings and, given the training split's `stats`, the evidence
    template's explanations of `label` (what the fallback would serve)."""
    items, tok = ranker.dataset.items, ranker.tokenizer
    templates: list[str] = []
    if stats is not None:
        ev = select_evidence(ser.events, ser.positions, items, ranker.taxonomy, label, stats)
        templates = wordings(ev)
        if ev.citations:  # the model may still say that nothing shown is in the category
            templates += wordings(Evidence(label, (), None, ev.n_shown, ev.popularity_share, ev.popularity_rank))
    labels = shown_labels(ser.events, ser.positions, items, ranker.taxonomy)
    in_label = [p for p, labs in labels.items() if label in labs]
    return explanation_drafter(label, citation_wordings(ser, items), templates, end=tok.eos_token or "",
                               in_label=in_label)


@dataclass
class DraftStats:
    """One drafted decode: model passes, tokens kept, guessed tokens checked and accepted."""

    passes: int = 0
    tokens: int = 0
    drafted: int = 0
    accepted: int = 0


def guess_ids(tokenizer: Any, drafter: Drafter | None, out: Sequence[int], room: int) -> list[int]:
    """Up to `room` token ids of `drafter`'s guess of what follows the text of the new ids `out`."""
    if drafter is None or room <= 0:
        return []
    text = drafter(tokenizer.decode(list(out), skip_special_tokens=True))
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])[:room] if text else []


def check_guess(pred: Sequence[int], guess: Sequence[int], st: DraftStats, eos_token_id: int | None,
                room: int) -> tuple[int, list[int]]:
    """One pass's verdict: `pred` are the model's greedy tokens after the pending token and after each
    guessed one. Returns how many guessed tokens it agrees with (j) and the tokens kept: those, then
    its own next token, cut after EOS and to `room`; `st` counts the pass."""
    j = 0
    while j < len(guess) and pred[j] == guess[j]:
        j += 1
    st.passes += 1
    st.drafted += len(guess)
    st.accepted += j
    new = list(guess[:j]) + [pred[j]]
    if eos_token_id is not None and eos_token_id in new:
        new = new[: new.index(eos_token_id) + 1]
    return j, new[:room]


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
            guess = guess_ids(tokenizer, drafter, out, min(MAX_DRAFT_TOKENS, max_new_tokens - len(out) - 1))
            ids = torch.tensor([pending + guess], device=device)
            logits = model(input_ids=ids, past_key_values=cache, use_cache=True).logits[0, len(pending) - 1 :]
            j, new = check_guess(logits.argmax(-1).tolist(), guess, st, eos_token_id, max_new_tokens - len(out))
            if len(guess) > j:  # the K/V of the rejected guesses goes
                cache.crop(-(len(guess) - j))
            out += new
            if on_tokens is not None:
                on_tokens(new)
            if len(out) >= max_new_tokens or (eos_token_id is not None and out[-1] == eos_token_id):
                break
            pending = [new[-1]]
    st.tokens = len(out)
    return out, st


__all__ = ["ENDING", "MAX_DRAFT_TOKENS", "DraftStats", "Drafter", "check_guess", "citation_wordings", "drafted_greedy",
           "drafter_for", "explanation_drafter", "guess_ids"]
