"""IVF-PQ with exact re-ranking vs brute-force IndexFlatIP on seeded clustered vectors.

One index (20k x 64, PQ16, trained on 10k vectors: a few seconds) is built per module;
tests that change it work on a deep copy of it.
"""

from __future__ import annotations

import copy
import json
import pickle
from dataclasses import replace

import faiss
import numpy as np
import pytest

from llmint.index import IndexConfig, ItemIndex
from llmint.index_config import ivfpq_plan

N, D, N_CLUSTERS = 20_000, 64, 20
CFG = IndexConfig(kind="ivfpq", device="cpu", pq_m=16, train_max=10_000, exact_filter_max=1000)
SMALL, LARGE, LARGE_TREE = "C0 > s", "C1", "C0"  # ~100 items (exact), ~5k (IVF + selector)


def half(x: np.ndarray) -> np.ndarray:
    """`x` rounded to float16 and back: what the index keeps as exact vectors."""
    return x.astype(np.float16).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> dict:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((N_CLUSTERS, D))
    cluster = rng.integers(0, N_CLUSTERS, N + 200)
    x = centres[cluster] + 0.6 * rng.standard_normal((N + 200, D))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    small = rng.random(N + 200) < 0.02
    cats = [
        f"C{c % 4}" + (" > s" if s and c % 4 == 0 else "")
        for c, s in zip(cluster, small, strict=True)
    ]
    return {
        "ids": [f"i{j}" for j in range(N)],
        "vecs": x[:N],
        "cats": cats[:N],
        "cluster": cluster[:N],
        "queries": x[N:],  # 200 queries from the same clusters
        "q_cluster": cluster[N:],
    }


@pytest.fixture(scope="module")
def pristine(data) -> ItemIndex:
    """Never changed: the tests copy it (`built`, `idx`)."""
    return ItemIndex.build(data["ids"], data["vecs"], data["cats"], CFG)


@pytest.fixture(scope="module")
def built(pristine) -> ItemIndex:
    """Shared by the tests that only search."""
    return copy.deepcopy(pristine)


@pytest.fixture
def idx(pristine) -> ItemIndex:
    """A copy of its own for a test that changes it."""
    return copy.deepcopy(pristine)


def brute(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    return flat.search(queries, k)


def recall(got: list[list[str]], want: list[list[str]]) -> float:
    return float(np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got, want, strict=True)]))


def ids_of(hits) -> list[list[str]]:
    return [[h.item_id for h in row] for row in hits]


def inside(data, category: str) -> np.ndarray:
    return np.array(
        [j for j, c in enumerate(data["cats"]) if c == category or c.startswith(category + " > ")]
    )


def test_recall_at_10_with_and_without_rerank(data, idx) -> None:
    _, nn = brute(data["vecs"], data["queries"], 10)
    want = [[data["ids"][j] for j in row] for row in nn]
    with_rerank = recall(ids_of(idx.search(data["queries"], 10)), want)
    idx.cfg = replace(CFG, rerank=0)  # a search-time setting: same index, same queries
    without = recall(ids_of(idx.search(data["queries"], 10)), want)
    assert with_rerank >= 0.9, with_rerank
    assert without <= with_rerank - 0.2, (without, with_rerank)


def test_reranked_scores_are_exact_inner_products(data, built) -> None:
    q = data["queries"][:20]
    hits = built.search(q, 10)
    exact = half(data["vecs"]) @ q.T  # (N, 20)
    for j, row in enumerate(hits):
        assert len(row) == 10
        scores = [h.score for h in row]
        assert scores == sorted(scores, reverse=True)
        want = [exact[int(h.item_id[1:]), j] for h in row]
        np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-6)


def test_add_after_build_is_encoded_without_retraining(data, idx) -> None:
    centroids = faiss.vector_to_array(idx._index.pq.centroids).copy()
    new = data["queries"][:50]
    idx.add([f"new{j}" for j in range(50)], new, ["C3"] * 50)
    assert len(idx) == N + 50
    np.testing.assert_array_equal(faiss.vector_to_array(idx._index.pq.centroids), centroids)
    top = idx.search(new, 1)
    assert [row[0].item_id for row in top] == [f"new{j}" for j in range(50)]
    assert [row[0].item_id for row in idx.search(new, 1, category="C3")] == [
        f"new{j}" for j in range(50)
    ]
    np.testing.assert_array_equal(idx.vectors_of(["new7"]), half(new[7:8]))
    with pytest.raises(ValueError, match="overflow float16"):
        idx.add(["huge"], np.full((1, D), 1e5, dtype=np.float32))
    assert "huge" not in idx and len(idx) == N + 50


