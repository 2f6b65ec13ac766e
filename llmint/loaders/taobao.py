"""Alibaba Taobao UserBehavior (Tianchi): `user_id,item_id,category_id,behavior,unix_ts`, no header.

Behaviours pv/cart/fav/buy become view/cart/favourite/purchase events with
unix timestamps (clock "unix"). Items have no titles or names: title =
"item <id>", category_path = ("cat <category_id>",), a flat anonymous level.

The release covers 2017-11-25..2017-12-03 in China time (UTC+8), i.e. unix
seconds [1511539200, 1512316800). Rows outside it are real noise in the
original file: they are skipped and counted (`time_window=None` keeps them).
Their items still enter the catalogue (the item/category facts are sound).
An item listed under two category ids keeps the first and is counted.
This module knows nothing about other formats or about models.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..schema import Dataset, Event, Item, LoadReport
from ._common import RowSink, iter_csv, paused_gc, read_text, repair_report, to_int

FILE = "UserBehavior_sample.csv"
BEHAVIOURS = {"pv": "view", "cart": "cart", "fav": "favourite", "buy": "purchase"}
WINDOW = (1511539200, 1512316800)
"""2017-11-25 00:00 to 2017-12-04 00:00, UTC+8, as unix seconds [start, end)."""


@paused_gc
def load_taobao(folder: Path, *, strict: bool = False, file: str = FILE,
                time_window: tuple[int, int] | None = WINDOW, name: str = "taobao") -> Dataset:
    """Load a UserBehavior csv; rows outside `time_window` ([start, end) unix s) are skipped."""
    path = Path(folder) / file
    reports: list[LoadReport] = []
    rows = iter_csv(read_text(path, strict=strict, reports=reports), path=path)
    rep = LoadReport(source=path.name)
    sink = RowSink(path, rep, strict=strict)
    items: dict[str, Item] = {}
    category: dict[str, tuple[str, int]] = {}  # item -> (category id, first line)
    conflicts: list[str] = []
    events: list[Event] = []
    lo, hi = time_window if time_window is not None else (None, None)
    for line, f in rows:
        rep.rows_read += 1
        if len(f) != 5:
            sink.bad(line, f"expected 5 fields (user_id,item_id,category_id,behavior,unix_ts), "
                           f"got {len(f)}")
            continue
        uid, iid, cid, behaviour = (x.strip() for x in f[:4])
        action = BEHAVIOURS.get(behaviour)
        if action is None:
            sink.bad(line, f"behavior must be one of {sorted(BEHAVIOURS)}, got {behaviour!r}")
            continue
        try:
            ts = to_int(f[4], "unix_ts")
        except DataError as err:
            sink.bad(line, str(err))
            continue
        if not cid:
            sink.bad(line, "category_id is empty")
            continue
        seen = category.setdefault(iid, (cid, line))
        if seen[0] != cid:
            conflicts.append(f"{path.name}: line {line}: item {iid!r} category {cid!r}, "
                             f"first {seen[0]!r} at line {seen[1]}")
        elif iid not in items:
            item = sink.build(line, Item, iid, f"item {iid}", (f"cat {cid}",),
                              attributes=(("category_id", cid),))
            if item is None:
                del category[iid]
                continue
            items[iid] = item
        if lo is not None and ts is not None and not lo <= ts < hi:
            sink.bad(line, "timestamp outside the release window 2017-11-25..12-03 (UTC+8)"
                           f", got {ts}")
            continue
        ev = sink.build(line, Event, uid, iid, action, timestamp=ts)
        if ev is not None:
            events.append(ev)
            rep.rows_kept += 1
    if rep.rows_read == 0:
        raise DataError(f"{path}: the file has no rows")
    reports.append(rep)
    extra = repair_report(f"{path.name}: item categories", rep.rows_read, {
        "item seen under a second category id (first kept)": conflicts})
    if extra is not None:
        reports.append(extra)
    return Dataset(
        name=name, items=items, events=events, clock="unix", default_level=1, reports=reports,
        description="Alibaba Taobao UserBehavior (Tianchi): view/cart/favourite/purchase events, "
                    "anonymous flat category ids, no titles.",
    )
