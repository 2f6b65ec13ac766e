"""`llmint bench`: its pure parts (ratios, rows, config checks, table, JSON) and one small real run.

Timings are never asserted: the real run checks that every section is there and that the
KV-reuse scores match the naive ones.
"""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from click.testing import CliRunner
from conftest import shop

from llmint.bench import SECTIONS, BenchConfig, format_table, ratio, row, write
from llmint.bench_scoring import BenchScoringConfig
from llmint.cli import cli


@pytest.mark.parametrize(("value", "baseline", "want"), [
    (30.0, 10.0, 3.0), (1.0, 3.0, 0.33), (5.0, 0.0, None), (None, 2.0, None), (2.0, None, None), (0.0, 4.0, 0.0),
])
def test_ratio(value, baseline, want):
    assert ratio(value, baseline) == want


def test_row_speedup_is_above_one_when_better_than_the_baseline():
    assert row("s", "latency", 10.0, "ms", "naive", 40.0)["speedup"] == 4.0  # lower is better
    assert row("s", "rate", 20.0, "1/s", "batch 1", 5.0, better="higher")["speedup"] == 4.0
    assert row("s", "memory", 100.0, "MiB")["speedup"] is None
    with pytest.raises(ValueError, match="better="):
        row("s", "x", 1.0, "ms", better="faster")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"device": "tpu"}, "device="),
    ({"dtype": "int8"}, "dtype="),
    ({"sections": ("scoring", "nope")}, "sections"),
    ({"attn": ("flash",)}, "attn"),
    ({"compile": ("jit",)}, r"compile modes \['jit'\] unknown"),
    ({"history_tokens": ()}, "history_tokens is empty"),
    ({"history_tokens": (256, 0)}, "history_tokens=0"),
    ({"n_shoppers": 0}, "n_shoppers=0"),
    ({"batch": True}, "batch=True"),
    ({"naive_labels": 0}, "naive_labels=0"),
    ({"warmup": -1}, "warmup=-1"),
    ({"torch_threads": -1}, "torch_threads=-1; expected an int >= 0"),
    ({"index_size": 150, "index_queries": 100}, "index_size=150"),
    ({"index_embed": -1}, "index_embed=-1; expected an int >= 0"),
])
def test_config_rejects_bad_values_and_names_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BenchConfig(**kwargs)


def test_config_defaults_and_coercion():
    c = BenchConfig(history_tokens=256, sections="scoring", device="cuda:1")
    assert c.history_tokens == (256,) and c.sections == ("scoring",)
    assert BenchConfig().sections == SECTIONS and BenchConfig().history_tokens[0] == 256
    assert BenchConfig(naive_labels=None).naive_labels is None


def test_bench_scoring_config_checks_its_new_fields():
    assert BenchScoringConfig(serialize={"token_budget": 256}).serialize == {"token_budget": 256}
    with pytest.raises(ValueError, match="n_naive=0"):
        BenchScoringConfig(n_naive=0)


def _result() -> dict:
    return {
        "config": {"device": "cpu", "dtype": "float32", "torch_threads": 1, "dataset": "office"},
        "dataset": "office",
        "machine": {"cpu": "Test CPU", "cpus": 2, "loadavg": 3.5, "torch": "2.x"},
        "rows": [row("scoring", "trie p50", 1234.5, "ms/shopper", "naive p50", 37000.0),
                 row("throughput", "peak memory", 900.0, "MiB"),
                 row("lora", "examples/s", 0.5, "examples/s", "forward-only", 2.0, better="higher")],
        "sections": {
            "scoring": {"note": "scores match naive"},
            "levers": {"levers": [{"lever": "threads 2 vs 1", "prediction": "p", "predicted": 1.6, "measured": 0.9,
                                   "verdict": "no difference beyond noise"}]},
            "roofline": {"summary": "compute-bound"},
        },
    }


