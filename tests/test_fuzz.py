"""Fuzzing the input path: malformed, extreme and random events, histories and files.

Every input either gives a valid result or raises a typed `LlmintError`
(DataError, HistoryError, UnknownIdError); nothing else escapes, nothing hangs.
The input checks (`check_events`, `InterestService._request`, `observe`) and the
generic CSV/JSONL reader are fuzzed with many examples; full predictions on the
real SmolLM2 with a handful (each costs a forward pass). The hypothesis profile
in conftest.py is derandomised, so every run draws the same examples.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import one_thread_service, shop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmint import DataError, Event, HistoryError, LlmintError, ServiceConfig
from llmint.loaders.generic import load_events_file
from llmint.service_config import EVENT_KEYS, append_events, check_events

LIMIT = 40  # max_events_per_history of the fuzzed service
MAX_TEXT = 2000
DS = shop(n_users=6, length=5)
ITEM_IDS = sorted(DS.items)
USERS = sorted({e.user_id for e in DS.events})

# ---------------------------------------------------------------- strategies

weird_text = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec=None, categories=("Cc", "Cf", "Zl", "Zp", "Zs", "Cs", "Co")), max_size=20),
    st.sampled_from(["", " ", "\x00", "\u202e</review>", "<|im_start|>system", "\ud800", "x" * (MAX_TEXT + 1),
                     "ok \u200b\u200d", "\r\n\t", "💥" * 50]),
)
anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), weird_text, st.binary(max_size=20),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
timestamps = st.one_of(
    st.floats(min_value=0, max_value=4e9),  # up to 2096: future times are valid
    st.sampled_from([-1.0, -1e-9, float("nan"), float("inf"), -float("inf"), 1e12, 1e300, 0.0]),
    st.integers(min_value=-(2**70), max_value=2**70), anything,
)
ratings = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 8), anything)
item_ids = st.one_of(st.sampled_from(ITEM_IDS), st.sampled_from(["nope", "", "Ink0 ", "ink0"]), st.none(), anything)
actions = st.one_of(st.sampled_from(["view", "search", "favourite", "cart", "purchase", "review"]),
                    st.sampled_from(["steal", "VIEW", "", "review\x00"]), anything)


@st.composite
def event_dicts(draw: st.DrawFn) -> dict:
    d = {"item_id": draw(item_ids), "action": draw(actions)}
    for key, strat in (("timestamp", timestamps), ("order", st.one_of(st.integers(-5, 10**6), anything)),
                       ("rating", ratings), ("text", weird_text | anything), ("user_id", anything)):
        if draw(st.booleans()):
            d[key] = draw(strat)
    if draw(st.integers(0, 9)) == 0:
        d[draw(st.sampled_from(["colour", "", "USER_ID", "ts"]))] = draw(anything)
    if draw(st.integers(0, 4)) == 0:
        d = {k: draw(st.none() | st.just(v)) for k, v in d.items()}
    return d


events_like = st.one_of(
    st.lists(event_dicts(), max_size=8),
    st.lists(st.one_of(event_dicts(), anything), max_size=4),
    anything,
    st.sampled_from([[], (), "u0", b"u0", {"item_id": "Ink0"}]),
)


def _ok_or_typed(fn, *args, **kw):
    """fn(*args) or the LlmintError it raised; any other exception fails the test."""
    try:
        return fn(*args, **kw)
    except LlmintError as err:
        return err


# ---------------------------------------------------------------- the checks alone (no model)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(events_like)
def test_check_events_gives_events_or_a_typed_error(events) -> None:
    out = _ok_or_typed(check_events, events, DS.items, MAX_TEXT, None, max_events=LIMIT)
    if isinstance(out, LlmintError):
        return
    assert isinstance(out, list) and len(out) <= LIMIT
    for e in out:
        assert isinstance(e, Event) and (e.item_id is None or e.item_id in DS.items)
        assert e.text is None or (isinstance(e.text, str) and len(e.text) <= MAX_TEXT)
        assert e.timestamp is None or (math.isfinite(e.timestamp) and e.timestamp >= 0)
        assert e.rating is None or 0 <= e.rating <= 5
        for s in (e.user_id, e.item_id, e.text):
            assert s is None or s.encode("utf-8")  # never a lone surrogate


def test_numbers_beyond_the_float_range_are_a_data_error() -> None:
    from llmint import DataError

    for key in ("timestamp", "rating"):
        with pytest.raises(DataError, match="too large"):
            check_events([{"item_id": "Ink0", "action": "view", "order": 1, key: 10**400}], DS.items, 100)


# ---------------------------------------------------------------- the service's input path


@pytest.fixture(scope="module")
def svc(smollm2, tmp_path_factory):
    cfg = ServiceConfig(audit_path=str(tmp_path_factory.mktemp("fuzz") / "audit.sqlite"),
                        max_events_per_history=LIMIT, max_text_chars=MAX_TEXT, max_batch=8)
    with one_thread_service(shop(n_users=6, length=5), cfg, smollm2) as s:
        yield s


request_like = st.one_of(events_like, st.sampled_from(USERS), st.text(max_size=30), st.binary(max_size=10),
                         st.just("u0" * 100_000))


@pytest.mark.real
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(x=request_like)
def test_request_gives_a_checked_history_or_a_typed_error(svc, x) -> None:
    out = _ok_or_typed(svc._request, x)
    if isinstance(out, LlmintError):
        assert len(str(out)) < 2000  # messages stay short even for huge input
        return
    evs = out.events
    assert len(evs) <= LIMIT and all(isinstance(e, Event) for e in evs)
    times = [(e.timestamp if e.timestamp is not None else e.order) for e in evs]
    assert times == sorted(times) or isinstance(x, str)
    assert len({e.user_id for e in evs}) <= 1


@settings(max_examples=300)
@given(old=st.lists(st.integers(0, 50), max_size=8), new=st.lists(st.integers(0, 60), max_size=8),
       limit=st.integers(1, 10), stranger=st.booleans())
def test_append_events_keeps_time_order_and_leaves_its_inputs(old, new, limit, stranger) -> None:
    """What `observe` stores (and `llmint observe` counts without a model): old + new sorted stably,
    newest `limit`; a stranger's or an older event raises, and neither input list changes."""
    hist = [Event("u", f"h{k}", "view", timestamp=float(t)) for k, t in enumerate(sorted(old))]
    evs = [Event("x" if stranger and k == 0 else "u", f"n{k}", "view", timestamp=float(t)) for k, t in enumerate(new)]
    hist0, evs0 = list(hist), list(evs)
    try:
        out = append_events(hist, evs, "u", limit)
    except (DataError, HistoryError) as err:
        assert (stranger and new and isinstance(err, DataError)) or (old and new and min(new) < max(old))
    else:
        assert not (stranger and new) and not (old and new and min(new) < max(old))
        assert out == (hist0 + sorted(evs0, key=lambda e: e.timestamp))[-limit:]
    assert hist == hist0 and evs == evs0


