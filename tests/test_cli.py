"""The CLI: --help everywhere, and the main job end to end on the real embedded MovieLens data."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from llmint.cli import cli


@pytest.mark.parametrize("args", [["--help"], ["evaluate", "--help"], ["datasets", "--help"]])
def test_help(args: list[str]) -> None:
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0 and "Usage:" in r.output


def test_unknown_dataset_is_a_clean_error(tmp_path) -> None:
    r = CliRunner().invoke(cli, ["evaluate", "--dataset", "nope", "--out-dir", str(tmp_path)])
    assert r.exit_code != 0 and "Traceback" not in r.output and "nope" in r.output


@pytest.mark.real
def test_evaluate_movielens_end_to_end(tmp_path) -> None:
    r = CliRunner().invoke(cli, [
        "evaluate", "--dataset", "movielens", "--max-test-cases", "300", "--sasrec-epochs", "2",
        "--n-boot", "100", "--out-dir", str(tmp_path),
    ])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "movielens.json").read_text())
    cat = report["tasks"]["category"]
    assert cat["n_labels"] == 18 and cat["slices"]["test"]["n"] == 300
    systems = cat["slices"]["test"]["systems"]
    assert set(systems) == {"most_popular", "user_most_frequent", "last", "markov", "sasrec_ce"}
    for row in systems.values():
        assert 0 <= row["hit@1"]["low"] <= row["hit@1"]["mean"] <= row["hit@1"]["high"] <= 1
    assert report["tasks"]["item"]["n_labels"] == 1682
    assert (tmp_path / "movielens.png").stat().st_size > 1000
    assert "| markov |" in r.output
