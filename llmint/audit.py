"""The audit log of served predictions: one SQLite row per prediction, reviewed by people.

The service calls `AuditLog.append(AuditRecord(...))` once per served
prediction; reviewers `list`, `get`, `flag`, `approve`, `export` and
`summary` the rows. Guarantees:

- PII never reaches the file: `append` runs `llmint.redact.redact` over the
  input text and over every string under an explanation key of the output
  (`EXPLANATION_KEYS`), even though the serialiser already redacted them.
- Append-only: SQLite triggers abort every UPDATE and DELETE on `predictions`
  and `reviews`, except the one UPDATE `redact_user` (right to erasure) makes,
  which must set `erased` from 0 to 1, clear `user_id`, write "[erased]" and
  leave the provenance columns untouched.
- One row per append, in one transaction; many threads may share one
  `AuditLog` (one connection behind a lock; WAL lets other processes read).
- Numbered migrations recorded in `_migrations`; a file written by a newer
  llmint is refused with `AuditError` rather than misread.

A row's review status is its latest review: None, "flagged" or "approved".
Times are UTC ISO-8601 strings with microseconds and a "Z", so they sort as
text. This module knows nothing about models, prompts or how an output was
computed; pyarrow is imported inside `export`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import LlmintError, UnknownIdError
from .paths import home
from .redact import redact

logger = logging.getLogger(__name__)

EXPLANATION_KEYS = frozenset({"explanation", "explanations", "model_text", "text"})
"""Every string under these keys of `AuditRecord.output`, at any depth, is redacted (and erased)."""
ERASED = "[erased]"
STATUSES = ("flagged", "approved", "unreviewed")
_ACTION_STATUS = {"flag": "flagged", "approve": "approved"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_JSON_COLUMNS = ("decoding", "output", "reviews")


class AuditError(LlmintError):
    """An audit record is malformed, or the audit database cannot be used as it is."""


class UnknownAuditIdError(AuditError, UnknownIdError):
    """No prediction with this audit_id is in the log."""


@dataclass(frozen=True)
class AuditConfig:
    """Where the audit log lives and how long a writer waits for a lock."""

    path: Path = field(
        default_factory=lambda: home() / "audit.sqlite",
        metadata={"help": "the SQLite file; default <LLMINT_HOME>/audit.sqlite, read at construction"},
    )
    timeout_s: float = field(default=30.0, metadata={"help": "SQLite busy timeout in seconds"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        t = self.timeout_s
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise ValueError(f"timeout_s must be a finite number > 0, got {t!r}")


@dataclass(frozen=True)
class AuditRecord:
    """What the service writes for one served prediction (validated again by `append`)."""

    user_id: str | None
    input_text: str  # the serialised history exactly as the model saw it
    model_id: str
    model_sha256: str
    adapter_id: str | None
    adapter_sha256: str | None
    prompt_name: str
    prompt_version: str
    prompt_sha256: str
    decoding: Mapping[str, Any]  # decoding settings, seed included
    output: Mapping[str, Any]  # distribution, top category, explanation, citations, products
    top_category: str
    faithful: bool | None  # the explanation check's verdict; None when not checked
    latency_ms: float
    cold_start: bool = False

    def __post_init__(self) -> None:
        _validate(self)


@dataclass(frozen=True)
class Review:
    """One reviewer action on one prediction."""

    id: int
    audit_id: str
    action: str  # "flag" or "approve"
    reason: str | None  # set for flags
    note: str
    reviewer: str
    created_utc: str


@dataclass(frozen=True)
class AuditRow:
    """One stored prediction, decoded, with its review status and reviews (oldest first)."""

    audit_id: str
    created_utc: str
    user_id: str | None
    input_text: str
    input_sha256: str
    model_id: str
    model_sha256: str
    adapter_id: str | None
    adapter_sha256: str | None
    prompt_name: str
    prompt_version: str
    prompt_sha256: str
    decoding: dict[str, Any]
    output: dict[str, Any]
    top_category: str
    faithful: bool | None
    latency_ms: float
    cold_start: bool
    erased: bool
    status: str | None  # None, "flagged" or "approved": the latest review
    reviews: tuple[Review, ...] = ()


# ---------------------------------------------------------------- schema and migrations

_IMMUTABLE = (
    "seq", "audit_id", "created_utc", "model_id", "model_sha256", "adapter_id", "adapter_sha256",
    "prompt_name", "prompt_version", "prompt_sha256", "decoding_json", "top_category", "faithful",
    "latency_ms", "cold_start",
)
_ERASURE_ONLY = " AND ".join(
    ["OLD.erased = 0", "NEW.erased = 1", "NEW.user_id IS NULL", f"NEW.input_text = '{ERASED}'"]
    + [f"NEW.{c} IS OLD.{c}" for c in _IMMUTABLE]
)

MIGRATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("initial", (
        """CREATE TABLE predictions (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            audit_id TEXT NOT NULL UNIQUE,
            created_utc TEXT NOT NULL,
            user_id TEXT,
            input_text TEXT NOT NULL,
            input_sha256 TEXT NOT NULL,
            model_id TEXT NOT NULL,
            model_sha256 TEXT NOT NULL,
            adapter_id TEXT,
            adapter_sha256 TEXT,
            prompt_name TEXT NOT NULL,
            prompt_version TEXT NOT NULL,
            prompt_sha256 TEXT NOT NULL,
            decoding_json TEXT NOT NULL,
            output_json TEXT NOT NULL,
            top_category TEXT NOT NULL,
            faithful INTEGER CHECK (faithful IN (0, 1)),
            latency_ms REAL NOT NULL,
            cold_start INTEGER NOT NULL CHECK (cold_start IN (0, 1)),
            erased INTEGER NOT NULL DEFAULT 0 CHECK (erased IN (0, 1)))""",
        "CREATE INDEX predictions_created ON predictions (created_utc)",
        "CREATE INDEX predictions_category ON predictions (top_category, created_utc)",
        "CREATE INDEX predictions_user ON predictions (user_id)",
        f"""CREATE TRIGGER predictions_no_update BEFORE UPDATE ON predictions
            WHEN NOT ({_ERASURE_ONLY})
            BEGIN SELECT RAISE(ABORT, 'predictions is append-only: only an erasure may update a row'); END""",
        """CREATE TRIGGER predictions_no_delete BEFORE DELETE ON predictions
            BEGIN SELECT RAISE(ABORT, 'predictions is append-only: rows cannot be deleted'); END""",
        """CREATE TABLE reviews (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            audit_id TEXT NOT NULL REFERENCES predictions (audit_id),
            action TEXT NOT NULL CHECK (action IN ('flag', 'approve')),
            reason TEXT,
            note TEXT NOT NULL DEFAULT '',
            reviewer TEXT NOT NULL CHECK (reviewer <> ''),
            created_utc TEXT NOT NULL)""",
        "CREATE INDEX reviews_audit ON reviews (audit_id, id)",
        """CREATE TRIGGER reviews_no_update BEFORE UPDATE ON reviews
            BEGIN SELECT RAISE(ABORT, 'reviews is append-only'); END""",
        """CREATE TRIGGER reviews_no_delete BEFORE DELETE ON reviews
            BEGIN SELECT RAISE(ABORT, 'reviews is append-only'); END""",
    )),
)
"""Migration n (1-based) is `MIGRATIONS[n - 1]` = (name, statements); a new column is migration 2."""
SCHEMA_VERSION = len(MIGRATIONS)


def _migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Apply the missing migrations, each in its own transaction; return the schema version."""
    for version, (name, statements) in enumerate(MIGRATIONS, start=1):
        conn.execute("BEGIN IMMEDIATE")  # one writer decides, so two openers never both migrate
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS _migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " applied_utc TEXT NOT NULL)"
            )
            current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM _migrations").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise AuditError(
                    f"{path} has audit schema version {current}, but this llmint knows versions up to "
                    f"{SCHEMA_VERSION}: upgrade llmint to read it"
                )
            if current < version:
                for sql in statements:
                    conn.execute(sql)
                conn.execute("INSERT INTO _migrations VALUES (?, ?, ?)", (version, name, _utc_now()))
                logger.info("audit log %s: applied migration %d (%s)", path, version, name)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