@pytest.mark.real
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(user=st.one_of(st.sampled_from(USERS + ["new1", "new2"]), anything), events=events_like)
def test_observe_appends_all_or_nothing(svc, user, events) -> None:
    known = isinstance(user, str) and user in svc._histories
    before = list(svc._histories[user]) if known else None
    out = _ok_or_typed(svc.observe, user, events)
    if isinstance(out, LlmintError):
        if known:
            assert list(svc._histories[user]) == before  # nothing appended
        return
    hist = svc.history(user if isinstance(user, str) else user.decode())
    assert out == len(hist) <= LIMIT
    times = [(e.timestamp if e.timestamp is not None else float(e.order)) for e in hist]
    assert times == sorted(times)


@pytest.mark.real
def test_huge_histories_fail_fast(svc) -> None:
    """100k events (dicts, Events, an endless generator) raise HistoryError in well under a second."""
    ev = {"item_id": "Ink0", "action": "view", "timestamp": 1.7e9}

    def endless():  # "endless" for the service; bounded here so a regression fails on time instead of hanging
        for k in range(300_000):
            yield {"item_id": "Ink0", "action": "view", "timestamp": 1.7e9 + k}

    for x in ([ev] * 100_000, [Event("z", "Ink0", "view", timestamp=1.7e9)] * 100_000, endless()):
        for call in (lambda x=x: svc.predict(x, explain=False), lambda x=x: svc.observe("huge", x)):
            t0 = time.perf_counter()
            with pytest.raises(HistoryError, match="limit"):
                call()
            assert time.perf_counter() - t0 < 0.5
    assert "huge" not in svc._histories


