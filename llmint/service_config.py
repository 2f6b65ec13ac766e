"""The configuration, input checks and result types of `llmint.service.InterestService`.

`ServiceConfig` says what the service loads once at start (model, adapter,
prompt, dataset, index, audit log) and the limits it enforces on input.
`check_events` turns what a caller sends (Event objects or dicts with the
canonical keys) into checked `Event`s. `Prediction`, `Product`, `CitedEvent`,
`CategoryScore` and `ReplayResult` are what the service returns. This module
loads nothing and knows nothing about models, indexes or SQLite.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence, Sized
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .coldstart import COLD_MAX, COLD_STRENGTH
from .errors import DataError, HistoryError, UnknownIdError
from .schema import Event, Item

SCORER_MODES = ("trie", "flat", "fused")
DEVICES = ("cpu", "cuda", "auto")
DTYPES = ("float32", "bfloat16", "float16", "auto")
SOURCES = ("model", "evidence", "prior")
EVENT_KEYS = tuple(f.name for f in fields(Event))
ANONYMOUS = "anonymous"  # the user id given to pasted events that carry none


def _h(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class ServiceConfig:
    """Everything `InterestService` loads once, and the limits it checks on every request."""

    dataset: str | None = field(default=None, metadata=_h(
        "registered dataset name or canonical events file (llmint.loaders.load_dataset); "
        "not needed with InterestService.from_dataset"))
    level: int | None = field(default=None, metadata=_h("taxonomy level predicted (None: the dataset's)"))
    model: str | None = field(default=None, metadata=_h("registry name, HF folder or .gguf (None: default)"))
    adapter: str | None = field(default="auto", metadata=_h(
        "peft adapter folder; 'auto': the adapter bundled for this model and dataset if any "
        "(llmint.bundled), else zero-shot; None or 'none': zero-shot"))
    prompt: str = field(default="next_interest", metadata=_h("prompt template name or .yaml path"))
    serialize: Mapping[str, Any] = field(default_factory=dict, metadata=_h("SerializeConfig overrides"))
    device: str = field(default="cpu", metadata=_h("'cpu', 'cuda' or 'auto'"))
    dtype: str = field(default="float32", metadata=_h(
        "model dtype: 'float32' (replays exact to 1e-5), 'bfloat16', 'float16', or 'auto' (bfloat16 where the "
        "device computes it natively, llmint.models.native_bf16; else float32)"))
    scorer_mode: str = field(default="trie", metadata=_h(
        "CategoryScorer mode: 'trie' (two passes: the prompt, then the labels' prefix tree), 'flat', or "
        "'fused' (prompt and tree in one pass: for a GPU, with cuda_graphs)"))
    cuda_graphs: bool = field(default=False, metadata=_h(
        "'fused' mode on a CUDA device: each prompt bucket's scoring pass is captured as a CUDA graph once "
        "and replayed (batch-1 latency on a GPU is kernel launches, not arithmetic)"))
    scorer_bucket: int | None = field(default=None, metadata=_h(
        "'fused' mode: padded prompt width rounded up to a multiple of this (None: 64 with cuda_graphs, else 1)"))
    batch_size: int = field(default=8, metadata=_h("prompts per forward pass"))
    temperature: float | None = field(default=None, metadata=_h(
        "softmax temperature over label log-probs (None: the adapter's calibration.json, else 1.0)"))
    calibrate_valid: int = field(default=0, metadata=_h(
        "fit the temperature at start on this many validation cases (0: use `temperature`)"))
    embedder: str | None = field(default=None, metadata=_h("sentence-transformers folder (None: bundled)"))
    index_dir: str | None = field(default=None, metadata=_h(
        "saved ItemIndex folder: loaded if present and still matching the catalogue (llmint.index_cache), "
        "else built at start and saved there (None: built, not saved)"))
    build_index: bool = field(default=True, metadata=_h(
        "build the index at start when none is saved or the saved one is stale (False: raise ModelError)"))
    index_at_start: bool = field(default=True, metadata=_h(
        "load the embedder and the item index at start (False: on the first request for products, so a "
        "service asked only for categories and explanations starts ~2 s sooner and never loads them; the CLI's "
        "one-shot commands always load them on first use)"))
    audit_path: str | None = field(default=None, metadata=_h(
        "audit SQLite file (None: <LLMINT_HOME>/audit.sqlite)"))
    max_events_per_history: int = field(default=500, metadata=_h(
        "a pasted history longer than this raises HistoryError; a stored one keeps its newest N"))
    max_text_chars: int = field(default=5000, metadata=_h("an event text longer than this raises DataError"))
    max_batch: int = field(default=64, metadata=_h("predict_batch takes at most this many inputs"))
    coalesce_max: int = field(default=1, metadata=_h(
        "requests for one shopper arriving from several threads at once are scored together, up to this "
        "many in one pass (llmint.coalesce; 1: off); explained requests get their own prompt's K/V cut out "
        "of the pass. Pays where a batch costs about what one shopper costs (a GPU); probabilities equal the "
        "lone ones up to float error (replay_atol)"))
    coalesce_wait_ms: float = field(default=0.0, metadata=_h(
        "with coalesce_max > 1: how long a request waits for company before it is scored (0: none; "
        "requests still queue up while the model is busy, which is when batching pays)"))
    max_new_tokens: int = field(default=64, metadata=_h("explanation length cap (greedy decoding)"))
    cold_start_max: int = field(default=COLD_MAX, metadata=_h("histories with at most this many events are cold"))
    cold_start_strength: float = field(default=COLD_STRENGTH, metadata=_h(
        "k in the model weight n / (n + k) of a cold history of n >= 1 events"))
    exclude_seen: bool = field(default=False, metadata=_h("leave the shopper's own items out of products"))
    explain_batch: int = field(default=1, metadata=_h(
        "predict_batch decodes this many explanations together (a pass reads every weight once whatever "
        "the batch), each continuing its scored prompt and reading ahead through its own guesses "
        "(llmint.draft_batch); 1: one shopper at a time, texts independent of the batch. Batched texts "
        "equal the lone ones up to float error; a replay, run alone, reports a near tie that broke the "
        "other way"))
    keep_prompt_kv: bool = field(default=True, metadata=_h(
        "an explained shopper's explanation continues the K/V its scoring pass computed for the prompt "
        "(in predict_batch, each prompt's own K/V cut out of its batch_size pass); False: generation runs "
        "each prompt again after the shared system turn"))
    draft_explanations: bool = field(default=True, metadata=_h(
        "a single explanation reads ahead through text it can guess (the evidence template's wordings, "
        "the cited events' titles), each guess checked by the model in one pass (llmint.drafting): "
        "greedy's text in fewer passes; a near tie may break the other way, so the audit row records it "
        "and replay follows"))
    seed: int = field(default=0, metadata=_h("torch seed set before each generation; split tie seed"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "serialize", dict(self.serialize))
        for name in ("dataset", "model", "adapter", "embedder", "index_dir", "audit_path"):
            v = getattr(self, name)
            if isinstance(v, Path):
                object.__setattr__(self, name, str(v))
            elif v is not None and (not isinstance(v, str) or not v):
                raise ValueError(f"{name}={v!r}; expected None or a non-empty str")
        if not isinstance(self.prompt, str) or not self.prompt:
            raise ValueError(f"prompt={self.prompt!r}; expected a template name or a .yaml path")
        for name, allowed in (("device", DEVICES), ("dtype", DTYPES), ("scorer_mode", SCORER_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}; expected one of {allowed}")
        if self.cuda_graphs and self.scorer_mode != "fused":
            raise ValueError(f"cuda_graphs needs scorer_mode='fused' (fixed shapes), not {self.scorer_mode!r}")
        if self.scorer_bucket is not None and (isinstance(self.scorer_bucket, bool)
                                               or not isinstance(self.scorer_bucket, int) or self.scorer_bucket < 1):
            raise ValueError(f"scorer_bucket={self.scorer_bucket!r}; expected None or an int >= 1")
        if self.level is not None and (isinstance(self.level, bool) or not isinstance(self.level, int)
                                       or self.level < 1):
            raise ValueError(f"level={self.level!r}; expected None or an int >= 1")
        for name in ("batch_size", "max_events_per_history", "max_text_chars", "max_batch", "max_new_tokens",
                     "explain_batch", "coalesce_max"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}; expected an int >= 1")
        for name in ("calibrate_valid", "cold_start_max", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name}={v!r}; expected an int >= 0")
        for name in ("temperature", "cold_start_strength"):
            v = getattr(self, name)
            if name == "temperature" and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name}={v!r}; expected a finite number > 0")
        w = self.coalesce_wait_ms
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 10_000:
            raise ValueError(f"coalesce_wait_ms={w!r}; expected milliseconds in [0, 10000]")
        for name in ("build_index", "index_at_start", "exclude_seen", "keep_prompt_kv", "draft_explanations"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r}; expected True or False")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ServiceConfig:
        """Build from a mapping; unknown keys raise ValueError naming the allowed ones."""
        if not isinstance(d, Mapping):
            raise ValueError(f"a service config must be a mapping, got {type(d).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            raise ValueError(f"unknown ServiceConfig key(s) {unknown}; allowed: {known}")
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path) -> ServiceConfig:
        """Read a YAML file of ServiceConfig fields; unknown keys are an error."""
        import yaml

        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from None


@dataclass(frozen=True)
class CategoryScore:
    """One category label and its probability."""

    category: str
    probability: float


@dataclass(frozen=True)
class CitedEvent:
    """An event the explanation cites: its [n] number in the history shown, and the event."""

    position: int
    event: Event


@dataclass(frozen=True)
class Product:
    """A catalogue item retrieved inside the predicted category."""

    item_id: str
    title: str
    score: float  # inner product of the shopper profile (or category text) and the item
    category: str | None  # the item's category label at the taxonomy level


@dataclass(frozen=True)
class Prediction:
    """One served prediction.

    `distribution` maps every taxonomy label (in taxonomy order) to its
    probability; `top` holds the best `top_k`. `explanation_source` is "model"
    (the model's text passed the faithfulness check), "evidence" (it failed; the
    grounded template is served), "prior" (no events: a population-based
    suggestion) or None (explain=False). `prior_weight` is the population
    prior's share of the blend (0 for warm shoppers, 1 with no events).
    `timings_ms` has one entry per stage; in a batch, "score" is the whole
    batch's scoring time.
    """

    user_id: str | None
    top: tuple[CategoryScore, ...]
    distribution: Mapping[str, float]
    explanation: str | None
    explanation_source: str | None
    cited: tuple[CitedEvent, ...]
    faithful: bool | None
    faithfulness_reasons: tuple[str, ...]
    model_text: str | None
    products: tuple[Product, ...]
    cold_start: bool
    n_events: int
    prior_weight: float
    timings_ms: Mapping[str, float]
    audit_id: str

    @property
    def top_category(self) -> str:
        return self.top[0].category

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (`dataclasses.asdict`), with `top_category` added."""
        d = asdict(self)
        d["top_category"] = self.top_category
        return d