def test_removed_items_never_come_back(data, idx) -> None:
    q = data["queries"][:50]
    _, nn = brute(data["vecs"], q, 20)
    gone = sorted({data["ids"][j] for j in nn.ravel()})  # every query's 20 nearest items
    idx.remove(gone)
    assert len(idx) == N - len(gone) and idx.n_tombstones == 0 and gone[0] not in idx
    for category in (None, SMALL, LARGE, LARGE_TREE):
        got = {h.item_id for row in idx.search(q, 50, category) for h in row}
        assert got and not got & set(gone), category
    own = data["vecs"][[int(i[1:]) for i in gone[:20]]]
    assert not {h.item_id for row in idx.search(own, 10) for h in row} & set(gone)


def test_update_moves_the_item(data, idx) -> None:
    j = int(np.flatnonzero(np.array(data["cats"]) == "C2")[0])
    new = -data["vecs"][j : j + 1]
    idx.update([data["ids"][j]], new, ["C1"])
    top = idx.search(new, 5)[0]
    assert top[0].item_id == data["ids"][j]
    assert [h.item_id for h in top].count(data["ids"][j]) == 1
    assert idx.search(new, 1, category=LARGE)[0][0].item_id == data["ids"][j]
    old = idx.search(data["vecs"][j : j + 1], 20, category="C2")[0]
    assert data["ids"][j] not in {h.item_id for h in old}
    np.testing.assert_array_equal(idx.vectors_of([data["ids"][j]]), half(new))


@pytest.mark.parametrize("category", [SMALL, LARGE, LARGE_TREE])
def test_category_search_stays_in_the_category(data, built, category) -> None:
    members = inside(data, category)
    assert (len(members) <= CFG.exact_filter_max) == (category == SMALL)  # both paths run
    near = np.isin(data["q_cluster"] % 4, [int(category[1])])  # queries from its clusters
    q = data["queries"][near]
    want_scores, nn = brute(half(data["vecs"][members]), q, 10)
    want = [[data["ids"][members[j]] for j in row] for row in nn]
    hits = built.search(q, 10, category=category)
    allowed = {data["ids"][j] for j in members}
    assert all(h.item_id in allowed for row in hits for h in row)
    if category == SMALL:  # exact over the category's float16 vectors
        assert ids_of(hits) == want
        np.testing.assert_allclose(
            [[h.score for h in row] for row in hits], want_scores, rtol=1e-5, atol=1e-6
        )
    else:  # IVF with the category's selector and a raised nprobe, re-ranked
        assert recall(ids_of(hits), want) >= 0.9


def test_vectors_of_are_the_float16_vectors_not_pq_codes(data, built) -> None:
    ids = data["ids"][:100]
    got = built.vectors_of(ids)
    assert got.dtype == np.float32 and got.shape == (100, D)
    np.testing.assert_array_equal(got, half(data["vecs"][:100]))
    assert np.abs(got - data["vecs"][:100]).max() < 1e-3  # PQ16 codes are far coarser


