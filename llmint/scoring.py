"""Log-probability of every category label given a prompt, in one prompt pass plus one label pass.

`CategoryScorer(model, tokenizer, labels)` tokenises the labels once; each label
is `label_prefix + label` followed by the tokenizer's EOS token (or a given text
terminator), so a label that is a prefix of another ("Office" vs "Office >
Paper") cannot win just by being shorter. `score(prompts)` returns an array
(n_prompts, n_labels) of log p(label tokens incl. EOS | prompt), summed over tokens.

How (see `docs` in `CategoryScorer`): prompts of different lengths are left-padded
into one batch with explicit position ids, run once, and their KV cache is reused
for the labels in one of two exact modes:

- "trie" (default): the labels' token sequences form a prefix tree; every tree
  node is one query in a single extra pass over the prompt's cache, attending to
  the prompt and to its own ancestors (a 4-D tree attention mask, positions =
  prompt length + depth). Shared prefixes ("Office Products > ...") are computed
  once and the cache is not copied per label.
- "flat": the cache is repeated once per label (`DynamicCache.batch_repeat_interleave`)
  and the right-padded labels run as a batch (the FINDINGS.md recipe).
- "fused": the trie's nodes ride in the prompt's own pass: one forward over
  [left-padded prompt][trie nodes] with one 4-D mask (prompt tokens causal, trie
  nodes on the prompt and their ancestors). Half the passes of "trie", and fixed
  shapes when the prompt width is rounded up to `bucket`, so the whole pass can
  be captured as a CUDA graph (`cuda_graphs=True`, `llmint.cuda_graphs`): at batch 1
  on a GPU the launches, not the arithmetic, set the latency.

`score_kv(prompts)` also keeps each prompt's K/V (`PromptKV`), cut out of its batch's
(`score_one(prompt)`: one prompt alone), so a generation that continues the prompt (the
explanation) runs only its new tokens.

`naive_scores()` is the slow reference (one full forward per prompt and label).
`to_distribution()` and `fit_temperature()` turn log-probs into calibrated
distributions. This module knows nothing about prompts' content, taxonomies,
datasets or how a model was loaded; torch is imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MODES = ("trie", "flat", "fused")
LOGSOFTMAX_ROWS = 32  # shoppers per float32 log-softmax of the label logits (bounds a large batch's memory)
Prompt = str | Sequence[int]


def starts_with(ids: Sequence[int], prefix: Sequence[int]) -> bool:
    """`ids` begins with `prefix` and goes on past it (so a pass over the rest has tokens to run)."""
    return len(ids) > len(prefix) and tuple(ids[: len(prefix)]) == tuple(prefix)


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, width: int | None = None) -> tuple[Any, Any]:
    """Token rows left-padded to `width` (default: the longest): (input_ids, attention_mask), long
    tensors (n, width)."""
    import torch

    longest = max(len(x) for x in rows)
    if width is None:
        width = longest
    elif width < longest:
        raise ValueError(f"width={width} is shorter than the longest row ({longest} tokens)")
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, x in enumerate(rows):
        input_ids[i, width - len(x) :] = torch.tensor(list(x), dtype=torch.long)
        mask[i, width - len(x) :] = 1
    return input_ids, mask


@dataclass(frozen=True)
class PromptKV:
    """The K/V of one scored prompt (`ids`), per layer, kept for a generation that continues it."""

    ids: tuple[int, ...]
    layers: tuple[tuple[Any, Any], ...]

    def cache_for(self, head: Sequence[int]) -> Any | None:
        """A fresh `DynamicCache` of this prompt when `head` starts with it and goes on, else None.

        `model.generate(input_ids=head, past_key_values=cache)` then runs only the tokens
        after the prompt; the kept tensors are not changed (the cache appends by copying)."""
        from transformers import DynamicCache

        if not starts_with(head, self.ids):
            return None
        return DynamicCache(ddp_cache_data=self.layers)


def _rows_kv(layers: Sequence[Any], p: int, width: int, lengths: Sequence[int]) -> list[tuple[tuple[Any, Any], ...]]:
    """Each row's K/V layers cut out of a batch's cache laid out as [shared prefix: `p` columns][left
    padding][own tokens: row i's last `lengths[i]` of the `width` after the prefix], as copies (one row's
    tensors free without the others')."""
    import torch

    out = []
    for i, n in enumerate(lengths):
        own = slice(p + width - n, p + width)
        out.append(tuple(
            tuple(torch.cat([x[i : i + 1, :, :p], x[i : i + 1, :, own]], dim=2) for x in (layer.keys, layer.values))
            for layer in layers
        ))
    return out


def label_token_ids(
    tokenizer: Any,
    labels: Sequence[str],
    label_prefix: str = " ",
    terminator: str | None = None,
) -> list[list[int]]:
    """Token ids of each label as scored: `label_prefix + label`, then EOS (or `terminator`).

    With `terminator=None` the EOS id is appended after tokenising; with a string
    (e.g. "\\n") it is appended to the text before tokenising.
    """
    if isinstance(labels, str):
        raise TypeError("labels must be a sequence of str, not a single str")
    labels = list(labels)
    if not labels:
        raise ValueError("labels is empty; expected at least one label")
    if len(set(labels)) != len(labels):
        dup = sorted({x for x in labels if labels.count(x) > 1})
        raise ValueError(f"labels must be distinct; repeated: {dup[:5]}")
    if terminator is None:
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no eos_token_id; pass terminator= (e.g. '\\n')")
    out = []
    for lab in labels:
        if not isinstance(lab, str) or not lab.strip():
            raise ValueError(f"label {lab!r}: expected a non-empty str")
        text = label_prefix + lab + (terminator or "")
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        if terminator is None:
            ids.append(int(eos))
        if len(ids) < 2:
            raise ValueError(f"label {lab!r} tokenises to {ids}; expected at least 2 tokens")
        out.append(ids)
    if len({tuple(x) for x in out}) != len(out):
        raise ValueError("two labels tokenise to the same ids; the tokenizer cannot tell them apart")
    return out


@dataclass(frozen=True)
class _Trie:
    """The labels' token prefix tree, as tensors-to-be.

    Node i (0-based) is a proper, non-empty prefix of some label; `tokens[i]` is
    its last token, `depth[i]` its length - 1, `ancestors[i, j]` whether node j is
    node i or one of its ancestors. Label l's score is the sum over k of
    logprob(src[l, k] -> tok[l, k]) where src 0 is the root (the prompt's last
    position) and src i+1 is node i; `valid[l, k]` masks the padding.
    """

    tokens: np.ndarray  # (T,) int64
    depth: np.ndarray  # (T,) int64
    ancestors: np.ndarray  # (T, T) bool
    src: np.ndarray  # (L, K) int64
    tok: np.ndarray  # (L, K) int64
    valid: np.ndarray  # (L, K) bool


def _build_trie(label_ids: list[list[int]]) -> _Trie:
    index: dict[tuple[int, ...], int] = {}
    parent: list[int] = []
    tokens: list[int] = []
    depth: list[int] = []
    for ids in label_ids:
        for d in range(len(ids) - 1):  # the final token (EOS) is predicted, never fed
            key = tuple(ids[: d + 1])
            if key not in index:
                index[key] = len(tokens)
                parent.append(index[key[:-1]] if d else -1)
                tokens.append(ids[d])
                depth.append(d)
    n = len(tokens)
    anc = np.zeros((n, n), dtype=bool)
    for i in range(n):  # parents come before children, so copy the parent's row
        if parent[i] >= 0:
            anc[i] = anc[parent[i]]
        anc[i, i] = True
    k_max = max(len(x) for x in label_ids)
    src = np.zeros((len(label_ids), k_max), dtype=np.int64)
    tok = np.zeros_like(src)
    valid = np.zeros(src.shape, dtype=bool)
    for li, ids in enumerate(label_ids):
        for k, t in enumerate(ids):
            src[li, k] = 0 if k == 0 else index[tuple(ids[:k])] + 1
            tok[li, k] = t
            valid[li, k] = True
    return _Trie(
        np.array(tokens, dtype=np.int64), np.array(depth, dtype=np.int64), anc, src, tok, valid
    )


class CategoryScorer:
    """Scores every label for a batch of prompts with one prompt pass and one label pass.

    Args:
        model: a causal LM (transformers or peft-wrapped) whose forward accepts
            `past_key_values`, `position_ids`, a 4-D float `attention_mask` and `logits_to_keep`.
        tokenizer: its tokenizer (needs `eos_token_id` unless `terminator` is given).
        labels: the category names, distinct; column j of the result is `labels[j]`.
        label_prefix: text put before each label (" " after a "Category:" prompt;
            "" after a chat template's assistant header).
        terminator: None to end each label with EOS (recommended), or a text such
            as "\\n" when the model was trained to follow the label with it.
        mode: "trie" (shared label prefixes computed once) or "flat" (the cache
            repeated per label). Both give the naive scores up to float error.
        batch_size: prompts per forward pass.
        label_chunk: "flat" mode only: labels per label pass (memory bound: the
            repeated cache holds batch_size x label_chunk copies of the prompt's K/V).
        add_special_tokens: passed to the tokenizer for str prompts (False: a
            prompt rendered by a chat template already holds its special tokens).
        bucket: "fused" mode only: the padded prompt width is rounded up to a multiple of
            this, so prompts of similar lengths share one input shape (one CUDA graph).
        cuda_graphs: "fused" mode only, model on a CUDA device: each input shape's pass
            (forward, log-softmax, label sums) is captured once and replayed
            (`llmint.cuda_graphs.ShapeGraphs`), the shared prefix run with each prompt
            rather than read from its cache; a short batch is padded with copies of its
            first row up to a power of two (at most `batch_size`), so batches of 1, 2, 4,
            ... rows each capture one graph per prompt bucket.

    Prompts may be str or lists of token ids. Within a batch they are sorted by
    length and left-padded; positions are counted from each prompt's first real token.

    Example:
        >>> s = CategoryScorer(model, tok, ["Paper", "Pens"])  # doctest: +SKIP
        >>> s.score(["Last bought: Pens. Next category:"]).shape  # doctest: +SKIP
        (1, 2)
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        labels: Sequence[str],
        *,
        label_prefix: str = " ",
        terminator: str | None = None,
        mode: str = "trie",
        batch_size: int = 4,
        label_chunk: int | None = None,
        add_special_tokens: bool = False,
        bucket: int = 1,
        cuda_graphs: bool = False,
    ) -> None:
        if isinstance(labels, str):
            raise TypeError("labels must be a sequence of str, not a single str")
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}; expected one of {MODES}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}; expected an int >= 1")
        if label_chunk is not None and (not isinstance(label_chunk, int) or label_chunk < 1):
            raise ValueError(f"label_chunk={label_chunk!r}; expected None or an int >= 1")
        if isinstance(bucket, bool) or not isinstance(bucket, int) or bucket < 1:
            raise ValueError(f"bucket={bucket!r}; expected an int >= 1")
        if cuda_graphs and mode != "fused":
            raise ValueError(f"cuda_graphs needs mode='fused' (fixed shapes), not {mode!r}")
        if cuda_graphs and _device(model).type != "cuda":
            raise ValueError(f"cuda_graphs needs the model on a CUDA device, not {_device(model)}")
        self.model = model
        self.tokenizer = tokenizer
        self.labels = tuple(labels)
        self.label_prefix = label_prefix
        self.terminator = terminator
        self.mode = mode
        self.batch_size = batch_size
        self.label_chunk = label_chunk
        self.add_special_tokens = add_special_tokens
        self.label_ids = label_token_ids(tokenizer, self.labels, label_prefix, terminator)
        self._trie = _build_trie(self.label_ids)
        pad = tokenizer.pad_token_id
        self._pad_id = int(pad if pad is not None else self.label_ids[0][-1])
        self.bucket = bucket
        self.cuda_graphs = cuda_graphs
        self._prefix_ids: tuple[int, ...] = ()
        self._prefix_kv: list[tuple[Any, Any]] | None = None
        self._trie_on: dict[str, dict[str, Any]] = {}  # the trie's tensors per device
        self._graphs: Any = None

    @property
    def n_label_tokens(self) -> int:
        """Tokens fed in the label pass per prompt: trie nodes ("trie") or padded labels ("flat")."""
        if self.mode in ("trie", "fused"):
            return len(self._trie.tokens)
        return len(self.labels) * (max(len(x) for x in self.label_ids) - 1)

    @property
    def n_graphs(self) -> int:
        """CUDA graphs captured so far (one per batch rows x prompt bucket; 0 without `cuda_graphs`)."""
        return self._graphs.n_graphs if self._graphs is not None else 0

    def prompt_ids(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        """Token ids of each prompt (str prompts are tokenised, id lists kept)."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of prompts, not a single str; wrap it")
        out = []
        for i, p in enumerate(prompts):
            if isinstance(p, str):
                ids = self.tokenizer(p, add_special_tokens=self.add_special_tokens)["input_ids"]
            else:
                ids = p
            ids = [int(t) for t in ids]
            if not ids:
                raise ValueError(f"prompt {i} is empty; expected at least one token")
            out.append(ids)
        return out

    def score(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """Log-probabilities, float64 array (len(prompts), len(labels)); each row sums to <= 0 in prob.

        Row i, column j = log p(label j's tokens, terminator included | prompt i).
        """
        import torch

        ids = self.prompt_ids(prompts)
        out = np.zeros((len(ids), len(self.labels)), dtype=np.float64)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                out[chunk] = self._score_batch([ids[i] for i in chunk])
        return out

    __call__ = score

    def score_kv(self, prompts: Sequence[Prompt]) -> tuple[np.ndarray, list[PromptKV]]:
        """`score(prompts)` and each prompt's K/V from the same passes (for the explanations after them).

        The batches are `score`'s (sorted by length, `batch_size` at a time, left-padded; "fused":
        without the bucket's padding). Each prompt's K/V is copied out of its batch's, its padding
        left out, so it is what a generation of that prompt alone would compute, up to float error,
        and it frees on its own."""
        import torch

        ids = self.prompt_ids(prompts)
        out = np.zeros((len(ids), len(self.labels)), dtype=np.float64)
        kvs: list[PromptKV] = [PromptKV((), ())] * len(ids)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                rows, layers = self._score_batch([ids[i] for i in chunk], keep_kv=True)
                out[chunk] = rows
                for i, kept in zip(chunk, layers, strict=True):
                    kvs[i] = PromptKV(tuple(ids[i]), kept)
        return out, kvs

    def score_one(self, prompt: Prompt) -> tuple[np.ndarray, PromptKV]:
        """`score([prompt])[0]` and the prompt's K/V from the same pass, the prompt alone (no padding)."""
        rows, kvs = self.score_kv([prompt])
        return rows[0], kvs[0]

    def set_prefix(self, prefix: Prompt | None) -> None:
        """Cache the K/V of a token prefix that prompts share (a chat template's system turn).

        Prompts that start with `prefix` (and go on past it) then run only their
        own tokens, attending to the cached prefix; others take the full pass.
        Scores equal the uncached ones up to float error. The K/V is computed on
        first use with this scorer's model, so set it again after changing the
        model's weights. `None` drops the cache.
        """
        self._graphs = None  # captured graphs read the old prefix's tensors
        if prefix is None:
            self._prefix_ids, self._prefix_kv = (), None
            return
        (ids,) = self.prompt_ids([prefix])
        self._prefix_ids, self._prefix_kv = tuple(ids), None

    @property
    def prefix_len(self) -> int:
        """Tokens in the cached shared prefix (0: none)."""
        return len(self._prefix_ids)

    @property
    def prefix_ids(self) -> tuple[int, ...]:
        """The cached shared prefix's token ids (empty: none)."""
        return self._prefix_ids

    def prefix_cache_rows(self, n: int) -> Any | None:
        """A fresh cache holding the shared prefix's K/V for `n` rows (None: no prefix), for a batched
        `generate` whose rows all start with `prefix_ids`."""
        return self._prefix_cache(n) if self._prefix_ids else None

    def prefix_cache_for(self, ids: Sequence[int]) -> Any | None:
        """A fresh cache holding the shared prefix's K/V when `ids` start with it (and go on), else None.

        For generation after a scored prompt: `model.generate(input_ids=ids, past_key_values=cache)`
        then runs only the tokens after the prefix before decoding.
        """
        if not self._prefix_ids or not starts_with(ids, self._prefix_ids):
            return None
        return self._prefix_cache(1)

    def _prefix_cache(self, n: int) -> Any:
        """A fresh cache holding the prefix's K/V for `n` rows (the pass appends to it)."""
        import torch
        from transformers import DynamicCache

        if self._prefix_kv is None:
            ids = torch.tensor([self._prefix_ids], device=_device(self.model))
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
            self._prefix_kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        cache = DynamicCache(ddp_cache_data=self._prefix_kv)
        cache.batch_repeat_interleave(n)
        return cache

    def _score_batch(self, batch: list[list[int]], keep_kv: bool = False) -> Any:
        """Scores of the batch; with `keep_kv` also each prompt's K/V layers before the label pass (`_rows_kv`)."""
        import torch

        if self.mode == "fused":
            return self._fused_batch(batch, keep_kv)
        device = _device(self.model)
        p = len(self._prefix_ids)
        shared = p > 0 and all(starts_with(x, self._prefix_ids) for x in batch)
        if shared:
            batch = [x[p:] for x in batch]
        n = len(batch)
        input_ids, mask = left_pad(batch, self._pad_id)
        input_ids, mask = input_ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = None
        if shared:  # [prefix][left padding][own tokens]: positions go on from the prefix
            cache = self._prefix_cache(n)
            positions = positions + p
            mask = torch.cat([torch.ones((n, p), dtype=mask.dtype, device=device), mask], dim=1)
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        root = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (n, V)
        lengths = mask.sum(-1)  # (n,)
        if keep_kv:  # the label pass appends to the cache by concatenation: these tensors stay the prompts'
            kept = _rows_kv(out.past_key_values.layers, p if shared else 0, input_ids.shape[1],
                            [len(x) for x in batch])
        if self.mode == "trie":
            scores = self._trie_pass(out.past_key_values, mask, lengths, root).cpu().numpy()
        else:
            scores = self._flat_pass(out.past_key_values, mask, lengths, root).cpu().numpy()
        return (scores, kept) if keep_kv else scores

    def _trie_tensors(self, device: Any) -> dict[str, Any]:
        """The trie's arrays as tensors on `device`, made once (a captured graph must not copy
        from the host)."""
        import torch

        key = str(device)
        if key not in self._trie_on:
            tr = self._trie
            self._trie_on[key] = {
                name: torch.from_numpy(getattr(tr, name)).to(device)
                for name in ("tokens", "depth", "ancestors", "src", "tok", "valid")
            }
        return self._trie_on[key]

    def _label_sums(self, root: Any, nodes: Any) -> Any:
        """(n, L) label log-probs from the root's (n, V) and the trie nodes' (n, T, V) log-softmax."""
        import torch

        tr = self._trie_tensors(root.device)
        src, tok = tr["src"], tr["tok"]
        node = (src - 1).clamp(min=0)  # src 0 is the root, read from `root`
        picked = torch.where(src == 0, root[:, tok], nodes[:, node, tok])  # (n, L, K)
        return (picked * tr["valid"]).sum(-1)

    def _logit_sums(self, logits: Any, root: Any = None) -> Any:
        """(n, L) label log-probs from the trie nodes' logits (n, T, V) and the root's log-softmax (n, V),
        or, with `root` None, from logits (n, 1 + T, V) whose first row is the root's.

        The log-softmax runs `LOGSOFTMAX_ROWS` shoppers at a time: its float32 copy of a large batch's
        logits would not fit (512 shoppers x 217 nodes x 49,152 tokens x 4 bytes = 22 GB). Rows are
        independent, so the chunks change nothing. (logit - logsumexp would skip the copy, but rounds
        the ~20-sized normaliser to float32 and moves scores by ~1e-6, beyond what a replay accepts.)"""
        import torch

        out = []
        for i in range(0, logits.shape[0], LOGSOFTMAX_ROWS):
            lp = torch.log_softmax(logits[i : i + LOGSOFTMAX_ROWS].float(), dim=-1)
            if root is None:
                out.append(self._label_sums(lp[:, 0], lp[:, 1:]))
            else:
                out.append(self._label_sums(root[i : i + LOGSOFTMAX_ROWS], lp))
            del lp
        return torch.cat(out) if len(out) > 1 else out[0]

    def _trie_pass(self, cache: Any, mask: Any, lengths: Any, root: Any) -> Any:
        import torch

        tr = self._trie_tensors(mask.device)
        n, t = mask.shape[0], len(self._trie.tokens)
        tokens = tr["tokens"].expand(n, t)
        positions = lengths[:, None] + tr["depth"][None, :]
        allowed = torch.cat(
            [mask.bool()[:, None, :].expand(n, t, mask.shape[1]), tr["ancestors"][None].expand(n, t, t)],
            dim=-1,
        )[:, None]  # (n, 1, T, Lp + T)
        logits = self.model(
            input_ids=tokens,
            attention_mask=self._additive(allowed),
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
        ).logits  # (n, T, V)
        return self._logit_sums(logits, root)

    # --- "fused": the prompt and the trie in one pass ---------------------------------------

    def _fused_batch(self, batch: list[list[int]], keep_kv: bool) -> Any:
        device = _device(self.model)
        graphs = self.cuda_graphs and not keep_kv
        # a captured graph runs the shared prefix as part of each prompt: ~15% more arithmetic, nothing
        # at batch 1 on a GPU, where launches dominate, and no cache object inside the graph
        p = 0 if graphs else len(self._prefix_ids)
        if not (p > 0 and all(starts_with(x, self._prefix_ids) for x in batch)):
            p = 0  # some prompt does not start with the prefix: all take the full pass
        rows = [x[p:] for x in batch]
        n = len(rows)
        if graphs:  # n rounded up to a power of two (at most batch_size): few shapes, few graphs
            rows += [rows[0]] * (min(1 << (n - 1).bit_length(), self.batch_size) - n)
        width = max(len(x) for x in rows)
        if not keep_kv:  # the kept K/V must be the prompt's alone: no bucket padding then
            width = -(-width // self.bucket) * self.bucket
        input_ids, mask = left_pad(rows, self._pad_id, width)
        ids, attn, positions = self._fused_inputs(input_ids.to(device), mask.to(device), p)
        if keep_kv:  # each prompt's K/V, less the trie nodes' after it
            out = self._fused_forward(ids, attn, positions, keep=True)
            scores = self._logit_sums(out.logits)
            return scores.cpu().numpy(), _rows_kv(out.past_key_values.layers, p, width, [len(x) for x in rows])
        if graphs:
            if self._graphs is None:
                from .cuda_graphs import ShapeGraphs

                self._graphs = ShapeGraphs(self._fused_scores)
            return self._graphs(ids, attn, positions)[:n].cpu().numpy()
        return self._fused_scores(ids, attn, positions).cpu().numpy()

    def _fused_inputs(self, input_ids: Any, mask: Any, p: int) -> tuple[Any, Any, Any]:
        """Input ids (n, W + T), 4-D additive mask (n, 1, W + T, p + W + T) and positions of the
        left-padded prompts (n, W) followed by the trie's nodes, after a cached prefix of `p` tokens."""
        import torch

        tr, device = self._trie_tensors(mask.device), mask.device
        (n, w), t = mask.shape, len(self._trie.tokens)
        real = mask.bool()
        lengths = mask.sum(-1)
        ids = torch.cat([input_ids, tr["tokens"].expand(n, t)], dim=1)
        positions = torch.cat([(mask.cumsum(-1) - 1).clamp(min=0), lengths[:, None] + tr["depth"]], dim=1) + p
        causal = torch.ones((w, w), dtype=torch.bool, device=device).tril()
        own = (causal[None] & real[:, None, :]) | torch.eye(w, dtype=torch.bool, device=device)[None]
        allowed = torch.cat(
            [
                torch.cat([own, torch.zeros((n, w, t), dtype=torch.bool, device=device)], dim=-1),
                torch.cat([real[:, None, :].expand(n, t, w), tr["ancestors"][None].expand(n, t, t)], dim=-1),
            ],
            dim=1,
        )  # (n, W + T, W + T): a padding query sees itself, so no row is empty
        if p:
            allowed = torch.cat([torch.ones((n, w + t, p), dtype=torch.bool, device=device), allowed], dim=-1)
        return ids, self._additive(allowed[:, None]), positions

    def _additive(self, allowed: Any) -> Any:
        """A boolean attention mask as the additive float mask the model adds to its scores."""
        import torch

        dtype = _float_dtype(self.model)
        attn = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
        return attn.masked_fill_(~allowed, torch.finfo(dtype).min)

    def _fused_forward(self, ids: Any, attn: Any, positions: Any, keep: bool = False) -> Any:
        """The model's pass over prompts and trie nodes (after the cached prefix when the mask has
        more keys than queries); logits of the last prompt token and every node; with `keep`, the K/V."""
        n = ids.shape[0]
        cache = self._prefix_cache(n) if attn.shape[-1] > ids.shape[1] else None
        return self.model(
            input_ids=ids,
            attention_mask=attn,
            position_ids=positions,
            past_key_values=cache,
            use_cache=keep or cache is not None,
            logits_to_keep=len(self._trie.tokens) + 1,
        )

    def _fused_scores(self, ids: Any, attn: Any, positions: Any) -> Any:
        """(n, L) label log-probs: tensors in, tensors out, no host sync (what a CUDA graph captures)."""
        return self._logit_sums(self._fused_forward(ids, attn, positions).logits)

    def _flat_pass(self, cache: Any, mask: Any, lengths: Any, root: Any) -> Any:
        import torch
        from transformers import DynamicCache

        device = mask.device
        n = mask.shape[0]
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        chunk = self.label_chunk or len(self.labels)
        scores = []
        for start in range(0, len(self.labels), chunk):
            labs = self.label_ids[start : start + chunk]
            m, k = len(labs), max(len(x) for x in labs)
            ids = torch.full((m, k), self._pad_id, dtype=torch.long)
            lmask = torch.zeros((m, k), dtype=torch.long)
            for j, x in enumerate(labs):
                ids[j, : len(x)] = torch.tensor(x)
                lmask[j, : len(x)] = 1
            ids, lmask = ids.to(device), lmask.to(device)
            rep = DynamicCache(ddp_cache_data=kv)  # a fresh copy: the pass appends to it
            rep.batch_repeat_interleave(m)  # row b * m + j = prompt b, label j
            inp = ids[:, :-1].repeat(n, 1)  # the last token (EOS) is predicted, never fed
            attn = torch.cat([mask.repeat_interleave(m, 0), lmask[:, :-1].repeat(n, 1)], dim=1)
            pos = lengths.repeat_interleave(m)[:, None] + torch.arange(k - 1, device=device)
            logits = self.model(
                input_ids=inp, attention_mask=attn, position_ids=pos, past_key_values=rep
            ).logits.float()  # (n*m, k-1, V)
            tgt = ids[:, 1:].repeat(n, 1)
            body = (logits.gather(-1, tgt[..., None])[..., 0] - logits.logsumexp(-1)) * lmask[
                :, 1:
            ].repeat(n, 1)
            first = root[:, ids[:, 0]]  # (n, m)
            scores.append(first + body.sum(-1).view(n, m))
        return torch.cat(scores, dim=1)


def naive_scores(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    labels: Sequence[str],
    *,
    label_prefix: str = " ",
    terminator: str | None = None,
    add_special_tokens: bool = False,
) -> np.ndarray:
    """Reference: one full forward pass per (prompt, label); float64 (len(prompts), len(labels)).

    Slow by design (no cache, no batching, no padding); used to check the scorer.
    """
    import torch

    scorer = CategoryScorer(
        model,
        tokenizer,
        labels,
        label_prefix=label_prefix,
        terminator=terminator,
        add_special_tokens=add_special_tokens,
    )
    device = _device(model)
    prompt_ids = scorer.prompt_ids(prompts)
    out = np.zeros((len(prompt_ids), len(labels)), dtype=np.float64)
    with torch.inference_mode():
        for i, p in enumerate(prompt_ids):
            for j, lab in enumerate(scorer.label_ids):
                ids = torch.tensor([p + lab], device=device)
                logits = model(input_ids=ids).logits[0].float()
                lp = torch.log_softmax(logits[len(p) - 1 : -1], dim=-1)
                out[i, j] = lp.gather(-1, torch.tensor(lab, device=device)[:, None]).sum().item()
    return out


def to_distribution(logprobs: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax over labels (last axis) of `logprobs / temperature`; same shape, rows sum to 1.

    Example:
        >>> to_distribution(np.log([[0.2, 0.6]])).round(2)
        array([[0.25, 0.75]])
    """
    if not (isinstance(temperature, int | float) and math.isfinite(temperature)) or temperature <= 0:
        raise ValueError(f"temperature={temperature!r}; expected a finite float > 0")
    z = np.asarray(logprobs, dtype=np.float64) / temperature
    if z.ndim < 1 or z.shape[-1] == 0:
        raise ValueError(f"logprobs has shape {z.shape}; expected (..., n_labels >= 1)")
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def temperature_nll(logprobs: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of `targets` under `to_distribution(logprobs, temperature)`."""
    z = np.asarray(logprobs, dtype=np.float64) / temperature
    zmax = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - zmax).sum(axis=1)) + zmax[:, 0]
    return float(np.mean(lse - z[np.arange(len(z)), targets]))


def fit_temperature(
    logprobs: np.ndarray,
    targets: Sequence[int] | np.ndarray,
    *,
    bounds: tuple[float, float] = (0.01, 100.0),
    tol: float = 1e-6,
) -> float:
    """The temperature T minimising validation NLL of softmax(logprobs / T).

    `logprobs`: (n, n_labels) scores from `CategoryScorer.score`; `targets`: (n,)
    column index of each row's true label. The NLL is convex in 1/T, so a
    golden-section search over log T within `bounds` finds the optimum.
    """
    lp = np.asarray(logprobs, dtype=np.float64)
    y = np.asarray(targets)
    if lp.ndim != 2 or lp.shape[0] == 0 or lp.shape[1] < 2:
        raise ValueError(f"logprobs has shape {lp.shape}; expected (n >= 1, n_labels >= 2)")
    if y.shape != (lp.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"targets has shape {y.shape}, dtype {y.dtype}; expected ({lp.shape[0]},) int")
    if y.min() < 0 or y.max() >= lp.shape[1]:
        raise ValueError(f"targets must lie in [0, {lp.shape[1]}); got {y.min()}..{y.max()}")
    if not np.isfinite(lp).all():
        raise ValueError("logprobs contains inf or nan")
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    if not lo < hi:
        raise ValueError(f"bounds={bounds!r}; expected 0 < low < high")

    def f(log_t: float) -> float:
        return temperature_nll(lp, y, math.exp(log_t))

    g = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    return math.exp((a + b) / 2)


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def _float_dtype(model: Any) -> Any:
    import torch

    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32
