"""Plumbing shared by the loaders: UTF-8 reading, row problems with file:line, value parsing.

`RowSink` is the single place where a bad row either raises (strict) or is
counted in a `LoadReport` (non-strict): loaders never drop a row any other way.
Repairs that keep a row but change a value (a replaced byte, a placeholder
title) are counted in a separate report whose source names the field, so that
`rows_read == rows_kept + n_skipped` holds for every report.
This module knows nothing about any dataset's columns or meaning.
"""

from __future__ import annotations

import csv
import functools
import gc
import io
import math
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from ..errors import DataError
from ..schema import LoadReport

T = TypeVar("T")
P = ParamSpec("P")


def paused_gc(fn: Callable[P, T]) -> Callable[P, T]:
    """Run a loader with the cyclic garbage collector paused (restored after, even on error).

    Loaders allocate hundreds of thousands of acyclic objects; without the pause
    the collector re-scans them again and again (about half the load time).
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return wrapper

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def reason_key(message: str) -> str:
    """A row error message without its offending value, so equal problems count together.

    Drops a trailing ", got <value>" and replaces the first quoted value by "…".

    Example:
        >>> reason_key("Event.rating must be within 0..5, got 9.0")
        'Event.rating must be within 0..5'
        >>> reason_key("duplicate item_id 'x7'")
        'duplicate item_id …'
    """
    return _QUOTED.sub("…", message.split(", got ")[0], count=1)


class RowSink:
    """Where a loader reports a bad row of one file: raise (strict) or count (non-strict)."""

    def __init__(self, path: Path, report: LoadReport, *, strict: bool) -> None:
        self.path = Path(path)
        self.report = report
        self.strict = strict

    def bad(self, where: int | str, message: str) -> None:
        """Handle one bad row; `where` is a 1-based line number or a description."""
        loc = f"line {where}" if isinstance(where, int) else str(where)
        if self.strict:
            raise DataError(
                f"{self.path}: {loc}: {message} (load with strict=False to skip and count bad rows)"
            )
        key = reason_key(message)
        detail = f" ({message})" if key != message else ""
        self.report.skip(key, f"{self.path.name}: {loc}{detail}")

    def build(self, where: int | str, make: Callable[..., T], *args: Any, **kwargs: Any
              ) -> T | None:
        """`make(*args, **kwargs)` (an Event or Item); a DataError from it becomes a bad row."""
        try:
            return make(*args, **kwargs)
        except DataError as err:
            self.bad(where, str(err))
            return None


def repair_report(source: str, total: int, repaired: dict[str, list[str]]) -> LoadReport | None:
    """A report of kept rows whose value was changed, or None when nothing was changed.

    `repaired` maps a reason to the places (e.g. "file: line 3") it applied to.
    """
    n = sum(len(v) for v in repaired.values())
    if n == 0:
        return None
    rep = LoadReport(source=source, rows_read=total, rows_kept=total - n)
    for reason, places in repaired.items():
        for place in places:
            rep.skip(reason, place)
    return rep


def read_text(path: Path, *, strict: bool, reports: list[LoadReport]) -> str:
    """The file decoded as UTF-8 (a BOM is dropped).

    Strict: a non-UTF-8 byte raises DataError naming the line and byte offset.
    Non-strict: each line holding such bytes has them replaced by U+FFFD and is
    counted in a "<file>: UTF-8 decoding" report appended to `reports`.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        if strict:
            line = data.count(b"\n", 0, err.start) + 1
            raise DataError(
                f"{path}: line {line} (byte offset {err.start}) is not valid UTF-8: "
                f"{data[err.start:err.end]!r}; re-encode the file as UTF-8 (e.g. "
                "`iconv -f latin1 -t utf-8`) or load with strict=False to replace bad bytes"
            ) from None
    lines = data.split(b"\n")
    out: list[str] = []
    places: list[str] = []
    for i, raw in enumerate(lines, start=1):
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(raw.decode("utf-8", errors="replace"))
            places.append(f"{path.name}: line {i}")
    text = "\n".join(out)
    rep = repair_report(
        f"{path.name}: UTF-8 decoding", len(lines), {"non-UTF-8 bytes replaced by U+FFFD": places}
    )
    if rep is not None:
        reports.append(rep)
    return text.removeprefix("\ufeff")


CSV_FIELD_LIMIT = 1 << 24
"""Longest CSV field in characters (16 Mi); the csv module's own default, 128 Ki, is too small
for long review texts."""


