"""Category scoring: KV-cache reuse (trie, flat, fused) equals one forward per label; calibration.

Fast tier: a tiny random Llama and a WordLevel tokenizer built in-process.
Real tier: the bundled SmolLM2-135M through the GGUF -> safetensors cache.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from llmint.scoring import (  # noqa: E402
    CategoryScorer,
    fit_temperature,
    label_token_ids,
    naive_scores,
    temperature_nll,
    to_distribution,
)

WORDS = (
    "[PAD] [UNK] <eos> Office > Paper Pens A4 Toys Kitchen Knives & Supplies "
    "the user bought a pen and then some paper next is : 1. 2. 3."
).split()
LABELS = [
    "Office",  # a prefix of the next three
    "Office > Paper",
    "Office > Pens",
    "Office > Paper > A4",
    "Toys",
    "Kitchen > Knives",
    "Office & Supplies > Paper",
]
PROMPTS = [
    "the user bought a pen",
    "a",
    "1. the user bought a pen and then some paper 2. Toys 3. Kitchen next is :",
    "Toys Toys next is",
    "paper paper Office",
]


@pytest.fixture(scope="session")
def tiny_tok():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="<eos>"
    )


@pytest.fixture(scope="session")
def tiny_lm_once(tiny_tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,  # grouped-query attention, as in SmolLM2 and Qwen2.5
        intermediate_size=32,
        vocab_size=len(WORDS),
        max_position_embeddings=256,
        initializer_range=0.5,  # peaked distributions, so differences are visible
        eos_token_id=tiny_tok.eos_token_id,
        pad_token_id=tiny_tok.pad_token_id,
        bos_token_id=None,
    )
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture
def tiny_lm(tiny_lm_once):
    return copy.deepcopy(tiny_lm_once)


@pytest.fixture(scope="session")
def reference(tiny_lm_once, tiny_tok) -> np.ndarray:
    return naive_scores(tiny_lm_once, tiny_tok, PROMPTS, LABELS)


def test_label_ids_end_with_eos_and_keep_prefix(tiny_tok):
    ids = label_token_ids(tiny_tok, ["Office", "Office > Paper"])
    eos = tiny_tok.eos_token_id
    assert ids[0] == [WORDS.index("Office"), eos]
    assert ids[1] == [WORDS.index(w) for w in ("Office", ">", "Paper")] + [eos]


@pytest.mark.parametrize("mode", ["trie", "flat", "fused"])
@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_kv_reuse_equals_naive(tiny_lm, tiny_tok, reference, mode, batch_size):
    s = CategoryScorer(tiny_lm, tiny_tok, LABELS, mode=mode, batch_size=batch_size, label_chunk=3)
    got = s.score(PROMPTS)
    assert got.shape == (len(PROMPTS), len(LABELS))
    assert got.dtype == np.float64
    assert np.abs(got - reference).max() < 1e-4
    assert (got < 0).all()


PREFIXED = [
    "1. the user bought a pen",
    "1. the user bought a pen and then some paper 2. Toys 3. Kitchen next is :",
    "1. the user Toys Toys next is",
    "Toys next",  # does not start with the prefix: takes the full pass
    "1. the user",  # only the prefix: nothing after it, full pass
]


@pytest.mark.parametrize("mode", ["trie", "flat", "fused"])
@pytest.mark.parametrize("batch_size", [1, 3, 5])
def test_shared_prefix_cache_equals_naive(tiny_lm, tiny_tok, mode, batch_size):
    ref = naive_scores(tiny_lm, tiny_tok, PREFIXED, LABELS)
    s = CategoryScorer(tiny_lm, tiny_tok, LABELS, mode=mode, batch_size=batch_size, label_chunk=3)
    s.set_prefix("1. the user")
    assert s.prefix_len == 3
    got = s.score(PREFIXED)
    assert np.abs(got - ref).max() < 1e-4
    s.set_prefix(None)
    assert s.prefix_len == 0
    assert np.abs(s.score(PREFIXED) - ref).max() < 1e-4


def test_shared_prefix_cache_is_computed_once_and_reset(tiny_lm, tiny_tok):
    s = CategoryScorer(tiny_lm, tiny_tok, LABELS)
    calls = []
    hook = tiny_lm.register_forward_hook(
        lambda m, a, k, o: calls.append(k["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        s.set_prefix("1. the user")
        s.score(PREFIXED[:1])
        s.score(PREFIXED[:1])
    finally:
        hook.remove()
    # prefix once (3 tokens), then per call: the 3 own tokens and the label pass
    assert calls[0] == 3
    assert calls.count(3) == 3  # the prefix pass + two own-token passes of "bought a pen"
    assert s._prefix_kv is not None
    s.set_prefix("1. the user")  # setting it again drops the cached K/V (weights may have changed)
    assert s._prefix_kv is None


@pytest.mark.parametrize("mode", ["trie", "flat", "fused"])
@pytest.mark.parametrize("prefix", [None, "1. the user"])
def test_score_one_keeps_the_prompts_kv_for_generation(tiny_lm, tiny_tok, mode, prefix):
    s = CategoryScorer(tiny_lm, tiny_tok, LABELS, mode=mode, label_chunk=3, bucket=8)
    s.set_prefix(prefix)
    prompt = PREFIXED[1]
    row, kv = s.score_one(prompt)
    # the same pass as score() (fused: up to the bucket's padding, which score_one leaves out)
    assert np.abs(row - s.score([prompt])[0]).max() < (1e-5 if mode == "fused" else 0) + 1e-12
    (ids,) = s.prompt_ids([prompt])
    assert kv.ids == tuple(ids)
    # the kept K/V is the prompt's alone: the label pass did not leave its tokens in it
    assert all(k.shape[-2] == len(ids) and v.shape[-2] == len(ids) for k, v in kv.layers)
    head = ids + [WORDS.index("Toys"), WORDS.index("next")]
    assert kv.cache_for(ids) is None  # nothing after the prompt to run
    assert kv.cache_for(ids[:-1] + [WORDS.index("Toys")] * 3) is None  # not this prompt
    cache = kv.cache_for(head)
    assert cache.get_seq_length() == len(ids)
    x = torch.tensor([head])
    with torch.inference_mode():
        plain = tiny_lm.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=6,
                                 min_new_tokens=6, do_sample=False, pad_token_id=tiny_tok.pad_token_id)
        cached = tiny_lm.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=6,
                                  min_new_tokens=6, do_sample=False, pad_token_id=tiny_tok.pad_token_id,
                                  past_key_values=cache)
        logits_plain = tiny_lm(input_ids=x).logits[0, -1]
        logits_cached = tiny_lm(input_ids=x[:, len(ids):], past_key_values=kv.cache_for(head)).logits[0, -1]
    assert cached.tolist() == plain.tolist()
    assert torch.allclose(logits_cached, logits_plain, atol=1e-5)
    assert all(k.shape[-2] == len(ids) for k, _ in kv.layers)  # generating did not grow the kept tensors


@pytest.mark.parametrize("mode", ["trie", "flat", "fused"])
@pytest.mark.parametrize("prefix", [None, "1. the user"])
def test_score_kv_cuts_each_prompts_kv_out_of_its_batch(tiny_lm, tiny_tok, mode, prefix):
    """Batched with padding, each prompt's K/V is its own columns only: what it computes alone."""
    s = CategoryScorer(tiny_lm, tiny_tok, LABELS, mode=mode, label_chunk=3, batch_size=3, bucket=8)
    s.set_prefix(prefix)
    prompts = PREFIXED[:3] + PROMPTS[:3]  # lengths 3 to 18 tokens; some share the prefix, some do not
    rows, kvs = s.score_kv(prompts)
    assert np.abs(rows - s.score(prompts)).max() < 1e-5
    for prompt, row, kv in zip(prompts, rows, kvs, strict=True):
        lone_row, lone = s.score_one(prompt)
        assert kv.ids == lone.ids and len(kv.layers) == len(lone.layers)
        assert np.abs(row - lone_row).max() < 1e-5
        for (k, v), (k1, v1) in zip(kv.layers, lone.layers, strict=True):
            assert k.shape == k1.shape and v.shape == v1.shape and k.shape[-2] == len(kv.ids)
            assert torch.allclose(k, k1, atol=1e-5) and torch.allclose(v, v1, atol=1e-5)
    head = list(kvs[2].ids) + [WORDS.index("Toys")]
    x = torch.tensor([head])
    with torch.inference_mode():
        plain = tiny_lm(input_ids=x).logits[0, -1]
        cached = tiny_lm(input_ids=x[:, -1:], past_key_values=kvs[2].cache_for(head)).logits[0, -1]
    assert torch.allclose(cached, plain, atol=1e-5)
    with torch.inference_mode():
        kvs[0].layers[0][0].zero_()  # a copy: the other rows' tensors are untouched
    assert kvs[1].layers[0][0].abs().sum() > 0
    assert s.score_kv([]) == (pytest.approx(np.zeros((0, len(LABELS)))), [])


