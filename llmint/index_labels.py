"""The catalogue bookkeeping of the product-retrieval index: item ids, labels, categories.

Every vector in the FAISS index has an int64 label. `Catalogue` hands out labels in
order and never reuses one (an updated item gets a new label), maps item ids to labels
and back, keeps the live mask (a removed label stays, dead) and each label's category
code, finds the live labels of a category and everything below it (`candidates`: "A > B"
matches "A > B" and "A > B > C"; an unknown category raises with suggestions) and turns
faiss results (scores, labels) into `Hit`s, dropping removed items.

It knows nothing about vectors, faiss, search or files, and caches nothing: the index
(`llmint.index`) keeps the vectors and `llmint.index_filter` caches the candidates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .errors import UnknownIdError
from .index_config import SEP, Hit, category_label


def within(category: str | None, prefix: str) -> bool:
    """Is `category` the category `prefix` or below it?"""
    return category is not None and (category == prefix or category.startswith(prefix + SEP))


class Catalogue:
    """Item ids <-> int64 labels, the live labels and each label's category."""

    def __init__(self) -> None:
        self.item_ids: list[str | None] = []  # label -> item id (None once removed)
        self.label_of: dict[str, int] = {}  # live item id -> label
        self._alive = np.zeros(0, dtype=bool)  # label -> live? (room for more: see `alive`)
        self._cat_code = np.zeros(0, dtype=np.int32)  # label -> category code, -1 for none
        self.cat_names: list[str] = []  # code -> category label
        self.cat_code_of: dict[str, int] = {}

    @classmethod
    def restore(
        cls,
        n_labels: int,
        labels: Sequence[int],
        item_ids: Sequence[str],
        categories: Sequence[str | None],
    ) -> Catalogue:
        """The catalogue with `n_labels` labels so far, of which `labels` are live, with
        their `item_ids` and `categories` (what `live_entries` returned when saved)."""
        cat = cls()
        cat.item_ids = [None] * n_labels
        cat._alive = np.zeros(n_labels, dtype=bool)
        cat._cat_code = np.full(n_labels, -1, dtype=np.int32)
        live = np.asarray(labels, dtype=np.int64)
        for lab, iid, name in zip(live.tolist(), item_ids, categories, strict=True):
            cat.item_ids[lab] = iid
            cat.label_of[iid] = lab
            cat._cat_code[lab] = cat.code(name)
        cat._alive[live] = True
        return cat

    def __len__(self) -> int:
        return len(self.label_of)

    @property
    def alive(self) -> np.ndarray:
        """label -> live? (a view: writes go through)."""
        return self._alive[: len(self.item_ids)]

    @property
    def cat_code(self) -> np.ndarray:
        """label -> category code, -1 for none (a view)."""
        return self._cat_code[: len(self.item_ids)]

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.label_of

    @property
    def n_labels(self) -> int:
        """How many labels were handed out (live or removed): the next label."""
        return len(self.item_ids)

    def live_ids(self) -> list[str]:
        """The live item ids, in the order they were added."""
        return [i for i in self.item_ids if i is not None]

    def live_labels(self) -> np.ndarray:
        """The live labels, ascending (int64)."""
        return np.flatnonzero(self.alive).astype(np.int64)

    def live_entries(self) -> tuple[np.ndarray, list[str], list[str | None]]:
        """The live labels with their item ids and categories (what `restore` reads)."""
        live = self.live_labels()
        ids = [self.item_ids[i] for i in live.tolist()]
        cats = [self.cat_names[c] if c >= 0 else None for c in self.cat_code[live].tolist()]
        return live, ids, cats  # type: ignore[return-value]

    def check_new(
        self,
        item_ids: Sequence[str],
        categories: Sequence[str | Sequence[str] | None] | None,
    ) -> list[str | None]:
        """The category labels of new items (None for none, or for all when `categories` is
        None); raises unless `item_ids` are non-empty str, unique, not indexed yet and as
        many as the categories."""
        if not all(isinstance(i, str) and i for i in item_ids):
            raise TypeError("item ids must be non-empty str")
        if len(set(item_ids)) != len(item_ids):
            raise ValueError("item ids must be unique within one add()")
        present = [i for i in item_ids if i in self.label_of]
        if present:
            raise ValueError(
                f"{len(present)} item ids are already indexed (use update()), e.g. {present[:3]}"
            )
        cats = [None] * len(item_ids) if categories is None else [category_label(c) for c in categories]
        if len(cats) != len(item_ids):
            raise ValueError(f"{len(item_ids)} item ids but {len(cats)} categories")
        return cats

    def require(self, item_ids: Sequence[str]) -> None:
        """Raise UnknownIdError unless every one of `item_ids` is indexed."""
        missing = [i for i in item_ids if i not in self.label_of]
        if missing:
            raise UnknownIdError(
                f"{len(missing)} item ids are not in the index, e.g. {missing[:3]}"
            )

    def labels_of(self, item_ids: Sequence[str]) -> np.ndarray:
        """The int64 labels of indexed `item_ids` (UnknownIdError for any other)."""
        self.require(item_ids)
        return np.array([self.label_of[i] for i in item_ids], dtype=np.int64)

    def categories_of(self, item_ids: Sequence[str]) -> list[str | None]:
        """The categories of indexed `item_ids` (None for none)."""
        codes = self.cat_code[[self.label_of[i] for i in item_ids]]
        return [self.cat_names[c] if c >= 0 else None for c in codes.tolist()]

    def next_labels(self, n: int) -> np.ndarray:
        """The labels (int64) that the next `append` of `n` items will give them."""
        start = len(self.item_ids)
        return np.arange(start, start + n, dtype=np.int64)

    def append(self, item_ids: Sequence[str], categories: Sequence[str | None]) -> None:
        """Record new items (checked by `check_new`) under `next_labels(len(item_ids))`."""
        labels = self.next_labels(len(item_ids))
        codes = np.array([self.code(c) for c in categories], dtype=np.int32)
        start, stop = len(self.item_ids), len(self.item_ids) + len(item_ids)
        if stop > len(self._alive):  # room doubles: a catalogue added in chunks is copied O(log n) times, not per chunk
            room = max(stop, 2 * len(self._alive))
            self._alive = np.concatenate([self._alive[:start], np.zeros(room - start, dtype=bool)])
            self._cat_code = np.concatenate([self._cat_code[:start], np.full(room - start, -1, dtype=np.int32)])
        self._alive[start:stop] = True
        self._cat_code[start:stop] = codes
        self.item_ids.extend(item_ids)
        self.label_of.update(zip(item_ids, labels.tolist(), strict=True))

    def drop(self, item_ids: Iterable[str]) -> np.ndarray:
        """Mark items removed and return their labels; unknown ids raise UnknownIdError and
        nothing is removed."""
        ids = list(dict.fromkeys(item_ids))
        self.require(ids)
        labels = np.array([self.label_of.pop(i) for i in ids], dtype=np.int64)
        for lab in labels.tolist():
            self.item_ids[lab] = None
        self.alive[labels] = False
        return labels

    def code(self, cat: str | None) -> int:
        """The code of category `cat` (-1 for None), given a new one when first seen."""
        if cat is None:
            return -1
        code = self.cat_code_of.get(cat)
        if code is None:
            code = self.cat_code_of[cat] = len(self.cat_names)
            self.cat_names.append(cat)
        return code

    def candidates(self, prefix: str) -> np.ndarray:
        """The live labels (int64, ascending) of category `prefix` and everything below it;
        UnknownIdError, with close names or the top-level categories, when no item ever was."""
        codes = [c for name, c in self.cat_code_of.items() if within(name, prefix)]
        if not codes:
            last = prefix.split(SEP)[-1].lower()
            close = sorted({n for n in self.cat_names if last in n.lower()})[:3]
            roots = sorted({n.split(SEP)[0] for n in self.cat_names})
            raise UnknownIdError(
                f"unknown category {prefix!r}: no indexed item is in it or below it; "
                + (f"close: {close}" if close else f"top-level categories: {roots[:8]}")
            )
        mask = np.isin(self.cat_code, np.array(codes, dtype=np.int32)) & self.alive
        return np.flatnonzero(mask).astype(np.int64)

    def hits(self, scores: np.ndarray, labels: np.ndarray) -> list[list[Hit]]:
        """faiss results (q, k) as `Hit`s per query row; -1 and removed labels are dropped."""
        out = []
        ids = self.item_ids
        for srow, lrow in zip(scores.tolist(), labels.tolist(), strict=True):
            row = []
            for s, lab in zip(srow, lrow, strict=True):
                if lab >= 0 and ids[lab] is not None:  # never return a removed item
                    row.append(Hit(ids[lab], float(s)))
            out.append(row)
        return out


__all__ = ["Catalogue", "within"]
