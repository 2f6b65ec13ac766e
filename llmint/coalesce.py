"""Requests made one at a time from many threads, run together: dynamic batching without a server thread.

A service thread that wants one shopper scored calls `Coalescer(item)`; while the model is busy,
other threads' items queue up, and the next free thread runs the whole queue (up to `max_batch`)
as one call of `fn` on a list. On a GPU a batch of 16 costs about what one costs (batch 1 is kernel
launches), so 16 concurrent callers are served in one pass instead of sixteen in a row.

No thread of its own: the callers take turns. At most one caller is the *gatherer*: it takes `lock`
(the model's; items pile up while the model is busy, which is when batching pays), waits up to
`wait_s` more for company (0: not at all), then takes the queue's first `max_batch` items and runs
them; another caller becomes the next gatherer meanwhile. Every caller gets its own result, or the
exception its batch raised.

Example:
    >>> c = Coalescer(lambda xs: [x * x for x in xs], max_batch=8)
    >>> c(3)
    (9, 1)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Slot(Generic[T]):
    item: T
    taken: bool = False  # a gatherer has taken it into a batch
    done: bool = False
    result: Any = None
    error: BaseException | None = None
    size: int = 0  # how many items its batch ran


@dataclass
class CoalesceStats:
    """What a Coalescer has run: batches, items, and the largest batch."""

    batches: int = 0
    items: int = 0
    largest: int = 0
    sizes: dict[int, int] = field(default_factory=dict)  # batch size -> how many batches

    def summary(self) -> dict[str, Any]:
        """Plain data for a JSON report: counts, the mean batch, and sizes keyed by str(size), ascending."""
        return {"batches": self.batches, "items": self.items, "largest": self.largest,
                "mean": round(self.items / self.batches, 2) if self.batches else None,
                "sizes": {str(k): v for k, v in sorted(self.sizes.items())}}


class Coalescer(Generic[T, R]):
    """Run `fn(list_of_items) -> results` (one result per item, in order) for items sent from many threads.

    Args:
        fn: called with 1..`max_batch` items, holding `lock`; must return as many results.
        max_batch: most items per call.
        wait_s: how long the gatherer, holding the free model, waits for more items before it runs a batch
            that is not full (0: not at all).
        lock: held around each call of `fn` (the model's lock, shared with its other users).
    """

    def __init__(self, fn: Callable[[list[T]], Sequence[R]], *, max_batch: int, wait_s: float = 0.0,
                 lock: Any = None) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch={max_batch!r}; expected an int >= 1")
        if isinstance(wait_s, bool) or not isinstance(wait_s, (int, float)) or not 0 <= wait_s < 60:
            raise ValueError(f"wait_s={wait_s!r}; expected seconds in [0, 60)")
        self.fn, self.max_batch, self.wait_s = fn, max_batch, float(wait_s)
        self.lock = lock if lock is not None else threading.Lock()
        self._cv = threading.Condition()
        self._queue: list[_Slot[T]] = []
        self._gathering = False
        self.stats = CoalesceStats()

    def __call__(self, item: T) -> tuple[R, int]:
        """`fn`'s result for `item` and the size of the batch it ran in (blocks until it has run)."""
        slot: _Slot[T] = _Slot(item)
        with self._cv:
            self._queue.append(slot)
            self._cv.notify_all()  # a gatherer waiting for company counts the newcomer
            while not slot.done:
                if self._gathering or slot.taken:  # another caller gathers, or runs this item's batch
                    self._cv.wait()
                    continue
                self._gather()  # this item is still queued, so the batch gathered is never empty
        if slot.error is not None:
            raise slot.error
        return slot.result, slot.size

    def _gather(self) -> None:
        """Called holding `_cv`: take the model's lock, wait for company, run the queue's head."""
        self._gathering = True
        locked = False
        try:
            self._cv.release()  # others may queue while the model is busy
            try:
                self.lock.acquire()
                locked = True
            finally:
                self._cv.acquire()
            deadline = time.monotonic() + self.wait_s  # the model is free: wait a little for company
            while len(self._queue) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                self._cv.wait(left)
        except BaseException:
            if locked:
                self.lock.release()
            self._gathering = False
            self._cv.notify_all()
            raise
        batch = self._queue[: self.max_batch]
        del self._queue[: self.max_batch]
        for s in batch:
            s.taken = True
        self._gathering = False
        self._cv.notify_all()  # the next gatherer gathers while this batch runs
        self._cv.release()
        try:
            results: Sequence[R] | None = None
            error: BaseException | None = None
            try:
                results = self.fn([s.item for s in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"the batched call returned {len(results)} results for {len(batch)} items")
            except BaseException as e:  # every caller of the batch gets it (none is left waiting)
                error = e
            finally:
                self.lock.release()
        finally:
            self._cv.acquire()
        for i, s in enumerate(batch):
            s.done, s.size, s.error = True, len(batch), error
            s.result = None if error is not None else results[i]  # type: ignore[index]
        st = self.stats
        st.batches += 1
        st.items += len(batch)
        st.largest = max(st.largest, len(batch))
        st.sizes[len(batch)] = st.sizes.get(len(batch), 0) + 1
        self._cv.notify_all()


__all__ = ["CoalesceStats", "Coalescer"]
