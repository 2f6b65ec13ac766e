"""The report renderer: Markdown pinned line by line, strict JSON round trip, a real PNG."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from llmint.report import render_markdown, to_jsonable, write_report


def small_report() -> dict:
    return {
        "dataset": "office",
        "split": {"kind": "leave-last-out", "n_test": 4905, "n_valid": 4905},
        "seed": 0,
        "versions": {"python": "3.11.9", "git": "abc1234"},
        "created_utc": "2025-01-02T03:04:05Z",
        "tasks": {
            "category": {
                "level": 2,
                "n_labels": 43,
                "skipped": {"without a category": 3},
                "timings": {"markov": {"fit_s": 0.04, "score_s": 1.25}},
                "slices": {
                    "test": {
                        "n": 4905,
                        "systems": {
                            "most_popular": {
                                "ndcg@5": {"mean": 0.2, "low": 0.19, "high": 0.21},
                                "hit@1": {"mean": 0.1, "low": 0.09, "high": 0.11},
                                "ece": {"mean": 0.05, "low": 0.04, "high": 0.06},
                                "auc_ovr": {"mean": None, "low": None, "high": None},
                            },
                            "sasrec_ce": {
                                "hit@1": {"mean": 0.2171, "low": 0.199, "high": 0.2354},
                                "ndcg@5": {"mean": 0.2002, "low": 0.18, "high": 0.22},
                                "ece": {"mean": 0.12, "low": 0.1, "high": 0.14},
                                "auc_ovr": {"mean": 0.8, "low": 0.78, "high": 0.82},
                            },
                        },
                        "paired": {
                            "sasrec_ce - most_popular": {
                                "hit@1": {"diff": 0.1171, "low": 0.1, "high": 0.13, "p_value": 0.0}
                            }
                        },
                    }
                },
            },
            "item": {"not_run": "no items"},
        },
    }


EXPECTED_MD = """\
# Evaluation: office

- split: leave-last-out; n_test: 4905; n_valid: 4905
- seed: 0
- versions: git abc1234, python 3.11.9
- created (UTC): 2025-01-02T03:04:05Z

Cells are `mean [low, high]`: the value on all cases and its 95% percentile-bootstrap \
confidence interval over cases. The best value per column is in bold \
(lower is better for ece, nll, rank). Ranks treat tied scores as randomly ordered (expected value).

## Task: next category

43 labels, level 2; every case ranks all of them.

Not scored: 3 without a category.

### test (n = 4905)

| system | hit@1 | ndcg@5 |
|---|---:|---:|
| most_popular | 0.100 [0.090, 0.110] | **0.200 [0.190, 0.210]** |
| sasrec_ce | **0.217 [0.199, 0.235]** | **0.200 [0.180, 0.220]** |

| system | auc_ovr | ece |
|---|---:|---:|
| most_popular | n/a | **0.050 [0.040, 0.060]** |
| sasrec_ce | **0.800 [0.780, 0.820]** | 0.120 [0.100, 0.140] |

Paired differences on the same resampled cases; p is the two-sided share of resamples \
on the far side of zero (0.000: no resample reached zero).

| comparison | metric | difference [CI] | p |
|---|---|---:|---:|
| sasrec_ce - most_popular | hit@1 | +0.117 [+0.100, +0.130] | 0.000 |

Timings (s): markov fit 0.04, score 1.25.

## Task: next item

Not run: no items.
"""


def test_markdown_matches_expected_lines() -> None:
    # rank metrics in canonical order (hit before ndcg), the rest in CLASS_ORDER; ties in the
    # shown digits are all bold; ece is lower-is-better; a missing AUC shows as n/a
    got = render_markdown(small_report())
    assert got.splitlines() == EXPECTED_MD.splitlines()
    assert got == EXPECTED_MD


def test_markdown_is_pure_and_tolerates_nan() -> None:
    r = small_report()
    before = copy.deepcopy(r)
    assert render_markdown(r) == render_markdown(r)
    assert r == before
    r["tasks"]["category"]["slices"]["test"]["systems"]["sasrec_ce"]["hit@1"] = {
        "mean": float("nan"),
        "low": float("nan"),
        "high": float("nan"),
    }
    assert "| sasrec_ce | n/a |" in render_markdown(r)
    assert "| most_popular | **0.100 [0.090, 0.110]** |" in render_markdown(r)


def test_single_system_is_not_bold_and_pipes_are_escaped() -> None:
    r = {
        "dataset": "d",
        "tasks": {
            "item": {
                "n_labels": 5,
                "level": None,
                "slices": {
                    "test": {
                        "n": 3,
                        "systems": {"a|b": {"mrr": {"mean": 0.5, "low": 0.4, "high": 0.6}}},
                    }
                },
            }
        },
    }
    md = render_markdown(r)
    assert "| a\\|b | 0.500 [0.400, 0.600] |" in md
    assert "5 labels; every case ranks all of them." in md
    assert "- split: not recorded" in md


def test_json_round_trips(tmp_path) -> None:
    r = small_report()
    paths = write_report(r, tmp_path / "out", "office")
    assert set(paths) == {"json", "md", "png"}
    text = paths["json"].read_text()
    assert json.loads(text) == r
    assert text == json.dumps(r, indent=2, sort_keys=True) + "\n"
    assert paths["md"].read_text() == EXPECTED_MD


def test_json_is_strict_with_numpy_and_nan(tmp_path) -> None:
    r = small_report()
    sl = r["tasks"]["category"]["slices"]["test"]
    sl["n"] = np.int64(4905)
    sl["systems"]["sasrec_ce"]["hit@1"] = {
        "mean": np.float32(0.25),
        "low": np.float64(0.2),
        "high": 0.3,
    }
    sl["systems"]["most_popular"]["auc_ovr"] = {
        "mean": float("nan"),
        "low": float("inf"),
        "high": None,
    }
    r["config"] = {"tasks": ("category", "item")}
    paths = write_report(r, tmp_path, "x")
    back = json.loads(paths["json"].read_text())  # strict: json.dumps ran with allow_nan=False
    assert back == to_jsonable(r)
    assert back["tasks"]["category"]["slices"]["test"]["n"] == 4905
    assert (
        back["tasks"]["category"]["slices"]["test"]["systems"]["sasrec_ce"]["hit@1"]["mean"] == 0.25
    )
    assert back["tasks"]["category"]["slices"]["test"]["systems"]["most_popular"]["auc_ovr"] == {
        "mean": None,
        "low": None,
        "high": None,
    }
    assert back["config"]["tasks"] == ["category", "item"]


def test_png_is_written_without_touching_pyplot_state(tmp_path) -> None:
    import matplotlib

    backend = matplotlib.get_backend()
    paths = write_report(small_report(), tmp_path, "office")
    data = paths["png"].read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert matplotlib.get_backend() == backend


def test_png_of_a_report_without_slices(tmp_path) -> None:
    paths = write_report({"dataset": "d", "tasks": {"item": {"not_run": "x"}}}, tmp_path, "empty")
    assert paths["png"].stat().st_size > 0


def test_stem_must_be_a_file_name(tmp_path) -> None:
    with pytest.raises(ValueError, match="stem"):
        write_report(small_report(), tmp_path, "../escape")
