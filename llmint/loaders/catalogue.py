"""A large catalogue from a Parquet items file, read a row group at a time.

`ParquetItems(path)` reads every row once and checks it as `load_items_file` does (the
item columns of `llmint.loaders.generic`; strict: DataError naming the row, non-strict:
the row skipped and counted in `report`), but keeps only the item ids and category paths.
`texts(text_of)` is a sequence of the items' texts (`llmint.embed.item_text` for an index)
that reads them again a row group at a time as it is indexed, keeping one group in memory: a
100M-row catalogue is never held as `Item`s or texts. Read in order (or in sorted order,
as an IVF-PQ training sample is), each group is read once per pass.

`version` fingerprints the file's bytes, so an index built from it says which catalogue
it is. This module knows nothing about models or indexes; pyarrow is imported inside.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, overload

from ..errors import DataError
from ..schema import Item, LoadReport
from ._common import RowSink
from .generic import item_of


class ParquetItems:
    """The items of a Parquet file: ids and categories in memory, texts read back on demand."""

    def __init__(self, path: str | Path, *, strict: bool = True, limit: int = 0) -> None:
        """Read and check `path`; `limit` > 0 keeps only the first `limit` good items."""
        self.path = Path(path)
        if self.path.suffix.lower() != ".parquet":
            raise DataError(f"{self.path}: expected a .parquet items file")
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such file")
        try:
            import pyarrow.parquet as pq

            self._file = pq.ParquetFile(self.path)
        except Exception as err:  # pyarrow raises several types for a broken file
            raise DataError(f"{self.path}: cannot read as Parquet: {err}") from err
        columns = self._file.schema_arrow.names
        if "item_id" not in columns:
            raise DataError(f"{self.path}: missing column 'item_id'; the columns are {columns}")
        self.report = LoadReport(source=self.path.name)
        self.item_ids: list[str] = []
        self.categories: list[tuple[str, ...] | None] = []  # None: no category
        self._kept: list[list[int]] = []  # per row group: its rows (within the group) that were kept
        self._starts: list[int] = []  # per row group: the index of its first kept item
        self._rows_before: list[int] = []  # per row group: the file rows before it
        sink = RowSink(self.path, self.report, strict=strict)
        seen: set[str] = set()
        paths: dict[tuple[str, ...], tuple[str, ...]] = {}  # one tuple per distinct path, shared by its items
        rows = 0
        for g in range(self._file.num_row_groups):
            if limit and len(self.item_ids) >= limit:
                break
            kept = []
            self._starts.append(len(self.item_ids))
            self._rows_before.append(rows)
            for j, rec in enumerate(self._records(g)):
                if limit and len(self.item_ids) >= limit:
                    break
                self.report.rows_read += 1
                where = f"row {rows + j + 1}"
                item = item_of(where, rec, sink, seen=seen)
                if item is None:
                    continue
                seen.add(item.item_id)
                self.item_ids.append(item.item_id)
                self.categories.append(paths.setdefault(item.category_path, item.category_path) or None)
                kept.append(j)
            self._kept.append(kept)
            rows += self._file.metadata.row_group(g).num_rows
        self.report.rows_kept = len(self.item_ids)

    def __len__(self) -> int:
        return len(self.item_ids)

    def _records(self, group: int) -> list[dict[str, Any]]:
        try:
            return self._file.read_row_group(group).to_pylist()
        except Exception as err:  # noqa: BLE001 - a broken page is the file's fault: say where
            raise DataError(f"{self.path}: row group {group}: cannot read: {err}") from err

    def group_items(self, group: int) -> list[Item]:
        """The kept items of row `group`, read again from the file (they passed the first read)."""
        sink = RowSink(self.path, LoadReport(source=self.path.name), strict=True)
        recs = self._records(group)
        items = []
        for j in self._kept[group]:
            item = item_of(f"row {self._rows_before[group] + j + 1}", recs[j], sink)
            if item is None:  # pragma: no cover - strict sink raises instead
                raise DataError(f"{self.path}: row {self._rows_before[group] + j + 1} changed since it was read")
            items.append(item)
        return items

    def texts(self, text_of: Callable[[Item], str]) -> Sequence[str]:
        """`text_of(item)` of each kept item, in order, read a row group at a time."""
        return _Texts(self, text_of)

    def version(self) -> str:
        """A short hash of the file's bytes: the catalogue version of an index built from it."""
        h = hashlib.sha256()
        with self.path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return "file:" + h.hexdigest()[:16]

    def __repr__(self) -> str:
        return f"ParquetItems({str(self.path)!r}, items={len(self)}, row_groups={len(self._kept)})"


class _Texts(Sequence[str]):
    """`text_of` each kept item of a `ParquetItems`, one row group cached at a time."""

    def __init__(self, items: ParquetItems, text_of: Callable[[Item], str]) -> None:
        self._items = items
        self._text_of = text_of
        self._group = -1
        self._texts: list[str] = []

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"item {i} of {n}")
        i %= n
        starts = self._items._starts
        group = bisect.bisect_right(starts, i) - 1  # the last group starting at or before i: never an empty one
        if group != self._group:
            self._texts = [self._text_of(it) for it in self._items.group_items(group)]
            self._group = group
        return self._texts[i - starts[group]]


__all__ = ["ParquetItems"]
