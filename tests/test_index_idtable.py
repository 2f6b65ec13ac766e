"""`IdTable` (item ids by label, labels by id, in their bytes) against a list and a dict."""

from __future__ import annotations

import random

import numpy as np
import pytest

import llmint.index_idtable as mod
from llmint.index_idtable import IdTable, decode, encode, hashes_of
from llmint.index_labels import Catalogue

ODD = ["two\nlines", "ünï", "🛒", "\x00", "ÿ", "a" * 300, "tab\t"]


def check(table: IdTable, ids: list[str], alive: np.ndarray) -> None:
    """`table` agrees with the reference: label j holds ids[j]; live ids are found, others not."""
    assert len(table) == len(ids)
    live = [i for i, a in zip(ids, alive.tolist(), strict=True) if a]
    want = {i: j for j, (i, a) in enumerate(zip(ids, alive.tolist(), strict=True)) if a}
    assert table.find(live, alive).tolist() == [want[i] for i in live]
    gone = [i for i in set(ids) if i not in want] + ["never", "ünï2", "two\nline"]
    assert (table.find(gone, alive) == -1).all()
    assert [table.id_of(j) for j in np.flatnonzero(alive).tolist()] == live


@pytest.mark.parametrize("collide", [False, True], ids=["hashed", "every-hash-equal-per-length"])
def test_random_adds_removes_and_readds_agree_with_a_dict(monkeypatch, collide) -> None:
    """Small merge thresholds so the recent dict is merged many times; with the multiplier 0
    every id of one length hashes alike, and only the byte comparison tells them apart."""
    monkeypatch.setattr(mod, "_MERGE_MIN", 8)
    if collide:
        monkeypatch.setattr(mod, "_P", np.uint64(0))
    rng = random.Random(0)
    table, ids, alive = IdTable(), [], np.zeros(0, dtype=bool)
    pool = [f"id{j}" for j in range(400)] + ODD
    for _ in range(60):
        live_now = {i for i, a in zip(ids, alive.tolist(), strict=True) if a}
        if live_now and rng.random() < 0.35:  # remove some
            out = rng.sample(sorted(live_now), min(len(live_now), rng.randint(1, 12)))
            for i in out:
                alive[[j for j, x in enumerate(ids) if x == i and alive[j]]] = False
            table.forget(out)
        else:  # add new ones, some of them removed earlier (a re-add gets a new label)
            new = [i for i in rng.sample(pool, 20) if i not in live_now]
            table.append(new)
            ids += new
            alive = np.concatenate([alive, np.ones(len(new), dtype=bool)])
        check(table, ids, alive)
    assert table._upto > 0  # merged at least once


def test_a_restored_table_builds_its_hashes_only_when_asked() -> None:
    ids = [f"sku-{j}" for j in range(50)] + ODD
    labels = np.array([j for j in range(86) if j % 3], dtype=np.int64)[: len(ids)]  # 57 of 90
    table = IdTable.restore(90, labels, np.frombuffer(encode(ids), dtype=np.uint8))
    alive = np.zeros(90, dtype=bool)
    alive[labels] = True
    assert [table.id_of(j) for j in labels.tolist()] == ids
    assert table.ids(labels) == ids and not table._built and len(table._table[0]) == 0
    table.append(["late"])  # before any lookup: hashed with the rest when built
    alive = np.append(alive, True)
    assert table.find(["late", ids[7], "sku-0x"], alive).tolist() == [90, int(labels[7]), -1]
    assert table._built and len(table._table[0]) == len(ids) + 1
    with pytest.raises(ValueError, match="3 labels but 2 ids"):
        IdTable.restore(5, np.array([0, 1, 2]), np.frombuffer(encode(["a", "b"]), dtype=np.uint8))


def test_hashes_are_the_same_from_a_blob_and_from_the_table() -> None:
    ids = ["a", "ab", "ba", "ünï", "a" * 1000]
    h, lengths = hashes_of(encode(ids))
    assert lengths.tolist() == [len(i.encode()) + 1 for i in ids]
    assert len(set(h.tolist())) == len(ids)
    table = IdTable()
    table.append(ids)
    table._merge(0, len(ids))
    assert sorted(table._table[0].tolist()) == sorted(h.tolist())
    assert decode(encode(ids)) == ids and decode(b"") == []


def test_the_catalogue_keeps_ids_in_about_30_bytes_each() -> None:
    """The bytes of the ids, their end offsets and, once looked up, 16 B of hash and label."""
    n = 200_000
    ids = [f"sku-{j:09d}" for j in range(n)]
    cat = Catalogue()
    for s in range(0, n, 8192):
        cat.append(ids[s : s + 8192], [None] * len(ids[s : s + 8192]))
    assert cat.label(ids[12345]) == 12345 and cat.id_of(199_999) == ids[-1]
    t = cat.ids
    held = t._data.nbytes + t._ends.nbytes + t._table[0].nbytes + t._table[1].nbytes
    assert held / n < 2 * (14 + 8 + 16), held / n  # room doubles: at most twice what is used
    assert len(t._recent) <= max(mod._MERGE_MIN, n // mod._MERGE_SHARE)


def test_a_few_ids_hash_in_python_as_many_do_in_numpy() -> None:
    from llmint.index_idtable import _few_hashes

    ids = ["a", "ünï", "🛒 cart", "x" * 500, "\x00", "two\nlines"]
    for want, got in zip(hashes_of(encode(ids)), _few_hashes(encode(ids)), strict=True):
        assert want.tolist() == got.tolist()


def test_threads_looking_up_a_restored_table_at_once_all_get_the_labels() -> None:
    """The first lookups of a loaded index may come from several request threads: one builds
    the hashes, the others wait for the whole table (never search a half-built one)."""
    import threading

    n = 300_000
    ids = [f"sku-{j}" for j in range(n)]
    table = IdTable.restore(n, np.arange(n), np.frombuffer(encode(ids), dtype=np.uint8))
    alive = np.ones(n, dtype=bool)
    want = np.arange(0, n, 997)
    asked = [ids[j] for j in want.tolist()]
    results, start = [], threading.Barrier(4)

    def look() -> None:
        start.wait()
        results.append(table.find(asked, alive))

    threads = [threading.Thread(target=look) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(np.array_equal(r, want) for r in results)


def test_blobs_in_chunks_are_the_blob() -> None:
    ids = [f"x{j}" + "é" * (j % 3) for j in range(1000)]
    table = IdTable()
    table.append(ids)
    for labels in [np.arange(1000), np.arange(0, 1000, 3), np.array([0, 1, 2, 500, 998, 999]), np.array([7])]:
        for rows in (1, 7, 64, 5000):
            chunks = list(table.blobs(labels, rows=rows))
            assert len(chunks) == -(-len(labels) // rows)
            assert np.array_equal(np.concatenate(chunks), table.blob(labels))
