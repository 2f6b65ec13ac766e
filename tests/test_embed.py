"""Item text, review digests and the Embedder wrapper, on a tiny in-process sentence-transformer."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from llmint.embed import Embedder, item_text, load_embedder, review_digests, weights_sha256
from llmint.errors import ModelError
from llmint.schema import Event, Item

WORDS = "cordless phone corded paper printer ink pen pencil stapler desk chair office".split()


def tiny_sentence_transformer(seed: int = 0, dim: int = 8):
    """SentenceTransformer(StaticEmbedding) over a WordLevel vocabulary; built in-process."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {w: i for i, w in enumerate(["[UNK]", *WORDS])}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    torch.manual_seed(seed)
    return SentenceTransformer(modules=[StaticEmbedding(tok, embedding_dim=dim)], device="cpu")


@pytest.fixture(scope="session")
def _tiny_st():
    return tiny_sentence_transformer()


@pytest.fixture
def tiny_st(_tiny_st):
    return copy.deepcopy(_tiny_st)


@pytest.mark.parametrize(
    ("item", "digest", "expected"),
    [
        (
            Item("1", "Cordless Phone", ("Office Electronics", "Telephones"), "VTech", "DECT 6.0"),
            None,
            "Cordless Phone. Category: Office Electronics > Telephones. Brand: VTech. DECT 6.0",
        ),
        (Item("2", "Pen"), None, "Pen"),
        (Item("3", "Pen", brand="  ", text=""), "Writes well", "Pen. Reviews: Writes well"),
        (Item("4", "Pen.", ("Office",)), None, "Pen. Category: Office"),
    ],
)
def test_item_text_table(item: Item, digest: str | None, expected: str) -> None:
    assert item_text(item, digest) == expected


def test_item_text_truncates_description_at_a_word() -> None:
    text = item_text(Item("1", "T", text="word " * 200), max_description_chars=50)
    desc = text.split(". ", 1)[1]
    assert desc.endswith("...") and len(desc) <= 53 and "wor..." not in desc


def test_review_digests_keeps_first_reviews_only() -> None:
    evs = [Event("u", "a", "review", order=i, rating=5, text=f"r{i}") for i in range(5)]
    evs += [Event("u", "b", "purchase", order=9), Event("u", "c", "review", order=9, rating=1)]
    assert review_digests(evs, max_reviews=2) == {"a": "r0 | r1"}


def test_encode_is_float32_unit_norm(tiny_st) -> None:
    emb = Embedder.from_model(tiny_st, "tiny")
    v = emb.encode(["cordless phone", "paper", "pen pencil"], batch_size=2)
    assert v.dtype == np.float32 and v.shape == (3, emb.dim) == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert emb.encode([]).shape == (0, 8)
    with pytest.raises(TypeError):
        emb.encode("a single string")


def test_encode_returns_rows_in_input_order_whatever_the_batches(tiny_st) -> None:
    """Texts are embedded longest first in batches; each row still belongs to its own text."""
    emb = Embedder.from_model(tiny_st, "tiny")
    texts = ["pen", "cordless phone printer ink", "paper", "desk chair office stapler pencil", "ink", "pen"]
    alone = np.stack([emb.encode([t])[0] for t in texts])
    for bs in (1, 2, 4, None):
        np.testing.assert_allclose(emb.encode(texts, batch_size=bs), alone, atol=1e-6)
    import llmint.embed

    calls = []
    encode = emb.model.encode
    emb.model.encode = lambda batch, **kw: calls.append(list(batch)) or encode(batch, **kw)
    old, llmint.embed.SORT_WINDOW_BATCHES = llmint.embed.SORT_WINDOW_BATCHES, 1
    try:  # windows of 2 texts, each sorted alone: 3 calls, longest first within each pair
        np.testing.assert_allclose(emb.encode(texts, batch_size=2), alone, atol=1e-6)
    finally:
        llmint.embed.SORT_WINDOW_BATCHES, emb.model.encode = old, encode
    assert calls == [[texts[1], texts[0]], [texts[3], texts[2]], [texts[4], texts[5]]]
    assert emb.default_batch_size == 32  # a CPU
    with pytest.raises(ValueError, match="batch_size"):
        emb.encode(texts, batch_size=0)


