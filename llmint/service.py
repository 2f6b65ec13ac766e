"""The serving API: `InterestService.predict(history_or_user_id)` -> `Prediction`, audited.

`InterestService` loads everything once (model, ranker, taxonomy, training
category statistics, embedder and item index, audit log) and then answers:

- `predict(user_id or events)`: a calibrated distribution over the taxonomy
  (every label valid whatever the input says), the explanation of the top
  category checked for faithfulness (the grounded template is served when the
  model's text fails), products from the index restricted to that category, and
  one audit row. `explain=False` is the fast path (no generation).
- `predict_batch(inputs)`: one `logprobs` call for all histories, then one
  prediction and one audit row per input. Every input is checked before any
  model work, so a bad input raises and writes no row at all.
- `observe(user_id, events)`: append validated events to a shopper's in-memory
  history; the next `predict` reads them (no retraining). A new user is created.
- `stream_explanation(...)`: the same prediction, its explanation streamed token
  by token (greedy, in a worker thread); the audit row is written at the end.
- `replay(audit_id)`: re-run a stored prediction from the events kept in its row.
- `forget(user_id)`: delete a shopper (right to erasure): their stored history
  and their audit rows' text; see `ForgetReport`.

Input. An event is an `Event` or a dict with the canonical keys (user_id,
item_id, action, timestamp, order, rating, text); `bytes` text must be UTF-8.
Bad input raises: malformed event -> DataError, unknown item -> UnknownIdError,
a pasted history (or one `observe` call) longer than `max_events_per_history`
(or a batch over `max_batch`) -> HistoryError, raised before the events are
checked one by one (so 100k events, or an endless generator, fail at once), an
event text over `max_text_chars` or not encodable as UTF-8, or a number beyond
the float range -> DataError, an unknown user -> UnknownIdError. `top_k` and
`n_products` are clamped to the taxonomy and catalogue sizes. A pasted
history is sorted chronologically (stable, by timestamp or order); `observe`
refuses (HistoryError) events older than the shopper's last one. A stored
history is a rolling window of the newest `max_events_per_history` events.
Review text is data: the serialiser fences and cleans it.

Cold start. With n events and n <= `cold_start_max`, the served distribution
is w * model + (1 - w) * prior with w = n / (n + k), k = `cold_start_strength`;
the prior is the training popularity of each label plus one (Laplace). With no
events the model is not called: the prior is served with a population-based
explanation. Such predictions are marked `cold_start=True`.

Determinism and audit. Scoring is a forward pass; generation is greedy with a
fixed torch seed. Each audit row stores the serialised input as the model saw
it, the events themselves (item ids, actions, times; no user id, and their text
redacted by the log), model/adapter/prompt ids and sha256s and the decoding
settings, so `replay` can re-run it. Rows with PII in review text replay with
the redacted text, and report `input_identical=False`.

Threads. Many threads may call `predict` at once: tokeniser and model calls are
serialised by one lock, index searches by another, histories by a third; the
audit log is thread-safe. With `coalesce_max` > 1, single predictions that arrive
together are scored in one pass (`llmint.coalesce`; an explained one gets its own
prompt's K/V cut out of it); each audit row records its `score_batch`. This module
knows nothing about HTTP or UIs; torch and faiss are imported inside the functions
that need them.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from .coalesce import Coalescer, CoalesceStats
from .errors import DataError, HistoryError, LlmintError, ModelError, UnknownIdError
from .schema import Dataset, Event
from .service_config import (
    ANONYMOUS,
    CategoryScore,
    CitedEvent,
    ForgetReport,
    Prediction,
    Product,
    ReplayResult,
    ServiceConfig,
    append_events,
    check_events,
    check_utf8,
    replay_atol,
    sort_key,
)

logger = logging.getLogger(__name__)

_STORED_EVENT_KEYS = ("item_id", "action", "timestamp", "order", "rating", "text")


@dataclass(frozen=True)
class _Settings:
    """Per-request settings that decide the output (stored in `decoding` for replay)."""

    explain: bool
    top_k: int
    n_products: int
    temperature: float
    max_new_tokens: int
    cold_start_max: int
    cold_start_strength: float
    exclude_seen: bool
    draft: bool = False  # the explanation read ahead through guessed text (llmint.drafting); rows before: False


@dataclass(frozen=True)
class _Request:
    user_id: str | None
    events: tuple[Event, ...]


def _short(x: Any, limit: int = 80) -> str:
    """`repr(x)` cut to about `limit` characters, for error messages about caller input."""
    r = repr(x)
    return r if len(r) <= limit else r[: limit - 5] + "...'" + f" ({len(x) if isinstance(x, str) else '?'} chars)"


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _explanation_dict(ex: Any) -> dict[str, Any]:
    """What a served prediction keeps of a `llmint.explanation.Explanation`."""
    return {"text": ex.text, "source": ex.source, "model_text": ex.model_text, "ok": ex.verdict.ok,
            "reasons": ex.verdict.reasons, "cited": tuple(dict.fromkeys(ex.cited))}


def adapter_sha256(adapter: str) -> str:
    """SHA-256 of an adapter folder's `adapter_model.safetensors` (or `.bin`; else all weight files)."""
    from .models import folder_sha256, sha256_files

    folder = Path(adapter)
    for name in ("adapter_model.safetensors", "adapter_model.bin"):
        if (folder / name).is_file():
            return sha256_files([folder / name])
    return folder_sha256(folder)


