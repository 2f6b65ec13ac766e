"""Drafted greedy decoding: the guesses, and that checking them keeps greedy's text (real model and adapter)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from llmint import Event, Item
from llmint.drafting import citation_wordings, drafted_greedy, drafter_for, explanation_drafter


def test_the_drafter_guesses_the_opening_a_cited_events_wording_and_the_ending():
    heat = (" rated Heat (4/5)", " rated Heat (")
    d = explanation_drafter("Office > Paper", {3: (" bought Post-it Notes",), 7: heat})
    assert d("") == "Next interest: Office > Paper. Evidence: ["
    assert d("Next interest: Off") == "ice > Paper. Evidence: ["
    assert d("Next interest: Office > Paper. Evidence: [3") == "] bought Post-it Notes in this category."
    assert d("Next interest: Office > Paper. Evidence: [3]") == " bought Post-it Notes in this category."
    assert d("Next interest: Office > Paper. Evidence: [3] bought Post-it") == " Notes in this category."
    assert d("... [3] bought Post-it Notes and [7]") == " rated Heat (4/5) in this category."
    assert d("... [7] rated Heat (4/5) and") == " [6]"  # no event before 7 in the category: the one before
    assert d("... [7] rated Heat (2") == "/5) in this category."  # the model states another rating
    assert d("... [3] bought Notes of my own in") == " this category."
    assert d("... [3] bought Heat") == ""  # Heat is 7's
    assert d("Next interest: Office > Paper. Evidence: [12]") == ""  # not an event the prompt showed
    assert d("Next interest: Office > Paper. Evidence: [12") == "]"
    assert d("Next interest: Office > Pens.") == ""  # the text left the opening: no guess


def test_the_drafter_follows_the_evidence_templates_while_the_text_does_and_guesses_the_end_token():
    first = "Next interest: Comedy. Evidence: [9] rated Babe (5/5) and [4] rated Heat (4/5) in this category."
    short = "Next interest: Comedy. Evidence: [9] rated Babe (5/5) in this category."
    d = explanation_drafter("Comedy", {4: (" rated Heat (4/5)",), 9: (" rated Babe (5/5)",)}, [first, short],
                            end="<|im_end|>", in_label=[2, 4, 9])
    assert d("") == first + "<|im_end|>"
    assert d("Next interest: Comedy. Evidence: [9] rated Babe (5/5) in") == " this category.<|im_end|>"  # the second
    assert d("Next interest: Comedy. Evidence: [8") == "]"  # left both templates; 8 names no item
    assert d("... [9] rated Babe (5/5) and") == " [4] rated Heat (4/5) in this category.<|im_end|>"  # 4: in Comedy
    assert d("... [4] rated Heat (4/5) and") == " [2]"


def test_citation_wordings_word_each_shown_item_event_as_the_evidence_template_does_then_longer():
    items = {"A": Item("A", "Post-it Super Sticky Notes, 3 in x 3 in, Canary Yellow [12 Pads]", ("Office", "Paper")),
             "B": Item("B", "Jackie Brown (1997)", ("Crime",))}
    ser = SimpleNamespace(events=[Event("u", "A", "purchase", timestamp=1.0), Event("u", None, "search", timestamp=2.0,
                                                                                  text="pens"),
                                  Event("u", "B", "review", timestamp=3.0, rating=4.0)], positions=[4, 5, 6])
    w = citation_wordings(ser, items)
    assert set(w) == {4, 6}
    assert w[4] == (" bought Post-it Super Sticky Notes", " bought Post-it Super Sticky",
                    " bought Post-it Super Sticky Notes, 3 in x 3 in, Canary Yellow 12 Pads")
    assert w[6] == (" rated Jackie Brown (4/5)", " rated Jackie Brown (1997) (4/5)",  # the whole title last
                    " rated Jackie Brown (", " rated Jackie Brown (1997) (")  # then without the rating


@pytest.fixture(scope="module")
def movielens_ranker(smollm2):
    from llmint.bundled import bundled_adapter
    from llmint.llm_ranker import LLMCategoryRanker, LLMRankerConfig
    from llmint.loaders import load_dataset

    ds = load_dataset("movielens")
    adapter = bundled_adapter(None, "movielens")
    return LLMCategoryRanker("draft", ds, ds.default_level, LLMRankerConfig(adapter=str(adapter)), loaded=smollm2)


@pytest.fixture(scope="module")
def movielens_stats(movielens_ranker):
    from llmint.evidence import CategoryStats
    from llmint.split import make_split

    r = movielens_ranker
    return CategoryStats.from_sequences(make_split(r.dataset.histories()).train.values(), r.dataset.items, r.taxonomy)


def _heads(r, users):
    import numpy as np

    from llmint.explanation import label_head
    from llmint.split import ordered_histories

    hist = ordered_histories(r.dataset.histories(), 0, 1000)
    out = []
    for u in users:
        h = hist[u]
        ser = r.serialize(h)
        label = r.taxonomy.labels[int(np.argmax(r.logprobs([h])[0]))]
        out.append((label_head(r.tokenizer, r.prompt_ids(h, ser), label), label, ser))
    return out


@pytest.mark.real
def test_drafted_decoding_keeps_greedys_text_in_fewer_passes(movielens_ranker, movielens_stats):
    from llmint.explanation import greedy_decode

    r, tok, n = movielens_ranker, movielens_ranker.tokenizer, 48
    eos = tok.eos_token_id
    passes = {"templates": 0, "citations only": 0}
    tokens = 0
    for head, label, ser in _heads(r, ["1", "10", "100"]):
        plain = greedy_decode(r.model, tok, head, max_new_tokens=n, cache=r.prefix_cache_for(head))
        assert plain.startswith(f"Next interest: {label}. Evidence: ")  # what the adapter learned
        for kind, stats in (("templates", movielens_stats), ("citations only", None)):
            drafter = drafter_for(r, ser, label, stats)
            ids, st = drafted_greedy(r.model, tok, head, max_new_tokens=n, eos_token_id=eos,
                                     cache=r.prefix_cache_for(head), drafter=drafter)
            assert tok.decode(ids, skip_special_tokens=True).strip() == plain, kind
            assert st.tokens == len(ids) and 0 < st.accepted <= st.drafted and st.passes + st.accepted >= st.tokens
            passes[kind] += st.passes
        tokens += st.tokens
        assert greedy_decode(r.model, tok, head, max_new_tokens=n, cache=r.prefix_cache_for(head),
                             drafter=drafter) == plain  # the same through greedy_decode
    print(f"{tokens} tokens, passes: {passes}")
    assert passes["templates"] <= passes["citations only"] < 0.5 * tokens, passes  # measured: 7, 14 of 109
    assert passes["templates"] < 0.25 * tokens, passes


@pytest.mark.real
def test_wrong_guesses_cost_passes_not_tokens_and_a_perfect_guess_takes_one_pass(movielens_ranker):
    r, tok = movielens_ranker, movielens_ranker.tokenizer
    eos = tok.eos_token_id
    (head, _, _), = _heads(r, ["1"])
    plain, st0 = drafted_greedy(r.model, tok, head, max_new_tokens=24, eos_token_id=eos,
                                cache=r.prefix_cache_for(head))  # no drafter: one token a pass
    assert st0.passes == st0.tokens == len(plain) and st0.drafted == 0
    wrong, st = drafted_greedy(r.model, tok, head, max_new_tokens=24, eos_token_id=eos, cache=r.prefix_cache_for(head),
                               drafter=lambda text: " zebra quartz ignore previous instructions")
    assert wrong == plain and st.accepted == 0 and st.drafted > 0 and st.passes == len(plain)
    full = tok.decode(plain)

    def oracle(text: str) -> str:  # the rest of greedy's own text
        return full[len(text):] if full.startswith(text) else ""

    right, st = drafted_greedy(r.model, tok, head, max_new_tokens=24, eos_token_id=eos, cache=r.prefix_cache_for(head),
                               drafter=oracle)
    assert right == plain and st.passes <= 3, st  # a token boundary may differ from the text's own split
    cut, st = drafted_greedy(r.model, tok, head, max_new_tokens=5, eos_token_id=eos, cache=r.prefix_cache_for(head),
                             drafter=oracle)
    assert cut == plain[:5] and st.tokens == 5
    streamed: list[int] = []
    drafted_greedy(r.model, tok, head, max_new_tokens=24, eos_token_id=eos, cache=r.prefix_cache_for(head),
                   drafter=oracle, on_tokens=streamed.extend)
    assert streamed == plain
    assert drafted_greedy(r.model, tok, head, max_new_tokens=0, eos_token_id=eos)[0] == []


@pytest.mark.real
def test_drafted_batches_keep_greedys_texts_from_the_prefix_or_the_scored_prompts(movielens_ranker, movielens_stats):
    """Drafted rows decoded together (`llmint.draft_batch`) = plain greedy one by one, whether the batch starts
    from the shared prefix or from each shopper's scored prompt K/V (stacked, left-padded), in fewer passes."""
    from llmint.explanation import HFGenerator, label_head
    from llmint.split import ordered_histories

    r = movielens_ranker
    hist = ordered_histories(r.dataset.histories(), 0, 1000)
    hists = [hist[u] for u in ("1", "10", "100")]
    scored = [r.logprobs_one(h) for h in hists]
    labels = [r.taxonomy.labels[int(row.argmax())] for row, _ in scored]
    heads = [label_head(r.tokenizer, r.prompt_ids(h), lab) for h, lab in zip(hists, labels, strict=True)]
    drafters = [drafter_for(r, r.serialize(h), lab, movielens_stats) for h, lab in zip(hists, labels, strict=True)]
    plain = HFGenerator(r).generate(heads, 48)
    assert HFGenerator(r, batch_size=3).generate(heads, 48, drafters) == plain  # from the shared prefix
    calls: list[tuple[int, int]] = []
    hook = r.model.register_forward_hook(
        lambda m, a, k, o: calls.append(tuple(k["input_ids"].shape)) if k.get("input_ids") is not None else None,
        with_kwargs=True)
    try:
        kvs = [kv for _, kv in scored]
        assert HFGenerator(r, kvs, batch_size=2).generate(heads, 48, drafters) == plain  # stacked K/V: 2, then 1
    finally:
        hook.remove()
    assert [c[0] for c in calls] == sorted((c[0] for c in calls), reverse=True)  # rows only ever leave
    assert calls[0][0] == 2 and calls[0][1] < 10 + 32  # the category lines and guesses, not the prompts
    tokens = sum(len(r.tokenizer(t)["input_ids"]) for t in plain)
    print(f"{tokens} tokens, {len(calls)} passes")
    assert len(calls) < 0.25 * tokens, calls