REPLAY_ATOL = 1e-5  # probabilities closer than this are the same in a replay (float32 batch noise)
REPLAY_ATOL_16BIT = 1e-2  # the same in bfloat16/float16 (batch noise up to 4.1e-3 measured in bfloat16)


def replay_atol(dtype: str) -> float:
    """How far a replayed probability may move from the stored one and still count as the same: the batch
    noise of the model's dtype (a shopper scored in a padded batch vs alone). Measured on Office, 16
    shoppers alone vs in pairs and in one batch of 16: float32 3.1e-7, bfloat16 4.1e-3 (CPU).

    Example:
        >>> replay_atol("float32"), replay_atol("bfloat16")
        (1e-05, 0.01)
    """
    return REPLAY_ATOL if dtype == "float32" else REPLAY_ATOL_16BIT


@dataclass(frozen=True)
class ReplayResult:
    """Whether re-running a stored prediction gives the same output.

    `identical` compares the distribution (each probability rounded to 1e-6; two
    values within `replay_atol(dtype)` of each other count as equal: a shopper scored
    in a padded batch and the same shopper replayed alone differ by float32 noise, up
    to 3.3e-6 measured, so 1e-5 in float32; bfloat16 moves them by up to 4e-3, so 1e-2,
    and a near tie may then swap the top category), the top category, the explanation text and the
    product ids. `differences` maps each differing field to {"stored", "replayed"};
    `version_differences` lists provenance that changed since the row was written
    (model, adapter or prompt sha256, history format, taxonomy, dtype): then the replay
    ran on the current versions and a difference is expected.
    """

    audit_id: str
    identical: bool
    versions_match: bool
    version_differences: tuple[str, ...]
    differences: Mapping[str, Any]
    input_identical: bool  # the re-serialised input equals the stored input text


