"""Churn signal: shoppers whose activity and interest intensity are falling, with the evidence.

A shopper's history is cut into sessions (events at most
`session_gap_s` apart merged). Two trends compare the last third of the sessions
with the earlier ones: the log-ratio of the gaps between sessions (growing
gaps = falling activity) and of the categorised events per session (falling
intensity). The churn signal is the mean of their percentile ranks over the
scored shoppers; the naive baseline is recency.

Evaluation, depending on the clock:
- "global" (unix times, e.g. Taobao, MovieLens): a cutoff at `1 - horizon` of the
  dataset's time span; label = no event after the cutoff; recency = cutoff - last event.
- "gap" (relative times, e.g. Instacart): the final gap is held out; label = it is at
  least `lapse_days` (Instacart caps gaps at 30 = "30 or more"); recency = the last
  observed gap (the days_since_prior_order of the last observed order).
Order-only clocks have no time between events: churn is not evaluated there.
This module knows nothing about models, plots or files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..schema import Event, Item
from ..taxonomy import Taxonomy
from .sequences import baskets, has_time, labelled

DAY = 86400.0


@dataclass(frozen=True)
class ChurnConfig:
    """How histories are cut and labelled."""

    mode: str = "auto"  # "global", "gap" or "auto" (global for unix clocks, gap for relative ones)
    horizon: float = 0.25  # global: the final share of the time span that is the outcome period
    lapse_days: float = 30.0  # gap: a held-out gap of at least this many days is a lapse
    session_gap_s: float = 3600.0  # events at most this far apart form one session (global mode)
    min_sessions: int = 4  # shoppers with fewer observed sessions are not scored
    top_share: float = 0.1  # precision is measured on this top share of shoppers by score

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "global", "gap"):
            raise ValueError(f"mode={self.mode!r}; expected 'auto', 'global' or 'gap'")
        if not 0 < self.horizon < 1:
            raise ValueError(f"horizon={self.horizon}; expected 0 < horizon < 1")
        if self.min_sessions < 3:
            raise ValueError(f"min_sessions={self.min_sessions}; expected >= 3")
        if not 0 < self.top_share <= 1:
            raise ValueError(f"top_share={self.top_share}; expected 0 < top_share <= 1")


@dataclass(frozen=True)
class ChurnSignal:
    """One shopper's activity and intensity trends at the cutoff, with evidence sentences."""

    user_id: str
    n_sessions: int
    gap_trend: float  # log(mean recent gap / mean earlier gap); > 0 = slowing down
    intensity_trend: float  # log(mean recent events per session / earlier); < 0 = less per visit
    recency_days: float  # global: cutoff - last event; gap: the last observed gap; nan if not given
    evidence: list[str] = field(default_factory=list)


def _sessions(times: np.ndarray, gap_s: float) -> list[tuple[float, int]]:
    out: list[tuple[float, int]] = []  # (start time, events)
    last = -math.inf
    for t in times:
        if out and t - last <= gap_s:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((float(t), 1))
        last = t
    return out


