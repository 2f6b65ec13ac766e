"""ItemIndex.from_texts embeds and adds a window of items at a time: the index equals a build
from one encode of every text, and no call holds more than a window of vectors."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import llmint.embed as embed_mod
from llmint.embed import Embedder, load_embedder
from llmint.index import IndexConfig, ItemIndex, training_rows

FLAT = IndexConfig(kind="flat", device="cpu")
WORDS = "cordless phone corded paper printer ink pen pencil stapler desk chair office".split()


def catalogue(n: int, seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    """n item ids, texts of 1-6 of WORDS, and categories, seeded."""
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=int(k))) for k in rng.integers(1, 7, size=n)]
    return [f"i{j}" for j in range(n)], texts, [f"C{j % 5} > s{j % 3}" for j in range(n)]


def spy_encode(emb: Embedder) -> list[int]:
    """Record the number of texts of each `emb.encode` call."""
    sizes: list[int] = []
    encode = emb.encode

    def spy(texts, *a, **kw):
        sizes.append(len(texts))
        return encode(texts, *a, **kw)

    emb.encode = spy  # type: ignore[method-assign]
    return sizes


def test_a_window_at_a_time_gives_the_index_of_one_encode(emb) -> None:
    ids, texts, cats = catalogue(1000)
    want = ItemIndex.build(ids, emb.encode(texts, batch_size=4), cats, FLAT, embedder=emb)
    sizes = spy_encode(emb)
    got = ItemIndex.from_texts(ids, texts, cats, emb, FLAT, batch_size=4)  # windows of 4 x 256 = 1,024
    assert sizes == [1000]
    sizes.clear()
    got2 = ItemIndex.from_texts(ids, texts, cats, emb, FLAT, batch_size=1)  # windows of 256
    assert sizes == [256, 256, 256, 232]
    for idx in (got, got2):
        assert idx.item_ids == ids
        np.testing.assert_array_equal(idx.vectors_of(ids), want.vectors_of(ids))
        assert [h.item_id for h in idx.search_text(["printer ink"], k=20, category="C2")[0]] == [
            h.item_id for h in want.search_text(["printer ink"], k=20, category="C2")[0]
        ]
    with pytest.raises(TypeError, match="not a single str"):
        got.search_text("printer ink")


def test_from_items_shows_one_bar_over_every_item(emb, capsys) -> None:
    from llmint.schema import Item

    items = [Item(i, t, tuple(c.split(" > "))) for i, t, c in zip(*catalogue(300), strict=True)]
    idx = ItemIndex.from_items(items, emb, FLAT, batch_size=1, show_progress=True)
    assert len(idx) == 300
    err = capsys.readouterr().err
    assert "300/300" in err and err.count("embedding: 100%") == 1


def test_ivfpq_trains_on_the_build_sample_and_embeds_each_text_once(emb) -> None:
    n = 12_000
    ids, texts, cats = catalogue(n, seed=1)
    cfg = IndexConfig(kind="ivfpq", device="cpu", pq_m=4, ivf_nlist=16, train_max=10_000, nprobe=4, rerank=50)
    sample = training_rows(n, emb.dim, cfg)
    assert len(sample) == 10_000 and np.all(np.diff(sample) > 0)
    want = ItemIndex.build(ids, emb.encode(texts), cats, cfg, embedder=emb)
    sizes = spy_encode(emb)
    got = ItemIndex.from_texts(ids, texts, cats, emb, cfg, batch_size=8)  # windows of 2,048
    window = emb.window(8)
    assert sizes[0] == 10_000  # the training sample, first
    assert sum(sizes) == n and max(sizes[1:]) <= window  # then only the rest, a window at a time
    assert got.item_ids == ids
    np.testing.assert_array_equal(got.vectors_of(ids), want.vectors_of(ids))
    q = emb.encode(["printer ink", "desk chair office", "pen"])
    for a, b in zip(got.search(q, k=10), want.search(q, k=10), strict=True):
        assert [h.item_id for h in a] == [h.item_id for h in b]
    assert got._index.nlist == want._index.nlist == 16


def test_ivfpq_too_small_fails_before_anything_is_embedded(emb) -> None:
    ids, texts, cats = catalogue(500)
    sizes = spy_encode(emb)
    with pytest.raises(ValueError, match="needs at least"):
        ItemIndex.from_texts(ids, texts, cats, emb, IndexConfig(kind="ivfpq", pq_m=4))
    assert sizes == []
    with pytest.raises(ValueError, match="needs `train`"):
        ItemIndex.empty(8, 20_000, IndexConfig(kind="ivfpq", pq_m=4))
    with pytest.raises(ValueError, match="3 item ids and 500 texts"):
        ItemIndex.from_texts(ids[:3], texts, cats, emb, FLAT)


def test_hnsw_added_a_window_at_a_time_finds_every_item(emb, monkeypatch) -> None:
    monkeypatch.setattr(embed_mod, "SORT_WINDOW_BATCHES", 4)
    rng = np.random.default_rng(3)
    n = 600
    texts = [" ".join(rng.choice(WORDS, size=8)) + f" {j}" for j in range(n)]  # near-unique vectors
    ids = [f"i{j}" for j in range(n)]
    cfg = IndexConfig(kind="hnsw", device="cpu", hnsw_m=8, ef_construction=64, ef_search=64)
    idx = ItemIndex.from_texts(ids, texts, None, emb, cfg, batch_size=16)  # 10 windows of 64
    assert idx.kind == "hnsw" and len(idx) == n
    exact = ItemIndex.from_texts(ids, texts, None, emb, FLAT, batch_size=16)
    q = exact.vectors_of(ids[::7])
    got = [{h.item_id for h in hits} for hits in idx.search(q, k=10)]
    want = [{h.item_id for h in hits} for hits in exact.search(q, k=10)]
    recall = np.mean([len(g & w) / 10 for g, w in zip(got, want, strict=True)])
    assert recall >= 0.95


def test_auto_kind_is_chosen_by_the_catalogue_size_not_the_window(emb) -> None:
    ids, texts, cats = catalogue(300)
    cfg = IndexConfig(kind="auto", device="cpu", hnsw_threshold=200)
    assert ItemIndex.from_texts(ids, texts, cats, emb, cfg, batch_size=1).kind == "hnsw"  # windows of 256
    assert ItemIndex.from_texts(ids[:150], texts[:150], cats[:150], emb, cfg).kind == "flat"


@pytest.mark.real
def test_real_minilm_windows_give_the_vectors_of_one_encode(monkeypatch) -> None:
    """MiniLM's vectors depend (~1e-7) on a batch's padding: a window split anywhere but at the
    encoder's own windows would change them; from_texts splits exactly there."""
    monkeypatch.setattr(embed_mod, "SORT_WINDOW_BATCHES", 3)
    emb = load_embedder()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(["cartridge", "x7q9", "multipurpose", "pen", "zzkw3j", "a"], size=int(k)))
             for k in rng.integers(1, 40, size=70)]
    ids = [f"i{j}" for j in range(70)]
    one = emb.encode(texts, batch_size=4)  # windows of 12
    idx = ItemIndex.from_texts(ids, texts, None, emb, FLAT, batch_size=4)
    np.testing.assert_array_equal(idx.vectors_of(ids), one)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_an_empty_index_reserves_its_codes_so_chunks_never_move_them(kind) -> None:
    import faiss

    x = np.random.default_rng(0).standard_normal((5000, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for n_items, moves in ((5000, False), (0, True)):  # n_items 0: nothing reserved, the codes grow
        idx = ItemIndex.empty(8, n_items, IndexConfig(kind=kind, device="cpu"))
        inner = faiss.downcast_index(idx._index.index)
        store = faiss.downcast_index(inner.storage) if kind == "hnsw" else inner
        where = set()
        for s in range(0, 5000, 1000):
            idx.add([f"i{j}" for j in range(s, s + 1000)], x[s : s + 1000])
            where.add(int(store.codes.data()))
        assert (len(where) > 1) is moves
        assert [h.item_id for h in idx.search(x[[7]], k=1)[0]] == ["i7"]


def test_an_empty_ivfpq_index_reserves_its_float16_rows(emb) -> None:
    ids, texts, cats = catalogue(10_000, seed=2)
    cfg = IndexConfig(kind="ivfpq", device="cpu", pq_m=4, ivf_nlist=8, train_max=10_000)
    vecs = emb.encode(texts)
    idx = ItemIndex.empty(8, 10_000, cfg, train=vecs[training_rows(10_000, 8, cfg)])
    tail = idx._exact._tail
    assert len(tail) == 10_000
    for s in range(0, 10_000, 3000):
        idx.add(ids[s : s + 3000], vecs[s : s + 3000], cats[s : s + 3000])
    assert idx._exact._tail is tail  # never regrown
    np.testing.assert_allclose(idx.vectors_of(ids[:5]), vecs[:5], atol=1e-3)


def test_ivfpq_rows_spilled_to_disk_are_renamed_into_the_saved_index(emb, tmp_path) -> None:
    from llmint.index import SPILL

    n = 10_500
    ids, texts, cats = catalogue(n, seed=4)
    cfg = IndexConfig(kind="ivfpq", device="cpu", pq_m=4, ivf_nlist=8, train_max=10_000, rerank=30)
    ram = ItemIndex.from_texts(ids, texts, cats, emb, cfg)
    disk = ItemIndex.from_texts(ids, texts, cats, emb, cfg, spill_dir=tmp_path / "ix")
    assert isinstance(disk._exact._tail, np.memmap) and (tmp_path / "ix" / SPILL).is_file()
    assert not isinstance(ram._exact._tail, np.memmap)
    np.testing.assert_array_equal(disk.vectors_of(ids), ram.vectors_of(ids))
    for twin in (copy.deepcopy(disk), pickle.loads(pickle.dumps(disk))):  # copies hold the rows in RAM
        assert type(twin._exact._tail) is np.ndarray
        np.testing.assert_array_equal(twin.vectors_of(ids[:50]), ram.vectors_of(ids[:50]))
    disk.save(tmp_path / "ix")
    assert not (tmp_path / "ix" / SPILL).exists()
    disk.save(tmp_path / "ix")  # again: the map's file is already in place
    ram.save(tmp_path / "ram")
    a, b = ItemIndex.load(tmp_path / "ix", emb), ItemIndex.load(tmp_path / "ram", emb)
    assert (tmp_path / "ix" / "vectors.f16.npy").read_bytes() == (tmp_path / "ram" / "vectors.f16.npy").read_bytes()
    q = emb.encode(["printer ink", "desk chair"])
    assert [[h.item_id for h in r] for r in a.search(q, k=10)] == [[h.item_id for h in r] for r in b.search(q, k=10)]
    disk.add(["new"], emb.encode(["stapler"]), ["C9"])  # beyond the reserved rows: they move to RAM
    assert disk.vectors_of(["new"]).shape == (1, 8)
    disk.save(tmp_path / "ix")
    assert len(ItemIndex.load(tmp_path / "ix", emb)) == n + 1


def test_the_catalogue_grows_its_label_arrays_by_doubling_not_per_chunk() -> None:
    from llmint.index_labels import Catalogue

    cat = Catalogue()
    buffers = []  # kept alive, so no two distinct buffers share an id
    for s in range(0, 5000, 10):
        cat.append([f"i{j}" for j in range(s, s + 10)], ["A > x" if j % 2 else None for j in range(s, s + 10)])
        buffers.append(cat._alive)
    assert len({id(b) for b in buffers}) <= 10  # 500 chunks, about log2(500) copies
    assert cat.alive.shape == cat.cat_code.shape == (5000,) and cat.alive.all()
    dropped = cat.drop(["i3", "i4"])
    assert dropped.tolist() == [3, 4] and not cat.alive[3] and len(cat) == 4998
    assert cat.categories_of(["i5", "i6"]) == ["A > x", None]
    assert cat.candidates("A > x").tolist() == [j for j in range(1, 5000, 2) if j != 3]
