"""The LoRA adapter bundled for the default model on MovieLens: files, resolution, and that it is trained.

Fast tier: what ships and how `adapter="auto"` resolves. Real tier: the adapter beats the
zero-shot model on MovieLens validation cases (never the test split), and the service serves
MovieLens through it by default, end to end with an audit row and an identical replay.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import numpy as np
import pytest

from llmint.bundled import (
    BUNDLED,
    adapters_dir,
    bundled_adapter,
    calibrated_temperature,
    resolve_adapter,
)
from llmint.service_config import ServiceConfig

FOLDER = adapters_dir() / "smollm2-135m-movielens"


@pytest.mark.parametrize(("model", "dataset"), sorted(BUNDLED))
def test_every_bundled_adapter_ships_every_file_and_is_small(model, dataset):
    folder = adapters_dir() / BUNDLED[(model, dataset)]
    for name in ("adapter_config.json", "adapter_model.safetensors", "train_config.json", "metrics.json",
                 "calibration.json", "README.md"):
        assert (folder / name).is_file(), name
    assert (folder / "adapter_model.safetensors").stat().st_size < 10 * 2**20
    train = json.loads((folder / "train_config.json").read_text())
    assert train["model"] == model and train["dataset"] == dataset
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["steps"] > 0 and metrics["valid_loss"] < metrics["valid_loss_initial"]
    calibration = json.loads((folder / "calibration.json").read_text())
    assert calibration["dataset"] == dataset and calibration["level"] == train["level"]
    digest = hashlib.sha256((folder / "adapter_model.safetensors").read_bytes()).hexdigest()
    assert calibration["adapter_sha256"] == digest  # calibrated on these very weights
    t = calibrated_temperature(str(folder))
    assert t is not None and 0.05 < t < 20


def test_auto_resolves_to_the_bundled_adapter_only_where_one_matches(tmp_path):
    assert bundled_adapter(None, "movielens") == FOLDER
    assert bundled_adapter("smollm2-135m", "movielens") == FOLDER
    assert resolve_adapter("auto", None, "movielens") == str(FOLDER)
    assert resolve_adapter("auto", None, "office") == str(adapters_dir() / "smollm2-135m-office")
    assert resolve_adapter("auto", None, "taobao") is None  # nothing bundled: zero-shot
    assert resolve_adapter("auto", "qwen2.5-0.5b", "movielens") is None  # trained for another model
    assert resolve_adapter("none", None, "movielens") is None
    assert resolve_adapter(None, None, "movielens") is None
    assert resolve_adapter(str(tmp_path), None, "movielens") == str(tmp_path)


def test_calibration_file_is_read_defensively(tmp_path):
    assert calibrated_temperature(None) is None
    assert calibrated_temperature(str(tmp_path)) is None
    for bad in ("not json", '{"temperature": -1}', '{"temperature": "nan"}', '{"t": 1}'):
        (tmp_path / "calibration.json").write_text(bad)
        assert calibrated_temperature(str(tmp_path)) is None, bad
    (tmp_path / "calibration.json").write_text('{"temperature": 1.7}')
    assert calibrated_temperature(str(tmp_path)) == 1.7


def test_the_ranker_starts_from_the_adapters_calibrated_temperature(tmp_path):
    from conftest import shop

    from llmint.llm_ranker import LLMCategoryRanker, LLMRankerConfig

    ds = shop()
    assert LLMCategoryRanker("zs", ds, 1).temperature == 1.0
    assert LLMCategoryRanker("lora", ds, 1, LLMRankerConfig(adapter=str(tmp_path))).temperature == 1.0
    (tmp_path / "calibration.json").write_text('{"temperature": 1.7}')
    assert LLMCategoryRanker("lora", ds, 1, LLMRankerConfig(adapter=str(tmp_path))).temperature == 1.7


def test_service_config_defaults_to_the_bundled_adapter_and_its_temperature():
    cfg = ServiceConfig(dataset="movielens")
    assert cfg.adapter == "auto" and cfg.temperature is None
    assert ServiceConfig(dataset="x", temperature=2.0).temperature == 2.0
    with pytest.raises(ValueError, match="temperature"):
        ServiceConfig(dataset="x", temperature=0.0)


@pytest.mark.real
def test_loading_the_adapter_warns_of_nothing_that_is_not_ours(smollm2):
    """peft 0.21 reads `is_gradient_checkpointing`, which transformers 5.23 deprecates: every CLI call and app
    start printed that FutureWarning. Our own warnings still pass."""
    import copy
    import warnings

    from llmint.llm_ranker import load_adapter

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_adapter(copy.deepcopy(smollm2.model), str(FOLDER))
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)], [str(w.message) for w in caught]


@pytest.mark.real
def test_the_adapter_beats_the_zero_shot_model_on_validation_cases(smollm2):
    from llmint.evidence import label_of_event
    from llmint.llm_ranker import LLMCategoryRanker, LLMRankerConfig
    from llmint.loaders import load_dataset
    from llmint.split import make_split

    ds = load_dataset("movielens")
    split = make_split(ds.histories())
    tuned = LLMCategoryRanker("tuned", ds, ds.default_level, LLMRankerConfig(adapter=str(FOLDER)), loaded=smollm2)
    zero = LLMCategoryRanker("zero", ds, ds.default_level, LLMRankerConfig(
        serialize=asdict(tuned.serialize_config)), loaded=smollm2)  # the same prompt, no adapter
    rng = np.random.default_rng(1)
    cases = [split.valid[i] for i in rng.permutation(len(split.valid))[:40]]
    y = np.array([tuned.taxonomy.index(label_of_event(c.target, ds.items, tuned.taxonomy)) for c in cases])
    hits = {}
    for name, r in (("tuned", tuned), ("zero", zero)):
        lp = r.logprobs([c.history for c in cases])
        hits[name] = float((lp.argmax(1) == y).mean())
    assert hits["tuned"] >= hits["zero"] + 0.10, hits


@pytest.mark.real
def test_the_service_serves_movielens_through_the_bundled_adapter(smollm2, tmp_path):
    from llmint.audit import AuditConfig, AuditLog
    from llmint.service import InterestService, adapter_sha256

    audit = AuditLog(AuditConfig(path=tmp_path / "audit.sqlite"))
    svc = InterestService(ServiceConfig(dataset="movielens", index_dir=str(tmp_path / "index"),
                                        max_new_tokens=24), loaded=smollm2, audit=audit)
    try:
        assert svc.adapter_id == str(FOLDER) and svc.adapter_sha256 == adapter_sha256(str(FOLDER))
        assert svc.ranker.temperature == pytest.approx(calibrated_temperature(str(FOLDER)))
        assert svc.ranker.serialize_config.token_budget == 256  # the serialisation it was trained with
        p = svc.predict("1")
        assert p.top_category in svc.taxonomy.labels and p.explanation and p.products
        row = audit.get(p.audit_id)
        assert row.adapter_id == str(FOLDER) and row.adapter_sha256 == svc.adapter_sha256
        assert svc.replay(p.audit_id).identical
    finally:
        svc.close()
