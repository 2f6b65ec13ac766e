"""Crash safety of the audit log: a writer killed with SIGKILL loses no acknowledged row.

A subprocess appends rows through `AuditLog.append` (a real SQLite file, WAL,
synchronous=FULL) and prints each audit id once `append` has returned; the test
kills it mid-stream at different moments, reopens the file (migrations run again,
`PRAGMA integrity_check` is ok) and checks that every acknowledged id is there and
every row parses completely with the content the writer gave it. SIGKILL stops the
process, not the OS, so this checks SQLite's transaction boundary and our
acknowledgement order, not power loss. The last test does the same through a real
`InterestService` serving predictions.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from llmint.audit import SCHEMA_VERSION, AuditLog

WRITER = textwrap.dedent("""
    import sys
    from llmint.audit import AuditLog, AuditRecord

    log = AuditLog(sys.argv[1])
    i = 0
    while True:
        rec = AuditRecord(
            user_id=f"u{i}", input_text=f"[1] bought item {i} " + "x" * (i % 50), model_id="m",
            model_sha256="a" * 64, adapter_id=None, adapter_sha256=None, prompt_name="p", prompt_version="1",
            prompt_sha256="b" * 64, decoding={"seed": i}, output={"i": i, "explanation": f"because [1] {i}",
            "distribution": [0.25] * 4}, top_category=f"cat{i % 3}", faithful=i % 2 == 0, latency_ms=float(i))
        print(i, log.append(rec), flush=True)
        i += 1
""")


def _check_db(path: Path, acked: dict[str, int]) -> int:
    """Reopen after the crash; every acknowledged row is there, intact. Returns the row count."""
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with AuditLog(path) as log:  # runs the migrations again: nothing to do, nothing broken
        assert log.schema_version == SCHEMA_VERSION
        n = log.count()
        assert n >= len(acked)
        rows = {r.audit_id: r for r in log.list(limit=n + 10)}
        assert len(rows) == n
        for audit_id, i in acked.items():
            r = rows[audit_id]
            assert r.user_id == f"u{i}" and r.input_text == f"[1] bought item {i} " + "x" * (i % 50)
            assert r.output == {"i": i, "explanation": f"because [1] {i}", "distribution": [0.25] * 4}
            assert r.decoding == {"seed": i} and r.top_category == f"cat{i % 3}" and r.latency_ms == float(i)
        for r in rows.values():  # rows written but not yet acknowledged are complete too
            assert r.output["i"] == int(r.user_id[1:]) and r.decoding["seed"] == r.output["i"]
    return n


def _run_and_kill(code: str, args: list[str], *, after_lines: int | None, after_s: float | None,
                  timeout_s: float = 300) -> dict[str, int]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    acked: dict[str, int] = {}
    t0 = time.monotonic()
    try:
        while True:
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"the writer exited early: {proc.stderr.read()[-2000:]}")
            i, audit_id = line.split()
            acked[audit_id] = int(i)
            if after_lines is not None and len(acked) >= after_lines:
                break
            if after_s is not None and acked and time.monotonic() - t0 >= after_s:
                break
            assert time.monotonic() - t0 < timeout_s
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        # ids printed before the kill but not yet read are acknowledged too
        for line in proc.stdout.read().splitlines():
            parts = line.split()
            if len(parts) == 2:
                acked[parts[1]] = int(parts[0])
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return acked


@pytest.mark.parametrize(("after_lines", "after_s"), [(1, None), (7, None), (60, None), (None, 0.3), (None, 1.5)],
                         ids=["after-1", "after-7", "after-60", "after-0.3s", "after-1.5s"])
def test_sigkill_mid_stream_loses_no_acknowledged_row(tmp_path: Path, after_lines, after_s) -> None:
    path = tmp_path / "audit.sqlite"
    acked = _run_and_kill(WRITER, [str(path)], after_lines=after_lines, after_s=after_s)
    n = _check_db(path, acked)
    assert len(acked) >= (after_lines or 1) and n >= len(acked)


def test_a_killed_file_keeps_taking_rows_after_repeated_crashes(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    acked: dict[str, int] = {}
    for k in range(3):  # the same file, killed three times; later writers restart i at 0
        got = _run_and_kill(WRITER, [str(path)], after_lines=5 + 10 * k, after_s=None)
        assert not set(got) & set(acked)
        acked.update(got)
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with AuditLog(path) as log:
        stored = {r.audit_id for r in log.list(limit=10_000)}
    assert set(acked) <= stored


SERVICE = textwrap.dedent("""
    import sys
    import torch
    sys.path.insert(0, sys.argv[2])
    from conftest import shop
    from llmint import InterestService, ServiceConfig
    from llmint.models import load_model

    torch.set_num_threads(1)
    loaded = load_model("smollm2-135m", dtype=torch.float32, device="cpu", cache_root=sys.argv[3])
    cfg = ServiceConfig(audit_path=sys.argv[1], max_batch=4)
    svc = InterestService.from_dataset(shop(n_users=6, length=5), cfg, loaded=loaded)
    users = ["u0", "u1", "u2", "u3", "u4", "u5"]
    i = 0
    while True:
        p = svc.predict(users[i % 6], explain=False, n_products=1)
        print(i, p.audit_id, flush=True)
        i += 1
""")


@pytest.mark.real
@pytest.mark.slow
def test_sigkill_of_a_serving_process_loses_no_acknowledged_prediction(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    tests_dir = str(Path(__file__).parent)
    acked = _run_and_kill(SERVICE, [str(path), tests_dir, str(tmp_path / "models")], after_lines=5, after_s=None)
    assert len(acked) >= 4
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with AuditLog(path) as log:
        assert log.count() >= len(acked)
        for audit_id in acked:
            row = log.get(audit_id)
            assert row.top_category and len(row.output["distribution"]) == len(row.output["labels"])
            assert abs(sum(row.output["distribution"]) - 1) < 1e-9 and row.input_text.startswith("History")
