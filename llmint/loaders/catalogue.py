"""A large catalogue from a Parquet, JSONL or CSV items file, read a group of rows at a time.

`catalogue_file(path)` opens one: `ParquetItems` reads a Parquet file a row group at a
time, `JsonlItems` a JSONL file `GROUP_LINES` lines at a time (seeking back to a group's
byte offset), `CsvItems` a CSV file `GROUP_LINES` records at a time (a quoted field may
span lines: a group ends where its last record's lines do). Each reads every row once
and checks it as `load_items_file` does (the item columns of `llmint.loaders.generic`;
strict: DataError naming the row or line, non-strict: the row skipped and counted in
`report`), but keeps only the item ids and category paths (one tuple per distinct path).
`texts(text_of)` is a sequence of the items' texts (`llmint.embed.item_text` for an
index) that reads them again a group at a time as it is indexed, keeping one group in
memory: a 100M-row catalogue is never held as `Item`s or texts. Read in order (or in
sorted order, as an IVF-PQ training sample is), each group is read once per pass.

`version()` fingerprints the file's bytes, so an index built from it says which catalogue
it is. This module knows nothing about models or indexes; pyarrow is imported inside.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

from ..errors import DataError
from ..schema import Item, LoadReport
from ._common import RowSink, iter_csv_lines
from .generic import _parse_line, item_of

GROUP_LINES = 8192  # JSONL lines per group (Parquet files bring their own row groups)
Record = tuple[int | str, dict[str, Any]]  # (line number or "row N", the row's fields)


class StreamedItems:
    """An items file's ids and categories in memory, its texts read back a group at a time.

    Subclasses give `_scan()`, the file's groups of records in order (read once, at start),
    and `_records(g)`, group g's records again.
    """

    def __init__(self, path: str | Path, *, strict: bool = True, limit: int = 0, show_progress: bool = False) -> None:
        """Read and check `path`; `limit` > 0 keeps only the first `limit` good items;
        `show_progress`: a bar over the file's bytes (its rows for Parquet) as it is read."""
        from tqdm.auto import tqdm

        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such file")
        self.strict = strict
        self.report = LoadReport(source=self.path.name)
        self.repaired: list[str] = []  # places whose text was repaired (non-strict), as the loaders report
        self.item_ids: list[str] = []
        self.categories: list[tuple[str, ...] | None] = []  # None: no category
        self._kept: list[list[int]] = []  # per group: its records (by position) that were kept
        self._starts: list[int] = []  # per group: the index of its first kept item
        self._open()
        sink = RowSink(self.path, self.report, strict=strict)
        seen: set[str] = set()
        paths: dict[tuple[str, ...], tuple[str, ...]] = {}  # one tuple per distinct path, shared by its items
        total, unit = self._extent()
        bar = tqdm(total=total, unit=unit, unit_scale=True, desc=f"reading {self.path.name}", disable=not show_progress)
        for records in self._scan():
            bar.update(self._done() - bar.n)
            if limit and len(self.item_ids) >= limit:
                break
            kept = []
            self._starts.append(len(self.item_ids))
            for j, (where, rec) in enumerate(records):
                if limit and len(self.item_ids) >= limit:
                    break
                self.report.rows_read += 1
                item = item_of(where, rec, sink, seen=seen)
                if item is None:
                    continue
                seen.add(item.item_id)
                self.item_ids.append(item.item_id)
                self.categories.append(paths.setdefault(item.category_path, item.category_path) or None)
                kept.append(j)
            self._kept.append(kept)
        bar.close()
        self.report.rows_kept = len(self.item_ids)

    def _open(self) -> None:
        """Check the file can be read as this kind; set up what `_scan` needs."""

    def _scan(self) -> Iterator[list[Record]]:
        raise NotImplementedError

    def _extent(self) -> tuple[int, str]:
        """How much there is to read, and in what unit: the file's bytes."""
        return self.path.stat().st_size, "B"

    def _done(self) -> int:
        """How much of `_extent` the groups scanned so far cover."""
        raise NotImplementedError

    def _records(self, group: int) -> list[Record]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.item_ids)

    def group_items(self, group: int) -> list[Item]:
        """The kept items of `group`, read again from the file (they passed the first read)."""
        sink = RowSink(self.path, LoadReport(source=self.path.name), strict=True)
        recs = self._records(group)
        items = []
        for j in self._kept[group]:
            where, rec = recs[j]
            item = item_of(where, rec, sink)
            if item is None:  # pragma: no cover - a strict sink raises instead
                raise DataError(f"{self.path}: {where} changed since it was read")
            items.append(item)
        return items

    def texts(self, text_of: Callable[[Item], str]) -> Sequence[str]:
        """`text_of(item)` of each kept item, in order, read a group at a time."""
        return _Texts(self, text_of)

    def version(self) -> str:
        """A short hash of the file's bytes: the catalogue version of an index built from it."""
        h = hashlib.sha256()
        with self.path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return "file:" + h.hexdigest()[:16]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, items={len(self)}, groups={len(self._kept)})"