@dataclass(frozen=True)
class ForgetReport:
    """What `InterestService.forget(user_id)` removed (right to erasure).

    `events_removed`: the shopper's events dropped from the service's stored
    histories and from its in-memory copy of the dataset; `audit_rows_erased`:
    rows `AuditLog.redact_user` erased now (rows erased earlier are not counted
    again); `known`: whether the service had a stored history for the shopper.
    """

    user_id: str
    known: bool
    events_removed: int
    audit_rows_erased: int


# ---------------------------------------------------------------- input checks


def event_time(e: Event) -> float:
    """The time an event is ordered by: its timestamp, else its order index."""
    return float(e.timestamp) if e.timestamp is not None else float(e.order or 0)


def sort_key(e: Event) -> tuple[float, int]:
    return (event_time(e), e.order if e.order is not None else -1)


def append_events(history: Sequence[Event], events: Sequence[Event], user_id: str, limit: int) -> list[Event]:
    """`history` (in time order) with checked `events` appended, newest `limit` kept: what
    `InterestService.observe` stores; the inputs are left as they are.

    The new events are sorted by time (stably) and must all be `user_id`'s (DataError) and no
    older than the history's last event (HistoryError).

    Example:
        >>> old = [Event("u", "a", "view", order=1)]
        >>> [e.item_id for e in append_events(old, [Event("u", "c", "view", order=3),
        ...                                         Event("u", "b", "view", order=2)], "u", 2)]
        ['b', 'c']
    """
    other = [e.user_id for e in events if e.user_id != user_id]
    if other:
        raise DataError(f"observe({user_id!r}) got events of user {other[0]!r}")
    new = sorted(events, key=sort_key)
    if history and new and event_time(new[0]) < event_time(history[-1]):
        raise HistoryError(
            f"observe({user_id!r}): an event at time {event_time(new[0])} is older than the "
            f"shopper's last event ({event_time(history[-1])}); events must arrive in time order")
    return [*history, *new][-limit:]


