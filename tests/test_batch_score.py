"""Batch scoring of a shopper table: one process and two (torchrun, gloo on CPU) give the same table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llmint.batch_score import ScoreConfig, read_scores, run
from llmint.coldstart import blend_prior


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
    ({"out_dir": "x", "device": "tpu"}, "device"),
    ({"out_dir": "x", "mode": "tree"}, "mode"),
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


def test_read_scores_refuses_an_unfinished_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        read_scores(tmp_path)


def test_cli_score_help():
    from click.testing import CliRunner

    from llmint.cli import cli

    r = CliRunner().invoke(cli, ["score", "--help"])
    assert r.exit_code == 0 and "torchrun" in r.output and "--limit" in r.output


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
    assert manifest["distributed"].endswith("MULTI_CPU") and [p["n"] for p in manifest["parts"]] == [2, 2]
    assert manifest["dtype"] == "float32" and manifest["config"]["mode"] == "fused"
    b = read_scores(tmp_path / "two")
    assert list(b["user_id"]) == list(a["user_id"])
    assert list(b["top_category"]) == list(a["top_category"])
    assert np.abs(np.stack(b["probabilities"].to_numpy()) - probs).max() < 1e-4
