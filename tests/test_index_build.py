"""The index build command line (`python -m index.build`): IVF-PQ options and usage errors.

A generated catalogue of 10,000 items (the fewest IVF-PQ can train on is 9,984) is
embedded with the tiny in-process sentence transformer (dim 8); `load_dataset` is
patched to return it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from llmint.embed import load_embedder
from llmint.index import IndexConfig, ItemIndex
from llmint.schema import Dataset, Event, Item

N_ITEMS = 10_000
REPO = Path(__file__).resolve().parents[1]
IVFPQ_ARGS = {
    "--ivf-nlist": "16",
    "--pq-m": "4",
    "--nprobe": "8",
    "--rerank": "20",
    "--train-max": "9984",
    "--train-seed": "3",
}
IVFPQ_WANT = {"ivf_nlist": 16, "pq_m": 4, "nprobe": 8, "rerank": 20, "train_max": 9984, "train_seed": 3}


def catalogue(n: int) -> Dataset:
    """`n` items titled with 1-4 seeded random words of the tiny embedder's vocabulary."""
    from test_embed import WORDS

    rng = np.random.default_rng(0)
    items = {}
    for j in range(n):
        words = rng.choice(WORDS, size=int(rng.integers(1, 5)))
        cat = ("Office", "Phones") if j % 3 else ("Furniture",)
        items[f"p{j}"] = Item(f"p{j}", " ".join(words), cat)
    events = [Event("u", "p1", "review", order=0, rating=5, text="great phone")]
    return Dataset("gen", items, events, clock="order")


@pytest.fixture(scope="module")
def embedder_dir(tmp_path_factory) -> Path:
    from test_embed import tiny_sentence_transformer

    folder = tmp_path_factory.mktemp("emb") / "tiny-st"
    tiny_sentence_transformer().save(str(folder))
    return folder


@pytest.fixture(scope="module")
def _gen_dataset() -> Dataset:
    return catalogue(N_ITEMS)


@pytest.fixture
def gen_dataset(_gen_dataset, monkeypatch) -> Dataset:
    """The generated catalogue, returned by `llmint.loaders.load_dataset` for any name."""
    import llmint.loaders

    ds = _gen_dataset
    monkeypatch.setattr(llmint.loaders, "load_dataset", lambda name: ds, raising=False)
    return ds


def argv(out: Path, embedder_dir: Path, *extra: str) -> list[str]:
    return ["--dataset", "gen", "--out", str(out), "--embedder", str(embedder_dir), *extra]


def test_cli_builds_ivfpq_with_the_given_parameters(gen_dataset, embedder_dir, tmp_path) -> None:
    from index import build

    extra = [a for kv in IVFPQ_ARGS.items() for a in kv]
    out = build.cli(argv(tmp_path / "ix", embedder_dir, "--kind", "ivfpq", *extra))
    assert out == tmp_path / "ix" and (out / "vectors.f16.npy").is_file()
    assert sorted(p.name for p in out.iterdir()) == [  # the spilled float16 rows renamed into place
        "build_config.json", "index.faiss", "items.ids", "items.npz", "meta.json", "vectors.f16.npy"]

    idx = ItemIndex.load(out, load_embedder(embedder_dir))
    assert (idx.kind, len(idx), idx.dim) == ("ivfpq", N_ITEMS, 8)
    assert {k: getattr(idx.cfg, k) for k in IVFPQ_WANT} == IVFPQ_WANT
    assert (idx._index.nlist, idx._index.pq.M, idx._index.pq.nbits) == (16, 4, 8)  # in faiss
    resolved = json.loads((out / "build_config.json").read_text())
    assert resolved["resolved_kind"] == "ivfpq" and resolved["n_items"] == N_ITEMS
    assert {k: resolved["index"][k] for k in IVFPQ_WANT} == IVFPQ_WANT

    hits = idx.search_text(["cordless phone"], 10)[0]
    assert len(hits) == 10 and len({h.item_id for h in hits}) == 10
    assert "cordless" in gen_dataset.items[hits[0].item_id].title
    in_cat = idx.search_text(["desk chair"], 5, category="Furniture")[0]
    assert len(in_cat) == 5
    assert all(gen_dataset.items[h.item_id].category_path == ("Furniture",) for h in in_cat)


def test_embed_dtype_and_device_reach_the_embedder_and_the_record(gen_dataset, embedder_dir, tmp_path) -> None:
    """--embed-dtype bfloat16 embeds with bfloat16 weights (float32 vectors); build_config.json says so."""
    from index import build

    a = build.cli(argv(tmp_path / "f32", embedder_dir, "--limit", "300", "--embed-device", "cpu"))
    b = build.cli(argv(tmp_path / "bf16", embedder_dir, "--limit", "300", "--embed-dtype", "bfloat16"))
    ra, rb = (json.loads((x / "build_config.json").read_text()) for x in (a, b))
    assert (ra["embedder_dtype"], ra["embedder_device"], ra["embed_device"]) == ("float32", "cpu", "cpu")
    assert (rb["embedder_dtype"], rb["embedder_device"], rb["embed_dtype"]) == ("bfloat16", "cpu", "bfloat16")
    va, vb = (ItemIndex.load(x, load_embedder(embedder_dir)) for x in (a, b))
    xa, xb = (v._index.reconstruct_n(0, 300) for v in (va, vb))
    assert xb.dtype == np.float32 and 0 < np.abs(xa - xb).max() < 2e-2  # rounded weights, float32 vectors


