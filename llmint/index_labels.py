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


def _is_text(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
        labels: Sequence[int] | np.ndarray,
        item_ids: Sequence[str],
        codes: Sequence[int] | np.ndarray,
        cat_names: Sequence[str],
    ) -> Catalogue:
        """The catalogue with `n_labels` labels so far, of which `labels` (ascending) are live,
        with their `item_ids` and category `codes` into `cat_names` (-1 for none): what
        `live_entries` returned when saved. No Python loop runs per item (100M items load
        in C); ValueError when the parts do not fit together."""
        live = np.asarray(labels, dtype=np.int64)
        code = np.asarray(codes, dtype=np.int32)
        if not len(live) == len(item_ids) == len(code):
            raise ValueError(f"{len(live)} labels, {len(item_ids)} item ids and {len(code)} category codes")
        if len(live) and (live[0] < 0 or live[-1] >= n_labels or np.any(np.diff(live) <= 0)):
            raise ValueError(f"the live labels are not ascending within 0..{n_labels - 1}")
        if len(code) and (code.min() < -1 or code.max() >= len(cat_names)):
            raise ValueError(f"a category code is outside -1..{len(cat_names) - 1}")
        cat = cls()
        if len(live) == n_labels:  # nothing removed: label i is the i-th id
            cat.item_ids = list(item_ids)
        else:
            slots = np.full(n_labels, None, dtype=object)
            slots[live] = np.array(item_ids, dtype=object)
            cat.item_ids = slots.tolist()
        cat.label_of = dict(zip(item_ids, live.tolist(), strict=True))
        if len(cat.label_of) != len(live):
            raise ValueError(f"{len(live) - len(cat.label_of)} item ids appear twice")
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

    def live_entries(self) -> tuple[np.ndarray, list[str], np.ndarray]:
        """The live labels (int64, ascending) with their item ids and category codes (int32,
        into `cat_names`; -1 for none): what `restore` reads."""
        live = self.live_labels()
        if len(live) == len(self.item_ids):
            ids = list(self.item_ids)
        else:
            ids = np.array(self.item_ids, dtype=object)[live].tolist()
        return live, ids, self.cat_code[live].copy()  # type: ignore[return-value]

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
