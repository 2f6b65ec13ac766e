"""A category taxonomy built from items' category paths, cut at a prediction level.

A label is the category path truncated to `level`, joined with " > ", e.g.
"Office Electronics > Telephones & Accessories". Items whose path is shorter
than `level` keep their full (shorter) path as their label. The taxonomy knows
nothing about events, models or files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import UnknownIdError
from .schema import Item

SEP = " > "


@dataclass(frozen=True)
class Taxonomy:
    """The ordered set of category labels at one level of a category tree."""

    labels: tuple[str, ...]
    level: int
    parents: Mapping[str, str | None]  # label -> label of its parent path, or None at the root

    @classmethod
    def from_items(cls, items: Iterable[Item], level: int) -> Taxonomy:
        """Build the taxonomy of `items` at `level` (>= 1); labels sorted alphabetically.

        Example:
            >>> t = Taxonomy.from_items([Item("1", "a", ("A", "B", "C"))], level=2)
            >>> t.labels
            ('A > B',)
        """
        if level < 1:
            raise ValueError(f"level={level}; expected an int >= 1")
        paths: set[tuple[str, ...]] = set()
        for it in items:
            if it.category_path:
                paths.add(it.category_path[:level])
        labels = tuple(sorted(SEP.join(p) for p in paths))
        parents = {SEP.join(p): (SEP.join(p[:-1]) if len(p) > 1 else None) for p in paths}
        return cls(labels=labels, level=level, parents=parents)

    def __post_init__(self) -> None:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("taxonomy labels must be unique")
        object.__setattr__(self, "_index", {lab: i for i, lab in enumerate(self.labels)})

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, label: object) -> bool:
        return label in self._index  # type: ignore[attr-defined]

    def index(self, label: str) -> int:
        """The position of `label`; raises UnknownIdError naming close matches."""
        try:
            return self._index[label]  # type: ignore[attr-defined]
        except KeyError:
            raise UnknownIdError(
                f"unknown category {label!r}; the taxonomy has {len(self.labels)} labels at "
                f"level {self.level}, e.g. {list(self.labels[:3])}"
            ) from None

    def label_of(self, item: Item) -> str | None:
        """The label of an item at this level, or None if the item has no category."""
        if not item.category_path:
            return None
        return SEP.join(item.category_path[: self.level])

    def labels_of(self, item: Item) -> tuple[str, ...]:
        """Every label of an item at this level that is in the taxonomy: `label_of` first, then
        those of `item.also_in` (a multi-label item); () when it has no category.

        Example:
            >>> tax = Taxonomy.from_items([Item("a", "A", ("Comedy",)), Item("b", "B", ("Drama",))], 1)
            >>> tax.labels_of(Item("t", "Toy Story", ("Animation",), also_in=(("Comedy",), ("Drama",))))
            ('Animation', 'Comedy', 'Drama')
        """
        first = self.label_of(item)
        out = [] if first is None else [first]
        for path in item.also_in:
            lab = SEP.join(path[: self.level])
            if lab in self and lab not in out:
                out.append(lab)
        return tuple(out)

    def item_labels(self, items: Mapping[str, Item]) -> dict[str, int]:
        """item_id -> label index for every item that has a category."""
        out: dict[str, int] = {}
        for iid, it in items.items():
            lab = self.label_of(it)
            if lab is not None:
                out[iid] = self.index(lab)
        return out

    def subtree(self, prefix: str) -> list[str]:
        """Labels equal to `prefix` or below it (for category-restricted retrieval)."""
        return [lab for lab in self.labels if lab == prefix or lab.startswith(prefix + SEP)]