class ParquetItems(StreamedItems):
    """The items of a Parquet file, read a row group at a time."""

    def _open(self) -> None:
        if self.path.suffix.lower() != ".parquet":
            raise DataError(f"{self.path}: expected a .parquet items file")
        try:
            import pyarrow.parquet as pq

            self._file = pq.ParquetFile(self.path)
        except Exception as err:  # pyarrow raises several types for a broken file
            raise DataError(f"{self.path}: cannot read as Parquet: {err}") from err
        columns = self._file.schema_arrow.names
        if "item_id" not in columns:
            raise DataError(f"{self.path}: missing column 'item_id'; the columns are {columns}")
        meta = self._file.metadata
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        self._rows_before = [0, *itertools.accumulate(sizes)][:-1]  # per group: the file rows before it

    def _scan(self) -> Iterator[list[Record]]:
        for g in range(self._file.num_row_groups):
            self._scanned = g + 1
            yield self._records(g)

    def _extent(self) -> tuple[int, str]:
        return self._file.metadata.num_rows, "row"

    def _done(self) -> int:
        return self._rows_before[self._scanned - 1] + self._file.metadata.row_group(self._scanned - 1).num_rows

    def _records(self, group: int) -> list[Record]:
        try:
            rows = self._file.read_row_group(group).to_pylist()
        except Exception as err:  # noqa: BLE001 - a broken page is the file's fault: say where
            raise DataError(f"{self.path}: row group {group}: cannot read: {err}") from err
        first = self._rows_before[group] + 1
        return [(f"row {first + j}", rec) for j, rec in enumerate(rows)]


class TextItems(StreamedItems):
    """A text file's items: lines decoded one at a time. Strict, a non-UTF-8 byte raises
    DataError naming the line; non-strict, it is replaced by U+FFFD and the line is listed
    in `repaired` (as `load_items_file` reports it)."""

    def _decode(self, raw: bytes, line: int, report: bool) -> str:
        if line == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            if self.strict:
                raise DataError(
                    f"{self.path}: line {line} (byte {err.start} of the line) is not valid UTF-8: "
                    f"{raw[err.start:err.end]!r}; re-encode the file as UTF-8 or load with strict=False "
                    "to replace bad bytes") from None
            if report:
                self.repaired.append(f"{self.path.name}: line {line}")
            return raw.decode("utf-8", errors="replace")


class JsonlItems(TextItems):
    """The items of a JSONL file, read `GROUP_LINES` lines at a time.

    Lines are decoded one at a time: strict, a non-UTF-8 byte or a lone surrogate escape
    raises DataError naming the line; non-strict, it is replaced by U+FFFD and the line is
    listed in `repaired` (as `load_items_file` reports it). Blank lines are skipped.
    """

    def _open(self) -> None:
        if self.path.suffix.lower() != ".jsonl":
            raise DataError(f"{self.path}: expected a .jsonl items file")
        self._groups: list[tuple[int, int, int]] = []  # per group: byte offset, first line number, lines

    def _scan(self) -> Iterator[list[Record]]:
        line = 1
        with self.path.open("rb") as f:
            while True:
                offset = f.tell()
                records, n_lines = self._read(f, line)
                if not n_lines:
                    return
                if line == 1:  # the column check of load_items_file: the fields of the first 100 records
                    columns = {k: None for _, rec in records[:100] if "__error__" not in rec for k in rec}
                    if columns and "item_id" not in columns:
                        raise DataError(f"{self.path}: missing column 'item_id'; the columns are {list(columns)}")
                self._groups.append((offset, line, n_lines))
                self._offset_done = f.tell()
                line += n_lines
                yield records

    def _done(self) -> int:
        return self._offset_done

    def _records(self, group: int) -> list[Record]:
        offset, first, n_lines = self._groups[group]
        with self.path.open("rb") as f:
            f.seek(offset)
            return self._read(f, first, n_lines, report=False)[0]

    def _read(self, f: Any, first: int, n_lines: int | None = None, report: bool = True
              ) -> tuple[list[Record], int]:
        """The records of the next `n_lines` (None: `GROUP_LINES`) lines of `f` (the first
        numbered `first`), and how many lines were read (0 at the end of the file)."""
        n_lines = GROUP_LINES if n_lines is None else n_lines
        records: list[Record] = []
        read = 0
        while read < n_lines:
            raw = f.readline()
            if not raw:
                break
            line = first + read
            read += 1
            text = self._decode(raw, line, report)
            if not text.strip():
                continue
            rec, problem, scrubbed = _parse_line(text)
            if scrubbed:
                if self.strict:
                    raise DataError(f"{self.path}: line {line}: a \\u escape gives a lone surrogate "
                                    "(\\ud800-\\udfff), which is not Unicode text; fix the file or load with "
                                    "strict=False to replace it by U+FFFD")
                if report:
                    self.repaired.append(f"{self.path.name}: line {line}")
            if problem is None and not isinstance(rec, dict):
                problem = f"expected a JSON object, got {type(rec).__name__}"
            records.append((line, {"__error__": problem} if problem is not None else rec))
        return records, read


