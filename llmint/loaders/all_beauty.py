"""Amazon Reviews 2023, All Beauty 5-core (the swarpi/LLM_Recommender files).

`filtered_user_reviews.json` is a list of {user_id, reviews: [{parent_asin,
product_name, rating, title, text, timestamp (ms)}]}; each review becomes a
`review` event with its rating, text = title + blank line + body (HTML `<br />`
turned into newlines, entities unescaped) and timestamp in seconds (clock "unix").
`filterd_meta_items.csv` (sic) gives the catalogue: title, description, price
and `details`, a Python dict literal read with `ast.literal_eval` (never eval).
Its "Brand" becomes `Item.brand`; every other detail ("Item Form", "Scent"...)
and the price go to `attributes`. There are no categories below "All Beauty":
every item has `category_path=("All Beauty",)`.

`All_Beauty.{train,valid,test}.csv` hold the official timestamp split. When
present they are checked against the reviews: reviews missing from them (in
the shared copy, 9 repeat reviews of a product by the same user, which the
split keeps once) are kept and counted in an "official split check" report;
`official_split_only=True` skips them instead.
This module knows nothing about other formats or about models.
"""

from __future__ import annotations

import ast
import html
import json
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..schema import Dataset, Event, Item, LoadReport
from ._common import (
    RowSink,
    header_index,
    iter_csv,
    paused_gc,
    read_text,
    repair_report,
    to_float,
    to_str,
)

CATEGORY = ("All Beauty",)
REVIEWS = "filtered_user_reviews.json"
META = "filterd_meta_items.csv"
SPLITS = ("All_Beauty.train.csv", "All_Beauty.valid.csv", "All_Beauty.test.csv")


def clean_text(s: str | None) -> str | None:
    """Review/product text with `<br />` as newlines and HTML entities unescaped.

    Example:
        >>> clean_text("Soft &amp; nice<br />Buy it")
        'Soft & nice\\nBuy it'
    """
    if s is None:
        return None
    s = s.replace("<br />", "\n").replace("<br/>", "\n").replace("<br>", "\n")
    return html.unescape(s).strip() or None


def parse_details(raw: str | None) -> dict[str, str]:
    """The `details` column: a Python dict literal of str -> str (literal_eval, never eval)."""
    if raw is None or not raw.strip():
        return {}
    try:
        val = ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
        raise DataError(f"details is not a Python dict literal ({type(err).__name__})") from None
    if not isinstance(val, dict):
        raise DataError(f"details must be a dict literal, got {type(val).__name__}")
    return {str(k): str(v) for k, v in val.items() if to_str(v) is not None}


def _items(path: Path, strict: bool, reports: list[LoadReport]) -> dict[str, Item]:
    rows = list(iter_csv(read_text(path, strict=strict, reports=reports), path=path))
    if not rows:
        raise DataError(f"{path}: the file is empty; expected a header line")
    idx = header_index(rows[0][1], ("parent_asin", "title"), path)
    rep = LoadReport(source=path.name, rows_read=len(rows) - 1)
    sink = RowSink(path, rep, strict=strict)
    items: dict[str, Item] = {}
    for line, f in rows[1:]:
        if len(f) != len(rows[0][1]):
            sink.bad(line, f"expected {len(rows[0][1])} fields, got {len(f)}")
            continue

        def col(name: str, f: list[str] = f) -> str | None:
            return to_str(f[idx[name]]) if name in idx else None

        try:
            details = parse_details(col("details"))
        except DataError as err:
            sink.bad(line, str(err))
            continue
        brand = details.pop("Brand", None)
        attrs = tuple(details.items())
        if col("price"):
            attrs += (("price", col("price") or ""),)
        asin = col("parent_asin") or ""
        item = sink.build(line, Item, asin, clean_text(col("title")) or "", CATEGORY,
                          brand=brand, text=clean_text(col("description")), attributes=attrs)
        if item is None:
            continue
        if asin in items:
            sink.bad(line, f"duplicate parent_asin {asin!r}")
            continue
        items[asin] = item
        rep.rows_kept += 1
    reports.append(rep)
    return items


