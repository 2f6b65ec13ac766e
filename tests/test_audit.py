"""The audit log on real SQLite files: round trip, redaction, append-only triggers, erasure,
migrations, reviews, filters, export, summary figures and concurrent appends."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import sqlite3
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import AUDIT_T0, StepClock

from llmint.audit import (
    SCHEMA_VERSION,
    AuditConfig,
    AuditError,
    AuditLog,
    AuditRecord,
    UnknownAuditIdError,
)
from llmint.errors import LlmintError, UnknownIdError

SHA_M, SHA_A, SHA_P = "a" * 64, "b" * 64, "c" * 64
T0 = AUDIT_T0


Clock = StepClock


def record(**kw) -> AuditRecord:
    base = dict(
        user_id="u1", input_text="[1] purchase: Printer paper 500 sheets\n[2] review: Works fine.",
        model_id="smollm2-135m", model_sha256=SHA_M, adapter_id="lora-v3", adapter_sha256=SHA_A,
        prompt_name="next_category", prompt_version="2", prompt_sha256=SHA_P,
        decoding={"seed": 7, "max_new_tokens": 64, "do_sample": False},
        output={"distribution": {"Paper": 0.7, "Ink": 0.3}, "top_category": "Paper",
                "explanation": "You bought paper [1].", "citations": [1], "products": ["Paper0", "Paper2"]},
        top_category="Paper", faithful=True, latency_ms=12.5, cold_start=False,
    )
    base.update(kw)
    return AuditRecord(**base)


@pytest.fixture
def log(tmp_path: Path):
    with AuditLog(tmp_path / "audit.sqlite", clock=Clock()) as lg:
        yield lg


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------- writing and reading back


def test_round_trip_keeps_every_field(log: AuditLog) -> None:
    rec = record(cold_start=True, faithful=None, latency_ms=3)
    aid = log.append(rec)
    assert re.fullmatch(r"[0-9a-f]{32}", aid)
    row = log.get(aid)
    for name in ("user_id", "input_text", "model_id", "model_sha256", "adapter_id", "adapter_sha256",
                 "prompt_name", "prompt_version", "prompt_sha256", "top_category", "faithful", "cold_start"):
        assert getattr(row, name) == getattr(rec, name), name
    assert row.decoding == rec.decoding and row.output == rec.output
    assert row.latency_ms == 3.0 and row.input_sha256 == sha(rec.input_text)
    assert row.audit_id == aid and row.created_utc == "2024-05-01T12:00:00.000000Z"
    assert (row.status, row.reviews, row.erased) == (None, (), False)
    # canonical JSON in the file: sorted keys, no ASCII escaping
    aid2 = log.append(record(output={"z": 1, "a": "café"}, adapter_id=None, adapter_sha256=None))
    (stored,) = raw(log.path).execute("SELECT output_json FROM predictions WHERE audit_id = ?", (aid2,)).fetchone()
    assert stored == '{"a":"café","z":1}'
    assert log.get(aid2).adapter_id is None


def test_pii_is_redacted_before_storage(log: AuditLog) -> None:
    rec = record(
        input_text="[1] review: ship to 12 Elm Street, mail jo@example.org",
        output={"explanation": {"text": "Call 555-123-4567 [1].", "model_text": "jo@example.org wrote"},
                "products": ["Paper0"], "top_category": "Paper"},
    )
    aid = log.append(rec)
    row = log.get(aid)
    assert row.input_text == "[1] review: ship to [address], mail [email]"
    assert row.input_sha256 == sha(row.input_text)
    assert row.output["explanation"] == {"text": "Call [phone] [1].", "model_text": "[email] wrote"}
    assert row.output["products"] == ["Paper0"]
    log.flag(aid, "ana", "pii", note="the shopper wrote jo@example.org")
    assert log.get(aid).reviews[0].note == "the shopper wrote [email]"
    dump = "\n".join(raw(log.path).iterdump())
    for pii in ("jo@example.org", "555-123-4567", "Elm Street"):
        assert pii not in dump


# ---------------------------------------------------------------- append-only and erasure


def test_triggers_refuse_update_and_delete(log: AuditLog) -> None:
    aid = log.append(record())
    log.flag(aid, "rev", "unfaithful")
    db = raw(log.path)
    for sql in (
        "UPDATE predictions SET top_category = 'Ink'",
        "UPDATE predictions SET erased = 1, input_text = '[erased]', user_id = NULL, top_category = 'Ink'",
        "UPDATE predictions SET erased = 1",  # keeps the user and the text: not an erasure
        "DELETE FROM predictions",
        "UPDATE reviews SET reason = 'x'",
        "DELETE FROM reviews",
    ):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute(sql)
    assert log.get(aid).top_category == "Paper" and len(log.get(aid).reviews) == 1


def test_redact_user_erases_then_freezes_rows(log: AuditLog) -> None:
    a = log.append(record(user_id="u1", output={"explanation": "You bought paper [1].", "citations": [1]}))
    b = log.append(record(user_id="u1"))
    c = log.append(record(user_id="u2"))
    assert log.redact_user("u1") == 2
    for aid in (a, b):
        row = log.get(aid)
        assert (row.user_id, row.input_text, row.erased) == (None, "[erased]", True)
        assert row.input_sha256 == sha("[erased]")
        assert row.output["explanation"] == "[erased]"
        assert row.model_sha256 == SHA_M and row.top_category == "Paper"  # provenance survives
    assert log.get(a).output["citations"] == [1]
    assert log.get(c).user_id == "u2" and not log.get(c).erased
    assert log.redact_user("u1") == 0 and log.count(user_id="u1") == 0
    db = raw(log.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE predictions SET input_text = 'back' WHERE audit_id = ?", (a,))
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE predictions SET erased = 1, input_text = '[erased]', user_id = NULL WHERE audit_id = ?",
                   (a,))
    with pytest.raises(AuditError, match="user_id"):
        log.redact_user("")


# ---------------------------------------------------------------- migrations and pragmas


def test_migrations_fresh_reopen_and_future(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    with AuditLog(path) as lg:
        assert lg.schema_version == SCHEMA_VERSION
        aid = lg.append(record())
    db = raw(path)
    assert db.execute("SELECT version, name FROM _migrations").fetchall() == [(1, "initial")]
    cols = [r[1] for r in db.execute("PRAGMA table_info(predictions)")]
    assert {"audit_id", "input_sha256", "decoding_json", "output_json", "erased"} <= set(cols)
    triggers = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert triggers == {"predictions_no_update", "predictions_no_delete", "reviews_no_update", "reviews_no_delete"}
    with AuditLog(path) as lg:  # reopening applies nothing and keeps the data
        assert lg.get(aid).model_id == "smollm2-135m"
    assert db.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == SCHEMA_VERSION
    db.execute("INSERT INTO _migrations VALUES (?, 'from the future', '2030-01-01T00:00:00Z')", (SCHEMA_VERSION + 1,))
    with pytest.raises(AuditError, match="upgrade llmint"):
        AuditLog(path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(AuditError, match="not a usable audit database"):
        AuditLog(junk)


def test_wal_mode_and_foreign_keys(log: AuditLog) -> None:
    assert raw(log.path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert log._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert log._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_config_default_path_and_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMINT_HOME", str(tmp_path / "home"))
    assert AuditConfig().path == tmp_path / "home" / "audit.sqlite"
    with AuditLog() as lg:
        assert lg.path.is_file()
    with pytest.raises(ValueError, match="timeout_s"):
        AuditConfig(timeout_s=0)
    lg = AuditLog(AuditConfig(path=str(tmp_path / "x.sqlite"), timeout_s=1))
    lg.close()
    lg.close()
    with pytest.raises(AuditError, match="closed"):
        lg.append(record())


# ---------------------------------------------------------------- reviews


def test_flag_approve_status(log: AuditLog) -> None:
    aid = log.append(record())
    assert log.get(aid).status is None
    log.flag(aid, "ana", "unfaithful", note="cites [3], which is not shown")
    assert log.get(aid).status == "flagged"
    log.approve(aid, "bo")
    row = log.get(aid)
    assert row.status == "approved"
    assert [(r.action, r.reason, r.reviewer) for r in row.reviews] == [("flag", "unfaithful", "ana"),
                                                                       ("approve", None, "bo")]
    assert row.reviews[0].note == "cites [3], which is not shown"
    with pytest.raises(UnknownAuditIdError, match="nope") as e:
        log.flag("nope", "ana", "pii")
    assert isinstance(e.value, UnknownIdError) and isinstance(e.value, LlmintError)
    with pytest.raises(UnknownIdError):
        log.get("nope")
    with pytest.raises(AuditError, match="reviewer"):
        log.approve(aid, " ")
    with pytest.raises(AuditError, match="reason"):
        log.flag(aid, "ana", "")
    assert len(log.get(aid).reviews) == 2


# ---------------------------------------------------------------- list, count, export, summary


def test_list_filters_order_and_count(log: AuditLog) -> None:
    # clock: rows at minutes 0..4, then reviews at minutes 5, 6
    ids = [
        log.append(record(top_category="Paper", faithful=True, user_id="u1")),
        log.append(record(top_category="Ink", faithful=False, user_id="u2")),
        log.append(record(top_category="Paper", faithful=None, user_id="u1")),
        log.append(record(top_category="Ink", faithful=True, user_id=None)),
        log.append(record(top_category="Paper", faithful=False, user_id="u3")),
    ]
    log.flag(ids[1], "ana", "unfaithful")
    log.approve(ids[2], "ana")

    def got(**f) -> list[str]:
        return [r.audit_id for r in log.list(**f)]

    assert got() == ids[::-1]
    assert got(category="Paper") == [ids[4], ids[2], ids[0]]
    assert got(faithful=True) == [ids[3], ids[0]] and got(faithful=False) == [ids[4], ids[1]]
    assert got(status="flagged") == [ids[1]] and got(status="approved") == [ids[2]]
    assert got(status="unreviewed") == [ids[4], ids[3], ids[0]]
    assert got(user_id="u1") == [ids[2], ids[0]]
    assert got(since="2024-05-01T12:01:00Z", until=T0 + timedelta(minutes=3)) == [ids[2], ids[1]]
    assert got(since=datetime(2024, 5, 1, 12, 4)) == [ids[4]]  # naive means UTC
    assert got(limit=2, offset=1) == [ids[3], ids[2]]
    assert got(category="Paper", faithful=False) == [ids[4]]
    assert log.count() == 5 and log.count(category="Ink") == 2 and log.count(status="unreviewed") == 3
    for bad in ({"status": "open"}, {"limit": -1}, {"since": "yesterday"}, {"faithful": 1}):
        with pytest.raises(AuditError):
            log.list(**bad)


def test_export_csv_jsonl_parquet(log: AuditLog, tmp_path: Path) -> None:
    import pandas as pd

    a = log.append(record(top_category="Paper"))
    b = log.append(record(top_category="Ink", faithful=None))
    log.append(record(top_category="Paper"))
    log.flag(b, "ana", "pii")

    assert log.export(tmp_path / "all.csv") == 3
    with (tmp_path / "all.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and rows[2]["audit_id"] == a
    assert json.loads(rows[2]["output"])["explanation"] == "You bought paper [1]."
    assert json.loads(rows[1]["reviews"])[0]["reason"] == "pii"

    assert log.export(tmp_path / "ink.jsonl", category="Ink") == 1
    (line,) = (tmp_path / "ink.jsonl").read_text(encoding="utf-8").splitlines()
    doc = json.loads(line)
    assert doc["audit_id"] == b and doc["status"] == "flagged" and doc["faithful"] is None
    assert doc["decoding"]["seed"] == 7 and doc["reviews"][0]["reviewer"] == "ana"

    assert log.export(tmp_path / "out.parquet", category="Paper") == 2
    df = pd.read_parquet(tmp_path / "out.parquet")
    assert len(df) == 2 and df["audit_id"].iloc[1] == a and bool(df["faithful"].iloc[1])
    assert json.loads(df["output"].iloc[1])["products"] == ["Paper0", "Paper2"]
    assert log.export(tmp_path / "none.parquet", category="Toys") == 0
    assert len(pd.read_parquet(tmp_path / "none.parquet")) == 0
    with pytest.raises(AuditError, match="format"):
        log.export(tmp_path / "out.xlsx")
    assert not list(tmp_path.glob("*.tmp"))


def test_summary_figures(log: AuditLog) -> None:
    spec = [("A", True, 10), ("A", False, 20), ("A", None, 30), ("B", True, 40), ("B", True, 50)]
    ids = [log.append(record(top_category=c, faithful=f, latency_ms=lat)) for c, f, lat in spec]
    log.flag(ids[0], "ana", "unfaithful")
    log.approve(ids[0], "bo")
    log.flag(ids[1], "ana", "unfaithful")
    log.flag(ids[3], "bo", "pii")
    s = log.summary()
    assert s["latency_ms"]["p99"] == pytest.approx(49.6)  # 40 + 0.96 * (50 - 40)
    s["latency_ms"]["p99"] = 49.6
    assert s == {
        "n": 5, "n_with_verdict": 4, "faithful_share": 0.75,
        "n_flagged": 2, "n_approved": 1, "n_unreviewed": 2,
        "flags_by_reason": {"pii": 1, "unfaithful": 2},
        "by_category": {"A": {"n": 3, "faithful_share": 0.5}, "B": {"n": 2, "faithful_share": 1.0}},
        "latency_ms": {"p50": 30.0, "p99": 49.6},
    }
    b = log.summary(category="B")
    assert (b["n"], b["faithful_share"], b["flags_by_reason"], b["latency_ms"]["p50"]) == (2, 1.0, {"pii": 1}, 45.0)
    empty = log.summary(category="none")
    assert empty["n"] == 0 and empty["faithful_share"] is None and empty["latency_ms"]["p50"] is None


# ---------------------------------------------------------------- concurrency and bad input


def test_concurrent_appends_from_16_threads(log: AuditLog) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(50):
                log.append(record(user_id=f"t{t}", input_text=f"[1] purchase: item {t}-{i}", latency_ms=float(i)))
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    rows = log.list(limit=1000)
    assert len(rows) == 800 == log.count() and len({r.audit_id for r in rows}) == 800
    assert all(r.input_sha256 == sha(r.input_text) for r in rows)
    assert sorted(r.input_text for r in rows) == sorted(
        f"[1] purchase: item {t}-{i}" for t in range(16) for i in range(50))
    assert log.count(user_id="t3") == 50


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"model_id": ""}, "model_id"),
        ({"model_sha256": "abc"}, "model_sha256"),
        ({"prompt_sha256": "A" * 64}, "prompt_sha256"),
        ({"adapter_sha256": None}, "both"),
        ({"user_id": ""}, "user_id"),
        ({"input_text": None}, "input_text"),
        ({"top_category": "  "}, "top_category"),
        ({"decoding": [1, 2]}, "decoding"),
        ({"faithful": 1}, "faithful"),
        ({"cold_start": "no"}, "cold_start"),
        ({"latency_ms": math.nan}, "latency_ms"),
        ({"latency_ms": -1.0}, "latency_ms"),
        ({"latency_ms": True}, "latency_ms"),
    ],
)
def test_bad_records_raise(change: dict, match: str) -> None:
    with pytest.raises(AuditError, match=match):
        record(**change)


def test_append_rejects_unstorable_values_and_writes_nothing(log: AuditLog) -> None:
    with pytest.raises(AuditError, match="finite"):
        log.append(record(output={"distribution": {"Paper": math.inf}}))
    with pytest.raises(AuditError, match="JSON"):
        log.append(record(decoding={"stop": {1, 2}}))
    with pytest.raises(AuditError, match="AuditRecord"):
        log.append({"user_id": "u1"})  # type: ignore[arg-type]
    assert log.count() == 0
