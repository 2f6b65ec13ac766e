"""Users' own data: CSV, JSONL or Parquet files in llmint's canonical columns.

Events file columns: `user_id`, `item_id`, `action` (one of `schema.ACTIONS`;
without the column every event is a "purchase", a blank value is an error),
`timestamp` (unix seconds, or an ISO-8601 datetime) and/or `order` (int),
`rating`, `text`. Items file columns:
`item_id`, `title`, `category_path` (" > "-joined, or a list in JSONL/Parquet),
`brand`, `text`, `also_in` (a multi-label item's other category paths: " | "
between paths in CSV, or a list of paths in JSONL/Parquet); any other item column
becomes a string attribute. Unknown
event columns are ignored with a warning. Ids (`user_id`, `item_id`) must be
strings or whole numbers: a list, object or bool is a bad row, not stringified.
Items referenced by events but absent from the items file (or all items,
without one) get the title "item <id>".

`strict=True` (the default here) raises DataError on the first bad row, naming
the file and line (Parquet: row); `strict=False` skips and counts bad rows.
A number beyond the float range is a bad row, and so is a JSONL line that
cannot be read as a JSON object (invalid, nested too deeply). A JSON escape
that leaves a lone surrogate (U+D800..U+DFFF, not Unicode text) is handled like
a non-UTF-8 byte: strict raises, non-strict replaces it by U+FFFD (as the audit
log does) and counts the line in a "<file>: JSON text" report.
This module knows nothing about the named datasets or about models.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Container, Iterator
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..schema import Clock, Dataset, Event, Item, LoadReport
from ._common import (
    RowSink,
    iter_csv,
    paused_gc,
    read_text,
    repair_report,
    to_float,
    to_id,
    to_int,
    to_str,
)

logger = logging.getLogger(__name__)

SUFFIXES = (".csv", ".jsonl", ".parquet")
EVENT_COLUMNS = ("user_id", "item_id", "action", "timestamp", "order", "rating", "text")
ITEM_COLUMNS = ("item_id", "title", "category_path", "brand", "text", "also_in")
PATH_SEP = " > "
ALSO_SEP = " | "  # between the paths of the also_in column in CSV
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # may be half of a valid pair
_SURROGATE = re.compile("[\ud800-\udfff]")


def _scrub(v: Any) -> Any:
    """Parsed JSON `v` with lone surrogates in every string (keys too) replaced by U+FFFD."""
    if isinstance(v, str):
        return _SURROGATE.sub("\ufffd", v)
    if isinstance(v, list):
        return [_scrub(x) for x in v]
    if isinstance(v, dict):
        return {_scrub(k): _scrub(x) for k, x in v.items()}
    return v


def _parse_line(s: str) -> tuple[Any, str | None, bool]:
    """(value, problem or None, whether lone surrogates were replaced) for one JSONL line."""
    try:
        value = json.loads(s)
        if _SURROGATE_ESCAPE.search(s):
            clean = _scrub(value)
            if clean != value:
                return clean, None, True
    except json.JSONDecodeError as err:
        return None, f"not valid JSON ({err.msg} at column {err.colno})", False
    except RecursionError:
        return None, "JSON nested too deeply", False
    except ValueError as err:  # an integer literal over sys.get_int_max_str_digits() digits
        return None, f"not readable JSON ({str(err).split(':')[0]})", False
    return value, None, False


def _rows(path: Path, strict: bool, reports: list[LoadReport]
          ) -> tuple[list[str], Iterator[tuple[int | str, dict[str, Any]]]]:
    """(column names, iterator of (line or "row N", record)) for a CSV, JSONL or Parquet file."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type {suffix!r}; expected one of {SUFFIXES}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        except Exception as err:  # pyarrow raises several types for a broken file
            raise DataError(f"{path}: cannot read as Parquet: {err}") from err
        records = table.to_pylist()
        return table.column_names, ((f"row {i}", r) for i, r in enumerate(records, 1))
    text = read_text(path, strict=strict, reports=reports)
    if suffix == ".csv":
        rows = iter_csv(text, path=path)
        first = next(rows, None)
        if first is None:
            raise DataError(f"{path}: the file is empty; expected a header line")
        header = [h.strip() for h in first[1]]

        def csv_records() -> Iterator[tuple[int | str, dict[str, Any]]]:
            for line, f in rows:
                if len(f) != len(header):
                    yield line, {"__error__": f"expected {len(header)} fields, got {len(f)}"}
                else:
                    yield line, dict(zip(header, f, strict=True))

        return header, csv_records()
    all_lines = text.split("\n")
    lines = [(i, s) for i, s in enumerate(all_lines, 1) if s.strip()]
    columns: dict[str, None] = {}

    def json_records() -> Iterator[tuple[int | str, dict[str, Any]]]:
        replaced: list[str] = []
        for i, s in lines:
            rec, problem, scrubbed = _parse_line(s)
            if problem is not None:
                yield i, {"__error__": problem}
                continue
            if not isinstance(rec, dict):
                yield i, {"__error__": f"expected a JSON object, got {type(rec).__name__}"}
                continue
            if scrubbed:
                if strict:
                    raise DataError(
                        f"{path}: line {i}: a \\u escape gives a lone surrogate (\\ud800-\\udfff), "
                        "which is not Unicode text; fix the file or load with strict=False to "
                        "replace it by U+FFFD")
                replaced.append(f"{path.name}: line {i}")
            yield i, rec
        rep = repair_report(f"{path.name}: JSON text", len(all_lines),
                            {"lone surrogate replaced by U+FFFD": replaced})
        if rep is not None:
            reports.append(rep)

    for _, s in lines[:100]:  # column names for the header checks, from the first records
        rec, _problem, _scrubbed = _parse_line(s)
        if isinstance(rec, dict):
            columns.update(dict.fromkeys(rec))
    return list(columns), json_records()