def test_length_order_is_longest_first_ties_in_input_order(tiny_st) -> None:
    emb = Embedder.from_model(tiny_st, "tiny")  # a static model's tokenizer is not callable: characters count
    assert emb.length_order(["ab", "abcd", "cd", "abc", ""]).tolist() == [1, 3, 0, 2, 4]
    assert emb.length_order([]).tolist() == []


@pytest.mark.real
def test_real_minilm_batches_texts_of_like_token_counts() -> None:
    """With the bundled MiniLM, each forward pass gets texts of similar token counts (character
    counts would mix them) and the vectors equal those of each text embedded alone."""
    emb = load_embedder()
    rng = np.random.default_rng(0)
    # characters and tokens disagree: long words split into many tokens, short ones into one
    texts = [" ".join(rng.choice(["cartridge", "x7q9", "multipurpose", "pen", "zzkw3j", "a"], size=n))
             for n in rng.integers(1, 40, size=48)]
    tokens = [len(x) for x in emb.model.tokenizer(texts)["input_ids"]]
    calls: list[list[int]] = []
    encode = emb.model.encode

    def spy(batch, **kw):
        calls.append([tokens[texts.index(t)] for t in batch])
        return encode(batch, **kw)

    emb.model.encode = spy
    try:
        got = emb.encode(texts, batch_size=8)
    finally:
        emb.model.encode = encode
    assert [len(c) for c in calls] == [8] * 6
    flat = [n for c in calls for n in c]
    assert flat == sorted(tokens, reverse=True)  # longest first, by tokens
    by_chars = [tokens[i] for i in sorted(range(len(texts)), key=lambda i: -len(texts[i]))]
    padded = sum(max(c) * len(c) for c in calls)  # the least any grouping into 8s can pad
    assert padded < sum(max(by_chars[i : i + 8]) * 8 for i in range(0, len(texts), 8))
    alone = np.stack([emb.encode([t])[0] for t in texts])
    np.testing.assert_allclose(got, alone, atol=1e-5)


def test_sha_identifies_weights(tiny_st) -> None:
    a = Embedder.from_model(tiny_st, "tiny")
    assert a.sha256 == Embedder.from_model(copy.deepcopy(tiny_st), "tiny").sha256
    assert a.sha256 != Embedder.from_model(tiny_sentence_transformer(seed=1), "tiny").sha256


def test_load_embedder_from_a_local_folder(tiny_st, tmp_path) -> None:
    tiny_st.save(str(tmp_path / "tiny-st"))
    emb = load_embedder(tmp_path / "tiny-st")
    assert emb.name == "tiny-st" and emb.dim == 8
    assert emb.sha256 == weights_sha256(tmp_path / "tiny-st")
    want = Embedder.from_model(tiny_st, "x").encode(["printer ink"])
    np.testing.assert_allclose(emb.encode(["printer ink"]), want, rtol=1e-6)


def test_load_embedder_in_bfloat16_keeps_float32_unit_vectors(tiny_st, tmp_path) -> None:
    tiny_st.save(str(tmp_path / "tiny-st"))
    emb = load_embedder(tmp_path / "tiny-st", dtype="bfloat16")
    assert emb.dtype == "bfloat16" and "dtype=bfloat16" in repr(emb)
    v = emb.encode(["printer ink", "desk chair"])
    assert v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert load_embedder(tmp_path / "tiny-st").dtype == "float32"
    with pytest.raises(ValueError, match="dtype='int8'"):
        load_embedder(tmp_path / "tiny-st", dtype="int8")


@pytest.mark.real
def test_real_minilm_in_bfloat16_is_close_to_float32() -> None:
    from llmint.models import native_bf16

    texts = ["VTech cordless phone, 2 handsets", "Hammermill copy paper, 1 ream", "Swingline desk stapler"]
    a, b = load_embedder(), load_embedder(dtype="bfloat16")
    va, vb = a.encode(texts), b.encode(texts)
    assert b.dtype == "bfloat16" and vb.dtype == np.float32
    assert 0.999 < float((va * vb).sum(1).min()) and np.abs(va - vb).max() > 0  # rounded, not the same weights
    assert load_embedder(dtype="auto").dtype == ("bfloat16" if native_bf16("cpu") else "float32")


def test_load_embedder_refuses_what_is_not_a_local_folder(tmp_path) -> None:
    with pytest.raises(ModelError, match="not a local folder"):
        load_embedder("sentence-transformers/some-hub-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="modules.json"):
        load_embedder(tmp_path / "empty")