def test_naive_is_the_sum_of_token_logprobs_including_eos(tiny_lm, tiny_tok, reference):
    """Hand-check one cell: log p(Office | prompt) + log p(<eos> | prompt, Office)."""
    prompt = tiny_tok(PROMPTS[0], add_special_tokens=False)["input_ids"]
    lab = [WORDS.index("Office"), tiny_tok.eos_token_id]
    with torch.inference_mode():
        lp = torch.log_softmax(tiny_lm(input_ids=torch.tensor([prompt + lab])).logits[0], -1)
    n = len(prompt)
    want = lp[n - 1, lab[0]] + lp[n, lab[1]]
    assert reference[0, 0] == pytest.approx(float(want), abs=1e-5)
    # Without EOS the short label would be scored by its first token alone and beat its
    # extensions: the EOS term is what tells "Office" from "Office > Paper".
    assert float(lp[n, lab[1]]) < 0


def test_text_terminator_and_empty_prefix(tiny_lm, tiny_tok):
    kw = dict(label_prefix="", terminator=" next")
    ref = naive_scores(tiny_lm, tiny_tok, PROMPTS, LABELS, **kw)
    got = CategoryScorer(tiny_lm, tiny_tok, LABELS, batch_size=2, **kw).score(PROMPTS)
    assert np.abs(got - ref).max() < 1e-4
    assert CategoryScorer(tiny_lm, tiny_tok, LABELS, **kw).label_ids[0][-1] == WORDS.index("next")