def _official_split(folder: Path, strict: bool, reports: list[LoadReport]
                    ) -> set[tuple[str, str, int]] | None:
    paths = [folder / s for s in SPLITS]
    if not all(p.is_file() for p in paths):
        return None
    keys: set[tuple[str, str, int]] = set()
    for path in paths:
        rows = list(iter_csv(read_text(path, strict=strict, reports=reports), path=path))
        if not rows:
            continue
        idx = header_index(rows[0][1], ("user_id", "parent_asin", "timestamp"), path)
        for _line, f in rows[1:]:
            try:
                keys.add((f[idx["user_id"]], f[idx["parent_asin"]], int(f[idx["timestamp"]])))
            except (IndexError, ValueError):
                continue  # counted below as a split row that matches no review
    return keys


@paused_gc
def load_all_beauty(folder: Path, *, strict: bool = False, official_split_only: bool = False,
                    name: str = "all_beauty") -> Dataset:
    """Load the All Beauty reviews, catalogue and (if present) the official-split check."""
    folder = Path(folder)
    reports: list[LoadReport] = []
    items = _items(folder / META, strict, reports)
    split = _official_split(folder, strict, reports)

    path = folder / REVIEWS
    try:
        raw: Any = json.loads(read_text(path, strict=strict, reports=reports))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: line {err.lineno} column {err.colno}: not valid JSON: {err.msg}"
                        ) from None
    if not isinstance(raw, list):
        raise DataError(f"{path}: expected a JSON list of users, got {type(raw).__name__}")
    rep = LoadReport(source=path.name)
    sink = RowSink(path, rep, strict=strict)
    events: list[Event] = []
    placeholders: list[str] = []
    not_in_split: list[str] = []
    matched: set[tuple[str, str, int]] = set()
    for u_pos, user in enumerate(raw):
        reviews = user.get("reviews") if isinstance(user, dict) else None
        if not isinstance(reviews, list):
            rep.rows_read += 1
            sink.bad(f"user #{u_pos}", "expected an object with user_id and a reviews list")
            continue
        uid = to_str(user.get("user_id")) or ""
        for r_pos, r in enumerate(reviews):
            rep.rows_read += 1
            where = f"user {uid!r} review {r_pos}"
            if not isinstance(r, dict):
                sink.bad(where, f"expected a review object, got {type(r).__name__}")
                continue
            try:
                ms = to_float(r.get("timestamp"), "timestamp")
                rating = to_float(r.get("rating"), "rating")
            except DataError as err:
                sink.bad(where, str(err))
                continue
            asin = to_str(r.get("parent_asin")) or ""
            key = (uid, asin, int(ms) if ms is not None else -1)
            if split is not None and key not in split:
                if official_split_only:
                    sink.bad(where, "review is not in the official split csvs")
                    continue
                not_in_split.append(f"{path.name}: {where}: item {asin!r}")
            parts = [clean_text(to_str(r.get("title"))), clean_text(to_str(r.get("text")))]
            text = "\n\n".join(p for p in parts if p) or None
            ev = sink.build(where, Event, uid, asin, "review",
                            timestamp=ms / 1000 if ms is not None else None,
                            rating=rating, text=text)
            if ev is None:
                continue
            if asin not in items:
                title = clean_text(to_str(r.get("product_name"))) or f"item {asin}"
                items[asin] = Item(asin, title, CATEGORY)
                placeholders.append(f"{path.name}: {where}: item {asin!r}")
            matched.add(key)
            events.append(ev)
            rep.rows_kept += 1
    reports.append(rep)
    if split is not None:
        check = LoadReport(source=f"{path.name}: official split check ({', '.join(SPLITS)})",
                           rows_read=len(events), rows_kept=len(events) - len(not_in_split))
        for place in not_in_split:
            check.skip("review not in the split csvs (event kept)", place)
        for key in sorted(split - matched):  # not events: they add to the count, not to rows_read
            check.skip("split row matching no loaded review", f"split row {key}")
        reports.append(check)
    extra = repair_report(f"{path.name}: items", len(items), {
        f"item missing from {META} (title from the review's product_name)": placeholders})
    if extra is not None:
        reports.append(extra)
    return Dataset(
        name=name, items=items, events=events, clock="unix", default_level=1, reports=reports,
        description="Amazon Reviews 2023, All Beauty 5-core: reviews (rating + text) as review "
                    "events; no categories below 'All Beauty' (details kept as attributes).",
    )
