"""Supervised fine-tuning examples: (prompt, completion) pairs from a split's training data.

`to_example` turns one case into plain data:

    {"prompt": [{"role": "system", "content": ...}, {"role": "user", "content": ...}],
     "completion": "<category label>\\n<explanation>"}

The prompt is the rendered `next_interest` template around the serialised
history; the chat template and the EOS token are applied by the trainer, not
here. The category line comes first, so training teaches the same format that
category scoring reads (label, then EOS when scored alone). The explanation is
grounded (see `llmint.evidence`): it cites only events shown in the prompt.

`build_examples` draws training cases from every prefix of each training
sequence (history = events strictly before position i, target = event i),
which lies entirely before the shopper's validation target, with seeded
sampling. Statistics for explanations come from the training split only.

This module does no I/O and no tokenisation; it knows nothing about models.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from .evidence import CategoryStats, explain, label_of_event, select_evidence
from .schema import Dataset, Event, Item
from .split import Case, Split
from .taxonomy import Taxonomy

logger = logging.getLogger(__name__)

EXAMPLES_VERSION = "examples-v1"
"""Version tag of the example format (prompt messages + "label\\nexplanation")."""


def _time(e: Event) -> float:
    return float(e.timestamp) if e.timestamp is not None else float(e.order or 0)


def history_before(seq: Sequence[Event], i: int) -> tuple[Event, ...]:
    """Events of the ordered `seq` strictly earlier than `seq[i]` (same rule as `llmint.split`).

    Example:
        >>> evs = [Event("u", str(k), "purchase", timestamp=t) for k, t in enumerate([1, 2, 2])]
        >>> [e.item_id for e in history_before(evs, 2)]
        ['0']
    """
    t = _time(seq[i])
    return tuple(e for e in seq[:i] if _time(e) < t)


def to_example(
    case: Case,
    items: Mapping[str, Item],
    taxonomy: Taxonomy,
    stats: CategoryStats,
    serialize_cfg: Any,
    prompt: Any,
    *,
    clock: str = "unix",
    count_tokens: Callable[[str], int] | None = None,
    max_explanation_tokens: int = 60,
) -> dict[str, Any]:
    """One supervised example for `case`; pure (no I/O, no tokenisation).

    `serialize_cfg` is a `llmint.serialize.SerializeConfig`, `prompt` a loaded
    `PromptTemplate`; `count_tokens` (e.g. the tokenizer's length) sizes the
    history and the explanation. Raises ValueError if the target event has no
    category at the taxonomy's level.

    Example (Office, level 2; the user message is abridged):
        >>> prompt = load_prompt("next_interest")  # doctest: +SKIP
        >>> to_example(case, ds.items, tax, stats, SerializeConfig(), prompt)  # doctest: +SKIP
        {'prompt': [{'role': 'system', 'content': 'You predict ...'},
                    {'role': 'user', 'content': '... [5] bought Scotch Super Glue ...'}],
         'completion': 'Office & School Supplies > Tape, Adhesives & Fasteners\\nNext interest:
                        Office & School Supplies > Tape, Adhesives & Fasteners. Evidence: [5]
                        bought Scotch Super Glue Liquid in this category.'}
    """
    from .serialize import serialize_history

    label = label_of_event(case.target, items, taxonomy)
    if label is None:
        raise ValueError(
            f"the target of user {case.user_id!r} (item {case.target.item_id!r}) has no category "
            f"at level {taxonomy.level}; expected an item with a category path"
        )
    ser = serialize_history(
        list(case.history),
        items,
        serialize_cfg,
        clock=clock,
        taxonomy_level=taxonomy.level,
        count_tokens=count_tokens,
    )
    rendered = render_prompt(prompt, ser)
    ev = select_evidence(ser.events, ser.positions, items, taxonomy, label, stats)
    text = explain(ev, max_tokens=max_explanation_tokens, count_tokens=count_tokens)
    return {
        "prompt": [
            {"role": "system", "content": rendered.system},
            {"role": "user", "content": rendered.user},
        ],
        "completion": f"{label}\n{text}",
    }


def render_prompt(prompt: Any, ser: Any) -> Any:
    """Render the prompt template around a serialised history (the variables it declares)."""
    return prompt.render(history=ser.text)


def build_examples(
    split: Split,
    dataset: Dataset,
    level: int,
    *,
    prompt: Any,
    serialize_cfg: Any,
    stats: CategoryStats | None = None,
    source: Literal["train", "valid"] = "train",
    max_examples: int | None = None,
    min_history: int = 1,
    seed: int = 0,
    count_tokens: Callable[[str], int] | None = None,
    max_explanation_tokens: int = 60,
) -> list[dict[str, Any]]:
    """Seeded sample of supervised examples from the training prefixes or the validation cases.

    `source="train"`: every position i of each training sequence whose target
    has a category and whose history (events strictly before it) has at least
    `min_history` events is a candidate; these all precede the validation
    target. `source="valid"`: the split's validation cases (for validation
    loss). Candidates are shuffled with `seed` and the first `max_examples`
    (None = all) kept. Statistics default to those of `split.train`.
    """
    if source not in ("train", "valid"):
        raise ValueError(f"source={source!r}; expected 'train' or 'valid'")
    if min_history < 0:
        raise ValueError(f"min_history={min_history}; expected >= 0")
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_examples={max_examples}; expected >= 1 or None")
    taxonomy = Taxonomy.from_items(dataset.items.values(), level)
    items = dataset.items
    if stats is None:
        stats = CategoryStats.from_sequences(split.train.values(), items, taxonomy)

    def labelled(e: Event) -> bool:
        return label_of_event(e, items, taxonomy) is not None

    if source == "train":
        seqs = {u: s for u, s in sorted(split.train.items())}
        cand: list[tuple[str, int]] = [
            (u, i) for u, s in seqs.items() for i in range(min_history, len(s)) if labelled(s[i])
        ]

        def case_of(c: tuple[str, int]) -> Case:
            s = seqs[c[0]]
            return Case(c[0], history_before(s, c[1]), s[c[1]])
    else:
        valid = [c for c in split.valid if labelled(c.target)]
        cand = list(range(len(valid)))  # type: ignore[arg-type]

        def case_of(c: Any) -> Case:
            return valid[c]

    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = []
    short = 0
    for j in rng.permutation(len(cand)):
        case = case_of(cand[j])
        if len(case.history) < min_history:
            short += 1
            continue
        out.append(
            to_example(
                case,
                items,
                taxonomy,
                stats,
                serialize_cfg,
                prompt,
                clock=dataset.clock,
                count_tokens=count_tokens,
                max_explanation_tokens=max_explanation_tokens,
            )
        )
        if max_examples is not None and len(out) >= max_examples:
            break
    logger.info(
        "%s examples from %s: %d of %d candidates (%d with too short a history)",
        source,
        dataset.name,
        len(out),
        len(cand),
        short,
    )
    return out


__all__ = ["EXAMPLES_VERSION", "build_examples", "history_before", "render_prompt", "to_example"]