# ---------------------------------------------------------------- helpers


def _utc_now() -> str:
    return _iso(datetime.now(UTC))


def _iso(t: datetime | str) -> str:
    """`t` as 'YYYY-MM-DDTHH:MM:SS.ffffffZ' (naive datetimes are taken as UTC)."""
    if isinstance(t, str):
        try:
            t = datetime.fromisoformat(t)
        except ValueError as e:
            raise AuditError(f"not an ISO-8601 time: {t!r}") from e
    if not isinstance(t, datetime):
        raise AuditError(f"expected a datetime or ISO-8601 string, got {type(t).__name__}")
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _plain(obj: Any, where: str) -> Any:
    """A JSON-ready copy of `obj`: tuples become lists, numpy values Python ones; NaN is refused."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, str):
        return _encodable(obj)
    if isinstance(obj, (bool, int)) or obj is None:
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise AuditError(f"{where} is {obj}: the audit log stores finite numbers only")
        return obj
    if hasattr(obj, "tolist"):  # numpy scalar or array
        return _plain(obj.tolist(), where)
    raise AuditError(f"{where} has a {type(obj).__name__}, which JSON cannot store")


def _encodable(text: str) -> str:
    """`text` with lone surrogates (which SQLite cannot store as UTF-8) replaced by U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _map_explanations(obj: Any, fn: Callable[[str], str], inside: bool = False) -> Any:
    """`obj` with `fn` applied to every string under a key in EXPLANATION_KEYS."""
    if isinstance(obj, dict):
        return {k: _map_explanations(v, fn, inside or k in EXPLANATION_KEYS) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_map_explanations(v, fn, inside) for v in obj]
    return fn(obj) if inside and isinstance(obj, str) else obj


