"""Prompt token ids built ahead of the model, in worker processes: the batch scorer's feed.

Building one prompt (serialising a history, the chat template, tokenising) is Python on one core:
1.1-1.8 ms per shopper (docs/scaling.md), so one process feeds a model at most ~550-900 shoppers/s,
below what one GPU scores. `prompt_chunks(ranker, chunks, workers=4)` builds each chunk's prompts in
a `torch.utils.data.DataLoader` worker (forked: the ranker's tokenizer and the histories are
inherited, nothing is pickled but the finished ids) while the scoring process runs the model on the
previous chunk; chunks come back in order, at most `prefetch` per worker ahead. `workers=0` builds
them in the calling process, one chunk when it is asked for (the same ids either way).

Example:
    >>> class Echo:  # stands in for an LLMCategoryRanker: anything with prompt_ids(history)
    ...     def prompt_ids(self, history):
    ...         return [len(history)]
    >>> list(prompt_chunks(Echo(), [[[1, 2], [3]], [[4, 5, 6]]], workers=0))
    [[[2], [1]], [[3]]]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any


class _Chunks:
    """Item j: the prompt ids of chunk j's histories (a map-style dataset)."""

    def __init__(self, ranker: Any, chunks: Sequence[Sequence[Any]]) -> None:
        self.ranker, self.chunks = ranker, chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, j: int) -> list[list[int]]:
        return [self.ranker.prompt_ids(h) for h in self.chunks[j]]


def _as_is(x: Any) -> Any:
    return x


def prompt_chunks(ranker: Any, chunks: Sequence[Sequence[Any]], *, workers: int = 0,
                  prefetch: int = 2) -> Iterator[list[list[int]]]:
    """The prompt ids of each chunk of histories, in order; built by `workers` forked processes
    (0: here, lazily). With workers, one prompt is built here first, so they inherit a loaded tokenizer."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers={workers!r}; expected an int >= 0")
    if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
        raise ValueError(f"prefetch={prefetch!r}; expected an int >= 1")
    data = _Chunks(ranker, chunks)
    if workers == 0 or len(chunks) == 0:
        return (data[j] for j in range(len(data)))
    first = next((h for c in chunks for h in c), None)
    if first is not None:
        ranker.prompt_ids(first)  # loads the ranker's tokenizer and template (lazy) before the fork
    import multiprocessing

    from torch.utils.data import DataLoader

    loader = DataLoader(data, batch_size=None, shuffle=False, num_workers=min(workers, len(chunks)),
                        collate_fn=_as_is, prefetch_factor=prefetch,
                        multiprocessing_context=multiprocessing.get_context("fork"))
    return iter(loader)


__all__ = ["prompt_chunks"]