def test_format_table_has_every_row_the_levers_roofline_and_notes():
    md = format_table(_result())
    lines = md.splitlines()
    header = [ln for ln in lines if ln.startswith("| section |")]
    assert len(header) == 1
    assert "| scoring | trie p50 | 1,234 | ms/shopper | naive p50 | 37,000 | 29.97x |" in lines
    assert "| throughput | peak memory | 900 | MiB | - | - | - |" in lines
    assert "| lora | examples/s | 0.5 | examples/s | forward-only | 2 | 0.25x |" in lines
    assert "| threads 2 vs 1 | p | 1.6 | 0.9 | no difference beyond noise |" in lines
    assert "Roofline: compute-bound" in lines and "- scoring: scores match naive" in lines
    assert "Test CPU, 2 CPUs (load average 3.5 at start)" in md


def test_write_puts_sorted_json_and_the_table_beside_it(tmp_path):
    js, md = write(_result(), tmp_path / "sub" / "bench.json")
    assert md == tmp_path / "sub" / "bench.md" and md.read_text() == format_table(_result())
    data = json.loads(js.read_text())
    assert data["rows"][0]["speedup"] == 29.97 and list(data) == sorted(data)


def test_cli_bench_help_and_bad_option():
    r = CliRunner().invoke(cli, ["bench", "--help"])
    assert r.exit_code == 0
    for opt in ("--device", "--dtype", "--out", "--history-tokens", "--section"):
        assert opt in r.output
    r = CliRunner().invoke(cli, ["bench", "--dtype", "int8"])
    assert r.exit_code == 2 and "dtype='int8'" in r.output


