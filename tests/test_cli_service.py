"""The serving CLI: `audit ...` on a real SQLite file, clean errors, --help everywhere,
and (real tier) `predict` / `observe` / `audit replay` end to end on a small shop written as files."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import AUDIT_T0, CATS, StepClock, shop

from llmint.audit import AuditLog, AuditRecord
from llmint.cli import cli

SHA = "a" * 64
T0 = AUDIT_T0


Clock = StepClock


def record(user: str, category: str, faithful: bool | None, latency: float) -> AuditRecord:
    return AuditRecord(
        user_id=user, input_text=f"[1] purchase: something of {user}", model_id="smollm2-135m",
        model_sha256=SHA, adapter_id=None, adapter_sha256=None, prompt_name="next_interest",
        prompt_version="1", prompt_sha256=SHA, decoding={"seed": 0}, top_category=category,
        output={"top_category": category, "explanation": None if faithful is None else f"About {category} [1]."},
        faithful=faithful, latency_ms=latency, cold_start=False,
    )


ROWS = [("u1", "Paper", True, 10.0), ("u2", "Ink", False, 20.0), ("u1", "Ink", True, 30.0),
        ("u3", "Paper", None, 40.0)]


@pytest.fixture
def db(tmp_path: Path) -> tuple[Path, list[str]]:
    """An audit file with 4 rows, created one minute apart from T0 (ids oldest first)."""
    path = tmp_path / "audit.sqlite"
    with AuditLog(path, clock=Clock()) as log:
        ids = [log.append(record(*r)) for r in ROWS]
    return path, ids


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def lines(output: str) -> list[dict]:
    return [json.loads(x) for x in output.splitlines() if x.strip()]


# ---------------------------------------------------------------- help and errors


@pytest.mark.parametrize("args", [
    ["predict", "--help"], ["observe", "--help"], ["audit", "--help"], ["audit", "list", "--help"],
    ["audit", "show", "--help"], ["audit", "replay", "--help"], ["audit", "flag", "--help"],
    ["audit", "approve", "--help"], ["audit", "export", "--help"], ["audit", "summary", "--help"],
])
def test_help(args: list[str]) -> None:
    r = run(*args)
    assert r.exit_code == 0 and "Usage:" in r.output


def test_observe_help_says_the_history_lives_for_the_process() -> None:
    text = " ".join(run("observe", "--help").output.split())
    assert "in memory only" in text and "InterestService.observe" in text


@pytest.mark.parametrize("cmd", [["show"], ["flag", "--reviewer", "ann", "--reason", "x"],
                                 ["approve", "--reviewer", "ann"]])
def test_unknown_id_is_exit_2_with_one_line(db, cmd: list[str]) -> None:
    path, _ = db
    r = run("audit", cmd[0], "nope", *cmd[1:], "--audit", path)
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [f"Error: no prediction with audit_id 'nope' in {path}"]


def test_missing_or_broken_audit_file_is_exit_2(tmp_path: Path) -> None:
    r = run("audit", "list", "--audit", tmp_path / "none.sqlite")
    assert r.exit_code == 2 and "no audit log at" in r.output and not (tmp_path / "none.sqlite").exists()
    bad = tmp_path / "bad.sqlite"
    bad.write_text("not a database")
    r = run("audit", "summary", "--audit", bad)
    assert r.exit_code == 2 and "not a usable audit database" in r.output and "Traceback" not in r.output


def test_default_audit_path_is_llmint_home(db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, ids = db
    monkeypatch.setenv("LLMINT_HOME", str(tmp_path))  # AuditConfig's default: <LLMINT_HOME>/audit.sqlite
    r = run("audit", "list")
    assert r.exit_code == 0, r.output
    assert {d["audit_id"] for d in lines(r.output)} == set(ids)


def test_bad_filter_value_is_exit_2(db) -> None:
    path, _ = db
    r = run("audit", "list", "--since", "yesterday", "--audit", path)
    assert r.exit_code == 2 and "not an ISO-8601 time" in r.output
    r = run("audit", "export", path.parent / "x.txt", "--audit", path)
    assert r.exit_code == 2 and "export format" in r.output


def test_predict_needs_a_dataset_and_a_target(tmp_path: Path) -> None:
    r = run("predict", "u1", "--audit", tmp_path / "a.sqlite")
    assert r.exit_code == 2 and "no dataset" in r.output
    r = run("predict", "--dataset", "x.csv")
    assert r.exit_code == 2 and "USER_ID" in r.output
    r = run("predict", "u1", "--events", "-", "--dataset", "x.csv")
    assert r.exit_code == 2 and "not both" in r.output


def test_bad_events_and_config_files_are_exit_2(tmp_path: Path) -> None:
    ev = tmp_path / "ev.jsonl"
    ev.write_text('{"item_id": "a", "action": "view", "order": 1}\n{oops\n')
    r = run("predict", "--events", ev, "--dataset", "x.csv")
    assert r.exit_code == 2 and f"{ev}: line 2: not valid JSON" in r.output
    r = run("predict", "-", "--dataset", "x.csv", input="[1, 2]")
    assert r.exit_code == 2 and "stdin: entry 1 is a int" in r.output
    r = run("observe", "u1", "--events", tmp_path / "missing.jsonl", "--dataset", "x.csv")
    assert r.exit_code == 2 and "cannot read the events file" in r.output
    cfg = tmp_path / "svc.yaml"
    cfg.write_text("dataset: x.csv\nwhat: 1\n")
    r = run("predict", "u1", "--config", cfg)
    assert r.exit_code == 2 and "unknown ServiceConfig key(s) ['what']" in r.output
    cfg.write_text("dataset: x.csv\ndevice: tpu\n")
    r = run("predict", "u1", "--config", cfg)
    assert r.exit_code == 2 and "device='tpu'" in r.output and len(r.output.strip().splitlines()) == 1


def test_unknown_dataset_is_exit_2_before_any_model_loads(tmp_path: Path) -> None:
    r = run("predict", "u1", "--dataset", "nope", "--audit", tmp_path / "a.sqlite")
    assert r.exit_code == 2 and "unknown dataset 'nope'" in r.output and "Traceback" not in r.output


def test_bad_events_are_exit_2_before_any_model_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The events are checked against the catalogue once the dataset is read, before the slow loads."""
    import llmint.service

    def no_model(*a, **k):
        raise AssertionError("the service was built for bad events")

    monkeypatch.setattr(llmint.service.InterestService, "__init__", no_model)
    events, items = write_shop(tmp_path)
    svc = ["--dataset", events, "--items", items, "--audit", tmp_path / "a.sqlite"]
    r = run("predict", "-", *svc, input='{"item_id": "nope", "action": "view", "order": 1}\n')
    assert r.exit_code == 2 and "event 1: unknown item 'nope'" in r.output
    r = run("observe", "u0", "--events", "-", *svc, input='{"item_id": "Ink1", "action": "rate", "order": 1}\n')
    assert r.exit_code == 2 and "event 1: Event.action 'rate' is not one of" in r.output
    assert not (tmp_path / "a.sqlite").exists()


