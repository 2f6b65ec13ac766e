"""Deleting a shopper: `InterestService.forget` (real tier) and `llmint audit forget` (fast tier)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import StepClock, shop

from llmint import DataError, UnknownIdError
from llmint.audit import AuditLog, AuditRecord
from llmint.cli import cli

SECRET = "zebra-striped stapler, my neighbour Quentin loved it"


def _stored_text(path: Path) -> str:
    """Every text value of every table of the audit file, joined."""
    out = []
    with sqlite3.connect(path) as conn:
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for row in conn.execute(f"SELECT * FROM {table}"):  # noqa: S608 - names from sqlite_master
                out += [v for v in row if isinstance(v, str)]
    return "\x00".join(out)


@pytest.mark.real
def test_forget_removes_the_history_and_erases_the_audit_rows(smollm2, tmp_path: Path) -> None:
    from llmint import InterestService, ServiceConfig

    cfg = ServiceConfig(audit_path=str(tmp_path / "audit.sqlite"))
    with InterestService.from_dataset(shop(n_users=6, length=5), cfg, loaded=smollm2) as svc:
        last = svc.history("u1")[-1].timestamp
        svc.observe("u1", [{"item_id": "Ink2", "action": "review", "timestamp": last + 60, "rating": 5,
                            "text": SECRET + ", call 555-123-4567"}])
        mine = svc.predict_batch(["u1", "u1"], explain=False, n_products=1)
        other = svc.predict("u2", explain=False, n_products=1)
        assert SECRET[:20] in _stored_text(svc.audit.path)  # the review text was stored (redacted of PII)

        rep = svc.forget("u1")
        assert (rep.user_id, rep.known, rep.events_removed, rep.audit_rows_erased) == ("u1", True, 6, 2)
        with pytest.raises(UnknownIdError, match="unknown user 'u1'"):
            svc.predict("u1", explain=False)
        assert all(e.user_id != "u1" for e in svc.dataset.events)
        stored = _stored_text(svc.audit.path)
        assert SECRET[:20] not in stored and "Quentin" not in stored
        assert svc.audit.count(user_id="u1") == 0
        with sqlite3.connect(svc.audit.path) as conn:
            assert conn.execute("SELECT COUNT(*) FROM predictions WHERE user_id = 'u1'").fetchone()[0] == 0
        for p in mine:
            row = svc.audit.get(p.audit_id)
            assert row.erased and row.user_id is None and row.input_text == "[erased]"
            assert all(e["text"] in (None, "[erased]") for e in row.output["input"]["events"])
        kept = svc.audit.get(other.audit_id)  # other shoppers are untouched
        assert kept.user_id == "u2" and not kept.erased and svc.replay(other.audit_id).identical
        svc.audit.export(tmp_path / "after.jsonl")
        assert "Quentin" not in (tmp_path / "after.jsonl").read_text(encoding="utf-8")

        again = svc.forget("u1")  # idempotent
        assert (again.known, again.events_removed, again.audit_rows_erased) == (False, 0, 0)
        with pytest.raises(DataError, match="non-empty"):
            svc.forget("")
        assert svc.observe("u1", []) == 0  # the id may come back as a new shopper, with nothing of the old


def _record(user: str, text: str) -> AuditRecord:
    return AuditRecord(
        user_id=user, input_text=f"[1] reviewed: {text}", model_id="m", model_sha256="a" * 64, adapter_id=None,
        adapter_sha256=None, prompt_name="p", prompt_version="1", prompt_sha256="b" * 64, decoding={"seed": 0},
        output={"explanation": {"text": f"Because [1] {text}"}, "input": {"events": [{"text": text}]}},
        top_category="Office > Ink", faithful=True, latency_ms=1.0)


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_audit_forget_erases_one_users_rows(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    with AuditLog(path, clock=StepClock()) as log:
        log.append(_record("ann", SECRET))
        log.append(_record("ann", "second review"))
        log.append(_record("bob", "bob's own words"))
    r = run("audit", "forget", "ann", "--audit", path)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"user_id": "ann", "audit_rows_erased": 2, "rows_left_with_user_id": 0}
    stored = _stored_text(path)
    assert "Quentin" not in stored and "second review" not in stored and "bob's own words" in stored
    assert json.loads(run("audit", "forget", "ann", "--audit", path).output)["audit_rows_erased"] == 0


@pytest.mark.parametrize(("args", "message"), [
    (["audit", "forget", " "], "USER_ID is empty"),
    (["audit", "forget", "ann", "--audit", "nowhere.sqlite"], "no audit log at"),
])
def test_cli_audit_forget_bad_input_is_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    r = run(*[a if a != "nowhere.sqlite" else str(tmp_path / a) for a in args])
    assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1


def test_cli_audit_forget_has_help() -> None:
    r = run("audit", "forget", "--help")
    assert r.exit_code == 0 and "right to erasure" in r.output
