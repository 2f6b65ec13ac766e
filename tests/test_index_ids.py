"""A saved index's catalogue in its own files (`llmint.index_ids`, format v2), and v1 folders still read."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from llmint.errors import ModelError
from llmint.index import IndexConfig, ItemIndex
from llmint.index_ids import ENTRIES, IDS, Mismatch, read_ids, write_ids
from llmint.index_idtable import decode, encode
from llmint.index_io import FORMAT, FORMAT_V1, load_index, read_meta

FLAT = IndexConfig(kind="flat", device="cpu")
ODD_IDS = ["plain", "two\nlines", "tab\there", "ünïcödé", "🛒 cart", "quote\"s", "back\\slash", "\x00nul", "ÿ"]


def vectors(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def built(n: int = 200, seed: int = 0) -> ItemIndex:
    ids = ODD_IDS + [f"i{j}" for j in range(n - len(ODD_IDS))]
    cats = [None if j % 7 == 0 else f"Dept {j % 3} > Aisle {j % 5}" for j in range(n)]
    idx = ItemIndex.build(ids, vectors(n, seed), cats, FLAT)
    idx.remove(["i3", "i10", "plain"])
    return idx


def test_round_trip_keeps_every_id_label_and_category(tmp_path) -> None:
    idx = built()
    idx.save(tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["format"] == FORMAT and "item_ids" not in meta and "labels" not in meta
    assert len((tmp_path / "meta.json").read_bytes()) < 4000  # no per-item content in meta.json
    back = ItemIndex.load(tmp_path)
    c, b = idx._catalogue, back._catalogue
    assert [b.id_of(j) for j in range(200)] == [c.id_of(j) for j in range(200)]  # None: removed
    assert [b.label(i) for i in ODD_IDS] == [c.label(i) for i in ODD_IDS]
    assert np.array_equal(b.alive, c.alive) and b.n_labels == c.n_labels == 200
    assert b.categories_of(back.item_ids) == c.categories_of(idx.item_ids)
    assert set(ODD_IDS) - {"plain"} <= set(back.item_ids)
    q = vectors(5, seed=9)
    assert back.search(q, 10) == idx.search(q, 10)
    assert back.search(q, 10, "Dept 1") == idx.search(q, 10, "Dept 1")
    back.add(["new"], q[:1], ["Dept 9"])  # labels go on from the saved count
    assert back._catalogue.label("new") == 200


def test_an_empty_index_round_trips(tmp_path) -> None:
    ItemIndex.build([], np.zeros((0, 16), np.float32), None, FLAT).save(tmp_path)
    back = ItemIndex.load(tmp_path)
    assert len(back) == 0 and back._catalogue.n_labels == 0


def test_ids_file_round_trips_any_text(tmp_path, monkeypatch) -> None:
    """Written a block at a time (a 7-byte block splits most ids), read back whole."""
    import llmint.index_ids as mod

    ids = [f"{'é' * (j % 5)}{j}\n" for j in range(1000)] + ODD_IDS
    monkeypatch.setattr(mod, "BLOCK", 7)
    digest = write_ids(tmp_path / IDS, np.frombuffer(encode(ids), dtype=np.uint8))
    assert read_ids(tmp_path / IDS, digest, len(ids)) == ids
    with pytest.raises(ModelError, match="meta.json says 999"):
        read_ids(tmp_path / IDS, digest, 999)


def test_an_id_that_is_not_unicode_text_is_refused_when_added(tmp_path) -> None:
    idx = built(20)
    for bad in ["lone \udcff", "lone \ud800"]:
        with pytest.raises(ValueError, match="not valid Unicode text"):
            idx.add(["ok", bad], vectors(2))
        assert "ok" not in idx  # nothing of the refused add was kept
    with pytest.raises(ValueError, match="not valid Unicode text"):
        encode(["a", "b\udcffc"])  # the encoder's own guard


def test_damaged_or_truncated_item_files_are_refused(tmp_path) -> None:
    built().save(tmp_path)
    raw = bytearray((tmp_path / IDS).read_bytes())
    raw[-5] ^= 0x01  # one bit inside an id
    (tmp_path / IDS).write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="damaged"):
        ItemIndex.load(tmp_path)
    built().save(tmp_path)
    (tmp_path / IDS).write_bytes((tmp_path / IDS).read_bytes()[:-3])
    with pytest.raises(ModelError, match="damaged|whole ids"):
        ItemIndex.load(tmp_path)
    built().save(tmp_path)
    (tmp_path / ENTRIES).write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="cannot be read as an item table"):
        ItemIndex.load(tmp_path)
    built().save(tmp_path)
    (tmp_path / ENTRIES).unlink()
    with pytest.raises(ModelError, match="missing"):
        ItemIndex.load(tmp_path)


def test_a_save_landing_during_a_load_is_read_again(tmp_path) -> None:
    """The reader has meta.json of save A; save B then replaces every file: the item files'
    digests no longer match, and the load starts over from B's meta.json."""
    built(seed=0).save(tmp_path)
    old_meta = read_meta(tmp_path)
    other = built(150, seed=1)
    other.save(tmp_path)
    back = load_index(ItemIndex, tmp_path, None, old_meta)
    assert len(back) == len(other) and back.item_ids == other.item_ids


def test_files_of_two_saves_are_refused_not_mixed(tmp_path) -> None:
    built(seed=0).save(tmp_path / "a")
    built(150, seed=1).save(tmp_path / "b")
    shutil.copy(tmp_path / "a" / IDS, tmp_path / "b" / IDS)  # b's meta.json, a's ids
    with pytest.raises(Mismatch, match="written by another save"):
        ItemIndex.load(tmp_path / "b")


def test_a_format_v1_folder_still_loads(tmp_path) -> None:
    """Written as v1 did: ids, live labels and category names inside meta.json."""
    idx = built()
    idx.save(tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    live, blob, codes = idx._catalogue.live_entries()
    names = idx._catalogue.cat_names
    meta.update(format=FORMAT_V1, labels=live.tolist(), item_ids=decode(blob),
                categories=[names[k] if k >= 0 else None for k in codes.tolist()])
    for key in ("item_files", "category_names"):
        del meta[key]
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    (tmp_path / IDS).unlink()
    (tmp_path / ENTRIES).unlink()
    back = ItemIndex.load(tmp_path)
    assert back.item_ids == idx.item_ids
    assert back._catalogue.categories_of(back.item_ids) == idx._catalogue.categories_of(idx.item_ids)
    q = vectors(5, seed=9)
    assert back.search(q, 10, "Dept 2 > Aisle 4") == idx.search(q, 10, "Dept 2 > Aisle 4")
    meta["format"] = "llmint-index v9"
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="format 'llmint-index v9'"):
        ItemIndex.load(tmp_path)


def test_a_meta_json_missing_the_item_files_is_a_clear_error(tmp_path) -> None:
    built().save(tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    del meta["item_files"]
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="the saved catalogue is inconsistent: KeyError"):
        ItemIndex.load(tmp_path)