def test_save_load_round_trip_memory_maps_the_vectors(data, idx, tmp_path) -> None:
    idx.remove(data["ids"][:10])
    queries = data["queries"][:50]
    before = [idx.search(queries, 10, c) for c in (None, SMALL, LARGE)]
    idx.save(tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["kind"] == "ivfpq" and meta["n_items"] == N - 10
    assert (meta["config"]["pq_m"], meta["config"]["rerank"]) == (16, 100)
    stored = np.load(tmp_path / "vectors.f16.npy")
    assert stored.dtype == np.float16 and stored.shape == (N, D)

    back = ItemIndex.load(tmp_path)
    assert back._exact.memory_mapped
    assert (back.kind, len(back), back.cfg) == ("ivfpq", N - 10, idx.cfg)
    assert [back.search(queries, 10, c) for c in (None, SMALL, LARGE)] == before
    np.testing.assert_array_equal(back.vectors_of(data["ids"][10:20]), idx.vectors_of(data["ids"][10:20]))
    assert data["ids"][0] not in back

    back.add(["new"], -queries[:1], ["C1"])  # appended beside the memory map
    back.save(tmp_path)  # over the file it maps: written aside, then swapped in
    again = ItemIndex.load(tmp_path)
    assert again.search(-queries[:1], 1)[0][0].item_id == "new"
    assert again.search(queries, 10) == before[0]


@pytest.mark.parametrize(
    "clone", [copy.deepcopy, lambda i: pickle.loads(pickle.dumps(i))], ids=["deepcopy", "pickle"]
)
def test_copy_after_a_category_search_searches_identically(data, idx, clone) -> None:
    """A large category is searched with a cached IDSelectorBitmap (a SWIG object that
    cannot be pickled): copying must still work and the copy must search like the original."""
    queries = data["queries"][:50]
    before = [idx.search(queries, 10, c) for c in (None, SMALL, LARGE)]
    twin = clone(idx)
    assert [twin.search(queries, 10, c) for c in (None, SMALL, LARGE)] == before
    assert [idx.search(queries, 10, c) for c in (None, SMALL, LARGE)] == before
    np.testing.assert_array_equal(twin.vectors_of(data["ids"][:20]), idx.vectors_of(data["ids"][:20]))


def test_a_copy_of_a_loaded_index_shares_the_memory_map_and_a_pickle_carries_the_rows(data, idx, tmp_path) -> None:
    """deepcopy must not read the mapped float16 rows into RAM (77 GB at 100M items);
    rows added to the copy stay in the copy; a pickle stands alone."""
    idx.save(tmp_path)
    back = ItemIndex.load(tmp_path)
    twin = copy.deepcopy(back)
    assert twin._exact.memory_mapped and np.shares_memory(twin._exact._base, back._exact._base)
    twin.add(["new"], -data["queries"][:1], ["C1"])
    assert "new" in twin and "new" not in back and len(back._exact) == N
    assert twin.search(-data["queries"][:1], 1)[0][0].item_id == "new"
    pickled = pickle.loads(pickle.dumps(back))
    assert not pickled._exact.memory_mapped
    np.testing.assert_array_equal(pickled.vectors_of(data["ids"][:20]), back.vectors_of(data["ids"][:20]))


def test_too_small_to_train_says_how_many_items_are_needed(data) -> None:
    with pytest.raises(ValueError, match="needs at least 9984 items .* got 5000"):
        ItemIndex.build(data["ids"][:5000], data["vecs"][:5000], cfg=CFG)
    cfg = replace(CFG, ivf_nlist=512, train_max=20_000)
    with pytest.raises(ValueError, match="needs at least 19968 items .*ivf_nlist=512.* got 15000"):
        ItemIndex.build(data["ids"][:15000], data["vecs"][:15000], cfg=cfg)


def test_pq_m_must_divide_the_dimension(data) -> None:
    with pytest.raises(ValueError, match=r"pq_m=12 does not divide the dimension 64; .*\[1, 2, 4"):
        ItemIndex.build(data["ids"], data["vecs"], cfg=replace(CFG, pq_m=12))


def test_nlist_plan() -> None:
    assert ivfpq_plan(20_000, 64, IndexConfig(kind="ivfpq", pq_m=16)) == (512, 20_000)
    assert ivfpq_plan(20_000, 64, CFG) == (256, 10_000)  # 39 training vectors per list
    big = IndexConfig(kind="ivfpq", train_max=2_600_000)
    assert ivfpq_plan(100_000_000, 384, big) == (32_768, 2_600_000)
    assert ivfpq_plan(50_000, 384, replace(big, ivf_nlist=100)) == (100, 50_000)


def test_auto_never_picks_ivfpq(data) -> None:
    cfg = IndexConfig(device="cpu", hnsw_threshold=100)
    assert ItemIndex.build(data["ids"][:200], data["vecs"][:200], cfg=cfg).kind == "hnsw"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ivf_nlist": -1}, "ivf_nlist=-1"),
        ({"pq_m": 0}, "pq_m=0"),
        ({"nprobe": 0}, "nprobe=0"),
        ({"rerank": -1}, "rerank=-1"),
        ({"train_seed": -1}, "train_seed=-1"),
        ({"train_max": 5000}, "train_max=5000; expected an int >= 9984"),
        ({"ivf_nlist": 10_000}, "train_max=200000; expected an int >= 390000"),
        ({"rerank": True}, "rerank=True"),
    ],
)
def test_config_rejects_bad_ivfpq_values(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        IndexConfig(kind="ivfpq", **kwargs)