@pytest.mark.real
def test_small_real_run_has_every_section_and_kv_reuse_matches_naive(smollm2, tmp_path):
    import torch

    from llmint.bench import run

    ds = shop(n_users=6, length=5)
    cfg = BenchConfig(history_tokens=(16,), n_shoppers=2, batch=2, n_naive=1, naive_labels=2, batch_sizes=(2,),
                      n_throughput=2, threads=(1,), attn=("sdpa", "eager"), compile=("default",), n_lever=1,
                      gen_tokens=3, n_generate=1, gen_batch=2,
                      no_cache_tokens=2, n_predict=1, concurrent=2, n_concurrent=2, prep_workers=2, n_prep=6,
                      index_dir=str(tmp_path / "index"), index_size=1200,
                      index_queries=10, index_embed=10, lora_steps=1, lora_batch=1, warmup=0)
    threads = torch.get_num_threads()
    res = run(cfg, lambda msg: print(msg, file=sys.stderr), dataset=ds, loaded=smollm2, lora_dataset=ds)
    assert torch.get_num_threads() == threads  # restored
    assert list(res["sections"]) == list(SECTIONS)
    for name, sec in res["sections"].items():
        assert sec["wall_s"] >= 0 and sec["memory"]["max_rss_mb"] > 0, name
    assert {r["section"] for r in res["rows"]} == set(SECTIONS) - {"levers"}
    sc = res["sections"]["scoring"]
    assert sc["max_abs_diff_vs_naive"] < 1e-3  # KV reuse (trie, flat, batched) = one forward per label
    m = sc["budgets"]["16"]["methods"]
    assert set(m) == {"naive", "flat", "trie", "trie_prefix", "trie_batch2", "trie_prefix_batch2", "fused_prefix",
                      "fused_prefix_batch2"}  # no CUDA here: no graphs row
    assert all(v["max_abs_diff_vs_naive"] < 1e-3 for k, v in m.items() if k != "naive")
    thr = res["sections"]["throughput"]
    assert set(thr["shoppers_per_s_by_mode"]) == {"trie", "fused"} and thr["shoppers_per_s"]["2"] > 0
    assert thr["best_mode"] in ("trie", "fused") and thr["shared_prefix_tokens"] > 100
    prep = thr["prompts_built_per_s"]
    assert prep["n"] == 6 and prep["0"] > 0 and prep["2"] > 0 and prep["same_ids"] is True
    crowd = thr["concurrent"]  # the same prompts scored one pass per request and coalesced: the same scores
    assert crowd["one_at_a_time"]["requests"] == crowd["coalesced"]["requests"] == 4
    assert sum(int(k) * v for k, v in crowd["coalesced"]["passes"].items()) == 4
    assert crowd["max_abs_diff"] < 1e-3 and crowd["same_top"] == 4
    assert res["sections"]["generation"]["no_cache"]["same_tokens_as_cached"] is True
    assert res["sections"]["generation"]["prefix_ttft"]["same_first_tokens"] is True
    assert res["sections"]["generation"]["prefix_ttft"]["prefix_tokens"] > 100
    batched = res["sections"]["generation"]["batched"]
    assert batched["n"] == cfg.gen_batch == 2 and batched["same_texts"] == 2 and batched["batched_s"] > 0
    gen_row = next(r for r in res["rows"] if r["measure"].startswith("explanations/s"))
    assert gen_row["baseline_value"] == batched["one_at_a_time_per_s"]
    assert gen_row["baseline_value"] == pytest.approx(2 / batched["one_at_a_time_s"], rel=0.01, abs=1e-3)
    drafted = res["sections"]["generation"]["drafted"]  # the row itself runs in tests/test_gpu_session.py
    assert drafted == {"skipped": "no bundled adapter for shop"}
    kept = res["sections"]["generation"]["kept_kv_ttft"]
    assert kept["same_first_tokens"] is True and 0 < kept["label_line_tokens"] < 20
    assert res["sections"]["levers"]["detail"]["attn_max_abs_diff"] < 1e-3
    assert [lv["lever"] for lv in res["sections"]["levers"]["levers"]] == [
        "sdpa vs eager attention", "bfloat16 vs float32", "torch.compile (default) vs eager", "trie vs flat label pass",
        "batch 2 vs 1 (scoring)", "shared prompt prefix K/V computed once (CategoryScorer.set_prefix)"]
    dt = res["sections"]["levers"]["detail"]["dtype"]
    assert dt["float32"]["n"] == dt["bfloat16"]["n"] == 2 and 0 < dt["max_abs_diff"] < 5  # a real bf16 copy
    assert next(smollm2.model.parameters()).dtype == torch.float32  # the shared model was not converted
    compiled = res["sections"]["levers"]["detail"]["compile_default"]
    if shutil.which("gcc") or shutil.which("cc"):  # inductor's CPU backend needs a C++ compiler
        assert compiled["max_abs_diff"] < 1e-3 and compiled["regional"], compiled
        assert compiled["compiled"]["p50_ms"] > 0 and compiled["eager"]["n"] == 2
    else:
        assert "error" in compiled
    assert res["sections"]["levers"]["detail"]["shared_prefix_tokens"] > 0
    pr = res["sections"]["predict"]  # warm-up + explain off, on, undrafted, prompt again + 2 batches + 2 crowds
    crowd = cfg.concurrent * cfg.n_concurrent
    assert pr["audit_rows"] == 1 + 4 * cfg.n_predict + 2 * cfg.gen_batch + 2 * crowd
    assert pr["predict_explain_no_draft"]["same_texts"] == cfg.n_predict  # drafting keeps greedy's text
    lone, co = pr["concurrent_one_at_a_time"], pr["concurrent_coalesced"]
    assert lone["requests"] == co["requests"] == crowd and lone["per_s"] > 0 and co["per_s"] > 0
    assert sum(int(k) * v for k, v in co["passes"].items()) == crowd and set(co["passes"]) <= {"1", "2"}
    assert pr["predict_batch_explain_2"]["same_texts"] == 2 and pr["predict_batch_explain_1"]["s"] > 0
    assert res["sections"]["predict"]["predict_explain_prompt_again"]["p50_ms"] > 0
    emb = res["sections"]["index"]["embedding"]  # the same 10 item texts, both ways: the same vectors
    assert emb["texts"] == 10 and emb["max_abs_diff"] < 1e-5 and 0 <= emb["padding"] <= emb["baseline_padding"]
    emb_row = next(r for r in res["rows"] if r["measure"].startswith("item embedding (10 shop items"))
    assert emb_row["unit"] == "texts/s" and emb_row["value"] > 0 and emb_row["baseline_value"] > 0
    assert res["sections"]["lora"]["examples_per_s"] > 0
    assert smollm2.model.config._attn_implementation == "sdpa"  # the lever put it back
    js, md = write(res, tmp_path / "bench.json")
    assert json.loads(js.read_text())["sections"].keys() == res["sections"].keys()
    assert "| scoring |" in md.read_text() and "Roofline:" in md.read_text()


