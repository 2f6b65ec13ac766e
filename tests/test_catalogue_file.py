"""A catalogue file as the index's source: `ParquetItems` and `JsonlItems` (groups of rows
read on demand) and `python -m index.build --items FILE`, checked against the whole-file
items loader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import llmint.loaders._common as common_mod
import llmint.loaders.catalogue as catalogue_mod
from llmint.embed import item_text, load_embedder
from llmint.errors import DataError
from llmint.index import ItemIndex
from llmint.loaders.catalogue import CsvItems, JsonlItems, ParquetItems, catalogue_file
from llmint.loaders.generic import load_items_file

WORDS = "cordless phone corded paper printer ink pen pencil stapler desk chair office".split()


def rows(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for j in range(n):
        out.append({
            "item_id": f"p{j}",
            "title": " ".join(rng.choice(WORDS, size=int(rng.integers(1, 5)))),
            "category_path": ["Office", "Phones"] if j % 3 else ["Furniture"],
            "brand": "Acme" if j % 2 else None,
            "text": None,
        })
    return out


def write(path: Path, records: list[dict], row_group_size: int) -> Path:
    pq.write_table(pa.Table.from_pylist(records), path, row_group_size=row_group_size)
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def embedder_dir(tmp_path_factory) -> Path:
    from test_embed import tiny_sentence_transformer

    folder = tmp_path_factory.mktemp("emb") / "tiny-st"
    tiny_sentence_transformer().save(str(folder))
    return folder


def test_parquet_items_match_the_whole_file_loader_and_read_groups_on_demand(tmp_path, monkeypatch) -> None:
    path = write(tmp_path / "cat.parquet", rows(1000), row_group_size=128)  # 8 groups
    whole = load_items_file(path)
    got = ParquetItems(path)
    assert got.item_ids == list(whole)
    assert got.categories == [it.category_path or None for it in whole.values()]
    assert (got.report.rows_read, got.report.rows_kept) == (1000, 1000)
    assert got.categories[1] is got.categories[998]  # one tuple per distinct path, not one per item
    reads: list[int] = []
    records = ParquetItems._records
    monkeypatch.setattr(ParquetItems, "_records", lambda self, g: reads.append(g) or records(self, g))
    texts = got.texts(item_text)
    assert len(texts) == 1000
    assert texts[:] == [item_text(it) for it in whole.values()]  # in order: each group read once
    assert reads == list(range(8))
    assert texts[-1] == item_text(whole["p999"]) and texts[5] == item_text(whole["p5"])
    with pytest.raises(IndexError):
        texts[1000]
    assert ParquetItems(path, limit=300).item_ids == list(whole)[:300]
    assert got.version() == ParquetItems(path).version() and got.version().startswith("file:")


def test_bad_rows_strict_name_the_row_lenient_skip_and_count(tmp_path) -> None:
    recs = rows(300)
    recs[130]["item_id"] = None  # group 1
    recs[200]["item_id"] = "p5"  # a duplicate
    for r in recs[256:]:  # the last group: every row bad
        r["item_id"] = ""
    path = write(tmp_path / "bad.parquet", recs, row_group_size=128)
    with pytest.raises(DataError, match=r"bad\.parquet: row 131: .*item_id"):
        ParquetItems(path)
    got = ParquetItems(path, strict=False)
    assert len(got) == 256 - 2 and "p130" not in got.item_ids and got.report.n_skipped == 46
    texts = got.texts(item_text)
    assert texts[len(got) - 1] == item_text(load_items_file(path, strict=False)["p255"])
    assert [texts[i] for i in range(len(got))] == [  # the kept rows only, in order
        item_text(it) for it in load_items_file(path, strict=False).values()]


def test_not_a_parquet_catalogue_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(DataError, match="no such file"):
        ParquetItems(tmp_path / "none.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="cannot read as Parquet"):
        ParquetItems(tmp_path / "junk.parquet")
    write(tmp_path / "noid.parquet", [{"title": "x"}], 10)
    with pytest.raises(DataError, match="missing column 'item_id'"):
        ParquetItems(tmp_path / "noid.parquet")


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".csv"])
def test_index_build_from_an_items_file_equals_the_index_of_its_items(
    suffix, embedder_dir, tmp_path
) -> None:
    from index import build

    recs = rows(10_200, seed=1)
    if suffix == ".parquet":
        path = write(tmp_path / "cat.parquet", recs, row_group_size=2500)
    elif suffix == ".jsonl":
        path = write_jsonl(tmp_path / "cat.jsonl", recs)
    else:
        path = write_csv(tmp_path / "cat.csv", recs)
    ivf = ["--kind", "ivfpq", "--pq-m", "4", "--ivf-nlist", "16", "--train-max", "10000"]
    out = build.cli(["--items", str(path), "--out", str(tmp_path / "ix"), "--embedder", str(embedder_dir), *ivf])
    emb = load_embedder(embedder_dir)
    idx = ItemIndex.load(out, emb)
    items = load_items_file(path)
    assert (idx.kind, idx.item_ids) == ("ivfpq", list(items))
    want = ItemIndex.from_items(items.values(), emb, idx.cfg)
    np.testing.assert_array_equal(idx.vectors_of(idx.item_ids), want.vectors_of(idx.item_ids))
    hits = idx.search_text(["desk chair"], 5, category="Furniture")[0]
    assert len(hits) == 5 and all(items[h.item_id].category_path == ("Furniture",) for h in hits)
    resolved = json.loads((out / "build_config.json").read_text())
    assert resolved["items"] == str(path) and resolved["dataset"] is None
    assert idx.catalogue_version.startswith("file:")


def test_index_build_takes_exactly_one_source(embedder_dir, tmp_path, capsys) -> None:
    from index import build

    path = write(tmp_path / "cat.parquet", rows(10), row_group_size=4)
    for args in ([], ["--dataset", "office", "--items", str(path)]):
        with pytest.raises(SystemExit) as e:
            build.cli([*args, "--out", str(tmp_path / "ix")])
        assert e.value.code == 2
        assert "exactly one of --dataset and --items" in capsys.readouterr().err
    bad = write(tmp_path / "bad.parquet", [{"item_id": None, "title": "x"}], 4)
    with pytest.raises(SystemExit) as e:
        build.cli(["--items", str(bad), "--out", str(tmp_path / "ix"), "--embedder", str(embedder_dir)])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "bad.parquet: row 1" in err and "Traceback" not in err


def test_jsonl_items_match_the_whole_file_loader_a_group_of_lines_at_a_time(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(catalogue_mod, "GROUP_LINES", 100)
    recs = rows(1000)
    body = "\ufeff" + "".join(json.dumps(r) + "\n" + ("\n" if j % 97 == 0 else "") for j, r in enumerate(recs))
    path = tmp_path / "cat.jsonl"
    path.write_text(body, encoding="utf-8")
    whole = load_items_file(path)
    got = catalogue_file(path)
    assert isinstance(got, JsonlItems) and got.item_ids == list(whole)
    assert got.categories == [it.category_path or None for it in whole.values()]
    reads: list[int] = []
    records = JsonlItems._records
    monkeypatch.setattr(JsonlItems, "_records", lambda self, g: reads.append(g) or records(self, g))
    texts = got.texts(item_text)
    assert texts[:] == [item_text(it) for it in whole.values()]
    assert reads == list(range(len(got._kept))) and len(reads) == 11  # 1,011 lines, 100 a group
    assert JsonlItems(path, limit=250).item_ids == list(whole)[:250]


def test_jsonl_bad_bytes_and_rows_strict_name_the_line_lenient_repair_or_skip(tmp_path) -> None:
    recs = rows(40)
    lines = [json.dumps(r).encode() for r in recs]
    lines[5] = lines[5].replace(b'"title": "', b'"title": "caf\xe9 ')  # latin-1, not UTF-8
    lines[9] = b'[1, 2]'
    lines[12] = b'{"item_id": "p12", "title": "\\ud800 x"}'  # a lone surrogate escape
    lines[20] = b'{"item_id": '
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DataError, match=r"bad\.jsonl: line 6 .*not valid UTF-8"):
        JsonlItems(path)
    got = JsonlItems(path, strict=False)
    want = load_items_file(path, strict=False)
    assert got.item_ids == list(want) and len(got) == 38 and got.report.n_skipped == 2
    assert got.repaired == ["bad.jsonl: line 6", "bad.jsonl: line 13"]
    assert got.texts(item_text)[:] == [item_text(it) for it in want.values()]
    (tmp_path / "noid.jsonl").write_text('{"title": "x"}\n')
    with pytest.raises(DataError, match="missing column 'item_id'"):
        JsonlItems(tmp_path / "noid.jsonl")
    with pytest.raises(DataError, match="must be .parquet, .jsonl or .csv"):
        catalogue_file(tmp_path / "cat.tsv")


def write_csv(path: Path, records: list[dict], newline: str = "\n") -> Path:
    import csv
    import io

    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator=newline)
    w.writerow(["item_id", "title", "category_path", "brand"])
    for r in records:
        w.writerow([r["item_id"], r["title"], " > ".join(r["category_path"]), r["brand"] or ""])
    path.write_text(buf.getvalue(), encoding="utf-8", newline="")
    return path


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_csv_items_match_the_whole_file_loader_a_group_of_records_at_a_time(tmp_path, monkeypatch, newline) -> None:
    """Quoted fields spanning lines, commas and quotes inside fields, blank lines: groups of
    records, each read back from its byte offset, give what the whole-file loader gives."""
    monkeypatch.setattr(catalogue_mod, "GROUP_LINES", 64)
    recs = rows(500)
    for j in range(0, 500, 7):
        recs[j]["title"] += f'\nline two, with "quotes"{newline}and three'
    path = write_csv(tmp_path / "cat.csv", recs, newline)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"p250,", newline.encode() + b"p250,"))
    whole = load_items_file(path)
    got = catalogue_file(path)
    assert isinstance(got, CsvItems) and got.item_ids == list(whole) and len(got) == 500
    assert got.categories == [it.category_path or None for it in whole.values()]
    reads: list[int] = []
    records = CsvItems._records
    monkeypatch.setattr(CsvItems, "_records", lambda self, g: reads.append(g) or records(self, g))
    texts = got.texts(item_text)
    assert texts[:] == [item_text(it) for it in whole.values()]
    assert reads == list(range(8))  # 500 records, 64 a group: each group read once
    assert "line two" in texts[7]
    assert texts[499] == item_text(whole["p499"]) and texts[0] == item_text(whole["p0"])
    assert CsvItems(path, limit=100).item_ids == list(whole)[:100]


def test_csv_bad_bytes_and_rows_strict_name_the_line_lenient_repair_or_skip(tmp_path, monkeypatch) -> None:
    path = write_csv(tmp_path / "bad.csv", rows(40))
    lines = path.read_bytes().split(b"\n")
    lines[6] = lines[6].replace(b"p5,", b"p5,caf\xe9 ")  # line 7: latin-1, not UTF-8
    lines[10] = b"p9,only two"  # line 11: too few fields
    lines[21] = b",no id,Office,"  # line 22: an empty item id
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=r"bad\.csv: line 7 .*not valid UTF-8"):
        CsvItems(path)
    path.write_bytes(b"\n".join(lines).replace(b"caf\xe9", b"cafe"))
    with pytest.raises(DataError, match=r"bad\.csv: line 11: expected 4 fields, got 2"):
        CsvItems(path)
    path.write_bytes(b"\n".join(lines))
    got = CsvItems(path, strict=False)
    want = load_items_file(path, strict=False)
    assert got.item_ids == list(want) and len(got) == 38 and got.report.n_skipped == 2
    assert got.repaired == ["bad.csv: line 7"]
    assert got.texts(item_text)[:] == [item_text(it) for it in want.values()]
    monkeypatch.setattr(common_mod, "CSV_FIELD_LIMIT", 30)  # an unclosed quote runs to the limit
    (tmp_path / "open.csv").write_text('item_id,title\np1,ok\np2,"never closed\n' + "p3,x\n" * 10)
    with pytest.raises(DataError, match=r"open\.csv: line 3: cannot parse as CSV: .*unclosed quote"):
        CsvItems(tmp_path / "open.csv", strict=False)
    (tmp_path / "noid.csv").write_text("title\nx\n")
    with pytest.raises(DataError, match="missing column 'item_id'"):
        CsvItems(tmp_path / "noid.csv")
    (tmp_path / "empty.csv").write_text("\n\n")
    with pytest.raises(DataError, match="empty; expected a header"):
        CsvItems(tmp_path / "empty.csv")


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".csv"])
def test_reading_a_catalogue_file_shows_a_bar_that_ends_full(suffix, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(catalogue_mod, "GROUP_LINES", 64)
    recs = rows(300)
    writer = {".parquet": lambda p: write(p, recs, 64), ".jsonl": lambda p: write_jsonl(p, recs),
              ".csv": lambda p: write_csv(p, recs)}[suffix]
    path = writer(tmp_path / f"cat{suffix}")
    catalogue_file(path, show_progress=True)
    err = capsys.readouterr().err
    size = f"{path.stat().st_size / 1000:.1f}k"
    total = "300/300" if suffix == ".parquet" else f"{size}/{size}"
    assert f"reading cat{suffix}" in err and "100%" in err and total in err, err[-300:]
    catalogue_file(path)
    assert capsys.readouterr().err == ""  # no bar unless asked