def iter_csv(text: str, *, path: Path | str = "<csv>", delimiter: str = ",",
             quoting: int = csv.QUOTE_MINIMAL) -> Iterator[tuple[int, list[str]]]:
    """(line number of the record's first line, fields) for each non-empty record.

    The csv module's (process-wide) field size limit is set to CSV_FIELD_LIMIT while
    this reads and restored after. A longer field (usually an unclosed quote) or any
    other csv error raises DataError naming `path` and the record's first line, in
    strict and non-strict loads alike: the rest of the file cannot be parsed reliably.
    """
    return iter_csv_lines(io.StringIO(text, newline=""), path=path, delimiter=delimiter, quoting=quoting)


def iter_csv_lines(lines: Iterable[str], *, path: Path | str = "<csv>", first: int = 1, delimiter: str = ",",
                   quoting: int = csv.QUOTE_MINIMAL) -> Iterator[tuple[int, list[str]]]:
    """`iter_csv` over `lines` (each with its line ending), the first numbered `first`: the
    reader takes exactly the lines of each record it returns, so a file read a line at a time
    can stop after any record and go on from its byte offset later."""
    reader = csv.reader(lines, delimiter=delimiter, quoting=quoting)
    start = first
    old_limit = csv.field_size_limit(CSV_FIELD_LIMIT)
    try:
        for row in reader:
            if len(row) > 1 or (row and row[0].strip()):
                yield start, row
            start = first + reader.line_num
    except csv.Error as err:
        hint = (f"; a field over {CSV_FIELD_LIMIT} characters usually means an unclosed quote"
                if "field limit" in str(err) else "")
        raise DataError(f"{path}: line {start}: cannot parse as CSV: {err}{hint}") from None
    finally:
        csv.field_size_limit(old_limit)


def header_index(fields: list[str], required: tuple[str, ...], path: Path,
                 strip_types: bool = False) -> dict[str, int]:
    """Column name -> position; raises DataError naming the missing columns.

    `strip_types` drops RecBole's ":token"-style type suffixes.
    """
    names = [f.strip().split(":")[0] if strip_types else f.strip() for f in fields]
    idx = {n: i for i, n in enumerate(names)}
    missing = [c for c in required if c not in idx]
    if missing:
        raise DataError(f"{path}: line 1: missing column(s) {missing}; the header has {names}")
    return idx


def none_if_blank(v: Any) -> Any:
    """None for '', whitespace, NaN and None; the value otherwise (strings stripped)."""
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, str):
        v = v.strip()
        return v or None
    return v


def to_float(v: Any, what: str) -> float | None:
    """A float from a number or numeric string; ISO-8601 datetimes give unix seconds."""
    if type(v) is str:  # fast path for csv fields
        try:
            return float(v)
        except ValueError:
            pass
    v = none_if_blank(v)
    if v is None:
        return None
    if isinstance(v, bool):
        raise DataError(f"{what} must be a number, got {v!r}")
    try:
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, datetime):
            return v.timestamp()
        return float(v)
    except (TypeError, ValueError):
        pass
    except OverflowError:  # an int such as 10**400 from JSON
        raise DataError(f"{what} is too large (beyond the float range)") from None
    if what == "timestamp" and isinstance(v, str):
        try:
            return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise DataError(f"{what} must be a number, got {v!r}")


def to_int(v: Any, what: str) -> int | None:
    """An int from an int, an integral float or a numeric string."""
    if type(v) is str:  # fast path for csv fields
        try:
            return int(v)
        except ValueError:
            try:
                f = float(v)
                if f.is_integer():
                    return int(f)
            except ValueError:
                pass
    f = to_float(v, what)
    if f is None:
        return None
    if not math.isfinite(f) or f != int(f):
        raise DataError(f"{what} must be a whole number, got {v!r}")
    return int(f)


def to_id(v: Any, what: str) -> str | None:
    """An id as a stripped string, or None when blank, from a string or a whole number.

    Anything else (a list, an object, a bool, 1.5) raises DataError instead of being
    stringified into an id such as "[1, 2]" or "True".

    Example:
        >>> to_id(7, "item_id"), to_id(7.0, "item_id"), to_id(" x ", "item_id")
        ('7', '7', 'x')
    """
    if type(v) is str:  # fast path for csv fields
        return v.strip() or None
    v = none_if_blank(v)
    if v is None:
        return None
    if isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)):
        return str(v)
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    shown = repr(v) if isinstance(v, (bool, float)) else f"a {type(v).__name__}"
    raise DataError(f"{what} must be a string or an integer, got {shown}")


def to_str(v: Any) -> str | None:
    """A stripped string, or None when blank; ints/floats that are whole print without '.0'."""
    v = none_if_blank(v)
    if v is None:
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)
