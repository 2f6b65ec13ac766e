"""The saved item index is reused only while it matches the catalogue (`llmint.index_cache`)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from llmint.embed import Embedder
from llmint.errors import ModelError
from llmint.index import ItemIndex
from llmint.index_cache import catalogue_fingerprint, load_or_build, service_version, stale_reason
from llmint.schema import Item

ITEMS = {it.item_id: it for it in [
    Item("p1", "cordless phone", ("Office", "Phones")),
    Item("p2", "corded phone", ("Office", "Phones")),
    Item("s1", "paper printer ink", ("Office", "Supplies")),
    Item("f1", "desk chair", ("Furniture",)),
]}


@pytest.fixture(scope="module")
def emb() -> Embedder:
    from test_embed import tiny_sentence_transformer

    return Embedder.from_model(tiny_sentence_transformer(), "tiny")


def _meta(folder: Path) -> dict:
    return json.loads((folder / "meta.json").read_text())


def test_fingerprint_is_order_free_and_sees_every_change() -> None:
    pairs = [("a", "x"), ("b", "y")]
    fp = catalogue_fingerprint(pairs)
    assert fp == catalogue_fingerprint(reversed(pairs)) and len(fp) == 16
    assert len({fp, catalogue_fingerprint([("a", "x"), ("b", "z")]), catalogue_fingerprint([("a", "x")]),
                catalogue_fingerprint([("a", "x"), ("c", "y")])}) == 4
    v = service_version(ITEMS)
    assert v.startswith("service:") and v != service_version({**ITEMS, "p1": replace(ITEMS["p1"], title="phone")})


def test_built_once_then_loaded_then_rebuilt_when_an_item_changes(emb, tmp_path, caplog) -> None:
    folder = tmp_path / "index"
    first = load_or_build(folder, ITEMS, emb)
    meta = _meta(folder)
    assert meta["catalogue_version"] == service_version(ITEMS) == first.catalogue_version
    again = load_or_build(folder, ITEMS, emb, build=False)  # loaded, not embedded again
    assert again.build_time_utc == meta["build_time_utc"] and sorted(again.item_ids) == sorted(ITEMS)

    renamed = {**ITEMS, "p1": replace(ITEMS["p1"], title="rotary phone")}
    with pytest.raises(ModelError, match="was built from other item texts .* build_index=False"):
        load_or_build(folder, renamed, emb, build=False)
    with caplog.at_level(logging.WARNING, logger="llmint.index_cache"):
        rebuilt = load_or_build(folder, renamed, emb)
    assert "rebuilding it" in caplog.text
    assert _meta(folder)["catalogue_version"] == rebuilt.catalogue_version == service_version(renamed)
    # no temporary file left
    assert sorted(x.name for x in folder.iterdir()) == ["index.faiss", "items.ids", "items.npz", "meta.json"]

    fewer = {k: v for k, v in ITEMS.items() if k != "f1"}
    assert sorted(load_or_build(folder, fewer, emb).item_ids) == sorted(fewer)  # an item gone: rebuilt


def test_another_embedder_rebuilds_the_services_own_index(emb, tmp_path) -> None:
    from test_embed import tiny_sentence_transformer

    load_or_build(tmp_path, ITEMS, emb)
    other = Embedder.from_model(tiny_sentence_transformer(seed=5), "tiny")
    meta = _meta(tmp_path)
    assert stale_reason(meta, set(ITEMS), service_version(ITEMS), emb) is None
    assert "was built with embedder" in stale_reason(meta, set(ITEMS), service_version(ITEMS), other)
    assert load_or_build(tmp_path, ITEMS, other).embedder is other


def test_a_prebuilt_index_is_kept_while_it_indexes_the_catalogues_ids(emb, tmp_path, monkeypatch) -> None:
    """`python -m index.build` embeds review digests too: its texts differ, its item ids must not."""
    import llmint.index_io as io

    ItemIndex.from_items(ITEMS.values(), emb, catalogue_version="0123456789abcdef").save(tmp_path)
    from llmint import index_ids

    reads = []

    def counted(*args):
        reads.append(args)
        return index_ids.read_id_bytes(*args)

    monkeypatch.setattr(io, "read_id_bytes", counted)
    loaded = load_or_build(tmp_path, ITEMS, emb, build=False)
    assert loaded.catalogue_version == "0123456789abcdef"
    assert len(reads) == 1  # the catalogue read for the check is the one loaded, not read again
    extra = {**ITEMS, "n1": Item("n1", "stapler", ("Office", "Supplies"))}
    with pytest.raises(ModelError, match="indexes 4 items, 0 of them not in the catalogue, and misses 1 of its 5"):
        load_or_build(tmp_path, extra, emb, build=False)
    fewer = {k: v for k, v in ITEMS.items() if k != "p2"}
    with pytest.raises(ModelError, match="indexes 4 items, 1 of them not in the catalogue, and misses 0 of its 3"):
        load_or_build(tmp_path, fewer, emb, build=False)


def test_no_folder_builds_without_saving_and_a_missing_index_may_be_refused(emb, tmp_path) -> None:
    assert len(load_or_build(None, ITEMS, emb)) == len(ITEMS)
    with pytest.raises(ModelError, match="no saved index in .* build_index=False"):
        load_or_build(tmp_path / "none", ITEMS, emb, build=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "meta.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read the saved index"):
        load_or_build(tmp_path / "bad", ITEMS, emb)


def test_the_app_and_the_cli_keep_one_folder_per_dataset(tmp_path, monkeypatch) -> None:
    from llmint.paths import index_dir

    monkeypatch.setenv("LLMINT_HOME", str(tmp_path))
    assert index_dir("movielens") == tmp_path / "index" / "movielens"
    a, b = tmp_path / "a" / "events.csv", tmp_path / "b" / "events.csv"
    assert index_dir(str(a)).name.startswith("events-") and index_dir(str(a)) != index_dir(str(b))
    assert index_dir(str(a)) == index_dir(str(a)) and index_dir(str(a)).parent == tmp_path / "index"


def test_writers_of_one_folder_leave_one_whole_index(emb, tmp_path) -> None:
    import threading

    idx = ItemIndex.from_items(ITEMS.values(), emb, catalogue_version=service_version(ITEMS))
    errors: list[BaseException] = []

    def save() -> None:
        try:
            for _ in range(5):
                idx.save(tmp_path)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=save) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(x.name for x in tmp_path.iterdir()) == ["index.faiss", "items.ids", "items.npz", "meta.json"]
    assert sorted(load_or_build(tmp_path, ITEMS, emb, build=False).item_ids) == sorted(ITEMS)


def test_files_of_two_saves_are_rebuilt_or_refused(emb, tmp_path, caplog) -> None:
    """Two processes saving different catalogues into one folder at once can leave one's
    meta.json beside the other's item ids: never served mixed, rebuilt (or refused)."""
    import shutil

    from llmint.index_ids import IDS

    fewer = {k: v for k, v in ITEMS.items() if k != "p2"}
    load_or_build(tmp_path / "a", fewer, emb)
    load_or_build(tmp_path / "b", ITEMS, emb)
    shutil.copy(tmp_path / "a" / IDS, tmp_path / "b" / IDS)
    with pytest.raises(ModelError, match="mixes the files of two saves .* build_index=False"):
        load_or_build(tmp_path / "b", ITEMS, emb, build=False)
    with caplog.at_level(logging.WARNING, logger="llmint.index_cache"):
        index = load_or_build(tmp_path / "b", ITEMS, emb)
    assert "rebuilding it" in caplog.text and sorted(index.item_ids) == sorted(ITEMS)
    assert sorted(load_or_build(tmp_path / "b", ITEMS, emb, build=False).item_ids) == sorted(ITEMS)


def test_each_item_text_is_made_once_per_build(emb, tmp_path, monkeypatch) -> None:
    """The texts that version the catalogue are the ones embedded: not made a second time."""
    import llmint.embed as embed
    import llmint.index as index_mod

    calls = []
    real = embed.item_text

    def counted(it, *args):
        calls.append(it.item_id)
        return real(it, *args)

    monkeypatch.setattr(embed, "item_text", counted)
    monkeypatch.setattr(index_mod, "item_text", counted)  # from_items' own import
    index = load_or_build(tmp_path, ITEMS, emb)
    assert sorted(calls) == sorted(ITEMS) and index.catalogue_version == service_version(ITEMS)