def test_observe_without_predict_checks_and_counts_with_no_model(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`observe` without --predict appends to the stored history as the service would, and never builds it."""
    import llmint.service

    def no_model(*a, **k):
        raise AssertionError("the service was built for observe without --predict")

    monkeypatch.setattr(llmint.service.InterestService, "__init__", no_model)
    events, items = write_shop(tmp_path)
    svc = ["--dataset", events, "--items", items, "--audit", tmp_path / "a.sqlite"]
    late = [{"item_id": "Ink1", "action": "cart", "timestamp": 1_700_000_001},
            {"item_id": "Paper0", "action": "view", "timestamp": 1_700_000_000}]  # sorted on arrival
    feed = "".join(json.dumps(e) + "\n" for e in late)
    r = run("observe", "u0", "--events", "-", "--compact", *svc, input=feed)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"user_id": "u0", "observed": 2, "n_events": 7}  # 5 stored + 2
    r = run("observe", "newcomer", "--events", "-", *svc, input=feed)
    assert r.exit_code == 0 and json.loads(r.stdout)["n_events"] == 2
    cfg = tmp_path / "svc.yaml"
    cfg.write_text("max_events_per_history: 6\n")
    r = run("observe", "u0", "--events", "-", "--config", cfg, *svc, input=feed)
    assert r.exit_code == 0 and json.loads(r.stdout)["n_events"] == 6  # the newest 6 kept

    old = json.dumps({"item_id": "Ink1", "action": "cart", "timestamp": 1_500_000_000}) + "\n"
    r = run("observe", "u0", "--events", "-", *svc, input=old)
    assert r.exit_code == 2 and "older than the shopper's last event" in r.output
    r = run("observe", "u0", "--events", "-", *svc, input=json.dumps({**late[0], "user_id": "u1"}) + "\n")
    assert r.exit_code == 2 and "got events of user 'u1'" in r.output
    r = run("observe", "", "--events", "-", *svc, input=feed)
    assert r.exit_code == 2 and "user_id is empty" in r.output
    assert not (tmp_path / "a.sqlite").exists()


# ---------------------------------------------------------------- audit commands


def test_list_filters_and_paging(db) -> None:
    path, ids = db
    r = run("audit", "list", "--audit", path)
    assert r.exit_code == 0, r.output
    rows = lines(r.output)
    assert [d["audit_id"] for d in rows] == ids[::-1]  # newest first
    assert rows[-1]["user_id"] == "u1" and rows[-1]["output"]["top_category"] == "Paper"

    def ids_of(*args: str) -> list[str]:
        res = run("audit", "list", *args, "--audit", path)
        assert res.exit_code == 0, res.output
        return [d["audit_id"] for d in lines(res.output)]

    assert ids_of("--category", "Ink") == [ids[2], ids[1]]
    assert ids_of("--faithful") == [ids[2], ids[0]]
    assert ids_of("--unfaithful") == [ids[1]]
    assert ids_of("--user", "u1") == [ids[2], ids[0]]
    assert ids_of("--since", "2024-05-01T12:01:00", "--until", "2024-05-01T12:03:00") == [ids[2], ids[1]]
    assert ids_of("--limit", "2", "--offset", "1") == [ids[2], ids[1]]
    assert ids_of("--status", "flagged") == []
    assert ids_of("--status", "unreviewed") == ids[::-1]
    r = run("audit", "list", "--table", "--category", "Paper", "--audit", path)
    out = r.output.splitlines()
    assert r.exit_code == 0 and out[0].split() == ["audit_id", "created_utc", "user_id", "top_category",
                                                   "faithful", "status", "latency_ms"]
    assert len(out) == 3 and out[1].split()[:5] == [ids[3], "2024-05-01T12:03:00.000000Z", "u3", "Paper", "40.0"]


def test_show_flag_approve_then_status(db) -> None:
    path, ids = db
    r = run("audit", "show", ids[1], "--audit", path)
    assert r.exit_code == 0, r.output
    row = json.loads(r.output)
    assert row["audit_id"] == ids[1] and row["top_category"] == "Ink" and row["faithful"] is False
    assert row["status"] is None and row["reviews"] == [] and row["created_utc"] == "2024-05-01T12:01:00.000000Z"

    r = run("audit", "flag", ids[1], "--reviewer", "ann", "--reason", "unfaithful", "--note", "cites nothing",
            "--audit", path)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"audit_id": ids[1], "review_id": 1, "status": "flagged"}
    r = run("audit", "approve", ids[0], "--reviewer", "bob", "--audit", path)
    assert r.exit_code == 0 and json.loads(r.output)["status"] == "approved"
    r = run("audit", "flag", ids[0], "--reviewer", "", "--reason", "x", "--audit", path)
    assert r.exit_code == 2 and "non-empty reviewer" in r.output

    row = json.loads(run("audit", "show", ids[1], "--audit", path).output)
    assert row["status"] == "flagged"
    assert [(v["action"], v["reviewer"], v["reason"], v["note"]) for v in row["reviews"]] == [
        ("flag", "ann", "unfaithful", "cites nothing")]
    flagged = lines(run("audit", "list", "--status", "flagged", "--audit", path).output)
    approved = lines(run("audit", "list", "--status", "approved", "--audit", path).output)
    assert [d["audit_id"] for d in flagged] == [ids[1]] and [d["audit_id"] for d in approved] == [ids[0]]


def test_summary_numbers(db) -> None:
    path, ids = db
    run("audit", "flag", ids[1], "--reviewer", "ann", "--reason", "unfaithful", "--audit", path)
    run("audit", "approve", ids[0], "--reviewer", "ann", "--audit", path)
    r = run("audit", "summary", "--audit", path)
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["n"] == 4 and s["n_with_verdict"] == 3 and s["faithful_share"] == pytest.approx(2 / 3)
    assert (s["n_flagged"], s["n_approved"], s["n_unreviewed"]) == (1, 1, 2)
    assert s["flags_by_reason"] == {"unfaithful": 1}
    assert s["by_category"] == {"Ink": {"n": 2, "faithful_share": 0.5}, "Paper": {"n": 2, "faithful_share": 1.0}}
    assert s["latency_ms"]["p50"] == pytest.approx(25.0)  # median of 10, 20, 30, 40
    ink = json.loads(run("audit", "summary", "--category", "Ink", "--audit", path).output)
    assert ink["n"] == 2 and ink["latency_ms"]["p50"] == pytest.approx(25.0) and ink["n_flagged"] == 1


def test_export_csv_jsonl_parquet(db, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    path, ids = db
    r = run("audit", "export", tmp_path / "all.csv", "--audit", path)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"path": str(tmp_path / "all.csv"), "rows": 4}
    with (tmp_path / "all.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [x["audit_id"] for x in rows] == ids[::-1] and json.loads(rows[0]["decoding"]) == {"seed": 0}

    r = run("audit", "export", tmp_path / "u1.jsonl", "--user", "u1", "--audit", path)
    assert r.exit_code == 0 and json.loads(r.output)["rows"] == 2
    got = lines((tmp_path / "u1.jsonl").read_text(encoding="utf-8"))
    assert [x["audit_id"] for x in got] == [ids[2], ids[0]] and got[0]["output"]["top_category"] == "Ink"

    r = run("audit", "export", tmp_path / "ink.parquet", "--category", "Ink", "--audit", path)
    assert r.exit_code == 0 and json.loads(r.output)["rows"] == 2
    table = pq.read_table(tmp_path / "ink.parquet").to_pylist()
    assert [x["audit_id"] for x in table] == [ids[2], ids[1]] and [x["faithful"] for x in table] == [True, False]

    r = run("audit", "export", tmp_path / "as-csv.out", "--format", "csv", "--audit", path)
    assert r.exit_code == 0 and (tmp_path / "as-csv.out").read_text().startswith("audit_id,")


# ---------------------------------------------------------------- real tier: predict end to end


def write_shop(folder: Path) -> tuple[Path, Path]:
    """`shop(n_users=4, length=5)` as canonical events.jsonl + items.jsonl files."""
    ds = shop(n_users=4, length=5)
    events, items = folder / "events.jsonl", folder / "items.jsonl"
    events.write_text("".join(json.dumps({k: v for k, v in asdict(e).items() if v is not None}) + "\n"
                              for e in ds.events), encoding="utf-8")
    items.write_text("".join(json.dumps({"item_id": it.item_id, "title": it.title,
                                         "category_path": list(it.category_path)}) + "\n"
                             for it in ds.items.values()), encoding="utf-8")
    return events, items


@pytest.mark.real
def test_predict_observe_show_and_replay_end_to_end(smollm2, tmp_path: Path) -> None:
    import torch

    from llmint.paths import index_dir

    labels = {f"{top} > {leaf}" for top, leaf in CATS}
    events, items = write_shop(tmp_path)
    audit = tmp_path / "audit.sqlite"
    svc = ["--dataset", events, "--items", items, "--level", "2", "--audit", audit]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a busy 2-core box: one intra-op thread is faster
    try:
        r = run("predict", "u0", *svc, "--no-explain", "--products", "2", "--top-k", "3")
        assert r.exit_code == 0, r.output
        p = json.loads(r.stdout)
        assert p["top_category"] in labels and p["user_id"] == "u0" and p["n_events"] == 5
        assert len(p["top"]) == 3 and p["top"][0]["category"] == p["top_category"]
        assert set(p["distribution"]) == labels and sum(p["distribution"].values()) == pytest.approx(1.0)
        assert p["explanation"] is None and p["faithful"] is None
        assert len(p["products"]) == 2 and all(x["category"] == p["top_category"] for x in p["products"])
        saved = index_dir(str(events)) / "meta.json"  # the item index is kept for later calls (as the app does)
        built = saved.with_name("index.faiss").stat().st_mtime_ns

        r = run("audit", "show", p["audit_id"], "--audit", audit)
        assert r.exit_code == 0, r.output
        row = json.loads(r.output)
        assert row["user_id"] == "u0" and row["top_category"] == p["top_category"]
        assert row["output"]["distribution"] == list(p["distribution"].values())

        r = run("audit", "replay", p["audit_id"], *svc)
        assert r.exit_code == 0, r.output
        res = json.loads(r.stdout)
        assert res["identical"] is True and res["versions_match"] is True and res["audit_id"] == p["audit_id"]
        r = run("audit", "replay", p["audit_id"], *svc, "--dtype", "bfloat16")  # a bfloat16 model this time
        assert json.loads(r.stdout)["version_differences"] == ["dtype: stored 'float32', now 'bfloat16'"]
        assert r.exit_code == (0 if json.loads(r.stdout)["identical"] else 1), r.output

        new = {"item_id": "Ink1", "action": "cart", "timestamp": 1_700_000_000}
        r = run("observe", "u0", "--events", "-", "--predict", "--no-explain", "--products", "0", "--compact",
                *svc, input=json.dumps(new) + "\n")
        assert r.exit_code == 0, r.output
        q = json.loads(r.stdout)
        assert q["user_id"] == "u0" and q["n_events"] == 6 and q["top_category"] in labels

        r = run("observe", "u0", "--events", "-", "--compact", *svc, input=json.dumps(new) + "\n")
        assert r.exit_code == 0 and json.loads(r.stdout)["n_events"] == q["n_events"]  # no model: the same count
        r = run("observe", "u0", "--events", "-", *svc, input=json.dumps({**new, "item_id": "nope"}))
        assert r.exit_code == 2 and "unknown item 'nope'" in r.output
        r = run("predict", "u1", "u2", "--no-explain", "--products", "0", "--compact", *svc)
        assert r.exit_code == 0, r.output
        batch = json.loads(r.stdout)
        assert [x["user_id"] for x in batch] == ["u1", "u2"] and all(x["top_category"] in labels for x in batch)
        pasted = "".join(line for line in events.read_text().splitlines(keepends=True) if '"u3"' in line)
        r = run("predict", "-", "--no-explain", "--products", "0", *svc, input=pasted)
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["user_id"] == "u3" and json.loads(r.stdout)["n_events"] == 5

        r = run("audit", "replay", "nope", *svc)
        assert r.exit_code == 2 and "no prediction with audit_id 'nope'" in r.output
        r = run("audit", "replay", "--sample", "3", "--seed", "1", *svc)
        assert r.exit_code == 0, r.output
        summary = json.loads(r.stdout)
        assert summary["n"] == 3 and summary["identical"] == 3 and summary["differs"] == []
        assert saved.with_name("index.faiss").stat().st_mtime_ns == built  # the later calls loaded it
    finally:
        torch.set_num_threads(threads)
    r = run("audit", "list", "--audit", audit)
    assert [d["audit_id"] for d in lines(r.output)][-1] == p["audit_id"] and len(lines(r.output)) == 5


def test_audit_replay_wants_one_id_or_a_sample() -> None:
    r = run("audit", "replay")
    assert r.exit_code == 2 and "give one AUDIT_ID or --sample N" in r.output
    r = run("audit", "replay", "abc", "--sample", "2")
    assert r.exit_code == 2 and "give one AUDIT_ID or --sample N" in r.output
