"""Forecast a shopper's next-window category mix, and compare forecasters on held-out windows.

For every shopper with at least `min_windows` windows, the last window is held
out; each forecaster sees only the earlier events and predicts the held-out
window's shares. Forecasters:

- "ses": per-label simple exponential smoothing (statsmodels) of the window shares;
- "last_window": the previous window's shares; "history_mean": all earlier events' shares;
- any next-category ranker (`llmint.baselines` Markov, most frequent... fitted here on
  the earlier events of all shoppers, or an event-level ranker such as
  `llmint.llm_ranker.LLMCategoryRanker`, used as given): its next-event distribution.

Metrics per held-out window: total-variation distance to the actual shares
(lower is better) and top hit (the forecast's top label is a most frequent
label of the window). Means carry 95% bootstrap CIs. This module knows
nothing about plots or files.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..schema import Event, Item
from ..taxonomy import Taxonomy
from .evolution import mix_of, resolve_window, window_keys
from .sequences import distribution, labelled, total_variation

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ForecastConfig:
    """Which windows, which smoothing, how many shoppers."""

    window: str = "auto"  # window spec of llmint.analysis.evolution ("auto", "month", "orders:N"...)
    min_windows: int = 4  # shoppers with fewer windows are not evaluated (3 to fit, 1 held out)
    ses_alpha: float | None = None  # smoothing level; None = estimated by statsmodels per series
    max_shoppers: int | None = None  # seeded subsample of evaluable shoppers (None = all)
    n_boot: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.min_windows < 2:
            raise ValueError(f"min_windows={self.min_windows}; expected >= 2")
        if self.ses_alpha is not None and not 0 < self.ses_alpha <= 1:
            raise ValueError(f"ses_alpha={self.ses_alpha}; expected None or 0 < ses_alpha <= 1")
        if self.max_shoppers is not None and self.max_shoppers < 1:
            raise ValueError(f"max_shoppers={self.max_shoppers}; expected >= 1 or None")


def ses_forecast(shares: np.ndarray, alpha: float | None = None) -> np.ndarray:
    """Next-window shares from windows `shares` float (n_windows, n_labels) by per-label exponential
    smoothing; clipped at 0 and renormalised. Labels never seen forecast 0.

    Example:
        >>> ses_forecast(np.array([[1.0, 0.0], [0.0, 1.0]]), alpha=0.5).tolist()
        [0.5, 0.5]
    """
    from statsmodels.tsa.holtwinters import SimpleExpSmoothing

    shares = np.asarray(shares, dtype=np.float64)
    if shares.ndim != 2 or shares.shape[0] < 1:
        raise ValueError(f"shares must be (n_windows >= 1, n_labels), got shape {shares.shape}")
    out = np.zeros(shares.shape[1])
    for j in np.flatnonzero(shares.sum(0) > 0):
        y = shares[:, j]
        if shares.shape[0] < 2 or np.ptp(y) == 0:
            out[j] = y[-1]
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if alpha is None:
                fit = SimpleExpSmoothing(y, initialization_method="known", initial_level=float(y[0])).fit()
            else:
                fit = SimpleExpSmoothing(y, initialization_method="known", initial_level=float(y[0])).fit(
                    smoothing_level=alpha, optimized=False)
        out[j] = float(fit.level[-1])  # SES's one-step forecast is its last level (= fit.forecast(1), ~100x cheaper)
    out = np.clip(out, 0.0, None)
    s = out.sum()
    return out / s if s > 0 else shares[-1]


@dataclass(frozen=True)
class HeldOut:
    """One shopper's forecasting problem: earlier windows and the held-out one."""

    user_id: str
    history: tuple[Event, ...]  # categorised events before the held-out window, chronological
    history_labels: tuple[int, ...]
    train_shares: np.ndarray  # (n_train_windows, n_labels), all taxonomy labels
    target: np.ndarray  # (n_labels,) shares of the held-out window
    window: str  # the resolved window spec
    target_window: str  # its label


