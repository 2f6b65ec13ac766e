"""Seeded PII in review text and search queries never reaches the prompt, the audit log or an export.

PII is generated from a seed: emails, phone numbers (North American, international,
national trunk format), card numbers with a valid Luhn digit (Visa, Mastercard,
Amex; bare or grouped) and street addresses, each also hidden with zero-width
characters, non-breaking spaces and hyphens, or fullwidth digits. Each example is
planted in a review and in a search query. The fast tier runs the serialiser and a
real SQLite audit log (every text column, CSV / JSONL / Parquet exports); the real
tier does the same through `InterestService.predict_batch` on SmolLM2.
"""

from __future__ import annotations

import json
import re
import sqlite3
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from conftest import shop

from llmint import Event
from llmint.audit import AuditLog, AuditRecord
from llmint.serialize import serialize_history

N = 240  # seeded examples
STREETS = ["Main", "Elm", "Oak", "Baker", "Maple", "Cedar", "Sunset", "Park", "Lake", "Hill"]
TYPES = ["Street", "St", "Avenue", "Ave.", "Road", "Rd", "Lane", "Drive", "Boulevard", "Court"]
DOMAINS = ["example.org", "mail.example.co.uk", "shop.example.com", "uni.example.edu"]


def _luhn_digit(body: str) -> str:
    total = 0
    for k, ch in enumerate(reversed(body)):
        d = int(ch)
        if k % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def _card(rng: np.random.Generator) -> str:
    kind = rng.integers(3)
    prefix, n = [("4", 16), ("5" + str(rng.integers(1, 6)), 16), ("37", 15)][kind]
    body = prefix + "".join(str(d) for d in rng.integers(0, 10, n - len(prefix) - 1))
    num = body + _luhn_digit(body)
    sep = [" ", "-", ""][rng.integers(3)]
    if not sep:
        return num
    groups = [num[:4], num[4:10], num[10:]] if n == 15 else [num[i : i + 4] for i in range(0, 16, 4)]
    return sep.join(groups)


def _phone(rng: np.random.Generator) -> str:
    d = lambda k: "".join(str(x) for x in rng.integers(0, 10, k))  # noqa: E731
    area = str(rng.integers(2, 10)) + d(2)
    return [f"{area}-{rng.integers(2, 10)}{d(2)}-{d(4)}", f"({area}) {rng.integers(2, 10)}{d(2)}-{d(4)}",
            f"+44 20 {d(4)} {d(4)}", f"+1 {area} {rng.integers(2, 10)}{d(2)} {d(4)}", f"020 {d(4)} {d(4)}",
            f"1-800-{rng.integers(2, 10)}{d(2)}-{d(4)}"][rng.integers(6)]


def _email(rng: np.random.Generator) -> str:
    name = "".join(chr(97 + x) for x in rng.integers(0, 26, rng.integers(3, 9)))
    return f"{name}{['', '.', '+', '_'][rng.integers(4)]}{rng.integers(1, 99)}@{DOMAINS[rng.integers(len(DOMAINS))]}"


def _address(rng: np.random.Generator) -> str:
    return f"{rng.integers(1, 9999)} {STREETS[rng.integers(len(STREETS))]} {TYPES[rng.integers(len(TYPES))]}"


def _hide(s: str, how: int) -> str:
    if how == 1:  # zero-width characters between characters
        return "\u200b".join(s)
    if how == 2:  # non-breaking spaces and hyphens
        return s.replace(" ", "\u00a0").replace("-", "\u2011")
    if how == 3:  # fullwidth digits and signs
        return "".join(chr(ord(c) + 0xFEE0) if c.isdigit() or c in "@+" else c for c in s)
    return s


def pii_examples(n: int = N, seed: int = 0) -> list[tuple[str, str, str]]:
    """(kind, the PII as written, a sentence holding it), seeded."""
    rng = np.random.default_rng(seed)
    makers = {"email": _email, "phone": _phone, "card": _card, "address": _address}
    out = []
    for i in range(n):
        kind = list(makers)[i % 4]
        pii = _hide(makers[kind](rng), int(rng.integers(4)) if kind != "address" else int(rng.integers(2)))
        lead = {"email": "write to", "phone": "call me on", "card": "paid with card", "address": "I live at"}[kind]
        out.append((kind, pii, f"Nice product, {lead} {pii} if it breaks."))
    return out


EXAMPLES = pii_examples()


def _fold(s: str) -> str:
    s = "".join(ch for ch in unicodedata.normalize("NFKC", s) if unicodedata.category(ch) != "Cf")
    return re.sub(r"[\s\u2010-\u2015\-.()]+", "", s).casefold()


def leaks(pii: str, text: str) -> bool:
    """Whether `text` holds `pii`, also after folding both (NFKC, invisible characters dropped,
    separators ignored), so a leak cannot hide behind the same tricks."""
    core = _fold(pii)
    return pii in text or (len(core) >= 7 and core in _fold(text))


