"""The catalogue bookkeeping of the product-retrieval index: item ids, labels, categories.

Every vector in the FAISS index has an int64 label. `Catalogue` hands out labels in
order and never reuses one (an updated item gets a new label), maps item ids to labels
and back (`llmint.index_idtable.IdTable`: the ids' bytes, not a str and a dict entry
each), keeps the live mask (a removed label stays, dead), each label's category code and
the count of live items, finds the live labels of a category and everything below it
(`candidates`: "A > B" matches "A > B" and "A > B > C"; an unknown category raises with
suggestions) and turns faiss results (scores, labels) into `Hit`s, dropping removed items.

It knows nothing about vectors, faiss, search or files, and caches nothing but the id
table's hashes: the index (`llmint.index`) keeps the vectors and `llmint.index_filter`
caches the candidates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .errors import UnknownIdError
from .index_config import SEP, Hit, category_label
from .index_idtable import IdTable, encode


def within(category: str | None, prefix: str) -> bool:
    """Is `category` the category `prefix` or below it?"""
    return category is not None and (category == prefix or category.startswith(prefix + SEP))


def _is_text(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Catalogue:
    """Item ids <-> int64 labels, the live labels and each label's category."""

    def __init__(self) -> None:
        self.ids = IdTable()  # label <-> item id (`llmint.index_idtable`: ~30 B an item)
        self._n_live = 0
        self._alive = np.zeros(0, dtype=bool)  # label -> live? (room for more: see `alive`)
        self._cat_code = np.zeros(0, dtype=np.int32)  # label -> category code, -1 for none
        self.cat_names: list[str] = []  # code -> category label
        self.cat_code_of: dict[str, int] = {}

    @classmethod
    def restore(
        cls,
        n_labels: int,
        labels: Sequence[int] | np.ndarray,
        item_ids: Sequence[str] | np.ndarray,
        codes: Sequence[int] | np.ndarray,
        cat_names: Sequence[str],
    ) -> Catalogue:
        """The catalogue with `n_labels` labels so far, of which `labels` (ascending) are live,
        with their `item_ids` (a list of str, or their bytes as `items.ids` holds them: uint8,
        each ended by 0xFF) and category `codes` into `cat_names` (-1 for none): what
        `live_entries` returned when saved. No Python code runs per item (100M items load
        in C); ValueError when the parts do not fit together."""
        live = np.asarray(labels, dtype=np.int64)
        code = np.asarray(codes, dtype=np.int32)
        blob = item_ids if isinstance(item_ids, np.ndarray) else np.frombuffer(encode(item_ids), dtype=np.uint8)
        if len(live) != len(code):
            raise ValueError(f"{len(live)} labels but {len(code)} category codes")
        if len(live) and (live[0] < 0 or live[-1] >= n_labels or np.any(np.diff(live) <= 0)):
            raise ValueError(f"the live labels are not ascending within 0..{n_labels - 1}")
        if len(code) and (code.min() < -1 or code.max() >= len(cat_names)):
            raise ValueError(f"a category code is outside -1..{len(cat_names) - 1}")
        cat = cls()
        cat.ids = IdTable.restore(n_labels, live, blob)
        cat._n_live = len(live)
        cat._alive = np.zeros(n_labels, dtype=bool)
        cat._alive[live] = True
        cat._cat_code = np.full(n_labels, -1, dtype=np.int32)
        cat._cat_code[live] = code
        cat.cat_names = list(cat_names)
        cat.cat_code_of = {name: i for i, name in enumerate(cat.cat_names)}
        if len(cat.cat_code_of) != len(cat.cat_names):
            raise ValueError("a category name appears twice")
        return cat

    def __len__(self) -> int:
        return self._n_live

    @property
    def alive(self) -> np.ndarray:
        """label -> live? (a view: writes go through)."""
        return self._alive[: len(self.ids)]

    @property
    def cat_code(self) -> np.ndarray:
        """label -> category code, -1 for none (a view)."""
        return self._cat_code[: len(self.ids)]

    def __contains__(self, item_id: object) -> bool:
        return self.label(item_id) is not None  # type: ignore[arg-type]

    @property
    def n_labels(self) -> int:
        """How many labels were handed out (live or removed): the next label."""
        return len(self.ids)

    def label(self, item_id: str) -> int | None:
        """The label of a live `item_id`, or None."""
        if not (isinstance(item_id, str) and _is_text(item_id)):
            return None
        lab = int(self.ids.find([item_id], self.alive)[0])
        return lab if lab >= 0 else None

    def id_of(self, label: int) -> str | None:
        """The item id of `label`, None once removed."""
        return self.ids.id_of(label) if self.alive[label] else None

    def live_ids(self) -> list[str]:
        """The live item ids, in the order they were added."""
        return self.ids.ids(self.live_labels())

    def live_labels(self) -> np.ndarray:
        """The live labels, ascending (int64)."""
        return np.flatnonzero(self.alive).astype(np.int64)

    def live_entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The live labels (int64, ascending) with their item ids' bytes (uint8, each ended by
        0xFF: `items.ids`'s body) and category codes (int32, into `cat_names`; -1 for none):
        what `restore` reads."""
        live = self.live_labels()
        return live, self.ids.blob(live), self.cat_code[live].copy()

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
        try:  # one encode for all: a lone surrogate could not be saved (llmint.index_ids)
            "".join(item_ids).encode("utf-8")
        except UnicodeEncodeError:
            bad = [i for i in item_ids if not _is_text(i)]
            raise ValueError(f"{len(bad)} item ids are not valid Unicode text (a lone surrogate), "
                             f"e.g. {bad[:3]}") from None
        if len(set(item_ids)) != len(item_ids):
            raise ValueError("item ids must be unique within one add()")
        found = self.ids.find(item_ids, self.alive)
        present = [i for i, lab in zip(item_ids, found.tolist(), strict=True) if lab >= 0]
        if present:
            raise ValueError(
                f"{len(present)} item ids are already indexed (use update()), e.g. {present[:3]}"
            )
        cats = [None] * len(item_ids) if categories is None else [category_label(c) for c in categories]
        if len(cats) != len(item_ids):
            raise ValueError(f"{len(item_ids)} item ids but {len(cats)} categories")
        return cats

    def require(self, item_ids: Sequence[str]) -> np.ndarray:
        """The int64 labels of `item_ids`; UnknownIdError unless every one is indexed."""
        ok = [isinstance(i, str) and _is_text(i) for i in item_ids]  # anything else is in no index
        text = [i for i, good in zip(item_ids, ok, strict=True) if good]
        found = self.ids.find(text, self.alive)
        if len(text) == len(ok) and not (found < 0).any():
            return found
        known = {i for i, lab in zip(text, found.tolist(), strict=True) if lab >= 0}
        missing = [i for i, good in zip(item_ids, ok, strict=True) if not good or i not in known]
        raise UnknownIdError(f"{len(missing)} item ids are not in the index, e.g. {missing[:3]}")

    def labels_of(self, item_ids: Sequence[str]) -> np.ndarray:
        """The int64 labels of indexed `item_ids` (UnknownIdError for any other)."""
        return self.require(item_ids)

    def categories_of(self, item_ids: Sequence[str]) -> list[str | None]:
        """The categories of indexed `item_ids` (None for none)."""
        codes = self.cat_code[self.labels_of(item_ids)]
        return [self.cat_names[c] if c >= 0 else None for c in codes.tolist()]

    def next_labels(self, n: int) -> np.ndarray:
        """The labels (int64) that the next `append` of `n` items will give them."""
        start = len(self.ids)
        return np.arange(start, start + n, dtype=np.int64)

    def append(self, item_ids: Sequence[str], categories: Sequence[str | None]) -> None:
        """Record new items (checked by `check_new`) under `next_labels(len(item_ids))`."""
        codes = np.array([self.code(c) for c in categories], dtype=np.int32)
        start, stop = len(self.ids), len(self.ids) + len(item_ids)
        if stop > len(self._alive):  # room doubles: a catalogue added in chunks is copied O(log n) times, not per chunk
            room = max(stop, 2 * len(self._alive))
            self._alive = np.concatenate([self._alive[:start], np.zeros(room - start, dtype=bool)])
            self._cat_code = np.concatenate([self._cat_code[:start], np.full(room - start, -1, dtype=np.int32)])
        self.ids.append(item_ids)
        self._alive[start:stop] = True
        self._cat_code[start:stop] = codes
        self._n_live += len(item_ids)

    def drop(self, item_ids: Iterable[str]) -> np.ndarray:
        """Mark items removed and return their labels; unknown ids raise UnknownIdError and
        nothing is removed."""
        ids = list(dict.fromkeys(item_ids))
        labels = self.require(ids)
        self.alive[labels] = False
        self.ids.forget(ids)
        self._n_live -= len(labels)
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
        live = (labels >= 0) & self.alive[np.maximum(labels, 0)]  # never return a removed item
        names = iter(self.ids.ids_at(labels[live]))
        return [[Hit(next(names), float(s)) for s, ok in zip(srow, lrow, strict=True) if ok]
                for srow, lrow in zip(scores.tolist(), live.tolist(), strict=True)]


__all__ = ["Catalogue", "within"]
