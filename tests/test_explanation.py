"""Explanations on the real bundled SmolLM2: conditioned on the category, checked, fallback, counterfactual."""

from __future__ import annotations

import numpy as np
import pytest

from llmint.evidence import CategoryStats, check_faithfulness, label_of_event
from llmint.explanation import (
    Explanation,
    counterfactual,
    evaluate_explanations,
    explain_prediction,
    explain_predictions,
)
from llmint.llm_ranker import LLMCategoryRanker
from llmint.split import make_split

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def setup(smollm2, ds):
    split = make_split(ds.histories())
    r = LLMCategoryRanker("llm", ds, 2, loaded=smollm2)
    stats = CategoryStats.from_sequences(split.train.values(), ds.items, r.taxonomy)
    return r, split, stats


def test_served_explanation_always_passes_the_check(setup) -> None:
    r, split, stats = setup
    case = split.test[0]
    for label in r.taxonomy.labels[:2]:
        ex = explain_prediction(r, case.history, label, stats, max_new_tokens=24)
        assert ex.category == label and ex.shown_positions == tuple(range(1, len(case.history) + 1))
        assert ex.model_text  # the model's own text is kept for the audit trail
        if ex.source == "model":
            assert ex.model_verdict.ok and ex.text == ex.model_text
        else:
            assert ex.source == "evidence" and not ex.model_verdict.ok and ex.text != ex.model_text
            assert ex.text.startswith(f"Next interest: {label}.")
        assert ex.verdict.ok and check_faithfulness(ex.text, ex.shown_positions, label).ok
    with pytest.raises(ValueError, match="not a label"):
        explain_prediction(r, case.history, "Weapons > Guns", stats)