class InterestService:
    """Next-interest predictions with explanations, products and an audit row each.

    Build with `InterestService(config)` (loads the dataset named in the config) or
    `InterestService.from_dataset(dataset, config, loaded=..., embedder=..., index=..., audit=...)`
    to pass parts already in memory. Close with `close()` or use it as a context manager.
    """

    def __init__(self, config: ServiceConfig | None = None, *, dataset: Dataset | None = None,
                 loaded: Any = None, embedder: Any = None, index: Any = None, audit: Any = None) -> None:
        from .audit import AuditConfig, AuditLog
        from .bundled import resolve_adapter
        from .evidence import CategoryStats
        from .llm_ranker import LLMCategoryRanker, LLMRankerConfig
        from .models import dtype_name, native_bf16
        from .scoring import _device
        from .split import SplitConfig, make_split, ordered_histories

        cfg = config or ServiceConfig()
        if not isinstance(cfg, ServiceConfig):
            raise TypeError(f"config is a {type(cfg).__name__}; expected a ServiceConfig")
        self.config = cfg
        t0 = time.perf_counter()
        if dataset is None:
            if cfg.dataset is None:
                raise ValueError("ServiceConfig.dataset is None; name a dataset or use from_dataset()")
            from .loaders import load_dataset

            dataset = load_dataset(cfg.dataset)
        self.dataset = dataset
        self.items = dataset.items
        level = cfg.level or dataset.default_level
        if loaded is None:
            from .models import load_model

            loaded = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
        self.loaded = loaded
        adapter = resolve_adapter(cfg.adapter, cfg.model, dataset.name)
        self.ranker = LLMCategoryRanker("service", dataset, level, LLMRankerConfig(
            model=cfg.model, adapter=adapter, prompt=cfg.prompt, serialize=cfg.serialize,
            batch_size=cfg.batch_size, mode=cfg.scorer_mode, cuda_graphs=cfg.cuda_graphs,
            bucket=cfg.scorer_bucket, max_valid=cfg.calibrate_valid,
            device=cfg.device, dtype=cfg.dtype, seed=cfg.seed), loaded=loaded)
        self.taxonomy = self.ranker.taxonomy
        if len(self.taxonomy) == 0:
            raise DataError(f"dataset {dataset.name!r} has no categorised items at level {level}")
        self.prompt = self.ranker.prompt_template  # loads the adapter, prompt and scorer now
        grouped = dataset.histories()  # grouped once: the split and the stored histories read it
        split = make_split(grouped, SplitConfig(seed=cfg.seed))
        if cfg.calibrate_valid > 0:
            self.ranker.fit_events(split.valid)
        elif cfg.temperature is not None:
            self.ranker.temperature = float(cfg.temperature)
        # else the ranker's own: the adapter's calibration.json, if it has one, else 1.0
        self.stats = CategoryStats.from_sequences(split.train.values(), self.items, self.taxonomy)
        self.prior = self.stats.prior(self.taxonomy.labels)
        self._histories = ordered_histories(grouped, cfg.seed, cfg.max_events_per_history)
        self._embedder, self._index, self._category_vectors = embedder, index, None
        self._retrieval_lock = threading.Lock()  # embedder and index load once, on the first thread to need them
        if cfg.index_at_start or index is not None:
            self._ensure_retrieval()
        if audit is None:
            audit = AuditLog(AuditConfig(path=Path(cfg.audit_path)) if cfg.audit_path else None)
        self.audit = audit
        self.model_id = str(loaded.spec.name)
        self.model_sha256 = str(loaded.weights_sha256)
        self.dtype = dtype_name(loaded.model)  # as loaded ("auto" resolved)
        if self.dtype == "bfloat16" and _device(loaded.model).type == "cpu" and not native_bf16("cpu"):
            logger.warning("bfloat16 on a CPU without native bfloat16 (AVX512-BF16 or AMX): emulated, and a padded "
                           "batch moves a label's log-prob by up to ~0.2 against the same shopper alone (measured), "
                           "so replays of batched rows may differ; dtype='auto' picks float32 here")
        self.adapter_id = adapter
        self.adapter_sha256 = adapter_sha256(adapter) if adapter else None
        self.labels_sha256 = _sha256_text("\n".join(self.taxonomy.labels))
        # a template built in code has no file hash: hash its text, once, so replay can compare it
        self.prompt_sha256 = self.prompt.sha256 or _sha256_text(self.prompt.system + "\n" + self.prompt.user)
        self._model_lock = threading.Lock()  # tokeniser + model: one caller at a time
        self._coalescer: Coalescer[tuple[list[Event], bool], tuple[Any, np.ndarray, Any]] | None = None
        if cfg.coalesce_max > 1:  # lone requests from many threads share one scoring pass
            self._coalescer = Coalescer(self._score_together, max_batch=cfg.coalesce_max,
                                        wait_s=cfg.coalesce_wait_ms / 1000, lock=self._model_lock)
        self._index_lock = threading.Lock()
        self._users_lock = threading.Lock()
        logger.info("service ready in %.1f s: %d labels, %d users, %s", time.perf_counter() - t0,
                    len(self.taxonomy), len(self._histories),
                    f"{len(self._index)} indexed items" if self._category_vectors is not None
                    else "item index loaded on the first request for products")

    @classmethod
    def from_dataset(cls, dataset: Dataset, config: ServiceConfig | None = None, *, loaded: Any = None,
                     embedder: Any = None, index: Any = None, audit: Any = None) -> InterestService:
        """A service over an in-memory `Dataset`, reusing any parts already loaded
        (a `LoadedModel`, an `Embedder`, an `ItemIndex`, an `AuditLog`)."""
        if not isinstance(dataset, Dataset):
            raise TypeError(f"dataset is a {type(dataset).__name__}; expected a llmint.Dataset")
        return cls(config, dataset=dataset, loaded=loaded, embedder=embedder, index=index, audit=audit)

    @property
    def embedder(self) -> Any:
        """The sentence-transformers `Embedder` of the item index (loaded now if it was left for later)."""
        self._ensure_retrieval()
        return self._embedder

    @property
    def index(self) -> Any:
        """The FAISS `ItemIndex` products come from (loaded now if it was left for later)."""
        self._ensure_retrieval()
        return self._index

    def _ensure_retrieval(self) -> None:
        if self._category_vectors is not None:
            return
        with self._retrieval_lock:
            if self._category_vectors is None:
                t0 = time.perf_counter()
                self._embedder, self._index = self._load_index(self._embedder, self._index)
                self._category_vectors = self._label_vectors()
                logger.info("item index ready in %.1f s: %d items", time.perf_counter() - t0, len(self._index))

    def _load_index(self, embedder: Any, index: Any) -> tuple[Any, Any]:
        from .embed import load_embedder
        from .index_cache import load_or_build

        cfg = self.config
        if embedder is None:
            if index is not None and index.embedder is not None:
                embedder = index.embedder
            else:
                embedder = load_embedder(cfg.embedder, device="cuda" if cfg.device == "cuda" else "cpu")
        if index is not None:
            return embedder, index
        folder = Path(cfg.index_dir) if cfg.index_dir else None
        return embedder, load_or_build(folder, self.items, embedder, build=cfg.build_index)

    def _label_vectors(self) -> dict[str, np.ndarray]:
        """One query vector per taxonomy label, for products when a shopper has no indexed item."""
        vecs = self._embedder.encode([lab.replace(" > ", ", ") for lab in self.taxonomy.labels])
        return {lab: vecs[i : i + 1] for i, lab in enumerate(self.taxonomy.labels)}

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the audit log."""
        self.audit.close()

    def __enter__(self) -> InterestService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ input

    def _events(self, events: Any, default_user: str | None) -> list[Event]:
        return check_events(events, self.items, self.config.max_text_chars, default_user,
                            max_events=self.config.max_events_per_history)

    def _request(self, x: Any) -> _Request:
        """A user id (str) or a pasted history (a list of events) -> the events to predict from."""
        x = check_utf8(x, "user_id") if isinstance(x, (bytes, bytearray)) else x
        if isinstance(x, str):
            with self._users_lock:
                hist = self._histories.get(x)
                if hist is None:
                    raise UnknownIdError(f"unknown user {_short(x)}: no history stored for this shopper "
                                         "(pass the events, or observe() them first)")
                return _Request(x, tuple(hist))
        evs = self._events(x, None)  # HistoryError over max_events_per_history, before checking them all
        users = {e.user_id for e in evs}
        if len(users) > 1:
            raise DataError(f"a pasted history must be one shopper's; it has user ids {sorted(users)[:5]}")
        evs.sort(key=sort_key)  # stable: same-time events keep the order they were sent in
        uid = next(iter(users)) if users else None
        return _Request(None if uid == ANONYMOUS else uid, tuple(evs))

    def _settings(self, explain: bool, top_k: int, n_products: int) -> _Settings:
        if not isinstance(explain, bool):
            raise TypeError(f"explain={explain!r}; expected True or False")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k={top_k!r}; expected an int >= 1")
        if isinstance(n_products, bool) or not isinstance(n_products, int) or n_products < 0:
            raise ValueError(f"n_products={n_products!r}; expected an int >= 0")
        c = self.config
        # both are clamped: a huge n_products must not reach the index as k
        return _Settings(explain, min(top_k, len(self.taxonomy)), min(n_products, len(self.items)),
                         float(self.ranker.temperature),
                         c.max_new_tokens, c.cold_start_max, float(c.cold_start_strength), c.exclude_seen,
                         c.draft_explanations)

    # ------------------------------------------------------------------ live updates

    def observe(self, user_id: str, events: Sequence[Event | Mapping[str, Any]]) -> int:
        """Append events to a shopper's history (a new user is created); return its length.

        Every event must belong to `user_id` (dicts may omit it), name a known item
        and action, and be no older than the shopper's last stored event (the new
        events themselves are sorted by time, stably). Nothing is appended unless
        all are valid. The history keeps its newest `max_events_per_history` events;
        one call may send at most that many (more raise HistoryError, before any check).
        """
        user_id = check_utf8(user_id, "user_id")
        if not isinstance(user_id, str) or not user_id:
            raise DataError(f"user_id={_short(user_id)}; expected a non-empty str")
        evs = self._events(events, user_id)
        with self._users_lock:
            new = append_events(self._histories.get(user_id, []), evs, user_id,
                                self.config.max_events_per_history)
            self._histories[user_id] = new
            return len(new)

    def forget(self, user_id: str) -> ForgetReport:
        """Delete a shopper (right to erasure); return what was removed.

        Removes the shopper's stored history (so `predict(user_id)` raises
        UnknownIdError afterwards, until new events are observed), drops their
        events from the service's in-memory dataset, and erases their audit rows
        with `AuditLog.redact_user` (input text and every explanation or event text
        become "[erased]", the user_id column is cleared). Idempotent: forgetting an
        unknown or already forgotten shopper returns zero counts.

        Not covered, by design or because the service cannot reach it: aggregate
        figures computed at start (category popularity, transition statistics, the
        item index), audit rows of pasted histories sent without a user id, files
        already exported from the audit log, and the source data files.
        """
        user_id = check_utf8(user_id, "user_id")
        if not isinstance(user_id, str) or not user_id:
            raise DataError(f"user_id={_short(user_id)}; expected a non-empty str")
        with self._users_lock:
            hist = self._histories.pop(user_id, None)
            kept = [e for e in self.dataset.events if e.user_id != user_id]
            n_dataset = len(self.dataset.events) - len(kept)
            self.dataset.events = kept
        n_rows = self.audit.redact_user(user_id)
        logger.info("forgot one shopper: %d stored events, %d audit rows", len(hist or ()), n_rows)
        return ForgetReport(user_id, hist is not None, max(len(hist or ()), n_dataset), n_rows)

    @property
    def coalesce_stats(self) -> CoalesceStats | None:
        """How many scoring passes coalesced requests shared, and their sizes (None: `coalesce_max` is 1)."""
        return None if self._coalescer is None else self._coalescer.stats

    def user_ids(self) -> list[str]:
        """The ids of the shoppers with a stored history (loaded or observed), sorted."""
        with self._users_lock:
            return sorted(self._histories)

    def check(self, events: Sequence[Event | Mapping[str, Any]]) -> list[Event]:
        """Checked `Event`s from events or dicts (dicts without a user_id get "anonymous");
        raises the errors `predict` would, without predicting."""
        return self._events(events, ANONYMOUS)

    def history(self, user_id: str) -> tuple[Event, ...]:
        """The stored history of a shopper, oldest first (UnknownIdError if unknown)."""
        if not isinstance(user_id, str):
            raise TypeError(f"user_id is a {type(user_id).__name__}; expected a str")
        return self._request(user_id).events

    # ------------------------------------------------------------------ prediction

    def predict(self, history_or_user_id: str | Sequence[Event | Mapping[str, Any]], *, explain: bool = True,
                top_k: int = 5, n_products: int = 5) -> Prediction:
        """Predict the next interest of a stored shopper (user id) or of a pasted history.

        Returns a `Prediction` and writes one audit row; raises (and writes nothing)
        on bad input, see the module docstring.
        """
        return self.predict_batch([history_or_user_id], explain=explain, top_k=top_k,
                                  n_products=n_products)[0]

    def predict_batch(self, inputs: Sequence[str | Sequence[Event | Mapping[str, Any]]], *,
                      explain: bool = True, top_k: int = 5, n_products: int = 5) -> list[Prediction]:
        """`predict` for many inputs with one `logprobs` call; one audit row per input.

        Every input is checked first: one bad input raises (its error names it) and
        no row is written. More than `max_batch` inputs raise HistoryError.
        """
        t0 = time.perf_counter()
        if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
            raise TypeError(f"inputs is a {type(inputs).__name__}; expected a list of user ids or histories")
        if len(inputs) > self.config.max_batch:
            raise HistoryError(f"a batch of {len(inputs)} inputs is over max_batch={self.config.max_batch}")
        settings = self._settings(explain, top_k, n_products)
        reqs = []
        for i, x in enumerate(inputs):
            try:
                reqs.append(self._request(x))
            except LlmintError as err:
                if len(inputs) == 1:
                    raise
                raise type(err)(f"input {i}: {err}") from None
        t_valid = (time.perf_counter() - t0) * 1000
        outs = self._compute(reqs, settings)
        preds = []
        for req, out in zip(reqs, outs, strict=True):
            out["timings_ms"]["validate"] = t_valid
            preds.append(self._serve(req, out, settings, t0))
        return preds

    def _compute(self, reqs: Sequence[_Request], s: _Settings, keep_kv: bool | None = None) -> list[dict[str, Any]]:
        """The model, explanation and retrieval work for checked requests; no audit.

        The warm shoppers are scored in one call (`batch_size` a pass). With `keep_kv` (default: when
        explaining and `config.keep_prompt_kv`) each prompt's K/V is cut out of its pass and kept
        (out["kv"] when not explaining) for the explanation to continue instead of re-reading the prompt
        (`logprobs_kv`); otherwise each explanation runs its own prompt after the shared prefix. Kept K/V
        are dropped as each explanation is written (SmolLM2-135M, float32: ~46 KB a prompt token, ~21 MB
        for a 450-token prompt, so a batch of 64 holds ~1.3 GB at most)."""
        from .coldstart import blend_prior
        from .scoring import to_distribution

        n_lab = len(self.taxonomy)
        t0 = time.perf_counter()
        warm = {i: row for row, i in enumerate(i for i, r in enumerate(reqs) if r.events)}
        if keep_kv is None:
            keep_kv = s.explain and self.config.keep_prompt_kv
        keep = keep_kv and bool(warm)
        coalesce = self._coalescer is not None and len(reqs) == 1 and bool(warm)
        kvs: dict[int, Any] = {}  # request index -> its scored prompt's K/V
        score_batch = len(warm)
        if coalesce:  # not under the model lock: the coalescer takes it around the batch it runs
            (ser, row, kv), score_batch = self._coalescer((reqs[0].events, keep))  # type: ignore[misc]
            sers, lp = [ser], row[None]
            if keep:
                kvs[0] = kv
        else:
            with self._model_lock:
                sers = [self.ranker.serialize(r.events) for r in reqs]
                if keep:  # each prompt's K/V kept for its explanation
                    lp, kept = self.ranker.logprobs_kv([reqs[i].events for i in warm], [sers[i] for i in warm])
                    kvs = dict(zip(warm, kept, strict=True))
                else:
                    lp = (self.ranker.logprobs([reqs[i].events for i in warm], sers=[sers[i] for i in warm]) if warm
                          else np.zeros((0, n_lab)))
        model_p = to_distribution(lp, s.temperature) if warm else lp
        t_score = (time.perf_counter() - t0) * 1000
        blended = [blend_prior(model_p[warm[i]] if r.events else None, len(r.events), self.prior,
                               cold_max=s.cold_start_max, strength=s.cold_start_strength) for i, r in enumerate(reqs)]
        labels = [self.taxonomy.labels[int(np.argmax(p))] for p, _ in blended]
        together: dict[int, dict[str, Any]] = {}
        t_together = 0.0
        if s.explain and self.config.explain_batch > 1 and len(warm) > 1:
            t1 = time.perf_counter()
            together = self._explain_together(reqs, sers, labels, list(warm), s, kvs)
            t_together = (time.perf_counter() - t1) * 1000 / len(warm)  # each row's share of the batch
        outs: list[dict[str, Any]] = []
        for i, (req, ser) in enumerate(zip(reqs, sers, strict=True)):
            (p, w_prior), label = blended[i], labels[i]
            t1 = time.perf_counter()
            kv = kvs.pop(i, None)  # dropped once explained
            ex = together.get(i) or (self._explain(req, ser, label, s, kv) if s.explain else None)
            t2 = time.perf_counter()
            products = self._products(req.events, label, s) if s.n_products else ()
            t3 = time.perf_counter()
            outs.append({
                "ser": ser, "p": p, "label": label, "prior_weight": w_prior,
                "cold": len(req.events) <= s.cold_start_max, "ex": ex, "products": products,
                "kv": None if s.explain else kv, "kv_kept": kv is not None and (i not in together or s.draft),
                "score_batch": score_batch if req.events else 0,
                "gen_batch": min(self.config.explain_batch, len(together)) if i in together else None,
                "timings_ms": {"score": t_score, "explain": (t2 - t1) * 1000 + (t_together if i in together else 0.0),
                               "products": (t3 - t2) * 1000},
            })
        return outs

    def _score_together(self, items: list[tuple[list[Event], bool]]) -> list[tuple[Any, np.ndarray, Any]]:
        """The coalescer's batch (model lock held): (history, keep its prompt's K/V) items, each history
        serialised, all scored in one call (`logprobs_kv` when any caller keeps K/V: each gets its own prompt's,
        the others None). Serialising here, not before queueing, keeps callers off the model lock while a
        batch runs, so they queue up for the next one."""
        histories = [h for h, _ in items]
        sers = [self.ranker.serialize(h) for h in histories]
        if not any(keep for _, keep in items):
            return [(ser, row, None) for ser, row in zip(sers, self.ranker.logprobs(histories, sers=sers), strict=True)]
        lp, kvs = self.ranker.logprobs_kv(histories, sers)
        return [(ser, row, kv if keep else None) for ser, row, kv, (_, keep) in zip(sers, lp, kvs, items, strict=True)]

    def _explain_together(self, reqs: Sequence[_Request], sers: Sequence[Any], labels: Sequence[str],
                          rows: Sequence[int], s: _Settings, kvs: Mapping[int, Any]) -> dict[int, dict[str, Any]]:
        """Explanations of `reqs[i]` for i in `rows` (warm shoppers), decoded `config.explain_batch` at a time:
        drafted, continuing their scored prompts' K/V `kvs` (stacked; `llmint.draft_batch`); undrafted, after
        the shared prefix (transformers' `generate`)."""
        import torch

        from .explanation import HFGenerator, explain_predictions

        with self._model_lock:
            torch.manual_seed(self.config.seed)
            kept = [kvs[i] for i in rows if i in kvs] if s.draft else []
            exs = explain_predictions(self.ranker, [reqs[i].events for i in rows], [labels[i] for i in rows],
                                      self.stats, max_new_tokens=s.max_new_tokens, draft=s.draft,
                                      sers=[sers[i] for i in rows],
                                      generator=HFGenerator(self.ranker, kept, batch_size=self.config.explain_batch))
        return {i: _explanation_dict(ex) for i, ex in zip(rows, exs, strict=True)}

    def _prior_explanation(self, label: str) -> dict[str, Any]:
        from .evidence import check_faithfulness

        share = self.stats.share(label)
        pct = f"{share:.0%}" if share >= 0.01 else "<1%"
        text = (f"Next interest: {label}. This is a population-based suggestion: the shopper has no "
                f"events yet, and {label} holds {pct} of shopper activity in the training data "
                f"(popularity rank {self.stats.rank(label)}).")
        v = check_faithfulness(text, (), label)
        return {"text": text, "source": "prior", "model_text": None, "ok": v.ok, "reasons": v.reasons, "cited": ()}

    def _explain(self, req: _Request, ser: Any, label: str, s: _Settings, kv: Any = None) -> dict[str, Any]:
        from .explanation import explain_prediction

        if not req.events:
            return self._prior_explanation(label)
        import torch

        with self._model_lock:
            torch.manual_seed(self.config.seed)
            ex = explain_prediction(self.ranker, req.events, label, self.stats, max_new_tokens=s.max_new_tokens,
                                    prompt_kv=kv, draft=s.draft, ser=ser)
        return _explanation_dict(ex)

    def _products(self, events: Sequence[Event], label: str, s: _Settings) -> tuple[Product, ...]:
        """Items of the predicted category nearest the shopper's profile (or the label's text)."""
        hits = []
        self._ensure_retrieval()
        with self._index_lock:
            try:
                hits = self._index.search_profile(events, k=s.n_products, category=label,
                                                  exclude_seen=s.exclude_seen)
            except HistoryError:  # no indexed item in the history: rank by the category's own text
                hits = self._index.search(self._category_vectors[label], s.n_products, label)[0]
            except UnknownIdError:  # no indexed item in this category
                hits = []
        out = []
        for h in hits:
            it = self.items.get(h.item_id)
            out.append(Product(h.item_id, it.title if it else "", round(float(h.score), 6),
                               self.taxonomy.label_of(it) if it else None))
        return tuple(out)

    def products(self, history_or_user_id: str | Sequence[Event | Mapping[str, Any]], category: str, *,
                 n: int = 10, exclude: Sequence[str] = ()) -> tuple[Product, ...]:
        """Items of `category` nearest the shopper's profile (retrieval only: no model work, no audit row).

        `exclude` leaves out item ids already shown. UnknownIdError for an unknown category.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n={n!r}; expected an int >= 1")
        self.taxonomy.index(category)  # UnknownIdError names the category
        req = self._request(history_or_user_id)
        skip = set(exclude)
        s = self._settings(False, 1, n + len(skip))  # n_products clamped to the catalogue
        return tuple(p for p in self._products(req.events, category, s) if p.item_id not in skip)[:n]

    def _decoding(self, s: _Settings) -> dict[str, Any]:
        from .serialize import HISTORY_FORMAT

        return {**asdict(s), "method": "greedy", "do_sample": False, "seed": self.config.seed,
                "scorer_mode": self.config.scorer_mode, "level": self.taxonomy.level,
                "history_format": HISTORY_FORMAT, "labels_sha256": self.labels_sha256,
                "serialize": asdict(self.ranker.serialize_config), "dtype": self.dtype}

    @staticmethod
    def _generation_cache(req: _Request, out: dict[str, Any]) -> str | None:
        """What the explanation's generation continued: "prompt" (the scored prompt's kept K/V),
        "prefix" (the shared system turn; the prompt run again), "prompt-batch" and "batch" (the same,
        decoded with the batch's other shoppers: `explain_batch`), None (nothing generated)."""
        if out["ex"] is None or not req.events:
            return None
        if out.get("gen_batch"):
            return "prompt-batch" if out["kv_kept"] else "batch"
        return "prompt" if out["kv_kept"] else "prefix"

    def _top(self, p: np.ndarray, k: int) -> tuple[CategoryScore, ...]:
        """The `k` most probable labels, ties in taxonomy order."""
        return tuple(CategoryScore(self.taxonomy.labels[j], float(p[j])) for j in np.argsort(-p, kind="stable")[:k])

    def _output(self, req: _Request, out: dict[str, Any], s: _Settings) -> dict[str, Any]:
        p = out["p"]
        ex = out["ex"]
        return {
            "distribution": [float(x) for x in p],
            "labels": list(self.taxonomy.labels),
            "top": [asdict(t) for t in self._top(p, s.top_k)],
            "top_category": out["label"],
            "explanation": None if ex is None else {
                "text": ex["text"], "source": ex["source"], "model_text": ex["model_text"],
                "cited": list(ex["cited"]), "faithful": ex["ok"], "reasons": list(ex["reasons"])},
            "products": [asdict(x) for x in out["products"]],
            "cold_start": out["cold"], "prior_weight": out["prior_weight"],
            "input": {"n_events": len(req.events), "positions": list(out["ser"].positions),
                      "events": [{k: getattr(e, k) for k in _STORED_EVENT_KEYS} for e in req.events]},
        }

    def _serve(self, req: _Request, out: dict[str, Any], s: _Settings, t0: float) -> Prediction:
        from .audit import AuditRecord

        ex = out["ex"]
        p = out["p"]
        shown = dict(zip(out["ser"].positions, out["ser"].events, strict=True))
        timings = out["timings_ms"]
        t_audit = time.perf_counter()
        record = AuditRecord(
            user_id=req.user_id, input_text=out["ser"].text, model_id=self.model_id,
            model_sha256=self.model_sha256, adapter_id=self.adapter_id, adapter_sha256=self.adapter_sha256,
            prompt_name=self.prompt.name, prompt_version=self.prompt.version,
            prompt_sha256=self.prompt_sha256,
            decoding={**self._decoding(s), "generation_cache": self._generation_cache(req, out),
                      "generation_batch": out.get("gen_batch"), "score_batch": out.get("score_batch")},
            output=self._output(req, out, s), top_category=out["label"],
            faithful=None if ex is None else bool(ex["ok"]),
            latency_ms=(t_audit - t0) * 1000, cold_start=bool(out["cold"]),
        )
        audit_id = self.audit.append(record)
        timings["audit"] = (time.perf_counter() - t_audit) * 1000
        timings["total"] = (time.perf_counter() - t0) * 1000
        return Prediction(
            user_id=req.user_id,
            top=self._top(p, s.top_k),
            distribution={lab: float(p[j]) for j, lab in enumerate(self.taxonomy.labels)},
            explanation=None if ex is None else ex["text"],
            explanation_source=None if ex is None else ex["source"],
            cited=() if ex is None else tuple(CitedEvent(c, shown[c]) for c in ex["cited"] if c in shown),
            faithful=None if ex is None else bool(ex["ok"]),
            faithfulness_reasons=() if ex is None else tuple(ex["reasons"]),
            model_text=None if ex is None else ex["model_text"],
            products=out["products"], cold_start=bool(out["cold"]), n_events=len(req.events),
            prior_weight=float(out["prior_weight"]), timings_ms=dict(timings), audit_id=audit_id,
        )

    # ------------------------------------------------------------------ streaming

    def stream_explanation(self, history_or_user_id: str | Sequence[Event | Mapping[str, Any]], *,
                           top_k: int = 5, n_products: int = 5) -> ExplanationStream:
        """Predict, then stream the explanation of the top category as text chunks, token by token.

        Input is checked now (bad input raises here, before any model work). Iterate the
        returned `ExplanationStream` for the model's text; if that text fails the
        faithfulness check, one last chunk "\n\n" + the grounded explanation follows,
        and that is what is served. Once the stream is exhausted its `prediction` is set
        and its one audit row written (a stream abandoned early writes no row). The
        tokens are the ones `predict(explain=True)` generates (greedy, same settings).
        """
        t0 = time.perf_counter()
        s = self._settings(True, top_k, n_products)
        req = self._request(history_or_user_id)
        stream = ExplanationStream()
        stream._chunks = self._stream(req, s, t0, stream)
        return stream

    def _stream(self, req: _Request, s: _Settings, t0: float, stream: ExplanationStream) -> Iterator[str]:
        from .explanation import checked_explanation

        out = self._compute([req], replace(s, explain=False), keep_kv=self.config.keep_prompt_kv)[0]
        label, ser, kv = out["label"], out["ser"], out.pop("kv")
        stream.top = self._top(out["p"], s.top_k)
        t1 = time.perf_counter()
        if not req.events:
            ex = self._prior_explanation(label)
            yield ex["text"]
        else:
            chunks = []
            for chunk in self._generate_stream(req.events, ser, label, s.max_new_tokens, kv, s.draft):
                chunks.append(chunk)
                yield chunk
            checked = checked_explanation(self.ranker, ser, label, "".join(chunks).strip(), self.stats)
            ex = _explanation_dict(checked)
            if checked.source != "model":
                yield "\n\n" + checked.text
        out["ex"] = ex
        out["timings_ms"]["explain"] = (time.perf_counter() - t1) * 1000
        stream.prediction = self._serve(req, out, s, t0)

    def _generate_stream(self, events: Sequence[Event], ser: Any, label: str, max_new_tokens: int,
                         kv: Any = None, draft: bool = False) -> Iterator[str]:
        """Greedy generation after `prompt + label + "\n"` (the prompt of `events`, serialised as `ser`)
        in a worker thread that holds the model lock
        (continuing the scored prompt's K/V `kv` when given, and reading ahead through guessed text
        when `draft`, as `predict` does)."""
        import torch
        from transformers import TextIteratorStreamer

        from .drafting import drafted_greedy, drafter_for
        from .explanation import HFGenerator, label_head
        from .scoring import _device

        with self._model_lock:
            tok = self.ranker.tokenizer
            head = label_head(tok, self.ranker.prompt_ids(events, ser), label)
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True, timeout=600.0)
        failure: list[BaseException] = []

        def work() -> None:
            try:
                with self._model_lock, torch.inference_mode():
                    torch.manual_seed(self.config.seed)
                    eos = tok.eos_token_id
                    cache = HFGenerator(self.ranker, (kv,)).cache_for(head)
                    if draft:  # the streamer shows each pass's kept tokens (it skips the first put: the prompt)
                        streamer.put(torch.tensor(head))
                        drafted_greedy(self.ranker.model, tok, head, max_new_tokens=max_new_tokens, eos_token_id=eos,
                                       cache=cache, drafter=drafter_for(self.ranker, ser, label, self.stats),
                                       on_tokens=lambda ids: streamer.put(torch.tensor(ids)))
                        streamer.end()
                        return
                    ids = torch.tensor([head], device=_device(self.ranker.model))
                    self.ranker.model.generate(
                        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                        do_sample=False, eos_token_id=eos, pad_token_id=tok.pad_token_id or eos, streamer=streamer,
                        past_key_values=cache)
            except BaseException as e:  # noqa: BLE001 - re-raised in the consuming thread
                failure.append(e)
                streamer.end()

        worker = threading.Thread(target=work, name="llmint-stream", daemon=True)
        worker.start()
        try:
            for chunk in streamer:
                if chunk:
                    yield chunk
        finally:
            worker.join()
        if failure:
            raise ModelError(f"generation failed while streaming: {failure[0]}") from failure[0]

    # ------------------------------------------------------------------ replay

    def replay(self, audit_id: str) -> ReplayResult:
        """Re-run a stored prediction from its row's events and settings; say what differs.

        The re-run writes no audit row. Raises UnknownAuditIdError for an unknown id.
        """
        from .redact import redact
        from .serialize import HISTORY_FORMAT

        row = self.audit.get(audit_id)
        if row.erased:
            return ReplayResult(audit_id, False, True, (), {"erased": {"stored": True, "replayed": None}}, False)
        dec, stored = row.decoding, row.output
        versions = []
        for name, old, new in (
            ("model_sha256", row.model_sha256, self.model_sha256),
            ("adapter_sha256", row.adapter_sha256, self.adapter_sha256),
            ("prompt_sha256", row.prompt_sha256, self.prompt_sha256),
            ("history_format", dec.get("history_format"), HISTORY_FORMAT),
            ("labels_sha256", dec.get("labels_sha256"), self.labels_sha256),
            ("dtype", dec.get("dtype", self.dtype), self.dtype),  # rows before the dtype was stored: not known
            # trie and fused compute the same sums in another order: log-probs 4e-5 apart measured
            ("scorer_mode", dec.get("scorer_mode", self.config.scorer_mode), self.config.scorer_mode),
        ):
            if old != new:
                versions.append(f"{name}: stored {old!r}, now {new!r}")
        s = _Settings(**{f.name: dec[f.name] for f in fields(_Settings) if f.name in dec})
        uid = row.user_id or ANONYMOUS
        events = tuple(Event(user_id=uid, **d) for d in stored["input"]["events"])
        # rows before the cache was stored generated after the shared prefix; a row decoded with its batch
        # ("batch", "prompt-batch") is replayed alone: equal up to a near tie broken the other way
        out = self._compute([_Request(row.user_id, events)], s,
                            keep_kv=dec.get("generation_cache") in ("prompt", "prompt-batch"))[0]
        new = self._output(_Request(row.user_id, events), out, s)
        diffs: dict[str, Any] = {}
        a, b = np.round(stored["distribution"], 6), np.round(new["distribution"], 6)
        if a.shape != b.shape or np.abs(a - b).max() > replay_atol(self.dtype):
            diffs["distribution"] = {"stored": a.tolist(), "replayed": b.tolist()}
        if stored["top_category"] != new["top_category"]:
            diffs["top_category"] = {"stored": stored["top_category"], "replayed": new["top_category"]}
        old_text = (stored.get("explanation") or {}).get("text")
        new_text = (new.get("explanation") or {}).get("text")
        if old_text != (None if new_text is None else redact(new_text)):
            diffs["explanation"] = {"stored": old_text, "replayed": new_text}
        old_ids = [x["item_id"] for x in stored["products"]]
        new_ids = [x["item_id"] for x in new["products"]]
        if old_ids != new_ids:
            diffs["products"] = {"stored": old_ids, "replayed": new_ids}
        input_same = redact(out["ser"].text) == row.input_text
        return ReplayResult(audit_id, not diffs, not versions, tuple(versions), diffs, input_same)


class ExplanationStream:
    """Text chunks of a streamed explanation; `prediction` is set once the stream is exhausted."""

    def __init__(self) -> None:
        self.prediction: Prediction | None = None
        self.top: tuple[CategoryScore, ...] = ()  # set before the first chunk: the scored top categories
        self._chunks: Iterator[str] = iter(())

    def __iter__(self) -> Iterator[str]:
        return self._chunks


__all__ = ["ANONYMOUS", "ExplanationStream", "InterestService", "adapter_sha256"]