def test_ivfpq_options_default_to_the_index_config(gen_dataset, embedder_dir) -> None:
    from index import build

    args = build.make_parser().parse_args(argv(Path("unused"), embedder_dir, "--kind", "ivfpq"))
    cfg = build.config_from_args(args)
    assert cfg.index == IndexConfig(kind="ivfpq")


def test_search_time_options_reach_the_index_config(embedder_dir) -> None:
    from index import build

    extra = ["--filter-ef-max", "2048", "--filter-cache-mb", "64", "--single-query-threads", "0"]
    cfg = build.config_from_args(build.make_parser().parse_args(argv(Path("unused"), embedder_dir, *extra)))
    assert cfg.index == IndexConfig(filter_ef_max=2048, filter_cache_mb=64, single_query_threads=0)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--kind", "ivf"], "argument --kind: invalid choice: 'ivf'"),
        (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
        (["--filter-ef-max", "0"], "filter_ef_max=0; expected an int >= 1"),
        (["--single-query-threads", "-1"], "single_query_threads=-1"),
        (["--kind", "ivfpq", "--pq-m", "0"], "pq_m=0; expected an int >= 1"),
        (["--kind", "ivfpq", "--ivf-nlist", "10000"], "train_max=200000; expected an int >= 390000"),
        (["--kind", "ivfpq", "--train-max", "5000"], "train_max=5000; expected an int >= 9984"),
        (
            ["--kind", "hnsw", "--pq-m", "4", "--nprobe", "8"],
            r"--pq-m, --nprobe: only for --kind ivfpq \(got --kind hnsw\)",
        ),
        (["--pq-m", "4"], r"--pq-m: only for --kind ivfpq \(got --kind auto\)"),  # auto: never ivfpq
        (["--embed-dtype", "int8"], "argument --embed-dtype: invalid choice: 'int8'"),
        (["--embed-device", "tpu"], r"embed_device='tpu'; expected one of \('auto', 'cpu', 'cuda'\) or cuda:N"),
        (
            ["--kind", "ivfpq", "--pq-m", "3"],
            r"pq_m=3 does not divide the dimension 8; choose one of \[1, 2, 4, 8\]",
        ),
        (["--kind", "ivfpq", "--pq-m", "4", "--limit", "500"], "needs at least 9984 items .* got 500"),
    ],
)
def test_invalid_options_are_a_one_line_usage_error(
    gen_dataset, embedder_dir, tmp_path, monkeypatch, capsys, extra, match
) -> None:
    """Exit 2 with one `error:` line, before anything is encoded or written."""
    import llmint.embed
    from index import build

    def no_encoding(*args, **kwargs):
        raise AssertionError("encoded before the configuration was checked")

    monkeypatch.setattr(llmint.embed.Embedder, "encode", no_encoding)
    with pytest.raises(SystemExit) as exc:
        build.cli(argv(tmp_path / "ix", embedder_dir, *extra))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("python -m index.build: error: ")
    assert re.search(match, err[-1]), err[-1]
    assert not err[0].startswith("Traceback")
    assert not (tmp_path / "ix").exists()


def test_help_shows_every_index_option_with_its_config_default(capsys) -> None:
    from index import build

    with pytest.raises(SystemExit) as exc:
        build.make_parser().parse_args(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    defaults = IndexConfig()
    for name in build.INDEX_OPTIONS:
        assert name in {f.name for f in fields(IndexConfig)}
        assert f"--{name.replace('_', '-')} " in text
        assert f"(default: {getattr(defaults, name)})" in text
    assert "{auto,flat,hnsw,ivfpq}" in text
    for name in ("ivf_nlist", "pq_m", "nprobe", "rerank", "train_max", "train_seed"):
        assert name in build.INDEX_OPTIONS


def test_module_entry_point_exits_2_on_a_bad_option(tmp_path) -> None:
    """`python -m index.build` itself: a usage error, not a traceback (nothing is loaded)."""
    cmd = [sys.executable, "-m", "index.build", "--dataset", "x", "--out", str(tmp_path / "o")]
    cmd += ["--kind", "ivfpq", "--nprobe", "0"]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    want = "python -m index.build: error: nprobe=0; expected an int >= 1"
    assert run.stderr.strip().splitlines()[-1] == want
    assert not (tmp_path / "o").exists()


def test_a_failed_ivfpq_build_leaves_the_older_index_and_no_spilled_rows(
    gen_dataset, embedder_dir, tmp_path, monkeypatch
) -> None:
    from index import build

    extra = [a for kv in IVFPQ_ARGS.items() for a in kv]
    out = build.cli(argv(tmp_path / "ix", embedder_dir, "--kind", "ivfpq", *extra))
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(self, folder):
        assert (Path(folder) / "vectors.f16.npy.building").is_file()  # the rows were on disk
        raise OSError("disk full")

    save = ItemIndex.save
    monkeypatch.setattr(ItemIndex, "save", broken)
    with pytest.raises(OSError, match="disk full"):  # no checkpoints: nothing kept to go on from
        build.cli(argv(out, embedder_dir, "--kind", "ivfpq", *extra, "--checkpoint-minutes", "0"))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    with pytest.raises(OSError, match="disk full"):  # checkpoints: the older index stays whole beside them
        build.cli(argv(out, embedder_dir, "--kind", "ivfpq", *extra))
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name in before} == before
    assert sorted(set(p.name for p in out.iterdir()) - set(before)) == [".partial", "vectors.f16.npy.building"]
    monkeypatch.setattr(ItemIndex, "save", save)
    build.cli(argv(out, embedder_dir, "--kind", "ivfpq", *extra))  # goes on, then clears them
    assert sorted(p.name for p in out.iterdir()) == sorted(before)
