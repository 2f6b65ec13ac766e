"""Batch scoring of a shopper table: one process and two (torchrun, gloo on CPU) give the same table;
a run that stopped resumes where it stopped, with any number of processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llmint.batch_score import ScoreConfig, default_segment_size, read_scores, run, scores_table
from llmint.coldstart import blend_prior
from llmint.errors import RunFolderError


def test_chunk_defaults_to_eight_batches_so_each_scoring_call_sorts_many_prompts_by_length() -> None:
    assert ScoreConfig(out_dir="x").chunk == 64
    assert ScoreConfig(out_dir="x", batch_size=64).chunk == 512
    assert ScoreConfig(out_dir="x", batch_size=64, chunk=100).chunk == 100


def test_blend_prior_weights():
    prior = np.array([0.25, 0.75])
    model = np.array([1.0, 0.0])
    p, w = blend_prior(None, 0, prior, cold_max=3, strength=3.0)
    assert p.tolist() == prior.tolist() and w == 1.0
    p, w = blend_prior(model, 3, prior, cold_max=3, strength=3.0)
    assert w == pytest.approx(0.5) and p == pytest.approx([0.625, 0.375])
    p, w = blend_prior(model, 4, prior, cold_max=3, strength=3.0)
    assert w == 0.0 and p.tolist() == model.tolist()


@pytest.mark.parametrize("kwargs, match", [
    ({"out_dir": ""}, "out_dir"),
    ({"out_dir": "x", "chunk": 0}, "chunk"),
    ({"out_dir": "x", "limit": 0}, "limit"),
    ({"out_dir": "x", "segment_size": 0}, "segment_size"),
    ({"out_dir": "x", "segment_size": True}, "segment_size"),
    ({"out_dir": "x", "device": "tpu"}, "device"),
    ({"out_dir": "x", "mode": "tree"}, "mode"),
    ({"out_dir": "x", "prep_workers": -1}, "prep_workers"),
])
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ScoreConfig(**kwargs)


def test_processes_are_dealt_round_robin_over_the_gpus():
    from llmint.batch_score import process_device

    assert [process_device("cuda", i, 1) for i in range(3)] == ["cuda:0"] * 3  # 3 prompt builders, 1 GPU
    assert [process_device("cuda", i, 2) for i in range(4)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert process_device("cpu", 5, 0) == "cpu"
    with pytest.raises(ValueError, match="no CUDA device"):
        process_device("cuda", 0, 0)


def test_docstring_examples_hold():
    import doctest

    import llmint.batch_score

    result = doctest.testmod(llmint.batch_score)
    assert result.attempted >= 2 and result.failed == 0


def test_segments_give_each_process_several_and_stay_bounded():
    assert default_segment_size(943, 1) == 236  # 4 segments for one process
    assert default_segment_size(4, 2) == 1 and default_segment_size(0, 2) == 1
    assert default_segment_size(100_000, 8) == 3125
    assert default_segment_size(10**8, 8) == 16384  # ~6,100 files for 100M shoppers


def test_scores_table_equals_the_per_shopper_rows_it_replaced():
    """Column-wise rows = the former per-shopper dicts: stable top-k (ties in label order), float32 probabilities."""
    import pandas as pd

    rng = np.random.default_rng(0)
    labels = [f"c{i}" for i in range(7)]
    p = rng.dirichlet(np.ones(7), size=6)
    p[2] = [0.25, 0.25, 0.1, 0.1, 0.1, 0.1, 0.1]  # ties: label order decides
    n_events, w = np.array([5, 0, 2, 9, 1, 3]), rng.random(6)
    got = scores_table([f"u{i}" for i in range(6)], n_events, p, w, labels, 3).to_pandas()
    want = []
    for i in range(6):
        top = np.argsort(-p[i], kind="stable")[:3]
        want.append({"user_id": f"u{i}", "n_events": int(n_events[i]), "top_category": labels[int(top[0])],
                     "top_probability": float(p[i, top[0]]), "top_k": [labels[int(j)] for j in top],
                     "top_k_probability": [float(p[i, j]) for j in top], "prior_weight": float(w[i]),
                     "probabilities": p[i].astype(np.float32).tolist()})
    want = pd.DataFrame(want)
    assert list(got.columns) == list(want.columns)
    for col in ("user_id", "n_events", "top_category", "top_probability", "prior_weight"):
        assert got[col].tolist() == want[col].tolist(), col
    for col in ("top_k", "top_k_probability", "probabilities"):
        assert [list(x) for x in got[col]] == want[col].tolist(), col
    assert got["top_k"][2].tolist() == ["c0", "c1", "c2"]
    assert got["probabilities"][0].dtype == np.float32
    assert scores_table([], np.zeros(0, int), np.zeros((0, 7)), np.zeros(0), labels, 3).num_rows == 0
    assert scores_table(["u"], np.ones(1, int), p[:1], w[:1], labels, 20).column("top_k")[0].as_py() == \
        [labels[int(j)] for j in np.argsort(-p[0], kind="stable")]  # top_k above the labels: all of them


def test_read_scores_refuses_an_unfinished_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        read_scores(tmp_path)


def test_cli_score_help():
    from click.testing import CliRunner

    from llmint.cli import cli

    r = CliRunner().invoke(cli, ["score", "--help"])
    assert r.exit_code == 0 and "torchrun" in r.output and "--limit" in r.output
    assert "--segment-size" in r.output and "--overwrite" in r.output and "resume" in r.output


@pytest.mark.real
def test_one_process_and_two_processes_write_the_same_table(tmp_path):
    from llmint.llm_ranker import LLMCategoryRanker, LLMRankerConfig
    from llmint.loaders import load_dataset
    from llmint.scoring import to_distribution
    from llmint.split import ordered_histories

    one = run(ScoreConfig(out_dir=str(tmp_path / "one"), dataset="movielens", limit=4, adapter="none",
                          progress=False))
    assert one["n_users"] == 4 and one["world_size"] == 1 and one["adapter"] is None
    a = read_scores(tmp_path / "one")
    assert len(a) == 4 and a["user_id"].is_unique
    probs = np.stack(a["probabilities"].to_numpy())
    assert probs.shape == (4, len(one["labels"])) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert set(a["top_category"]) <= set(one["labels"])
    assert all(row.top_k[0] == row.top_category for row in a.itertuples())

    # the same distribution as the ranker gives for the shopper's whole (ordered) history
    ds = load_dataset("movielens")
    ranker = LLMCategoryRanker("x", ds, ds.default_level, LLMRankerConfig())
    hist = ordered_histories(ds.histories(), 0, 500)
    want = to_distribution(ranker.logprobs([hist[u] for u in a["user_id"]]), 1.0)
    assert np.abs(want - probs).max() < 1e-4

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc_per_node", "2", "-m", "llmint.batch_score", "--dataset", "movielens",
           "--out", str(tmp_path / "two"), "--limit", "4", "--adapter", "none", "--no-progress",
           "--scorer-mode", "fused"]  # and the one-pass scorer: the same table within float noise
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["world_size"] == 2
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["distributed"].endswith("MULTI_CPU") and manifest["segment_size"] == 1  # 4 shoppers, 2 processes
    assert [r["n_scored"] for r in manifest["ranks"]] == [2, 2] and manifest["n_scored"] == 4
    assert [s["n"] for s in manifest["segments"]] == [1, 1, 1, 1]
    assert manifest["dtype"] == "float32" and manifest["config"]["mode"] == "fused"
    b = read_scores(tmp_path / "two")
    assert list(b["user_id"]) == list(a["user_id"])
    assert list(b["top_category"]) == list(a["top_category"])
    assert np.abs(np.stack(b["probabilities"].to_numpy()) - probs).max() < 1e-4

    # the two-process run, one segment lost, finished by one process: the segments do not depend on the world
    (tmp_path / "two" / "seg-000003.parquet").unlink()
    res = run(ScoreConfig(out_dir=str(tmp_path / "two"), dataset="movielens", limit=4, adapter="none",
                          mode="fused", progress=False))
    assert (res["world_size"], res["segment_size"], res["n_scored"], res["n_resumed"]) == (1, 1, 1, 3)
    c = read_scores(tmp_path / "two")
    assert list(c["user_id"]) == list(b["user_id"])
    assert np.abs(np.stack(c["probabilities"].to_numpy()) - np.stack(b["probabilities"].to_numpy())).max() < 1e-4


@pytest.mark.real
def test_a_stopped_run_resumes_and_a_folder_of_another_run_is_refused(tmp_path):
    out = tmp_path / "scores"
    cfg = ScoreConfig(out_dir=str(out), dataset="movielens", limit=6, segment_size=2, progress=False)
    first = run(cfg)
    assert (first["n_scored"], first["n_resumed"], len(first["segments"])) == (6, 0, 3)
    full = read_scores(out)
    run_record = json.loads((out / "run.json").read_text())
    assert run_record["segment_size"] == 2 and run_record["n_users"] == 6 and run_record["adapter_sha256"]

    # what a killed job leaves: a segment missing, one cut short, a half-written temporary file, no manifest
    (out / "seg-000001.parquet").unlink()
    (out / "seg-000002.parquet").write_bytes((out / "seg-000002.parquet").read_bytes()[:100])
    (out / ".seg-000001.parquet.123.tmp").write_bytes(b"PAR1")
    (out / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError):
        read_scores(out)
    said: list[str] = []
    again = run(ScoreConfig(out_dir=str(out), dataset="movielens", limit=6, progress=False, prep_workers=2),
                said.append)  # prompts built by two worker processes this time: the same scores
    assert (again["n_scored"], again["n_resumed"], again["segment_size"]) == (4, 2, 2)  # size from run.json
    assert any("1 of 3 segment(s) already written" in m for m in said)
    assert not list(out.glob(".*.tmp"))
    resumed = read_scores(out)
    assert resumed.drop(columns=["probabilities", "top_k", "top_k_probability"]).equals(
        full.drop(columns=["probabilities", "top_k", "top_k_probability"]))
    assert np.abs(np.stack(resumed["probabilities"]) - np.stack(full["probabilities"])).max() < 1e-6

    # a finished run run again scores nothing
    assert run(cfg)["n_scored"] == 0

    # other settings into the same folder: refused, naming what differs; nothing is deleted
    with pytest.raises(RunFolderError, match=r"mode: \"trie\" -> \"fused\".*--overwrite"):
        run(ScoreConfig(out_dir=str(out), dataset="movielens", limit=6, mode="fused", progress=False))
    with pytest.raises(RunFolderError, match="segment_size: 2 -> 3"):
        run(ScoreConfig(out_dir=str(out), dataset="movielens", limit=6, segment_size=3, progress=False))
    assert len(list(out.glob("seg-*.parquet"))) == 3 and (out / "manifest.json").is_file()

    # overwrite starts afresh: every shopper scored again, the old segments gone
    fresh = run(ScoreConfig(out_dir=str(out), dataset="movielens", limit=6, segment_size=4, overwrite=True,
                            progress=False))
    assert (fresh["n_scored"], fresh["n_resumed"], [s["n"] for s in fresh["segments"]]) == (6, 0, [4, 2])
    assert sorted(f.name for f in out.glob("seg-*.parquet")) == ["seg-000000.parquet", "seg-000001.parquet"]
    assert read_scores(out)["user_id"].tolist() == full["user_id"].tolist()


def test_an_unreadable_run_record_is_a_clear_error(tmp_path):
    from llmint.batch_score import _read_run

    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(RunFolderError, match="unreadable.*--overwrite"):
        _read_run(tmp_path)
    (tmp_path / "run.json").write_text("[1]")
    with pytest.raises(RunFolderError, match="not a JSON object"):
        _read_run(tmp_path)
    assert _read_run(tmp_path / "nothing") is None
