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


def test_load_embedder_refuses_what_is_not_a_local_folder(tmp_path) -> None:
    with pytest.raises(ModelError, match="not a local folder"):
        load_embedder("sentence-transformers/some-hub-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="modules.json"):
        load_embedder(tmp_path / "empty")
