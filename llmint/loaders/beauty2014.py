"""Amazon 2014 Beauty 5-core sequences (the P5/SASRec split, from agiresearch/IDGenRec).

`Beauty_user_sequence.txt`: one shopper per line, `reviewerID asin1 asin2 ...`
in chronological order. There are no times: events are `purchase` with
`order` = position (clock "order"). Upstream, timestamp ties were ordered by
product id; this file cannot undo that (the split shuffles only exact ties).
`Beauty_item_textid.txt`: `asin short-text-id` per line; the short text (a
generated id, not a real title) becomes the title. No categories:
`category_path=()`. An empty text id gets the title "item <asin>" and is counted.
This module knows nothing about other formats or about models.
"""

from __future__ import annotations

from pathlib import Path

from ..schema import Dataset, Event, Item, LoadReport
from ._common import RowSink, paused_gc, read_text, repair_report

SEQUENCES = "Beauty_user_sequence.txt"
TEXT_IDS = "Beauty_item_textid.txt"


@paused_gc
def load_beauty2014(folder: Path, *, strict: bool = False, name: str = "beauty2014") -> Dataset:
    """Load the Beauty 2014 user sequences and item text ids."""
    folder = Path(folder)
    reports: list[LoadReport] = []

    path = folder / TEXT_IDS
    rep = LoadReport(source=path.name)
    sink = RowSink(path, rep, strict=strict)
    items: dict[str, Item] = {}
    untitled: list[str] = []
    for line, raw in enumerate(read_text(path, strict=strict, reports=reports).split("\n"), 1):
        if not raw.strip():
            continue
        rep.rows_read += 1
        asin, _, text = raw.strip().partition(" ")
        if asin in items:
            sink.bad(line, f"duplicate asin {asin!r}")
            continue
        if not text.strip():
            untitled.append(f"{path.name}: line {line}: item {asin!r}")
        item = sink.build(line, Item, asin, text.strip() or f"item {asin}")
        if item is not None:
            items[asin] = item
            rep.rows_kept += 1
    reports.append(rep)
    titles = repair_report(f"{path.name}: titles", len(items), {
        "empty text id (title 'item <asin>')": untitled})

    path = folder / SEQUENCES
    rep = LoadReport(source=path.name)
    sink = RowSink(path, rep, strict=strict)
    events: list[Event] = []
    placeholders: list[str] = []
    users: set[str] = set()
    for line, raw in enumerate(read_text(path, strict=strict, reports=reports).split("\n"), 1):
        parts = raw.split()
        if not parts:
            continue
        uid, seq = parts[0], parts[1:]
        rep.rows_read += len(seq)
        if uid in users:  # a second line would restart positions at 0 and interleave histories
            for _ in seq:
                sink.bad(line, f"user {uid!r} already has a sequence on an earlier line")
            continue
        users.add(uid)
        for pos, asin in enumerate(seq):
            events.append(Event(uid, asin, "purchase", order=pos))
            if asin not in items:
                items[asin] = Item(asin, f"item {asin}")
                placeholders.append(f"{path.name}: line {line}: item {asin!r}")
        rep.rows_kept += len(seq)
    reports.append(rep)
    for extra in (titles, repair_report(f"{path.name}: items", len(items), {
            f"item missing from {TEXT_IDS} (placeholder title)": placeholders})):
        if extra is not None:
            reports.append(extra)
    return Dataset(
        name=name, items=items, events=events, clock="order", default_level=1, reports=reports,
        description="Amazon 2014 Beauty 5-core sequences (P5/SASRec split): ordered purchase "
                    "events, no categories, short generated text ids as titles.",
    )
