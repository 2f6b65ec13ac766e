"""Drafted greedy decoding of several heads together (`llmint.drafting`, batched).

Each pass runs, for every unfinished row, its pending token and its drafter's guess; rows are
right-padded to the pass's widest. A row keeps the guessed tokens the model agrees with; the K/V
of its rejected guesses and of its padding stays in the cache as holes, masked out of attention
(the attention mask is 0 there, and positions count only a row's kept tokens), so rows that accept
different amounts share one cache. Columns no row kept at the end of a pass are cropped, and
finished rows leave the batch.

On a device where a pass reads every weight once whatever its width (a GPU at small batch; this
repo's 2 CPU cores up to a few dozen tokens), a row's guesses and the other rows' tokens come
nearly free. The texts equal the one-at-a-time drafted ones (`drafted_greedy`) up to float error:
padding changes matmul shapes, so a near tie between two tokens may break the other way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .drafting import MAX_DRAFT_TOKENS, Drafter, DraftStats, check_guess, guess_ids


def drafted_greedy_batch(model: Any, tokenizer: Any, heads: Sequence[Sequence[int]], *, max_new_tokens: int,
                         eos_token_id: int | None, drafters: Sequence[Drafter | None],
                         cache: Any = None, cache_mask: Any = None,
                         max_draft: int = MAX_DRAFT_TOKENS) -> list[tuple[list[int], DraftStats]]:
    """Greedy continuations of the token ids `heads` (each to `eos_token_id`, included, or
    `max_new_tokens`), decoded together, each row reading ahead through `drafters[i]`'s guesses
    (at most `max_draft` tokens a pass, as one at a time: a lower cap measured no faster, since a
    row's rejected guesses cost little; None: no guesses). `cache`: a K/V cache with `len(heads)`
    rows, and `cache_mask` (long, rows x its columns) its real columns: row i's hold the first
    `cache_mask[i].sum()` tokens of `heads[i]` (`stack_caches`; `shared_cache`), or None.
    Padding columns are masked, so they hold the tokenizer's pad id (else `eos_token_id`, else 0).
    Returns each row's new token ids and pass counts, in order."""
    import torch

    from .scoring import _device

    n = len(heads)
    if len(drafters) != n:
        raise ValueError(f"{len(drafters)} drafters for {n} heads")
    if max_new_tokens < 1 or n == 0:
        return [([], DraftStats()) for _ in range(n)]
    if max_draft < 0:
        raise ValueError(f"max_draft={max_draft}; expected >= 0")
    heads = [list(h) for h in heads]
    if cache is None:
        cache, cache_mask = shared_cache(None, n)
    if cache_mask is None or tuple(cache_mask.shape) != (n, cache.get_seq_length()):
        raise ValueError(f"cache_mask must be {n} rows x the cache's {cache.get_seq_length()} columns")
    mask = cache_mask.to(torch.long).cpu().clone()
    kept = [int(x) for x in mask.sum(1)]  # tokens a row has in the cache (its next position)
    if any(k >= len(h) for k, h in zip(kept, heads, strict=True)):
        raise ValueError("a head is no longer than its cached tokens; expected at least one more token")
    device = _device(model)
    pad = next((t for t in (getattr(tokenizer, "pad_token_id", None), eos_token_id) if t is not None), 0)
    rows = list(range(n))  # the rows still decoding, in the cache's row order
    pending = [h[k:] for h, k in zip(heads, kept, strict=True)]
    outs: list[list[int]] = [[] for _ in range(n)]
    stats = [DraftStats() for _ in range(n)]
    with torch.inference_mode():
        while rows:
            guesses = [guess_ids(tokenizer, drafters[i], outs[i], min(max_draft, max_new_tokens - len(outs[i]) - 1))
                       for i in rows]
            width = max(len(pending[i]) + len(g) for i, g in zip(rows, guesses, strict=True))
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            new_mask = torch.zeros((len(rows), width), dtype=torch.long)
            pos = torch.zeros((len(rows), width), dtype=torch.long)
            for r, (i, g) in enumerate(zip(rows, guesses, strict=True)):
                x = pending[i] + g
                ids[r, : len(x)] = torch.tensor(x, dtype=torch.long)
                new_mask[r, : len(x)] = 1
                pos[r] = torch.arange(kept[i], kept[i] + width)
            mask = torch.cat([mask, new_mask], dim=1)
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                           past_key_values=cache, use_cache=True).logits
            start = mask.shape[1] - width
            for r, (i, g) in enumerate(zip(rows, guesses, strict=True)):
                p = len(pending[i])
                j, new = check_guess(logits[r, p - 1 : p + len(g)].argmax(-1).tolist(), g, stats[i], eos_token_id,
                                     max_new_tokens - len(outs[i]))
                mask[r, start + p + j : start + width] = 0  # rejected guesses and padding: holes
                kept[i] += p + j
                outs[i] += new
                pending[i] = [new[-1]]
            live = [r for r, i in enumerate(rows) if len(outs[i]) < max_new_tokens
                    and not (eos_token_id is not None and outs[i][-1] == eos_token_id)]
            if len(live) < len(rows):  # finished rows leave the batch
                if not live:
                    break
                cache.batch_select_indices(torch.tensor(live, device=device))
                mask = mask[live]
                rows = [rows[r] for r in live]
            used = int(mask.sum(0).nonzero().max()) + 1  # columns after the last any row kept: cropped
            if used < mask.shape[1]:
                cache.crop(used - mask.shape[1])  # a negative count: drop that many last columns
                mask = mask[:, :used]
    for i in range(n):
        stats[i].tokens = len(outs[i])
    return list(zip(outs, stats, strict=True))


def shared_cache(cache: Any, n: int) -> tuple[Any, Any]:
    """(`cache`, its mask) for `drafted_greedy_batch` when `cache` holds a prefix every one of its `n` rows
    shares (`LLMCategoryRanker.prefix_cache_rows`); None: an empty start."""
    import torch
    from transformers import DynamicCache

    if cache is None:
        return DynamicCache(), torch.zeros((n, 0), dtype=torch.long)
    return cache, torch.ones((n, cache.get_seq_length()), dtype=torch.long)


def stack_caches(layers: Sequence[Sequence[tuple[Any, Any]]]) -> tuple[Any, Any]:
    """One batch cache of several single-row K/V caches (per row, per layer: (key, value), each
    1 x heads x length x dim; `llmint.scoring.PromptKV.layers`), left-padded with zeros to the
    longest, and its mask (long, rows x columns: 0 on padding), for `drafted_greedy_batch`."""
    import torch
    from transformers import DynamicCache

    if not layers:
        raise ValueError("no caches to stack")
    lengths = [row[0][0].shape[-2] for row in layers]
    width = max(lengths)
    stacked = []
    for li in range(len(layers[0])):
        ks, vs = [], []
        for row, length in zip(layers, lengths, strict=True):
            k, v = row[li]
            pad = (0, 0, width - length, 0)  # left-pad the sequence axis (the last but one)
            ks.append(torch.nn.functional.pad(k, pad))
            vs.append(torch.nn.functional.pad(v, pad))
        stacked.append((torch.cat(ks), torch.cat(vs)))
    mask = torch.zeros((len(layers), width), dtype=torch.long)
    for i, length in enumerate(lengths):
        mask[i, width - length :] = 1
    return DynamicCache(ddp_cache_data=stacked), mask


__all__ = ["drafted_greedy_batch", "shared_cache", "stack_caches"]