def held_out_windows(
    histories: Mapping[str, Sequence[Event]], items: Mapping[str, Item], taxonomy: Taxonomy,
    cfg: ForecastConfig | None = None,
) -> tuple[list[HeldOut], dict[str, list[int]]]:
    """(held-out problems of evaluable shoppers, training label sequences of ALL shoppers).

    The training sequences hold, for every shopper, the events before its last window.
    """
    cfg = cfg or ForecastConfig()
    problems: list[HeldOut] = []
    train: dict[str, list[int]] = {}
    for uid in sorted(histories):
        seq = labelled(histories[uid], items, taxonomy, seed=cfg.seed)
        if not seq:
            continue
        window = resolve_window(seq, cfg.window)
        keys = window_keys(seq, window)
        cut = keys.index(keys[-1])
        train[uid] = [le.label for le in seq[:cut]]
        mix = mix_of(seq, taxonomy, window, all_labels=True)
        if len(mix.windows) < cfg.min_windows:
            continue
        problems.append(HeldOut(uid, tuple(le.event for le in seq[:cut]), tuple(train[uid]),
                                mix.shares[:-1], mix.shares[-1], window, mix.windows[-1]))
    if cfg.max_shoppers is not None and len(problems) > cfg.max_shoppers:
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(problems), cfg.max_shoppers, replace=False))
        problems = [problems[i] for i in keep]
    return problems, train


@dataclass(frozen=True)
class ForecastResult:
    """Per-forecaster metrics on the same held-out windows."""

    n: int
    window: str  # the config's window spec
    metrics: dict[str, dict[str, dict[str, float]]]  # forecaster -> metric -> {"mean", "low", "high"}
    per_case: dict[str, dict[str, np.ndarray]] = field(repr=False)  # forecaster -> metric -> (n,)
    users: list[str] = field(default_factory=list)


def _top_hit(pred: np.ndarray, actual: np.ndarray) -> np.ndarray:
    best = actual.max(1, keepdims=True)
    return (actual[np.arange(len(actual)), pred.argmax(1)] >= best[:, 0] - 1e-12).astype(np.float64)


def compare_forecasters(
    problems: Sequence[HeldOut], train: Mapping[str, Sequence[int]], n_labels: int, *,
    rankers: Mapping[str, Any] | None = None, cfg: ForecastConfig | None = None,
    progress: Callable[[int], None] | None = None, workers: int = 1,
) -> ForecastResult:
    """Score "ses", "last_window", "history_mean" and every ranker on `problems`.

    `rankers`: token-level rankers (`fit(sequences, n_classes)`, `predict_proba(label histories)`)
    are fitted on `train`; event-level ones (with `predict_events`) are used as given.
    `workers`: processes for the per-shopper smoothing fits (0: one per CPU); same results for any number.
    """
    from functools import partial

    from ..bootstrap import bootstrap_ci
    from .parallel import pmap

    cfg = cfg or ForecastConfig()
    if not problems:
        raise ValueError("no shopper has enough windows to hold one out; lower min_windows or use smaller windows")
    actual = np.stack([p.target for p in problems])
    ses = pmap(partial(ses_forecast, alpha=cfg.ses_alpha), [p.train_shares for p in problems], workers=workers,
               progress=progress)
    preds: dict[str, np.ndarray] = {"ses": np.stack(ses)}
    preds["last_window"] = np.stack([p.train_shares[-1] for p in problems])
    preds["history_mean"] = np.stack([distribution(p.history_labels, n_labels) for p in problems])
    seqs = [list(s) for s in train.values() if s]
    for name, r in (rankers or {}).items():
        if hasattr(r, "predict_events"):
            preds[name] = np.asarray(r.predict_events([p.history for p in problems]), dtype=np.float64)
        else:
            r.fit(seqs, n_labels)
            preds[name] = np.asarray(r.predict_proba([list(p.history_labels) for p in problems]), dtype=np.float64)
    per_case: dict[str, dict[str, np.ndarray]] = {}
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    for name, pr in preds.items():
        per_case[name] = {"tv": np.asarray(total_variation(pr, actual)), "top_hit": _top_hit(pr, actual)}
        metrics[name] = {m: bootstrap_ci(v, n_boot=cfg.n_boot, seed=cfg.seed).to_dict()
                         for m, v in per_case[name].items()}
    return ForecastResult(len(problems), cfg.window, metrics, per_case, [p.user_id for p in problems])
