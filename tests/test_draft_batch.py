"""Drafted decoding of several heads together: holes in the cache, rows leaving, the lone texts kept."""

from __future__ import annotations

import pytest
import torch

from llmint.draft_batch import drafted_greedy_batch, shared_cache, stack_caches
from llmint.drafting import drafted_greedy

WORDS = ["[PAD]", "[UNK]", "<eos>"] + [f"w{i}" for i in range(29)]


@pytest.fixture(scope="module")
def tok():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    t = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=t, unk_token="[UNK]", pad_token="[PAD]", eos_token="<eos>")


@pytest.fixture(scope="module")
def lm(tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(3)
    cfg = LlamaConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                      intermediate_size=32, vocab_size=len(WORDS), max_position_embeddings=256,
                      initializer_range=0.5, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      bos_token_id=None)
    return LlamaForCausalLM(cfg).eval()


def _ids(tok, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


HEADS = ["w3 w4 w5 w6", "w3 w4 w7 w8 w9 w10 w11", "w3 w4 w12", "w3 w4 w13 w14 w15 w16 w17 w18 w19 w20"]


def _alone(lm, tok, heads, n):
    return [drafted_greedy(lm, tok, h, max_new_tokens=n, eos_token_id=tok.eos_token_id)[0] for h in heads]


def _drafters(tok, lone):
    """Per row: the rest of the lone text, a wrong guess, none, and half right then wrong."""
    full = [tok.decode(x) for x in lone]

    def oracle(i, spoil=False):
        def d(text: str) -> str:
            if not full[i].startswith(text):
                return ""
            rest = full[i][len(text):].split()
            return " " + " ".join(rest[:2] + (["w28", "w27"] if spoil else rest[2:]))
        return d

    return [oracle(0), lambda text: " w27 w28 w27", None, oracle(3, spoil=True)]


@pytest.mark.parametrize("start", ["empty", "shared prefix", "stacked"])
def test_rows_decoded_together_give_the_lone_drafted_ids(lm, tok, start):
    heads = [_ids(tok, h) for h in HEADS]
    n = 12
    lone = _alone(lm, tok, heads, n)
    cache = mask = None
    if start == "shared prefix":  # the 2 tokens every head starts with, cached for 4 rows
        from transformers import DynamicCache

        one = DynamicCache()
        with torch.inference_mode():
            lm(input_ids=torch.tensor([heads[0][:2]] * 4), past_key_values=one, use_cache=True)
        cache, mask = shared_cache(one, 4)
    elif start == "stacked":  # each row's own prompt cached alone (all but its last token), then stacked
        from transformers import DynamicCache

        layers = []
        for h in heads:
            c = DynamicCache()
            with torch.inference_mode():
                lm(input_ids=torch.tensor([h[:-1]]), past_key_values=c, use_cache=True)
            layers.append([(c.layers[i].keys, c.layers[i].values) for i in range(len(c.layers))])
        cache, mask = stack_caches(layers)
        assert mask.tolist()[2] == [0] * 7 + [1, 1]  # left padding, 0 in the mask
    res = drafted_greedy_batch(lm, tok, heads, max_new_tokens=n, eos_token_id=tok.eos_token_id,
                               drafters=_drafters(tok, lone), cache=cache,
                               cache_mask=mask)
    assert [ids for ids, _ in res] == lone
    right, wrong, none, half = (st for _, st in res)
    assert right.accepted == right.drafted > 0 and right.passes <= 3
    assert wrong.accepted == 0 < wrong.drafted and wrong.passes == wrong.tokens
    assert none.drafted == 0 and none.passes == none.tokens
    assert 0 < half.accepted < half.drafted and half.passes < half.tokens
    assert all(st.tokens == len(ids) for ids, st in res)


def test_rows_that_end_early_leave_and_the_others_go_on(lm, tok):
    heads = [_ids(tok, h) for h in HEADS]
    lone = _alone(lm, tok, heads, 10)
    end = lone[1][2]  # taken as the end token, row 1 stops after 3 tokens (others may stop earlier or later)
    assert end not in lone[1][:2]
    for n in (1, 3, 10):
        res = drafted_greedy_batch(lm, tok, heads, max_new_tokens=n, eos_token_id=end,
                                   drafters=[None] * 4)
        alone = [drafted_greedy(lm, tok, h, max_new_tokens=n, eos_token_id=end)[0] for h in heads]
        assert [ids for ids, _ in res] == alone
        assert len(res[1][0]) == min(n, 3) and all(len(ids) <= n for ids, _ in res)
    assert len({len(ids) for ids in alone}) > 1  # rows left the batch at different passes


def test_bad_calls_say_what_is_wrong(lm, tok):
    heads = [_ids(tok, h) for h in HEADS[:2]]
    eos = tok.eos_token_id
    with pytest.raises(ValueError, match="1 drafters for 2 heads"):
        drafted_greedy_batch(lm, tok, heads, max_new_tokens=4, eos_token_id=eos, drafters=[None])
    with pytest.raises(ValueError, match="max_draft=-1"):
        drafted_greedy_batch(lm, tok, heads, max_new_tokens=4, eos_token_id=eos, drafters=[None] * 2, max_draft=-1)
    cache, mask = stack_caches([[(torch.zeros(1, 1, 3, 8), torch.zeros(1, 1, 3, 8))]] * 2)
    with pytest.raises(ValueError, match="cache_mask must be 2 rows x the cache's 3 columns"):
        drafted_greedy_batch(lm, tok, heads, max_new_tokens=4, eos_token_id=eos, drafters=[None] * 2, cache=cache,
                             cache_mask=mask[:, :2])
    short = [heads[0][:3], heads[1]]
    with pytest.raises(ValueError, match="no longer than its cached tokens"):
        drafted_greedy_batch(lm, tok, short, max_new_tokens=4, eos_token_id=eos, drafters=[None] * 2, cache=cache,
                             cache_mask=mask)
    with pytest.raises(ValueError, match="no caches"):
        stack_caches([])
    assert drafted_greedy_batch(lm, tok, heads, max_new_tokens=0, eos_token_id=eos, drafters=[None] * 2) == [
        ([], drafted_greedy(lm, tok, heads[0], max_new_tokens=0, eos_token_id=eos)[1])] * 2