def _text(value: Any, name: str, *, optional: bool = False, sha: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        kind = "a non-empty string or None" if optional else "a non-empty string"
        raise AuditError(f"AuditRecord.{name} must be {kind}, got {value!r}")
    if sha and not _SHA256.match(value):
        raise AuditError(f"AuditRecord.{name} must be 64 lowercase hex digits (a SHA-256), got {value!r}")


def _validate(r: AuditRecord) -> None:
    if not isinstance(r, AuditRecord):
        raise AuditError(f"expected an AuditRecord, got {type(r).__name__}")
    for name in ("model_id", "prompt_name", "prompt_version", "top_category"):
        _text(getattr(r, name), name)
    for name in ("model_sha256", "prompt_sha256"):
        _text(getattr(r, name), name, sha=True)
    _text(r.user_id, "user_id", optional=True)
    _text(r.adapter_id, "adapter_id", optional=True)
    _text(r.adapter_sha256, "adapter_sha256", optional=True, sha=True)
    if (r.adapter_id is None) != (r.adapter_sha256 is None):
        raise AuditError("AuditRecord.adapter_id and adapter_sha256 must both be set or both be None")
    if not isinstance(r.input_text, str) or not r.input_text:
        raise AuditError(f"AuditRecord.input_text must be a non-empty string, got {r.input_text!r}")
    for name in ("decoding", "output"):
        if not isinstance(getattr(r, name), Mapping):
            raise AuditError(f"AuditRecord.{name} must be a mapping, got {type(getattr(r, name)).__name__}")
    if r.faithful is not None and not isinstance(r.faithful, bool):
        raise AuditError(f"AuditRecord.faithful must be True, False or None, got {r.faithful!r}")
    if not isinstance(r.cold_start, bool):
        raise AuditError(f"AuditRecord.cold_start must be a bool, got {r.cold_start!r}")
    lat = r.latency_ms
    if isinstance(lat, bool) or not isinstance(lat, (int, float)) or not math.isfinite(lat) or lat < 0:
        raise AuditError(f"AuditRecord.latency_ms must be a finite number >= 0, got {lat!r}")


def _quantile(xs: Sequence[float], q: float) -> float | None:
    """Linear-interpolation quantile of sorted `xs` (numpy's default), None when empty."""
    if not xs:
        return None
    pos = q * (len(xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


_STATUS_SQL = "(SELECT r.action FROM reviews r WHERE r.audit_id = p.audit_id ORDER BY r.id DESC LIMIT 1)"
_ORDER = " ORDER BY p.created_utc DESC, p.seq DESC"


def _where(*, since: datetime | str | None = None, until: datetime | str | None = None,
           category: str | None = None, faithful: bool | None = None, status: str | None = None,
           user_id: str | None = None) -> tuple[str, list[Any]]:
    """The WHERE clause (over `predictions p`) and its parameters; since is inclusive, until exclusive."""
    clauses, params = ["1"], []
    if since is not None:
        clauses.append("p.created_utc >= ?")
        params.append(_iso(since))
    if until is not None:
        clauses.append("p.created_utc < ?")
        params.append(_iso(until))
    if category is not None:
        clauses.append("p.top_category = ?")
        params.append(category)
    if faithful is not None:
        if not isinstance(faithful, bool):
            raise AuditError(f"faithful filter must be True, False or None, got {faithful!r}")
        clauses.append("p.faithful = ?")
        params.append(int(faithful))
    if user_id is not None:
        clauses.append("p.user_id = ?")
        params.append(user_id)
    if status is not None:
        if status not in STATUSES:
            raise AuditError(f"status filter must be one of {STATUSES} or None, got {status!r}")
        if status == "unreviewed":
            clauses.append(f"{_STATUS_SQL} IS NULL")
        else:
            clauses.append(f"{_STATUS_SQL} = ?")
            params.append("flag" if status == "flagged" else "approve")
    return " WHERE " + " AND ".join(clauses), params


# ---------------------------------------------------------------- the log


class AuditLog:
    """The audit database. `AuditLog(path)` or `AuditLog(AuditConfig(...))`; use it as a context manager.

    `clock` (returns an aware datetime) stamps rows and reviews; the default is the UTC wall clock.
    """

    def __init__(self, config_or_path: AuditConfig | str | Path | None = None, *,
                 clock: Callable[[], datetime] | None = None) -> None:
        cfg = config_or_path if isinstance(config_or_path, AuditConfig) else (
            AuditConfig() if config_or_path is None else AuditConfig(path=Path(config_or_path)))
        self.config = cfg
        self.path = cfg.path
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()  # one shared connection; SQLite has one writer anyway
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=cfg.timeout_s, isolation_level=None, check_same_thread=False)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                logger.warning("audit log %s: journal_mode is %s, not WAL", self.path, mode)
            # FULL, not NORMAL: in WAL mode NORMAL may lose the last committed appends on power
            # loss or an OS crash; an audit trail must keep every served prediction, and the cost
            # is one fsync of the WAL per append (sub-millisecond to a few ms).
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self.schema_version = _migrate(conn, self.path)
        except sqlite3.DatabaseError as e:
            conn.close()
            raise AuditError(f"{self.path} is not a usable audit database: {e}") from e
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    # -- plumbing

    def close(self) -> None:
        """Close the connection (idempotent); later calls raise AuditError."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _now(self) -> str:
        return _iso(self._clock())

    @contextmanager
    def _tx(self, write: bool) -> Iterator[sqlite3.Connection]:
        """Hold the lock for one transaction: IMMEDIATE for writes, a consistent snapshot for reads."""
        with self._lock:
            if self._conn is None:
                raise AuditError(f"audit log {self.path} is closed")
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as e:
                raise AuditError(f"audit log {self.path}: cannot start a transaction: {e}") from e
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    raise AuditError(f"audit log {self.path}: {e}") from e
                raise

    # -- writing

    def append(self, record: AuditRecord) -> str:
        """Store one served prediction (redacted) in one transaction; return its new audit_id."""
        _validate(record)
        text = redact(_encodable(record.input_text))
        decoding = _plain(record.decoding, "decoding")
        output = _map_explanations(_plain(record.output, "output"), redact)
        audit_id = uuid.uuid4().hex
        row = [
            audit_id, "", None if record.user_id is None else _encodable(record.user_id), text, _sha256(text),
            record.model_id, record.model_sha256,
            record.adapter_id, record.adapter_sha256, record.prompt_name, record.prompt_version,
            record.prompt_sha256, _dumps(decoding), _dumps(output), record.top_category,
            None if record.faithful is None else int(record.faithful), float(record.latency_ms),
            int(record.cold_start),
        ]
        with self._tx(write=True) as conn:
            row[1] = self._now()  # stamped under the lock, so created_utc follows insertion order
            conn.execute(
                "INSERT INTO predictions (audit_id, created_utc, user_id, input_text, input_sha256, model_id,"
                " model_sha256, adapter_id, adapter_sha256, prompt_name, prompt_version, prompt_sha256,"
                " decoding_json, output_json, top_category, faithful, latency_ms, cold_start)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        return audit_id

    def redact_user(self, user_id: str) -> int:
        """Erase one user's rows (right to erasure); return how many rows were erased.

        The input text and every explanation string become "[erased]", input_sha256 becomes the
        hash of "[erased]", user_id becomes NULL and erased 1. Provenance, category, verdict and
        latency stay, so aggregate figures survive. An erased row can never be updated again.
        """
        if not isinstance(user_id, str) or not user_id:
            raise AuditError(f"redact_user needs a non-empty user_id, got {user_id!r}")
        with self._tx(write=True) as conn:
            rows = conn.execute(
                "SELECT seq, output_json FROM predictions WHERE user_id = ? AND erased = 0", (user_id,)
            ).fetchall()
            for seq, output_json in rows:
                output = _map_explanations(json.loads(output_json), lambda _s: ERASED)
                conn.execute(
                    "UPDATE predictions SET input_text = ?, input_sha256 = ?, output_json = ?, user_id = NULL,"
                    " erased = 1 WHERE seq = ?",
                    (ERASED, _sha256(ERASED), _dumps(output), seq),
                )
        logger.info("audit log %s: erased %d rows of one user", self.path, len(rows))
        return len(rows)

    def flag(self, audit_id: str, reviewer: str, reason: str, note: str = "") -> int:
        """Flag a prediction (e.g. reason="unfaithful"); return the review id."""
        if not isinstance(reason, str) or not reason.strip():
            raise AuditError(f"flag needs a non-empty reason, got {reason!r}")
        return self._review(audit_id, "flag", reviewer, reason, note)

    def approve(self, audit_id: str, reviewer: str, note: str = "") -> int:
        """Approve a prediction; return the review id."""
        return self._review(audit_id, "approve", reviewer, None, note)

    def _review(self, audit_id: str, action: str, reviewer: str, reason: str | None, note: str) -> int:
        if not isinstance(reviewer, str) or not reviewer.strip():
            raise AuditError(f"a review needs a non-empty reviewer, got {reviewer!r}")
        if not isinstance(note, str):
            raise AuditError(f"note must be a string, got {type(note).__name__}")
        with self._tx(write=True) as conn:
            self._check_id(conn, audit_id)
            cur = conn.execute(
                "INSERT INTO reviews (audit_id, action, reason, note, reviewer, created_utc)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (audit_id, action, reason, redact(note), reviewer, self._now()),  # notes may quote PII
            )
            return int(cur.lastrowid)

    def _check_id(self, conn: sqlite3.Connection, audit_id: str) -> None:
        if not isinstance(audit_id, str) or conn.execute(
            "SELECT 1 FROM predictions WHERE audit_id = ?", (audit_id,)
        ).fetchone() is None:
            raise UnknownAuditIdError(f"no prediction with audit_id {audit_id!r} in {self.path}")

    # -- reading

    def get(self, audit_id: str) -> AuditRow:
        """The row with this audit_id, with its reviews; UnknownAuditIdError if there is none."""
        with self._tx(write=False) as conn:
            self._check_id(conn, audit_id)
            return self._rows(conn, " WHERE p.audit_id = ?", [audit_id])[0]

    def list(self, *, since: datetime | str | None = None, until: datetime | str | None = None,
             category: str | None = None, faithful: bool | None = None, status: str | None = None,
             user_id: str | None = None, limit: int = 100, offset: int = 0) -> list[AuditRow]:
        """Rows matching every given filter, newest first. since <= created_utc < until;
        status is "flagged", "approved" or "unreviewed" (by the latest review).
        """
        for name, v in (("limit", limit), ("offset", offset)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise AuditError(f"{name} must be an int >= 0, got {v!r}")
        where, params = _where(since=since, until=until, category=category, faithful=faithful,
                               status=status, user_id=user_id)
        with self._tx(write=False) as conn:
            return self._rows(conn, where + _ORDER + " LIMIT ? OFFSET ?", params + [limit, offset])

    def count(self, **filters: Any) -> int:
        """How many rows `list(**filters)` would return without a limit."""
        where, params = _where(**filters)
        with self._tx(write=False) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM predictions p" + where, params).fetchone()[0])

    def _rows(self, conn: sqlite3.Connection, tail: str, params: Sequence[Any]) -> list[AuditRow]:
        cur = conn.execute(f"SELECT p.*, {_STATUS_SQL} AS last_action FROM predictions p{tail}", params)
        names = [d[0] for d in cur.description]
        raw = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        reviews: dict[str, list[Review]] = {r["audit_id"]: [] for r in raw}
        ids = list(reviews)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            for rv in conn.execute(
                "SELECT id, audit_id, action, reason, note, reviewer, created_utc FROM reviews"
                f" WHERE audit_id IN ({','.join('?' * len(chunk))}) ORDER BY id", chunk
            ):
                reviews[rv[1]].append(Review(*rv))
        out = []
        for r in raw:
            r["decoding"], r["output"] = json.loads(r.pop("decoding_json")), json.loads(r.pop("output_json"))
            r["faithful"] = None if r["faithful"] is None else bool(r["faithful"])
            r["cold_start"], r["erased"] = bool(r["cold_start"]), bool(r["erased"])
            r["status"], r["reviews"] = _ACTION_STATUS.get(r.pop("last_action")), tuple(reviews[r["audit_id"]])
            del r["seq"]
            out.append(AuditRow(**r))
        return out

    # -- export and summary

    def export(self, path: str | Path, *, format: str | None = None, **filters: Any) -> int:
        """Write the rows matching `filters` (newest first) to `path`; return how many were written.

        `format` is "csv", "jsonl" or "parquet" (default: from the suffix). CSV and Parquet hold the
        JSON columns (decoding, output, reviews) as canonical JSON strings; JSONL keeps them nested.
        Rows appended after the export starts are left out. The file is replaced atomically.
        """
        path = Path(path)
        fmt = format or path.suffix.lstrip(".").lower()
        if fmt not in ("csv", "jsonl", "parquet"):
            raise AuditError(f"export format must be csv, jsonl or parquet, got {fmt!r} (from {path.name})")
        where, params = _where(**filters)
        with self._tx(write=False) as conn:
            top = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM predictions").fetchone()[0]
        where += " AND p.seq <= ?"
        params.append(top)
        columns = [f.name for f in fields(AuditRow)]

        def pages() -> Iterator[list[dict[str, Any]]]:
            offset = 0
            while True:
                with self._tx(write=False) as conn:
                    page = self._rows(conn, where + _ORDER + " LIMIT 1000 OFFSET ?", params + [offset])
                if not page:
                    return
                offset += len(page)
                yield [asdict(r) for r in page]

        def flat(d: dict[str, Any]) -> dict[str, Any]:
            return {k: _dumps(d[k]) if k in _JSON_COLUMNS else d[k] for k in columns}

        tmp = path.with_name(path.name + ".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        n = 0
        try:
            if fmt == "parquet":
                n = self._write_parquet(tmp, (list(map(flat, p)) for p in pages()), columns)
            else:
                with tmp.open("w", encoding="utf-8", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=columns) if fmt == "csv" else None
                    if writer:
                        writer.writeheader()
                    for page in pages():
                        for d in page:
                            if writer:
                                writer.writerow(flat(d))
                            else:
                                f.write(_dumps({k: d[k] for k in columns}) + "\n")
                        n += len(page)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        return n

    @staticmethod
    def _write_parquet(tmp: Path, pages: Iterator[list[dict[str, Any]]], columns: list[str]) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq

        types = {"faithful": pa.bool_(), "cold_start": pa.bool_(), "erased": pa.bool_(), "latency_ms": pa.float64()}
        schema = pa.schema([(c, types.get(c, pa.string())) for c in columns])
        n = 0
        with pq.ParquetWriter(tmp, schema) as writer:
            for page in pages:
                writer.write_table(pa.Table.from_pylist(page, schema=schema))
                n += len(page)
            if n == 0:
                writer.write_table(schema.empty_table())
        return n

    def summary(self, **filters: Any) -> dict[str, Any]:
        """Figures over the rows matching `filters`:

        {"n", "n_with_verdict", "faithful_share" (of rows with a verdict; None if none),
         "n_flagged", "n_approved", "n_unreviewed" (by latest review),
         "flags_by_reason" (every flag review on these rows, by reason),
         "by_category": {category: {"n", "faithful_share"}}, "latency_ms": {"p50", "p99"}}
        """
        where, params = _where(**filters)
        with self._tx(write=False) as conn:
            rows = conn.execute(
                f"SELECT p.top_category, p.faithful, p.latency_ms, {_STATUS_SQL} FROM predictions p" + where,
                params,
            ).fetchall()
            reasons = conn.execute(
                "SELECT reason, COUNT(*) FROM reviews WHERE action = 'flag' AND audit_id IN"
                " (SELECT p.audit_id FROM predictions p" + where + ") GROUP BY reason ORDER BY reason",
                params,
            ).fetchall()

        def share(verdicts: list[int | None]) -> float | None:
            known = [v for v in verdicts if v is not None]
            return sum(known) / len(known) if known else None

        by_cat: dict[str, list[int | None]] = {}
        for cat, faithful, _, _ in rows:
            by_cat.setdefault(cat, []).append(faithful)
        actions = [r[3] for r in rows]
        latencies = sorted(r[2] for r in rows)
        return {
            "n": len(rows),
            "n_with_verdict": sum(r[1] is not None for r in rows),
            "faithful_share": share([r[1] for r in rows]),
            "n_flagged": actions.count("flag"),
            "n_approved": actions.count("approve"),
            "n_unreviewed": actions.count(None),
            "flags_by_reason": dict(reasons),
            "by_category": {c: {"n": len(v), "faithful_share": share(v)} for c, v in sorted(by_cat.items())},
            "latency_ms": {"p50": _quantile(latencies, 0.5), "p99": _quantile(latencies, 0.99)},
        }


__all__ = [
    "EXPLANATION_KEYS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "AuditConfig",
    "AuditError",
    "AuditLog",
    "AuditRecord",
    "AuditRow",
    "Review",
    "UnknownAuditIdError",
]
