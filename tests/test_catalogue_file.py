"""A catalogue file as the index's source: `ParquetItems` (row groups read on demand) and
`python -m index.build --items FILE`, checked against the whole-file items loader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmint.embed import item_text, load_embedder
from llmint.errors import DataError
from llmint.index import ItemIndex
from llmint.loaders.catalogue import ParquetItems
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


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_index_build_from_an_items_file_equals_the_index_of_its_items(
    suffix, embedder_dir, tmp_path
) -> None:
    from index import build

    recs = rows(10_200, seed=1)
    if suffix == ".parquet":
        path = write(tmp_path / "cat.parquet", recs, row_group_size=2500)
    else:
        path = tmp_path / "cat.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
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
    assert idx.catalogue_version.startswith("file:") == (suffix == ".parquet")


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