class CsvItems(TextItems):
    """The items of a CSV file (a header line, then records), `GROUP_LINES` records at a time.

    A quoted field may span lines, so a group is a number of records, not of lines: the
    file is read a line at a time (decoded as `JsonlItems` does, so a bad byte names its
    line) into `csv.reader`, which takes exactly the lines of each record it returns; the
    byte offset after a group's last record is where the next group is read back from. A
    record with the wrong number of fields is a bad row; a field over `CSV_FIELD_LIMIT`
    characters or any other csv error is a DataError naming the record's first line, in
    strict and non-strict reads alike, as `load_items_file` does.
    """

    def _open(self) -> None:
        if self.path.suffix.lower() != ".csv":
            raise DataError(f"{self.path}: expected a .csv items file")
        self._groups = []  # per group: byte offset, first line number, records
        with self.path.open("rb") as f:
            header = next(iter_csv_lines(self._lines(f, 1), path=self.path), None)
            if header is None:
                raise DataError(f"{self.path}: the file is empty; expected a header line")
            self._offset, self._line = self._mark  # where the records start
        self._header = [h.strip() for h in header[1]]
        if "item_id" not in self._header:
            raise DataError(f"{self.path}: missing column 'item_id'; the columns are {self._header}")

    def _lines(self, f: Any, line: int, report: bool = True) -> Iterator[str]:
        """The decoded lines of `f` from line number `line`, keeping `_mark` (the byte offset
        and line number after the last line taken) up to date."""
        offset = f.tell()
        self._mark = (offset, line)
        while raw := f.readline():
            text = self._decode(raw, line, report)
            offset += len(raw)
            line += 1
            self._mark = (offset, line)
            yield text

    def _group(self, f: Any, line: int, n: int, report: bool) -> list[Record]:
        """The next `n` records of `f` (at line `line`); `_mark` ends after the last one."""
        records: list[Record] = []
        width = len(self._header)
        records_of = iter_csv_lines(self._lines(f, line, report), path=self.path, first=line)
        for where, fields in itertools.islice(records_of, n):
            if len(fields) != width:
                records.append((where, {"__error__": f"expected {width} fields, got {len(fields)}"}))
            else:
                records.append((where, dict(zip(self._header, fields, strict=True))))
        return records

    def _scan(self) -> Iterator[list[Record]]:
        offset, line = self._offset, self._line
        with self.path.open("rb") as f:
            while True:
                f.seek(offset)
                records = self._group(f, line, GROUP_LINES, report=True)
                if not records:
                    return
                self._groups.append((offset, line, len(records)))
                offset, line = self._mark
                yield records

    def _done(self) -> int:
        return self._mark[0]

    def _records(self, group: int) -> list[Record]:
        offset, first, n = self._groups[group]
        with self.path.open("rb") as f:
            f.seek(offset)
            return self._group(f, first, n, report=False)


def catalogue_file(path: str | Path, *, strict: bool = True, limit: int = 0,
                   show_progress: bool = False) -> StreamedItems:
    """The streamed reader of a .parquet, .jsonl or .csv items file (DataError for another kind)."""
    suffix = Path(path).suffix.lower()
    readers = {".parquet": ParquetItems, ".jsonl": JsonlItems, ".csv": CsvItems}
    if suffix not in readers:
        raise DataError(f"{path}: a catalogue read a group at a time must be .parquet, .jsonl or .csv, "
                        f"not {suffix!r}")
    return readers[suffix](path, strict=strict, limit=limit, show_progress=show_progress)


class _Texts(Sequence[str]):
    """`text_of` each kept item of a `StreamedItems`, one group cached at a time."""

    def __init__(self, items: StreamedItems, text_of: Callable[[Item], str]) -> None:
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


__all__ = ["GROUP_LINES", "CsvItems", "JsonlItems", "ParquetItems", "StreamedItems", "catalogue_file"]