def test_token_id_prompts_match_text_prompts(tiny_lm, tiny_tok, reference):
    s = CategoryScorer(tiny_lm, tiny_tok, LABELS, batch_size=3)
    ids = [tiny_tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    assert np.abs(s.score(ids) - reference).max() < 1e-4


def test_trie_shares_prefixes(tiny_lm, tiny_tok):
    trie = CategoryScorer(tiny_lm, tiny_tok, LABELS, mode="trie")
    fed = sum(len(x) - 1 for x in trie.label_ids)  # every label token but EOS: 21
    # Distinct non-empty prefixes: "Office" once for five labels, "Office >" once for
    # three, "Office > Paper" once for two...: 14 nodes by hand.
    assert (fed, trie.n_label_tokens) == (21, 14)
    assert trie.n_label_tokens < CategoryScorer(tiny_lm, tiny_tok, LABELS, mode="flat").n_label_tokens


def test_scoring_works_through_a_peft_adapter(tiny_lm, tiny_tok):
    peft = pytest.importorskip("peft")
    from llmint.peft_compat import quiet_peft

    with quiet_peft():
        model = peft.get_peft_model(
            tiny_lm, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        ).eval()
    ref = naive_scores(model, tiny_tok, PROMPTS[:3], LABELS)
    got = CategoryScorer(model, tiny_tok, LABELS, batch_size=3).score(PROMPTS[:3])
    assert np.abs(got - ref).max() < 1e-4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(labels=["Toys", "Toys"]), "distinct"),
        (dict(labels=["Toys", " "]), "non-empty"),
        (dict(labels="Toys"), "sequence of str"),
        (dict(labels=[]), "empty"),
        (dict(mode="tree"), "mode="),
        (dict(batch_size=0), "batch_size="),
        (dict(mode="fused", bucket=0), "bucket="),
        (dict(mode="trie", cuda_graphs=True), "needs mode='fused'"),
        (dict(mode="fused", cuda_graphs=True), "CUDA device"),
    ],
)
def test_bad_arguments(tiny_lm, tiny_tok, kwargs, match):
    args = dict(labels=LABELS) | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        CategoryScorer(tiny_lm, tiny_tok, **args)


