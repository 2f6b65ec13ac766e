"""`llmint analyze ...`: help everywhere, JSON and PNG files written, one-line errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from llmint.cli import cli


@pytest.mark.parametrize("args", [["analyze"], ["analyze", "shopper"], ["analyze", "migration"],
                                  ["analyze", "trends"], ["analyze", "churn"]])
def test_help(args: list[str]) -> None:
    res = CliRunner().invoke(cli, [*args, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.output
    if len(args) > 1:
        assert "--dataset" in res.output and "--out-dir" in res.output


@pytest.mark.real
def test_shopper_and_migration_on_movielens(tmp_path) -> None:
    r = CliRunner().invoke(cli, ["analyze", "shopper", "1", "--out-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    d = json.loads((tmp_path / "shopper_movielens_1.json").read_text())
    assert d["profile"]["n_events"] == 271  # user 1 rated 272 movies; one (item 267) has the genre "unknown"
    assert abs(sum(d["profile"]["short"].values()) - 1) < 1e-9 and d["profile"]["recent_n"] == 10
    assert d["mix"]["window"] == "month" and d["mix"]["windows"][0] == "1997-09"
    assert (tmp_path / "shopper_movielens_1_profile.png").stat().st_size > 1000
    r = CliRunner().invoke(cli, ["analyze", "migration", "--out-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "migration_movielens.json").read_text())
    # golden: the largest flow of MovieLens-100K at genre level (seed 0 tie shuffle)
    assert (m["top_flows"][0]["source"], m["top_flows"][0]["target"], m["top_flows"][0]["count"]) == (
        "Drama", "Action", 5688)
    assert m["n_transitions"] == 99047 and m["test_cases"] == 943
    assert m["rankers"]["markov"]["precision@10"] > m["rankers"]["markov"]["base_rate"]


@pytest.mark.real
def test_errors_are_one_line(tmp_path) -> None:
    r = CliRunner().invoke(cli, ["analyze", "shopper", "no-such-user", "--out-dir", str(tmp_path)])
    assert r.exit_code == 1 and "unknown shopper 'no-such-user'" in r.output
    r = CliRunner().invoke(cli, ["analyze", "churn", "--horizon", "2", "--out-dir", str(tmp_path)])
    assert r.exit_code == 2 and "horizon=2.0" in r.output