class _Fixed:
    """A generator that writes given texts (stands in for the model's wording, not for the model)."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts

    def generate(self, heads, max_new_tokens):
        return self.texts[: len(heads)]


def test_a_cited_event_of_another_category_is_not_served(setup) -> None:
    r, split, stats = setup
    h = list(next(c for c in split.test if len(c.history) >= 3).history)
    cats = [label_of_event(e, r.dataset.items, r.taxonomy) for e in h]
    label = cats[-1]
    k = next(i for i, c in enumerate(cats, start=1) if c is not None and c != label)
    j = len(h)  # the last event is in `label`
    wrong = f"Next interest: {label}. Evidence: [{k}] bought it in this category."
    right = f"Next interest: {label}. Evidence: [{j}] bought it in this category."
    bad, good = explain_predictions(r, [h, h], [label, label], stats, generator=_Fixed([wrong, right]))
    assert bad.source == "evidence" and bad.model_text == wrong and bad.verdict.ok
    assert bad.model_verdict.reasons == (f"cites [{k}] as in this category, but it is in {cats[k - 1]!r}",)
    assert good.source == "model" and good.text == right
    with pytest.raises(ValueError, match="1 serialised histories for 2 histories"):
        explain_predictions(r, [h, h], [label, label], stats, generator=_Fixed([wrong, right]), sers=[r.serialize(h)])


def test_generated_text_must_cite_an_event() -> None:
    assert check_faithfulness("The shopper likes Paper.", [1, 2], "Paper").ok
    v = check_faithfulness("The shopper likes Paper.", [1, 2], "Paper", require_citation=True)
    assert not v.ok and v.reasons == ("cites no event of the history",)
    assert check_faithfulness("Paper, see [2].", [1, 2], "Paper", require_citation=True).ok
    assert check_faithfulness("Paper.", [], "Paper", require_citation=True).ok  # nothing to cite


def _ex(label: str, cited: tuple[int, ...], shown: tuple[int, ...]) -> Explanation:
    v = check_faithfulness(f"{label} " + " ".join(f"[{p}]" for p in cited), shown, label)
    return Explanation(label, "", "model", v, "", v, shown)


def test_counterfactual_removes_the_cited_events(setup) -> None:
    r, split, _ = setup
    h = list(split.test[1].history)
    label = r.taxonomy.labels[0]
    shown = tuple(range(1, len(h) + 1))
    res = counterfactual(r, [h, h, h[:1]], [_ex(label, (len(h),), shown), _ex(label, (), shown),
                                         _ex(label, (1,), (1,))], n_boot=50)
    assert res["n"] == 1 and res["skipped"] == {"cites nothing": 1, "too few other events": 1}
    j = r.taxonomy.index(label)
    p = r.predict_events([h, h[:-1]])[:, j]
    assert res["mean_drop_cited"] == pytest.approx(float(p[0] - p[1]), abs=1e-6)
    assert res["share_cited_drop_larger"] in (0.0, 1.0)
    assert {"diff", "low", "high", "p_value"} <= set(res["difference"])


def test_evaluate_explanations_reports_rates_and_examples(setup) -> None:
    r, split, stats = setup
    res = evaluate_explanations(r, split.test, stats, n=3, n_boot=50, n_examples=2)
    assert res["n"] == 3 and 0.0 <= res["model_pass_rate"] <= 1.0
    assert res["served_pass_rate"] == 1.0
    assert len(res["examples"]) == 2
    ex = res["examples"][0]
    assert ex["history_shown"].startswith("History (llmint-history/")
    assert len(ex["top3"]) == 3 and sum(t["p"] for t in ex["top3"]) <= 1.0 + 1e-6
    assert np.isfinite(res["counterfactual"]["n"])
    # the default scores each shopper alone and continues its K/V, drafted; the same figures as the batch path
    plain = evaluate_explanations(r, split.test, stats, n=3, n_boot=50, n_examples=2, draft=False)
    assert [e["model_text"] for e in plain["examples"]] == [e["model_text"] for e in res["examples"]]
    for a, b in zip(plain["examples"], res["examples"], strict=True):
        assert [t["category"] for t in a["top3"]] == [t["category"] for t in b["top3"]]
        assert [t["p"] for t in a["top3"]] == pytest.approx([t["p"] for t in b["top3"]], abs=1e-3)
    assert plain["model_pass_rate"] == res["model_pass_rate"] and plain["counterfactual"] == res["counterfactual"]
    from llmint.explanation import HFGenerator  # 2 shoppers at a time: scored in one pass, explained together

    together = evaluate_explanations(r, split.test, stats, n=3, n_boot=50, n_examples=3,
                                     generator=HFGenerator(r, batch_size=2))
    assert [e["model_text"] for e in together["examples"][:2]] == [e["model_text"] for e in res["examples"]]
    assert together["model_pass_rate"] == res["model_pass_rate"] and together["n"] == 3


def test_generation_through_the_cached_prefix_gives_the_same_text(setup) -> None:
    from llmint.explanation import generate_text

    r, split, _ = setup
    for case in split.test[:2]:
        ids = r.prompt_ids(case.history)
        cache = r.prefix_cache_for(ids)
        assert cache is not None and cache.get_seq_length() == r._scorer.prefix_len
        label = r.taxonomy.labels[0]
        plain = generate_text(r.model, r.tokenizer, ids, label, max_new_tokens=20)
        cached = generate_text(r.model, r.tokenizer, ids, label, max_new_tokens=20, cache=cache)
        assert cached == plain and plain
    assert r.prefix_cache_for([1, 2, 3]) is None  # not this prompt's prefix: generate runs it all


def test_batched_generation_gives_the_one_at_a_time_texts(setup) -> None:
    """Heads of different lengths decoded together (left-padded after the shared prefix) = one by one."""
    from llmint.explanation import HFGenerator, label_head

    r, split, _ = setup
    hists = [c.history for c in split.test[:3]]
    heads = [label_head(r.tokenizer, r.prompt_ids(h), r.taxonomy.labels[i]) for i, h in enumerate(hists)]
    assert len({len(h) for h in heads}) > 1  # padding is exercised
    one = HFGenerator(r).generate(heads, 16)
    assert HFGenerator(r, batch_size=3).generate(heads, 16) == one
    assert HFGenerator(r, batch_size=2).generate(heads, 16) == one  # a full batch and a rest of one
    assert all(one)
    with pytest.raises(ValueError, match="batch_size=0"):
        HFGenerator(r, batch_size=0)


def test_explanation_continues_the_scored_prompts_kv(setup) -> None:
    """`logprobs_one` keeps the prompt's K/V; the explanation after it runs only the category line."""
    from llmint.explanation import HFGenerator, label_head

    r, split, stats = setup
    calls: list[int] = []
    hook = r.model.register_forward_hook(
        lambda m, a, k, o: calls.append(k["input_ids"].shape[1]) if k.get("input_ids") is not None else None,
        with_kwargs=True)
    try:
        for case in split.test[:2]:
            row, kv = r.logprobs_one(case.history)
            assert np.array_equal(row, r.logprobs([case.history])[0])
            label = r.taxonomy.labels[int(row.argmax())]
            head = label_head(r.tokenizer, r.prompt_ids(case.history), label)
            assert HFGenerator(r, (kv,)).cache_for(head).get_seq_length() == len(kv.ids)
            calls.clear()
            via_kv = explain_prediction(r, case.history, label, stats, max_new_tokens=20, prompt_kv=kv)
            kv_first = calls[0]
            calls.clear()
            plain = explain_prediction(r, case.history, label, stats, max_new_tokens=20)
            assert kv_first == len(head) - len(kv.ids) < 10  # the category line, not the prompt
            assert calls[0] == len(head) - r._scorer.prefix_len  # the plain one ran the prompt again
            assert via_kv.model_text == plain.model_text and via_kv.text == plain.text
    finally:
        hook.remove()