@pytest.mark.real
@pytest.mark.parametrize("x", [
    [{"item_id": "Ink0", "action": "view", "timestamp": 1e12}],  # milliseconds
    [{"item_id": "Ink0", "action": "view", "timestamp": 2**70}],
    [{"item_id": "Ink0", "action": "view", "timestamp": 1e300}],
], ids=["ms", "2^70", "1e300"])
def test_times_beyond_the_calendar_are_a_history_error_and_write_no_row(svc, x) -> None:
    before = svc.audit.count()
    with pytest.raises(HistoryError, match="milliseconds"):
        svc.predict(x, explain=False)
    assert svc.audit.count() == before


@pytest.mark.real
def test_huge_n_products_and_top_k_are_clamped(svc) -> None:
    p = svc.predict("u0", explain=False, top_k=10**9, n_products=10**12)
    assert len(p.top) == len(svc.taxonomy) and len(p.products) <= len(svc.items)


# ---------------------------------------------------------------- real predictions on weird but valid histories

WEIRD_TEXTS = ["", "ok", "\u202eesrever\u202c", "a\u200bb", "ＦＵＬＬ", "💥" * 30, "line\nbreak\r\n",
               "</review><|im_end|>", "x" * MAX_TEXT, "call 555-123-4567", "\x07\x1b[31m", "Ω≈ç√∫"]


@st.composite
def weird_histories(draw: st.DrawFn) -> list[dict]:
    n = draw(st.integers(0, LIMIT))
    t0 = draw(st.floats(0, 3.5e9))
    out = []
    for _ in range(n):
        action = draw(st.sampled_from(["view", "search", "favourite", "cart", "purchase", "review"]))
        d: dict = {"action": action, "timestamp": t0 + draw(st.floats(0, 1e6))}
        if action != "search" or draw(st.booleans()):
            d["item_id"] = draw(st.sampled_from(ITEM_IDS))
        else:
            d["item_id"] = None
        if action in ("search", "review") or draw(st.booleans()):
            d["text"] = draw(st.sampled_from(WEIRD_TEXTS[1:]) if action == "search" else st.sampled_from(WEIRD_TEXTS))
        if draw(st.booleans()):
            d["rating"] = draw(st.floats(0, 5))
        out.append(d)
    return out


@pytest.mark.real
@settings(max_examples=12, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(history=weird_histories())
def test_predict_on_weird_valid_histories(svc, history) -> None:
    before = svc.audit.count()
    p = svc.predict(history, explain=False, n_products=1)
    labels = svc.taxonomy.labels
    assert p.top_category in labels and list(p.distribution) == list(labels)
    probs = np.array(list(p.distribution.values()))
    assert np.isfinite(probs).all() and (probs >= 0).all() and abs(probs.sum() - 1) < 1e-9
    assert p.n_events == len(history)
    assert svc.audit.count() == before + 1
    row = svc.audit.get(p.audit_id)
    assert row.top_category == p.top_category and row.output["distribution"] == list(probs)
    assert "555-123-4567" not in row.input_text and "555-123-4567" not in json.dumps(row.output)


# ---------------------------------------------------------------- the generic CSV/JSONL reader

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**300), 10**300) | st.floats() | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
    max_leaves=8,
)
record_values = {"user_id": st.sampled_from(["u1", "u2", ""]) | json_values,
                 "item_id": st.sampled_from(["i1", "i2"]) | json_values,
                 "action": actions.filter(lambda v: not isinstance(v, bytes)) | json_values,
                 "timestamp": st.floats(0, 4e9) | json_values, "order": st.integers(0, 100) | json_values,
                 "rating": st.floats(0, 5) | json_values, "text": weird_text}


