"""A build that stops goes on from its last checkpoint and gives the index of one that never stopped."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from llmint.index import SPILL, IndexConfig, ItemIndex, training_rows
from llmint.index_checkpoint import PARTIAL, Checkpoint

FLAT = IndexConfig(kind="flat", device="cpu")
IVFPQ = IndexConfig(kind="ivfpq", device="cpu", pq_m=4, ivf_nlist=16, train_max=10_000, nprobe=4, rerank=50)
WORDS = "cordless phone corded paper printer ink pen pencil stapler desk chair office".split()
N, BATCH = 2000, 2  # flat: windows of 2 x 256 = 512 texts, four of them
N_PQ, BATCH_PQ = 10_500, 16  # IVF-PQ trains on 10,000 of them: windows of 4,096, three of them


def catalogue(n: int = N, seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=int(k))) for k in rng.integers(1, 7, size=n)]
    return [f"i{j}" for j in range(n)], texts, [f"C{j % 5} > s{j % 3}" for j in range(n)]


def dies_in_call(emb, k: int) -> list[int]:
    """Make `emb.encode` raise on its k-th call (1-based); return the sizes of the calls made."""
    sizes: list[int] = []
    encode = emb.encode

    def spy(texts, *a, **kw):
        sizes.append(len(texts))
        if len(sizes) == k:
            raise RuntimeError("the machine went away")
        return encode(texts, *a, **kw)

    emb.encode = spy
    return sizes


def build(emb, folder: Path, cfg: IndexConfig, every_s: float = 0.0, version: str = "v1") -> ItemIndex:
    n, batch = (N_PQ, BATCH_PQ) if cfg.kind == "ivfpq" else (N, BATCH)
    ids, texts, cats = catalogue(n)
    return ItemIndex.from_texts(ids, texts, cats, emb, cfg, batch_size=batch, catalogue_version=version,
                                spill_dir=folder, checkpoint=Checkpoint(folder, every_s=every_s))


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != "meta.json"}


@pytest.mark.parametrize(("cfg", "dies", "saved"), [(FLAT, 3, 1024), (IVFPQ, 3, 4096), (IVFPQ, 2, 0)],
                         ids=["flat", "ivfpq", "ivfpq-after-training"])
def test_a_build_that_dies_goes_on_to_the_same_index(emb, cfg, dies, saved, tmp_path) -> None:
    """flat: calls 1, 2 embed windows 1, 2, call 3 dies. ivfpq: call 1 embeds the training sample
    (saved at once: not embedded again), call 2 window 1's other rows, call 3 window 2's."""
    n = N_PQ if cfg.kind == "ivfpq" else N
    straight = build(emb, tmp_path / "a", cfg)
    straight.save(tmp_path / "a")

    dies_in_call(emb, dies)
    with pytest.raises(RuntimeError, match="went away"):
        build(emb, tmp_path / "b", cfg)
    state = json.loads((tmp_path / "b" / PARTIAL / "state.json").read_text())
    assert state["rows_done"] == saved  # the windows before the one that died
    emb.encode = type(emb).encode.__get__(emb)  # the machine is back
    again = dies_in_call(emb, 0)
    resumed = build(emb, tmp_path / "b", cfg)
    n_sample = len(training_rows(n, 8, cfg)) if cfg.kind == "ivfpq" else 0
    assert sum(again) == n - saved - int((training_rows(n, 8, cfg) >= saved).sum()) if n_sample else n - saved
    resumed.save(tmp_path / "b")
    Checkpoint(tmp_path / "b").clear()
    assert not (tmp_path / "b" / PARTIAL).exists()
    assert files(tmp_path / "b") == files(tmp_path / "a")  # index.faiss, item files, float16 rows: byte for byte
    assert resumed.item_ids == straight.item_ids and len(resumed) == n
    q = straight.vectors_of(["i5", "i1500"])
    assert resumed.search(q, 10) == straight.search(q, 10)
    assert resumed.search(q, 10, "C2") == straight.search(q, 10, "C2")


@pytest.mark.parametrize("change", ["catalogue_version", "config"])
def test_a_checkpoint_of_another_build_is_not_resumed(emb, tmp_path, caplog, change) -> None:
    from dataclasses import replace

    dies_in_call(emb, 3)
    with pytest.raises(RuntimeError):
        build(emb, tmp_path, FLAT)
    assert Checkpoint(tmp_path).resumable()
    emb.encode = type(emb).encode.__get__(emb)
    sizes = dies_in_call(emb, 0)
    with caplog.at_level(logging.WARNING, logger="llmint.index_checkpoint"):
        if change == "catalogue_version":  # the catalogue changed since
            idx = build(emb, tmp_path, FLAT, version="v2")
        else:  # so did the index's options
            idx = build(emb, tmp_path, replace(FLAT, exact_filter_max=7))
    assert f"of another build ({change} differ)" in caplog.text
    assert sum(sizes) == N and len(idx) == N  # everything embedded again


def test_no_checkpoint_before_its_time_and_none_at_the_end(emb, tmp_path) -> None:
    ck = Checkpoint(tmp_path, every_s=3600)
    ids, texts, cats = catalogue()
    ItemIndex.from_texts(ids, texts, cats, emb, FLAT, batch_size=BATCH, checkpoint=ck)
    assert ck.saves == 0 and not ck.resumable()


def test_index_build_keeps_a_failed_builds_rows_and_goes_on(tmp_path, monkeypatch, caplog) -> None:
    """The command line: a build that dies after a checkpoint keeps OUT/.partial and the spilled
    rows and says how to go on; the same command then finishes and clears them."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from test_embed import tiny_sentence_transformer

    from index import build as build_mod
    from llmint.embed import Embedder

    emb_dir = tmp_path / "tiny"
    tiny_sentence_transformer().save(str(emb_dir))
    ids, texts, cats = catalogue(N_PQ)
    path = tmp_path / "cat.parquet"
    pq.write_table(pa.Table.from_pylist([{"item_id": i, "title": t, "category_path": c.split(" > ")}
                                         for i, t, c in zip(ids, texts, cats, strict=True)]), path)
    out = tmp_path / "ix"
    argv = ["--items", str(path), "--out", str(out), "--embedder", str(emb_dir), "--batch-size", str(BATCH_PQ),
            "--kind", "ivfpq", "--pq-m", "4", "--ivf-nlist", "16", "--train-max", "10000",
            "--checkpoint-minutes", "1e-9"]
    encode, calls = Embedder.encode, []

    def flaky(self, texts, *a, **kw):
        calls.append(len(texts))
        if len(calls) == 3:  # the sample, window 1's other rows, then window 2's
            raise RuntimeError("out of memory")
        return encode(self, texts, *a, **kw)

    monkeypatch.setattr(Embedder, "encode", flaky)
    with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError):
        build_mod.cli(argv)
    assert "run the same command again" in caplog.text
    assert (out / SPILL).is_file() and (out / PARTIAL / "state.json").is_file()
    calls.clear()
    monkeypatch.setattr(Embedder, "encode", lambda self, t, *a, **kw: calls.append(len(t)) or encode(self, t, *a, **kw))
    build_mod.cli(argv)
    assert sorted(p.name for p in out.iterdir()) == [
        "build_config.json", "index.faiss", "items.ids", "items.npz", "meta.json", "vectors.f16.npy"]
    assert 0 < sum(calls) < N_PQ - 10_000  # the saved rows and the training sample were not embedded again
    idx = ItemIndex.load(out)
    assert idx.item_ids == ids and np.isfinite(idx.vectors_of(ids[-3:])).all()


def test_a_checkpoint_that_cannot_be_read_back_starts_the_build_afresh(emb, tmp_path, caplog) -> None:
    """A build killed while saving can leave index.faiss newer than state.json: never resumed from."""
    dies_in_call(emb, 3)
    with pytest.raises(RuntimeError):
        build(emb, tmp_path, FLAT)
    (tmp_path / PARTIAL / "index.faiss").write_bytes(b"half a file")
    emb.encode = type(emb).encode.__get__(emb)
    sizes = dies_in_call(emb, 0)
    with caplog.at_level(logging.WARNING, logger="llmint.index_checkpoint"):
        idx = build(emb, tmp_path, FLAT)
    assert "cannot go on from" in caplog.text and "starting the build afresh" in caplog.text
    assert sum(sizes) == N and len(idx) == N