@pytest.mark.parametrize("prefix", [None, "1. the user"])
@pytest.mark.parametrize("bucket", [1, 8, 64])
def test_fused_buckets_pad_prompts_without_changing_scores(tiny_lm, tiny_tok, prefix, bucket):
    ref = naive_scores(tiny_lm, tiny_tok, PREFIXED, LABELS)
    s = CategoryScorer(tiny_lm, tiny_tok, LABELS, mode="fused", batch_size=3, bucket=bucket)
    s.set_prefix(prefix)
    widths = []
    hook = tiny_lm.register_forward_hook(
        lambda m, a, k, o: widths.append(k["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        got = s.score(PREFIXED)
    finally:
        hook.remove()
    assert np.abs(got - ref).max() < 1e-4
    # one pass per batch (the prefix's own pass aside): the padded prompt width then the trie's nodes
    trie = s.n_label_tokens
    passes = [w for w in widths if w > trie]
    assert len(passes) == 2  # batches of 3 and 2
    assert all((w - trie) % bucket == 0 for w in passes)


@pytest.mark.parametrize("mode", ["trie", "fused"])
def test_the_log_softmax_in_row_chunks_changes_nothing(tiny_lm, tiny_tok, monkeypatch, mode):
    import llmint.scoring as scoring

    s = CategoryScorer(tiny_lm, tiny_tok, LABELS, mode=mode, batch_size=5)
    whole = s.score(PROMPTS)
    monkeypatch.setattr(scoring, "LOGSOFTMAX_ROWS", 2)  # batches of 5 rows: chunks of 2, 2, 1
    assert np.array_equal(s.score(PROMPTS), whole)


def test_fused_pass_has_no_host_sync_so_a_cuda_graph_can_capture_it(tiny_lm, tiny_tok):
    """Dynamo traces the whole fused pass as one graph, with and without the cached prefix: no
    `.item()`, no data-dependent shape, no host copy (each would break the graph). The capture
    itself needs a GPU (`ShapeGraphs`); this is what can be checked without one."""
    from llmint.scoring import left_pad

    for prefix in (None, "1. the user"):
        s = CategoryScorer(tiny_lm, tiny_tok, LABELS, mode="fused", bucket=8)
        s.set_prefix(prefix)
        p = s.prefix_len
        rows = [x[p:] for x in s.prompt_ids(PREFIXED[:3])]
        ids, mask = left_pad(rows, tiny_tok.pad_token_id, 24)
        inputs = s._fused_inputs(ids, mask, p)
        with torch.no_grad():
            eager = s._fused_scores(*inputs)  # (and the prefix's K/V, computed outside any capture)
            explained = torch._dynamo.explain(s._fused_scores)(*inputs)
            compiled = torch.compile(s._fused_scores, backend="eager", fullgraph=True)(*inputs)
        torch._dynamo.reset()
        assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
        assert torch.allclose(compiled, eager, atol=1e-6)


def test_shape_graphs_refuses_cpu_tensors(tiny_lm_once, tiny_tok):
    from llmint.cuda_graphs import ShapeGraphs

    g = ShapeGraphs(lambda x: x * 2)
    with pytest.raises(ValueError, match="CUDA tensor"):
        g(torch.ones(2))
    assert g.n_graphs == 0
    assert CategoryScorer(tiny_lm_once, tiny_tok, LABELS, mode="fused").n_graphs == 0


def test_left_pad_to_a_width():
    from llmint.scoring import left_pad

    ids, mask = left_pad([[5, 6], [7]], 0, width=4)
    assert ids.tolist() == [[0, 0, 5, 6], [0, 0, 0, 7]]
    assert mask.tolist() == [[0, 0, 1, 1], [0, 0, 0, 1]]
    with pytest.raises(ValueError, match="shorter than the longest"):
        left_pad([[5, 6, 7]], 0, width=2)


def test_bad_prompts(tiny_lm, tiny_tok):
    s = CategoryScorer(tiny_lm, tiny_tok, LABELS)
    with pytest.raises(TypeError, match="not a single str"):
        s.score("the user")
    with pytest.raises(ValueError, match="empty"):
        s.score([[]])
    assert s.score([]).shape == (0, len(LABELS))


def test_to_distribution():
    lp = np.log(np.array([[0.2, 0.6], [0.5, 0.5]]))
    np.testing.assert_allclose(to_distribution(lp), [[0.25, 0.75], [0.5, 0.5]])
    hot = to_distribution(lp, temperature=0.5)  # sharper: p ~ q^2
    np.testing.assert_allclose(hot[0], [0.1, 0.9])
    np.testing.assert_allclose(to_distribution(np.array([-1000.0, -1001.0])).sum(), 1.0)
    with pytest.raises(ValueError, match="temperature"):
        to_distribution(lp, temperature=0)


@pytest.mark.parametrize("true_t", [0.5, 1.0, 3.0])
def test_fit_temperature_recovers_a_known_temperature(true_t):
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(4000, 12))
    p = to_distribution(logits, true_t)
    targets = np.array([rng.choice(12, p=row) for row in p])
    t = fit_temperature(logits, targets)
    assert t == pytest.approx(true_t, rel=0.08)
    # and it is the minimum of the validation NLL
    assert temperature_nll(logits, targets, t) <= temperature_nll(logits, targets, true_t) + 1e-9


def test_fit_temperature_rejects_bad_input():
    with pytest.raises(ValueError, match="targets"):
        fit_temperature(np.zeros((3, 4)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        fit_temperature(np.zeros((2, 4)), np.array([0, 4]))
    with pytest.raises(ValueError, match="shape"):
        fit_temperature(np.zeros((2, 1)), np.array([0, 0]))


# ---------------------------------------------------------------- real tier


OFFICE = [
    "Office & School Supplies",
    "Office & School Supplies > Paper",
    "Office & School Supplies > Labels",
    "Office & School Supplies > Envelopes",
    "Office & School Supplies > Tape",
    "Office & School Supplies > Writing & Correction Supplies",
    "Office & School Supplies > Printer Ink & Toner",
    "Office & School Supplies > Binders & Binding Systems",
    "Office & School Supplies > Filing Products",
    "Office & School Supplies > Staplers & Punches",
    "Office & School Supplies > Calendars",
    "Office Electronics",
    "Office Electronics > Printers & Accessories",
    "Office Electronics > Telephones & Accessories",
    "Office Electronics > Scanners & Accessories",
    "Office Electronics > Calculators",
    "Office Electronics > Fax Machines",
    "Office Furniture & Lighting > Chairs & Sofas",
    "Office Furniture & Lighting > Tables",
    "Kindle Accessories > Styluses",
]


@pytest.mark.real
def test_real_smollm2_kv_reuse_equals_naive(smollm2):
    lm = smollm2
    history = (
        "1. HP 63 Black Ink Cartridge [Office & School Supplies > Printer Ink & Toner]\n"
        "2. Avery Address Labels, 750 pack [Office & School Supplies > Labels]\n"
        "3. Brother Laser Printer HL-L2350DW [Office Electronics > Printers & Accessories]\n"
        "4. Hammermill Printer Paper, 20 lb, 500 sheets [Office & School Supplies > Paper]"
    )
    messages = [
        {"role": "user", "content": "A shopper bought, oldest first:\n" + history
         + "\nName the category of their next purchase."},
    ]
    chat = lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompts = [chat, "Purchases: printer paper, ink, labels. Next category:"]
    prefixes = ["", " "]
    for prompt, prefix in zip(prompts, prefixes, strict=True):
        ref = naive_scores(lm.model, lm.tokenizer, [prompt], OFFICE, label_prefix=prefix)
        for mode in ("trie", "flat", "fused"):
            s = CategoryScorer(lm.model, lm.tokenizer, OFFICE, label_prefix=prefix, mode=mode)
            got = s.score([prompt])
            assert got.shape == (1, len(OFFICE))
            assert np.abs(got - ref).max() < 1e-3, mode
        dist = to_distribution(got)
        assert dist.shape == (1, len(OFFICE))
        assert dist.sum() == pytest.approx(1.0)
        assert OFFICE[int(dist.argmax())] in OFFICE


@pytest.mark.real
def test_real_smollm2_batched_prompts_of_different_lengths(smollm2):
    lm = smollm2
    prompts = [
        "Purchases: printer paper, ink, labels. Next category:",
        "Purchases: a desk chair. Next category:",
        "Purchases: a stapler, tape, envelopes, binders, a calculator and a fax. Next category:",
    ]
    one = CategoryScorer(lm.model, lm.tokenizer, OFFICE[:8], batch_size=1).score(prompts)
    many = CategoryScorer(lm.model, lm.tokenizer, OFFICE[:8], batch_size=3).score(prompts)
    assert np.abs(one - many).max() < 1e-3
    fused = CategoryScorer(lm.model, lm.tokenizer, OFFICE[:8], batch_size=3, mode="fused", bucket=32)
    assert np.abs(fused.score(prompts) - one).max() < 1e-3