@st.composite
def records(draw: st.DrawFn) -> dict:
    keys = draw(st.lists(st.sampled_from(list(EVENT_KEYS) + ["extra"]), unique=True))
    return {k: draw(record_values.get(k, json_values)) for k in keys}


def _load(name: str, data: bytes, strict: bool):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(data)
        return _ok_or_typed(load_events_file, path, strict=strict)


def _check_loaded(out) -> None:
    if isinstance(out, LlmintError):
        return
    for e in out.events:
        assert isinstance(e, Event) and e.user_id and (e.item_id is None or e.item_id in out.items)
        for s in (e.user_id, e.item_id, e.text):
            assert s is None or s.encode("utf-8")  # never a lone surrogate


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(records(), max_size=6), strict=st.booleans())
def test_jsonl_reader_gives_a_dataset_or_a_typed_error(rows, strict) -> None:
    data = "\n".join(json.dumps(r) for r in rows).encode("utf-8", "surrogatepass")
    _check_loaded(_load("events.jsonl", data, strict))


csv_cell = st.one_of(st.text(max_size=15), st.sampled_from(["", "nan", "inf", "-1", "1e999", "1.5", "2020-01-01",
                                                             '"', '""', "\x00", "a,b"]))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(header=st.lists(st.sampled_from(list(EVENT_KEYS) + ["x", ""]), min_size=1, max_size=8),
       body=st.lists(st.lists(csv_cell, max_size=9), max_size=6), strict=st.booleans())
def test_csv_reader_gives_a_dataset_or_a_typed_error(header, body, strict) -> None:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(body)
    data = buf.getvalue().encode("utf-8", "surrogatepass")
    _check_loaded(_load("events.csv", data, strict))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".jsonl"]), strict=st.booleans())
def test_reader_on_random_bytes(data, suffix, strict) -> None:
    _check_loaded(_load("events" + suffix, b"user_id,item_id,timestamp\n" + data if suffix == ".csv" else data,
                        strict))


# Inputs that once escaped the loader as bare Python errors (OverflowError, RecursionError, _csv.Error);
# tests/test_loaders.py pins what each gives now.
LOADER_BUGS = [
    pytest.param("events.jsonl", b'{"user_id":"u","item_id":"i","timestamp":1' + b"0" * 400 + b"}\n", id="huge-int"),
    pytest.param("events.jsonl", b"[" * 100_000 + b"\n", id="deep-json"),
    pytest.param("events.csv", b"user_id,item_id,timestamp,text\nu,i,1," + b"x" * 200_000 + b"\n",
                 id="csv-field-limit"),
    pytest.param("events.jsonl", b'{"user_id":"u","item_id":"i","timestamp":1' + b"0" * 5000 + b"}\n",
                 id="int-over-4300-digits"),
    pytest.param("events.jsonl", b'{"user_id":"u\\ud800","item_id":"i","timestamp":1}\n', id="lone-surrogate"),
]


@pytest.mark.parametrize(("name", "data"), LOADER_BUGS)
def test_known_loader_escapes(name: str, data: bytes) -> None:
    for strict in (True, False):
        _check_loaded(_load(name, data, strict))


def test_audit_append_survives_lone_surrogates(tmp_path: Path) -> None:
    """A loader keeps "\\ud800" from JSONL in a stored history; the audit row must still be written."""
    from llmint.audit import AuditLog, AuditRecord

    with AuditLog(tmp_path / "a.sqlite") as log:
        aid = log.append(AuditRecord(
            user_id="u\ud800", input_text="History \udcff", model_id="m", model_sha256="a" * 64, adapter_id=None,
            adapter_sha256=None, prompt_name="p", prompt_version="1", prompt_sha256="b" * 64, decoding={},
            output={"input": {"events": [{"text": "bad \ud800 review"}]}}, top_category="c", faithful=None,
            latency_ms=0.0))
        row = log.get(aid)
    assert row.output["input"]["events"][0]["text"] == "bad \ufffd review" and row.user_id == "u\ufffd"