@pytest.mark.real
def test_a_failing_section_is_recorded_and_the_others_run_and_each_is_written(smollm2, tmp_path):
    from llmint.bench import run

    cfg = BenchConfig(history_tokens=(16,), sections=("lora", "roofline"), lora_dataset="no_such_dataset",
                      gen_tokens=2, warmup=0)
    seen: list[list[str]] = []

    def on_section(partial):
        seen.append(list(partial["sections"]))
        write(partial, tmp_path / "bench.json")

    res = run(cfg, dataset=shop(n_users=4, length=4), loaded=smollm2, on_section=on_section)
    assert seen == [["lora"], ["lora", "roofline"]]  # written after each section, the failed one too
    assert res["failed"] == ["lora"] and "no_such_dataset" in res["sections"]["lora"]["error"]
    assert res["sections"]["lora"]["wall_s"] >= 0 and "summary" in res["sections"]["roofline"]
    md = (tmp_path / "bench.md").read_text()
    assert "Failed sections (the others ran):" in md and "- lora: " in md and "Roofline:" in md


def test_throughput_records_a_batch_that_does_not_fit_and_keeps_the_others(monkeypatch):
    """On a GPU the largest batch may run out of memory: that size is recorded, the rest measured."""
    from types import SimpleNamespace

    import llmint.llm_ranker
    from llmint import bench_parts

    class Scorer:
        def __init__(self, mode, bs):
            self.mode, self.bs = mode, bs

        def set_prefix(self, prefix):
            pass

        def score(self, prompts):
            if self.mode == "fused" and self.bs == 4:
                raise RuntimeError("CUDA out of memory. Tried to allocate 22.00 GiB")
            return [[0.0]] * len(prompts)

    freed = []
    ctx = SimpleNamespace(
        cfg=BenchConfig(batch_sizes=(1, 4), n_throughput=4, warmup=1, prep_workers=0, n_prep=3), budget=16, tok=None,
        prompts=lambda n: [[1, 2, 3]] * n, histories=lambda n: [[1, 2]] * n,
        ranker=lambda budget: SimpleNamespace(prompt_template=None, prompt_ids=list),
        scorer=Scorer, sync=lambda: None, free=lambda: freed.append(1), say=lambda msg: None)
    monkeypatch.setattr(llmint.llm_ranker, "shared_prefix_ids", lambda tok, template: [7] * 120)
    res = bench_parts.throughput(ctx)
    assert set(res["shoppers_per_s_by_mode"]["trie"]) == {"1", "4"}
    assert set(res["shoppers_per_s_by_mode"]["fused"]) == {"1"}
    assert "out of memory" in res["errors"]["fused_4"] and freed == [1]
    assert res["best_mode"] in ("trie", "fused") and res["shared_prefix_tokens"] == 120
    assert res["rows"][0]["measure"].startswith("shoppers/s, trie + shared prefix, best batch (")
    assert res["prompts_built_per_s"]["n"] == 3 and res["prompts_built_per_s"]["same_ids"] is True
    assert set(res["prompts_built_per_s"]) == {"n", "0", "same_ids"}  # prep_workers=0: no worker run
    assert res["rows"][1]["measure"] == "shoppers/s, fused + shared prefix, best batch (1)"
    assert res["rows"][1]["baseline"] == "trie + shared prefix, batch 1"
    crowd = res["concurrent"]  # 4 clients x 3 requests, each answered
    assert crowd["one_at_a_time"]["requests"] == crowd["coalesced"]["requests"] == 12
    assert sum(int(k) * v for k, v in crowd["coalesced"]["passes"].items()) == 12
    assert res["rows"][-1]["baseline"] == "one scoring pass per request" and res["rows"][-1]["value"] > 0