def check_utf8(value: Any, what: str) -> Any:
    """`value` with bytes decoded as UTF-8 and str checked to be encodable (no lone surrogates).

    Example:
        >>> check_utf8(b"caf\\xc3\\xa9", "text")
        'café'
    """
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{what} is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise DataError(f"{what} is not valid UTF-8 text ({e.reason} at character {e.start})") from None
    return value


def check_event(x: Any, i: int, items: Mapping[str, Item], max_text_chars: int,
                default_user: str | None = None) -> Event:
    """Event `i` of a request, checked: an Event, or a dict with the canonical keys.

    A dict without user_id gets `default_user` (or "anonymous"). Raises DataError
    for a malformed event, non-UTF-8 or over-long text, UnknownIdError for an item
    not in `items`.
    """
    where = f"event {i}"
    if isinstance(x, Mapping):
        unknown = sorted(str(k) for k in x if k not in EVENT_KEYS)
        if unknown:
            raise DataError(f"{where}: unknown keys {unknown}; expected some of {list(EVENT_KEYS)}")
        d = {k: check_utf8(v, f"{where}.{k}") for k, v in x.items()}
        if d.get("user_id") is None:
            d["user_id"] = default_user or ANONYMOUS
        try:
            e = Event(**d)
        except TypeError as err:  # a required key is missing
            raise DataError(f"{where}: {err}; expected keys user_id, item_id, action and a "
                            "timestamp or order") from None
        except DataError as err:
            raise DataError(f"{where}: {err}") from None
        except OverflowError:  # an int too large for a float, e.g. timestamp=10**400
            raise DataError(f"{where}: a number is too large (over the float range); expected unix "
                            "seconds, an order index and a rating within 0..5") from None
    elif isinstance(x, Event):
        e = x
        for name in ("text", "user_id", "item_id"):
            check_utf8(getattr(e, name), f"{where}.{name}")
    else:
        raise DataError(f"{where} is a {type(x).__name__}; expected a llmint.Event or a dict "
                        f"with keys {list(EVENT_KEYS)}")
    if e.text is not None and len(e.text) > max_text_chars:
        raise DataError(f"{where}: text has {len(e.text)} characters; the limit is "
                        f"max_text_chars={max_text_chars}")
    if e.item_id is not None and e.item_id not in items:
        raise UnknownIdError(f"{where}: unknown item {e.item_id!r}; it is not in the catalogue "
                             f"({len(items)} items)")
    return e


def check_events(events: Any, items: Mapping[str, Item], max_text_chars: int,
                 default_user: str | None = None, max_events: int | None = None) -> list[Event]:
    """`check_event` over a list of events (numbered from 1 in error messages).

    With `max_events`, more events raise HistoryError before any event is checked
    (a sized list) or as soon as event `max_events + 1` is read (any other iterable,
    so an endless generator cannot hang the caller).
    """
    if isinstance(events, (str, bytes, bytearray, Mapping, Event)) or not isinstance(events, Iterable):
        raise DataError(f"events is a {type(events).__name__}; expected a list of Event or dicts")
    if max_events is not None and isinstance(events, Sized) and len(events) > max_events:
        raise HistoryError(f"the history has {len(events)} events; the limit is "
                           f"max_events_per_history={max_events} (send the newest {max_events})")
    out = []
    for i, x in enumerate(events, start=1):
        if max_events is not None and i > max_events:
            raise HistoryError(f"the history has more than {max_events} events; the limit is "
                               f"max_events_per_history={max_events} (send the newest {max_events})")
        out.append(check_event(x, i, items, max_text_chars, default_user))
    return out


__all__ = [
    "ANONYMOUS",
    "EVENT_KEYS",
    "CategoryScore",
    "CitedEvent",
    "ForgetReport",
    "Prediction",
    "Product",
    "REPLAY_ATOL",
    "REPLAY_ATOL_16BIT",
    "ReplayResult",
    "ServiceConfig",
    "append_events",
    "check_event",
    "check_events",
    "check_utf8",
    "event_time",
    "replay_atol",
]
