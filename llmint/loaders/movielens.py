"""MovieLens in RecBole's atomic-file format (`<name>.inter`, `.item`, `.user`), the default demo.

MovieLens-100K ships inside the `recbole==1.2.1` wheel; `recbole_ml100k_dir()`
finds it with `importlib.util.find_spec` WITHOUT importing recbole (its
`__init__` pulls in torch, ray and more). Every rating becomes a `review` event
with that rating and no text; the clock is unix seconds.

Categories: genres are multi-label and listed in MovieLens's fixed genre order
(unknown, Action, Adventure, Animation, Children's, Comedy, ... nearly
alphabetical), so the "first listed genre" used as `category_path=(genre,)` is
the first in that order, not a primary genre ("Action Adventure Thriller" ->
Action). All genres are kept in the "genres" attribute, and the ones after the
first in `Item.also_in`, so an explanation may say a film is in any of its genres
while the prediction target stays the first. The genre "unknown"
(2 movies in ML-100K) is no category: those items get `category_path=()`.
Users carry age, an age bucket (MovieLens-1M's buckets), gender, occupation, zip.
This module knows nothing about other formats or about models.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

from ..errors import DataError
from ..schema import Dataset, Event, Item, LoadReport
from ._common import RowSink, header_index, iter_csv, paused_gc, read_text, repair_report, to_float

AGE_BUCKETS: tuple[tuple[int, str], ...] = (
    (18, "<18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (50, "45-49"), (56, "50-55"),
)
"""(exclusive upper bound, label); ages from 56 up are "56+" (MovieLens-1M's buckets)."""

_UNKNOWN = {"unknown", "unkonwn", ""}  # RecBole's ml-100k spells the unknown year "unkonwn"


def age_bucket(age: int) -> str:
    """The MovieLens-1M age bucket of an age in years.

    Example:
        >>> age_bucket(24), age_bucket(56)
        ('18-24', '56+')
    """
    for upper, label in AGE_BUCKETS:
        if age < upper:
            return label
    return "56+"


def recbole_ml100k_dir() -> Path | None:
    """The ml-100k folder inside the installed recbole package, or None (recbole not imported)."""
    try:
        spec = importlib.util.find_spec("recbole")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"
    return folder if folder.is_dir() else None


def _table(path: Path, required: tuple[str, ...], strict: bool, reports: list[LoadReport]
           ) -> tuple[dict[str, int], list[tuple[int, list[str]]]]:
    rows = list(iter_csv(read_text(path, strict=strict, reports=reports), path=path, delimiter="\t",
                         quoting=csv.QUOTE_NONE))
    if not rows:
        raise DataError(f"{path}: the file is empty; expected a header line")
    return header_index(rows[0][1], required, path, strip_types=True), rows[1:]


@paused_gc
def load_movielens(folder: Path | None = None, *, strict: bool = False,
                   name: str = "movielens") -> Dataset:
    """Load MovieLens atomic files from `folder` (default: the ml-100k copy in recbole's wheel).

    The file prefix is the folder name (`ml-100k/ml-100k.inter`). The genre
    column may be called `class` (ml-100k) or `genre` (ml-1m).
    """
    folder = Path(folder) if folder is not None else recbole_ml100k_dir()
    if folder is None:
        raise DataError("MovieLens-100K not found: install it with "
                        "`pip install --no-deps recbole==1.2.1` (the data ships in the wheel)")
    prefix = folder / folder.name
    reports: list[LoadReport] = []

    # items
    path = prefix.with_suffix(".item")
    idx, rows = _table(path, ("item_id", "movie_title"), strict, reports)
    genre_col = idx.get("class", idx.get("genre"))
    year_col = idx.get("release_year")
    rep = LoadReport(source=path.name, rows_read=len(rows))
    sink = RowSink(path, rep, strict=strict)
    items: dict[str, Item] = {}
    no_genre: list[str] = []
    for line, f in rows:
        if len(f) < len(idx):
            sink.bad(line, f"expected {len(idx)} tab-separated fields, got {len(f)}")
            continue
        genres = f[genre_col].split() if genre_col is not None else []
        real = [g for g in genres if g.lower() not in _UNKNOWN]
        if not real:
            no_genre.append(f"{path.name}: line {line}: item {f[idx['item_id']]!r}")
        attrs: list[tuple[str, str]] = []
        if genres:
            attrs.append(("genres", ", ".join(genres)))
        if year_col is not None and f[year_col].strip().lower() not in _UNKNOWN:
            attrs.append(("year", f[year_col].strip()))
        iid = f[idx["item_id"]].strip()
        item = sink.build(line, Item, iid, f[idx["movie_title"]].strip(), tuple(real[:1]),
                          attributes=tuple(attrs), also_in=tuple((g,) for g in dict.fromkeys(real[1:])))
        if item is not None:
            if iid in items:
                sink.bad(line, f"duplicate item_id {iid!r}")
                continue
            items[iid] = item
            rep.rows_kept += 1
    reports.append(rep)
    genre_rep = repair_report(f"{path.name}: genres", len(items),
                              {"genre 'unknown' (item kept without a category)": no_genre})

    # users
    users: dict[str, dict[str, str]] = {}
    path = prefix.with_suffix(".user")
    if path.is_file():
        idx, rows = _table(path, ("user_id",), strict, reports)
        rep = LoadReport(source=path.name, rows_read=len(rows))
        sink = RowSink(path, rep, strict=strict)
        for line, f in rows:
            if len(f) < len(idx):
                sink.bad(line, f"expected {len(idx)} tab-separated fields, got {len(f)}")
                continue
            u = {k: f[i].strip() for k, i in idx.items() if k != "user_id" and f[i].strip()}
            if "zip_code" in u:
                u["zip"] = u.pop("zip_code")
            if "age" in u:
                if not u["age"].isdigit():
                    sink.bad(line, f"age must be a whole number, got {u['age']!r}")
                    continue
                u["age_bucket"] = age_bucket(int(u["age"]))
            users[f[idx["user_id"]].strip()] = u
            rep.rows_kept += 1
        reports.append(rep)

    # ratings
    path = prefix.with_suffix(".inter")
    idx, rows = _table(path, ("user_id", "item_id", "rating", "timestamp"), strict, reports)
    rep = LoadReport(source=path.name, rows_read=len(rows))
    sink = RowSink(path, rep, strict=strict)
    events: list[Event] = []
    placeholders: list[str] = []
    u_i, i_i, r_i, t_i = idx["user_id"], idx["item_id"], idx["rating"], idx["timestamp"]
    for line, f in rows:
        try:
            uid, iid = f[u_i].strip(), f[i_i].strip()
            rating, ts = to_float(f[r_i], "rating"), to_float(f[t_i], "timestamp")
        except IndexError:
            sink.bad(line, f"expected {len(idx)} tab-separated fields, got {len(f)}")
            continue
        except DataError as err:
            sink.bad(line, str(err))
            continue
        ev = sink.build(line, Event, uid, iid, "review", timestamp=ts, rating=rating)
        if ev is None:
            continue
        if iid not in items:
            items[iid] = Item(iid, f"item {iid}")
            placeholders.append(f"{path.name}: line {line}: item {iid!r}")
        events.append(ev)
        rep.rows_kept += 1
    reports.append(rep)
    for extra in (genre_rep, repair_report(f"{path.name}: items", len(items), {
            "item missing from the .item file (placeholder title)": placeholders})):
        if extra is not None:
            reports.append(extra)
    return Dataset(
        name=name, items=items, events=events, clock="unix", default_level=1, users=users,
        reports=reports,
        description=f"MovieLens ({folder.name}, GroupLens terms; from the recbole wheel): "
                    "ratings as review events, category = first listed genre.",
    )