def _category_path(v: Any) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, (list, tuple)):
        return tuple(str(c).strip() for c in v if str(c).strip())
    s = to_str(v)
    return tuple(c.strip() for c in s.split(PATH_SEP) if c.strip()) if s else ()


def _also_in(v: Any) -> tuple[tuple[str, ...], ...]:
    """Other category paths: "A > B | C" in CSV, or a list of paths (each a list or a string)."""
    if v is None:
        return ()
    if isinstance(v, (list, tuple)):
        paths = [_category_path(p) for p in v]
    else:
        s = to_str(v)
        paths = [_category_path(p) for p in s.split(ALSO_SEP)] if s else []
    return tuple(dict.fromkeys(p for p in paths if p))


def item_of(where: int | str, rec: dict[str, Any], sink: RowSink, seen: Container[str] = ()) -> Item | None:
    """The `Item` of one record of an items file (see the module docstring), or None when the
    row is bad (its id among the `seen` ones included): `sink` raises (strict) or counts it."""
    if "__error__" in rec:
        sink.bad(where, rec["__error__"])
        return None
    try:
        iid = to_id(rec.get("item_id"), "item_id")
    except DataError as err:
        sink.bad(where, str(err))
        return None
    attrs = tuple((k, s) for k, v in rec.items()
                  if k not in ITEM_COLUMNS and (s := to_str(v)) is not None)
    item = sink.build(where, Item, iid or "", to_str(rec.get("title")) or f"item {iid}",
                      _category_path(rec.get("category_path")), brand=to_str(rec.get("brand")),
                      text=to_str(rec.get("text")), attributes=attrs, also_in=_also_in(rec.get("also_in")))
    if item is not None and item.item_id in seen:
        sink.bad(where, f"duplicate item_id {item.item_id!r}")
        return None
    return item


def load_items_file(path: Path, *, strict: bool = True, reports: list[LoadReport] | None = None
                    ) -> dict[str, Item]:
    """Items from a CSV/JSONL/Parquet file with `item_id`, `title`, ... (see module docstring)."""
    path = Path(path)
    reports = reports if reports is not None else []
    columns, records = _rows(path, strict, reports)
    if columns and "item_id" not in columns:
        raise DataError(f"{path}: missing column 'item_id'; the columns are {columns}")
    rep = LoadReport(source=path.name)
    sink = RowSink(path, rep, strict=strict)
    items: dict[str, Item] = {}
    for where, rec in records:
        rep.rows_read += 1
        item = item_of(where, rec, sink, seen=items)
        if item is None:
            continue
        items[item.item_id] = item
        rep.rows_kept += 1
    reports.append(rep)
    return items


@paused_gc
def load_events_file(path: Path | str, items_path: Path | str | None = None, *,
                     strict: bool = True, clock: Clock | None = None, default_level: int = 1,
                     name: str | None = None) -> Dataset:
    """Load events (and optionally items) in canonical columns into a Dataset.

    `clock` defaults to "unix" when any event has a timestamp, else "order".

    Example:
        >>> ds = load_events_file("events.csv", "items.csv")  # doctest: +SKIP
        >>> ds.stats()  # doctest: +SKIP
        {'users': 2, 'items': 3, 'events': 5}
    """
    path = Path(path)
    reports: list[LoadReport] = []
    items = load_items_file(Path(items_path), strict=strict, reports=reports) if items_path else {}
    columns, records = _rows(path, strict, reports)
    if columns:
        missing = [c for c in ("user_id",) if c not in columns]
        if "timestamp" not in columns and "order" not in columns:
            missing.append("timestamp or order")
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; the columns are {columns}")
        unknown = [c for c in columns if c not in EVENT_COLUMNS]
        if unknown:
            logger.warning("%s: ignoring unknown column(s) %s; expected %s", path, unknown,
                           EVENT_COLUMNS)
    rep = LoadReport(source=path.name)
    sink = RowSink(path, rep, strict=strict)
    events: list[Event] = []
    placeholders: list[str] = []
    for where, rec in records:
        rep.rows_read += 1
        if "__error__" in rec:
            sink.bad(where, rec["__error__"])
            continue
        try:
            uid = to_id(rec.get("user_id"), "user_id")
            iid = to_id(rec.get("item_id"), "item_id")
            ts = to_float(rec.get("timestamp"), "timestamp")
            order = to_int(rec.get("order"), "order")
            rating = to_float(rec.get("rating"), "rating")
        except DataError as err:
            sink.bad(where, str(err))
            continue
        ev = sink.build(where, Event, uid or "", iid,
                        to_str(rec.get("action")) if "action" in rec else "purchase",
                        timestamp=ts, order=order,
                        rating=rating, text=to_str(rec.get("text")))
        if ev is None:
            continue
        if iid is not None and iid not in items:
            items[iid] = Item(iid, f"item {iid}")
            if items_path:
                loc = where if isinstance(where, str) else f"line {where}"
                placeholders.append(f"{path.name}: {loc}: item {iid!r}")
        events.append(ev)
        rep.rows_kept += 1
    reports.append(rep)
    extra = repair_report(f"{path.name}: items", len(items), {
        "item missing from the items file (placeholder title)": placeholders})
    if extra is not None:
        reports.append(extra)
    if clock is None:
        clock = "unix" if any(e.timestamp is not None for e in events) else "order"
    return Dataset(name=name or path.stem, items=items, events=events, clock=clock,
                   default_level=default_level, reports=reports,
                   description=f"events from {path.name}" + (f" and items from "
                                                             f"{Path(items_path).name}"
                                                             if items_path else ""))