def leaked(examples: list[tuple[str, str, str]], texts: list[str]) -> list[tuple[str, str]]:
    """The (kind, pii) of `examples` found in any of `texts` (folded once, joined by NUL)."""
    raw = "\x00".join(texts)
    folded = "\x00".join(map(_fold, texts))
    return [(k, p) for k, p, _ in examples if p in raw or (len(_fold(p)) >= 7 and _fold(p) in folded)]


def test_the_examples_are_what_they_say() -> None:
    kinds = [k for k, _, _ in EXAMPLES]
    assert len(EXAMPLES) == N and all(kinds.count(k) == N // 4 for k in set(kinds))
    cards = [re.sub(r"\D", "", p) for k, p, _ in EXAMPLES if k == "card" and p.isascii()]
    assert cards and all(_luhn_digit(c[:-1]) == c[-1] for c in cards)
    assert leaks("555-123-4567", "call 555\u200b-123 4567") and not leaks("555-123-4567", "call [phone]")


def _history(text: str, user: str = "p") -> list[Event]:
    return [Event(user, "Paper0", "purchase", timestamp=1.7e9),
            Event(user, None, "search", timestamp=1.7e9 + 60, text="cable " + text),
            Event(user, "Ink0", "review", timestamp=1.7e9 + 120, rating=2, text=text)]


def test_pii_never_reaches_the_serialised_history() -> None:
    ds = shop()
    missed = [(k, p) for k, p, s in EXAMPLES if leaks(p, serialize_history(_history(s), ds.items).text)]
    assert missed == []


def _record(text: str, user: str) -> AuditRecord:
    events = [{"item_id": e.item_id, "action": e.action, "timestamp": e.timestamp, "order": None,
               "rating": e.rating, "text": e.text} for e in _history(text, user)]
    return AuditRecord(
        user_id=user, input_text="History: " + text, model_id="m", model_sha256="a" * 64, adapter_id=None,
        adapter_sha256=None, prompt_name="p", prompt_version="1", prompt_sha256="b" * 64, decoding={"seed": 0},
        output={"explanation": {"text": "As you said: " + text, "model_text": text}, "input": {"events": events}},
        top_category="Office > Ink", faithful=True, latency_ms=1.0)


def _all_text(path: Path) -> list[str]:
    """Every text value stored in the audit file, all tables and columns."""
    out = []
    with sqlite3.connect(path) as conn:
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for row in conn.execute(f"SELECT * FROM {table}"):  # noqa: S608 - names from sqlite_master
                out += [v for v in row if isinstance(v, str)]
    return out


def _exports(log: AuditLog, folder: Path) -> list[str]:
    import pyarrow.parquet as pq

    texts = []
    for fmt in ("csv", "jsonl", "parquet"):
        path = folder / f"export.{fmt}"
        log.export(path)
        if fmt == "parquet":
            texts += [json.dumps(r, ensure_ascii=False) for r in pq.read_table(path).to_pylist()]
        else:
            texts.append(path.read_text(encoding="utf-8"))
    return texts


def test_pii_never_reaches_audit_rows_notes_or_exports(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    with AuditLog(path) as log:
        for i, (_, _, sentence) in enumerate(EXAMPLES):
            aid = log.append(_record(sentence, f"user{i}"))
            if i % 10 == 0:
                log.flag(aid, "ana", "pii", note="the shopper wrote " + sentence)
        stored = _all_text(path) + _exports(log, tmp_path)
    missed = leaked(EXAMPLES, stored)
    assert missed == [], f"{len(missed)}/{len(EXAMPLES)} leaked, e.g. {missed[:5]}"


@pytest.mark.real
def test_pii_never_reaches_the_prompt_audit_or_exports_through_the_service(smollm2, tmp_path: Path) -> None:
    from llmint import InterestService, ServiceConfig

    cfg = ServiceConfig(audit_path=str(tmp_path / "audit.sqlite"), max_batch=16)
    examples = EXAMPLES[:48]  # every kind and hiding trick; 3 batched forward passes
    with InterestService.from_dataset(shop(n_users=6, length=5), cfg, loaded=smollm2) as svc:
        prompts = [svc.ranker.tokenizer.decode(svc.ranker.prompt_ids(_history(s))) for _, _, s in examples]
        preds = []
        for b in range(0, len(examples), 16):
            preds += svc.predict_batch([_history(s, f"p{b + k}") for k, (_, _, s) in enumerate(examples[b : b + 16])],
                                       explain=False, n_products=1)
        assert svc.audit.count() == len(examples)
        svc.audit.flag(preds[0].audit_id, "ana", "pii", note="quote: " + examples[0][2])
        stored = _all_text(Path(cfg.audit_path)) + _exports(svc.audit, tmp_path)
    missed = [(k, p) for (k, p, _), prompt in zip(examples, prompts, strict=True) if leaks(p, prompt)]
    missed += leaked(examples, stored)
    assert missed == []