def churn_signal(user_id: str, times: Sequence[float], *, recency_days: float | None = None,
                 session_gap_s: float = 0.0) -> ChurnSignal | None:
    """Trends of one shopper's chronological event `times` (seconds); None with fewer than 3 sessions.

    Example:
        >>> s = churn_signal("u", [0, 0, 0, 86400, 86400, 3 * 86400, 7 * 86400], recency_days=4.0)
        >>> round(s.gap_trend, 3), round(s.intensity_trend, 3)
        (0.964, -0.693)
    """
    sess = _sessions(np.asarray(times, dtype=np.float64), session_gap_s)
    if len(sess) < 3:
        return None
    starts = np.array([s for s, _ in sess])
    sizes = np.array([n for _, n in sess], dtype=np.float64)
    gaps = np.diff(starts) / DAY
    k = max(1, len(gaps) // 3)
    g_old, g_new = gaps[:-k].mean(), gaps[-k:].mean()
    ks = max(1, len(sizes) // 3)
    s_old, s_new = sizes[:-ks].mean(), sizes[-ks:].mean()
    eps = 1.0 / 24  # one hour, so that same-day sessions do not give infinite ratios
    gt = math.log((g_new + eps) / (g_old + eps))
    it = math.log(s_new / s_old)
    ev = []
    if gt > 0:
        ev.append(f"gaps between sessions grew from {g_old:.1f} to {g_new:.1f} days")
    if it < 0:
        ev.append(f"events per session fell from {s_old:.1f} to {s_new:.1f}")
    if recency_days is not None:
        ev.append(f"{recency_days:.1f} days since the last activity")
    return ChurnSignal(user_id, len(sess), gt, it, float("nan") if recency_days is None else float(recency_days), ev)


@dataclass(frozen=True)
class ChurnEvaluation:
    """AUC and precision of churn scores against the observed label."""

    mode: str
    n: int  # shoppers scored
    base_rate: float  # share that churned / lapsed
    auc: dict[str, float]  # score name -> ROC AUC
    precision_top: dict[str, float]  # score name -> precision in the top `top_share`
    cutoff: float | None  # global mode: the cutoff time (seconds)
    signals: list[ChurnSignal] = field(repr=False, default_factory=list)
    labels: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    scores: dict[str, np.ndarray] = field(repr=False, default_factory=dict)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney statistic (ties count half); nan without both classes.

    Example:
        >>> auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
        0.75
    """
    from scipy.stats import rankdata

    labels = np.asarray(labels).astype(bool)
    n1, n0 = int(labels.sum()), int((~labels).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(scores)
    return float((r[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _pct(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return (rankdata(x) - 0.5) / len(x)


def evaluate_churn(
    histories: Mapping[str, Sequence[Event]], items: Mapping[str, Item], taxonomy: Taxonomy,
    cfg: ChurnConfig | None = None,
) -> ChurnEvaluation:
    """Score every shopper's churn signal before the cutoff and compare with what happened."""
    cfg = cfg or ChurnConfig()
    seqs = {u: labelled(evs, items, taxonomy) for u, evs in sorted(histories.items())}
    seqs = {u: s for u, s in seqs.items() if s}
    if not seqs or not all(has_time(le.event for le in s) for s in seqs.values()):
        raise ValueError("churn needs timestamps on every event; an order-only dataset cannot be evaluated")
    mode = cfg.mode
    if mode == "auto":
        first = min(s[0].time for s in seqs.values())
        mode = "global" if first >= 1e8 else "gap"
    signals, labels = [], []
    cutoff = None
    if mode == "global":
        t0 = min(s[0].time for s in seqs.values())
        t1 = max(s[-1].time for s in seqs.values())
        cutoff = t1 - cfg.horizon * (t1 - t0)
        for u, s in seqs.items():
            times = np.array([le.time for le in s if le.time < cutoff])
            if len(_sessions(times, cfg.session_gap_s)) < cfg.min_sessions:
                continue
            sig = churn_signal(u, times, recency_days=(cutoff - times[-1]) / DAY, session_gap_s=cfg.session_gap_s)
            if sig is not None:
                signals.append(sig)
                labels.append(not any(le.time >= cutoff for le in s))
    else:
        for u, s in seqs.items():
            bs = baskets(s)
            if len(bs) < cfg.min_sessions + 1:
                continue
            obs = [le.time for b in bs[:-1] for le in b]
            last_gap = (bs[-2][0].time - bs[-3][0].time) / DAY
            sig = churn_signal(u, obs, recency_days=None, session_gap_s=0.0)
            if sig is not None:
                signals.append(ChurnSignal(u, sig.n_sessions, sig.gap_trend, sig.intensity_trend, last_gap,
                                           [*sig.evidence, f"last gap between orders {last_gap:.1f} days"]))
                labels.append(round((bs[-1][0].time - bs[-2][0].time) / DAY) >= cfg.lapse_days)
    y = np.asarray(labels, dtype=bool)
    if len(y) < 2:
        raise ValueError(f"only {len(y)} shoppers have {cfg.min_sessions} sessions before the cutoff")
    rec = np.array([s.recency_days for s in signals])
    gt = np.array([s.gap_trend for s in signals])
    it = np.array([s.intensity_trend for s in signals])
    scores = {
        "recency": rec,
        "signal": (_pct(gt) + _pct(-it)) / 2,
        "combined": (_pct(gt) + _pct(-it) + _pct(rec)) / 3,
    }
    top = max(1, int(round(cfg.top_share * len(y))))
    prec = {}
    for name, sc in scores.items():
        order = np.lexsort((np.arange(len(sc)), -sc))[:top]
        prec[name] = float(y[order].mean())
    return ChurnEvaluation(mode, len(y), float(y.mean()), {n: auc(s, y) for n, s in scores.items()}, prec,
                           cutoff, signals, y, scores)
