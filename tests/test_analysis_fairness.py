"""Fairness slices: group masks, gaps, and the fairness section of the evaluation report."""

from __future__ import annotations

import json

import pytest
from conftest import shop

from llmint.analysis import FairnessConfig, gaps, group_masks
from llmint.analysis.fairness import head_tokens
from llmint.evaluate import EvalConfig, evaluate
from llmint.report import render_markdown, to_jsonable


def test_head_tokens_cover_the_share() -> None:
    assert head_tokens([[0, 0, 0, 1, 2]], 3, 0.5).tolist() == [True, False, False]
    assert head_tokens([[0, 0, 1, 1, 2]], 3, 0.5).tolist() == [True, True, False]  # 0.4 < 0.5 -> add one
    assert head_tokens([], 2, 0.5).tolist() == [True, False]


def test_group_masks_exact() -> None:
    users = ["a", "b", "c", "d", "e"]
    attrs = {"a": {"gender": "F", "age_bucket": "18-24"}, "b": {"gender": "M"}, "c": {"gender": "F"}}
    dims, info = group_masks([0, 3, 4, 6, 30], [0, 1, 2, 0, 0], [[0, 0, 0, 1, 2]], 3, users, attrs,
                             FairnessConfig(cold_max=3))
    assert info["heavy_min"] == 7  # non-cold lengths 4, 6, 30: heavy = longer than their median 6
    assert {g: m.tolist() for g, m in dims["activity"].items()} == {
        "cold": [True, True, False, False, False], "light": [False, False, True, True, False],
        "heavy": [False, False, False, False, True]}
    assert dims["popularity"]["head"].tolist() == [True, False, False, True, True]
    assert {g: m.tolist() for g, m in dims["gender"].items()} == {
        "F": [True, False, True, False, False], "M": [False, True, False, False, False]}
    assert list(dims["age_bucket"]) == ["18-24"]
    with pytest.raises(ValueError, match="head_share"):
        FairnessConfig(head_share=1.0)


def test_age_groups_in_natural_order() -> None:
    ages = ["56+", "18-24", "<18", "25-34"]
    dims, _ = group_masks([5] * 4, [0] * 4, [[0]], 1, ["a", "b", "c", "d"],
                          {u: {"age_bucket": a} for u, a in zip("abcd", ages, strict=True)})
    assert list(dims["age_bucket"]) == ["<18", "18-24", "25-34", "56+"]


def test_gaps_best_minus_worst_and_lower_is_better() -> None:
    groups = {
        "a": {"systems": {"s": {"hit@1": {"mean": 0.5}, "ece": {"mean": 0.1}}}},
        "b": {"systems": {"s": {"hit@1": {"mean": 0.2}, "ece": {"mean": 0.3}}}},
        "c": {"systems": {"s": {"hit@1": {"mean": None}}}},
    }
    g = gaps(groups, ["hit@1", "ece"])
    assert g["s"]["hit@1"] == {"best": "a", "best_mean": 0.5, "worst": "b", "worst_mean": 0.2, "gap": 0.3}
    assert g["s"]["ece"]["best"] == "a" and g["s"]["ece"]["gap"] == pytest.approx(0.2)


def test_evaluate_report_has_fairness_slices() -> None:
    ds = shop(n_users=40, length=8)
    ds.users = {f"u{i}": {"gender": "F" if i % 2 else "M", "age_bucket": "18-24"} for i in range(40)}
    cfg = EvalConfig(dataset="shop", tasks=("category",), systems=("most_popular", "markov"), n_boot=20,
                     n_boot_slow=20)
    rep = evaluate(cfg, dataset=ds)
    sec = rep["tasks"]["category"]
    assert set(sec["slices"]) == {"test"}  # the old slices are unchanged
    fair = sec["fairness"]
    assert set(fair["dimensions"]) == {"activity", "popularity", "gender", "age_bucket"}
    gender = fair["dimensions"]["gender"]
    assert {g: s["n"] for g, s in gender["groups"].items()} == {"F": 20, "M": 20}
    # the group means are the means of the per-case metric over the group's cases
    markov = {g: s["systems"]["markov"]["hit@1"]["mean"] for g, s in gender["groups"].items()}
    assert markov == {"F": 1.0, "M": 1.0}  # the cycle is learnt perfectly
    popularity = fair["dimensions"]["popularity"]["groups"]
    pop = {g: s["systems"]["most_popular"]["hit@1"]["mean"] for g, s in popularity.items()}
    assert pop["tail"] == 0.0 and pop["head"] > 0  # most popular never hits a tail target
    assert fair["dimensions"]["popularity"]["gaps"]["most_popular"]["hit@1"]["gap"] == pytest.approx(pop["head"])
    assert "age_bucket" in fair["dimensions"] and fair["dimensions"]["age_bucket"]["gaps"] == {}  # one group
    md = render_markdown(to_jsonable(rep))
    assert "### fairness" in md and "#### by gender" in md and "| **gap** |" in md
    json.dumps(to_jsonable(rep), allow_nan=False)
    off = evaluate(EvalConfig(dataset="shop", tasks=("category",), systems=("markov",), n_boot=20, n_boot_slow=20,
                              fairness=False), dataset=ds)
    assert "fairness" not in off["tasks"]["category"]


def test_markdown_of_an_old_report_has_no_fairness_section() -> None:
    from llmint.report import _fairness

    assert _fairness({}) == []
    old = {"dataset": "x", "tasks": {"category": {"n_labels": 2, "slices": {"test": {"n": 1, "systems": {}}}}}}
    assert "fairness" not in render_markdown(old)


@pytest.mark.real
def test_movielens_users_have_demographics() -> None:
    from llmint.loaders import load_dataset

    ds = load_dataset("movielens")
    assert len(ds.users) == 943
    assert {u["gender"] for u in ds.users.values()} == {"F", "M"}
    assert ds.users["1"]["age"] == "24" and ds.users["1"]["age_bucket"] == "18-24"
