"""Amazon 2018 in LC-Rec's JSON format (`<Name>.inter.json`, `<Name>.item.json`), e.g. Office.

`.inter.json` maps a user to the chronological list of item indices they
reviewed; there are no times, so events are `purchase` with `order` = position
(clock "order"). `.item.json` maps an index to title, description, brand and
`categories`, a ", "-joined path from level 1 down. HTML entities in text
fields are unescaped (`AT&amp;T` -> `AT&T`).

Commas inside category names: Amazon names such as "Tape, Adhesives &
Fasteners" or "Calendars, Planners & Personal Organizers" contain ", " and are
cut in two by a plain split (Office 2018 has 14 such names, at levels 2-5).
`comma_names()` re-joins a fragment A with its next fragment B when, over the
whole file, the node A is below level 1, has B as its only child, is never a
leaf, has no "&" itself, and B reads "X & Y" (Amazon's "A, B & C" naming).
Re-joins are counted in a "<file>: category names" report; pass
`merge_comma_names=False` for the plain split. The rule is a heuristic over the
file's own tree: on a tiny slice a real parent below level 1 with one "X & Y"
child would be re-joined too. Level 1 is never re-joined (a slice often holds
one department with a single sub-category). In Office 2018 one re-join, "Index
Card Filing, Index & Business Card Files" (one item), is uncertain.
This module knows nothing about other formats or about models.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..schema import Dataset, Event, Item, LoadReport
from ._common import RowSink, paused_gc, read_text, repair_report, to_str

SEP = ", "


def comma_names(paths: Iterable[tuple[str, ...]]) -> set[tuple[str, ...]]:
    """Prefixes (ending in fragment A) whose next fragment B belongs to the same name "A, B".

    Example:
        >>> sorted(comma_names([("Office", "Tape", "Adhesives & Fasteners", "Glue"),
        ...                     ("Office", "Tape", "Adhesives & Fasteners", "Pins")]))
        [('Office', 'Tape')]
    """
    children: dict[tuple[str, ...], set[str]] = defaultdict(set)
    complete: set[tuple[str, ...]] = set()
    for p in paths:
        complete.add(p)
        for i in range(len(p) - 1):
            children[p[: i + 1]].add(p[i + 1])
    out = set()
    for node, kids in children.items():
        if len(node) < 2 or len(kids) != 1 or node in complete or "&" in node[-1]:
            continue
        (b,) = kids
        if " & " in b and b[:1].isupper():
            out.add(node)
    return out


def join_comma_names(parts: tuple[str, ...], merge: set[tuple[str, ...]]) -> tuple[str, ...]:
    """`parts` with each fragment pair named by `merge` joined back into one name."""
    out: list[str] = []
    i = 0
    while i < len(parts):
        if i + 1 < len(parts) and parts[: i + 1] in merge:
            out.append(parts[i] + SEP + parts[i + 1])
            i += 2
        else:
            out.append(parts[i])
            i += 1
    return tuple(out)


def _load_json(path: Path, strict: bool, reports: list[LoadReport]) -> Any:
    text = read_text(path, strict=strict, reports=reports)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: line {err.lineno} column {err.colno}: not valid JSON: {err.msg}"
                        ) from None


def _clean(v: Any) -> str | None:
    s = to_str(v)
    return html.unescape(s) if s is not None else None


@paused_gc
def load_lcrec(folder: Path, prefix: str = "Office", *, strict: bool = False,
               merge_comma_names: bool = True, name: str = "office") -> Dataset:
    """Load `<folder>/<prefix>.inter.json` and `<prefix>.item.json` (LC-Rec format)."""
    folder = Path(folder)
    reports: list[LoadReport] = []

    path = folder / f"{prefix}.item.json"
    raw = _load_json(path, strict, reports)
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object index -> item, got {type(raw).__name__}")
    rep = LoadReport(source=path.name, rows_read=len(raw))
    sink = RowSink(path, rep, strict=strict)
    paths: dict[str, tuple[str, ...]] = {}
    for key, rec in raw.items():
        if not isinstance(rec, dict):
            sink.bad(f"item {key!r}", f"expected an object, got {type(rec).__name__}")
            continue
        cats = _clean(rec.get("categories")) or ""
        paths[key] = tuple(c.strip() for c in cats.split(SEP) if c.strip())
    merge = comma_names(paths.values()) if merge_comma_names else set()
    items: dict[str, Item] = {}
    rejoined: list[str] = []
    for key, parts in paths.items():
        rec = raw[key]
        cat_path = join_comma_names(parts, merge)
        if cat_path != parts:
            joined = [c for c in cat_path if SEP in c]
            rejoined.append(f"{path.name}: item {key!r}: {joined}")
        attrs = (("categories_raw", SEP.join(parts)),) if parts else ()
        item = sink.build(f"item {key!r}", Item, str(key), _clean(rec.get("title")) or "",
                          cat_path, brand=_clean(rec.get("brand")),
                          text=_clean(rec.get("description")), attributes=attrs)
        if item is not None:
            items[item.item_id] = item
            rep.rows_kept += 1
    reports.append(rep)
    names_rep = repair_report(f"{path.name}: category names", len(items),
                              {"comma inside a category name (fragments re-joined)": rejoined})

    path = folder / f"{prefix}.inter.json"
    raw = _load_json(path, strict, reports)
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object user -> item list, got "
                        f"{type(raw).__name__}")
    rep = LoadReport(source=path.name)
    sink = RowSink(path, rep, strict=strict)
    events: list[Event] = []
    placeholders: list[str] = []
    for user, seq in raw.items():
        if not isinstance(seq, list):
            rep.rows_read += 1
            sink.bad(f"user {user!r}", f"expected a list of item indices, got {type(seq).__name__}")
            continue
        for pos, iid in enumerate(seq):
            rep.rows_read += 1
            where = f"user {user!r} position {pos}"
            if isinstance(iid, bool) or not isinstance(iid, (int, str)):
                sink.bad(where, f"item index must be an int or str, got {iid!r}")
                continue
            ev = sink.build(where, Event, str(user), str(iid), "purchase", order=pos)
            if ev is None:
                continue
            if ev.item_id not in items:
                items[ev.item_id] = Item(ev.item_id, f"item {ev.item_id}")
                placeholders.append(f"{path.name}: {where}: item {iid!r}")
            events.append(ev)
            rep.rows_kept += 1
    reports.append(rep)
    for extra in (names_rep, repair_report(f"{path.name}: items", len(items), {
            "item missing from the .item.json file (placeholder title)": placeholders})):
        if extra is not None:
            reports.append(extra)
    return Dataset(
        name=name, items=items, events=events, clock="order", default_level=2, reports=reports,
        description=f"Amazon Review Data 2018, {prefix} 5-core (LC-Rec preprocessing): "
                    "review sequences as ordered purchase events, hierarchical categories.",
    )
