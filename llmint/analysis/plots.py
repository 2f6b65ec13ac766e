"""Figures of the interest analyses, drawn on bare Agg canvases (no pyplot state, no show()).

Each function returns a `matplotlib.figure.Figure`; `save(fig, path)` writes a PNG.
matplotlib is imported inside the functions. This module knows nothing about
how the numbers were computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .evolution import CategoryMix
from .profile import ShopperProfile


def _figure(w: float, h: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig


def _short(label: str, n: int = 32) -> str:
    last = label.split(" > ")[-1]
    return last if len(last) <= n else last[: n - 1] + "…"


def plot_category_mix(mix: CategoryMix, top: int = 8) -> Any:
    """Stacked bars of the `top` labels' shares per window (the rest as "other")."""
    fig = _figure(max(6.0, 0.55 * len(mix.windows) + 3), 4.2)
    ax = fig.subplots()
    if not mix.windows:
        ax.text(0.5, 0.5, "no categorised events", ha="center", va="center")
        ax.axis("off")
        return fig
    total = mix.counts.sum(0) if mix.counts.size else mix.shares.sum(0)
    keep = [int(j) for j in np.lexsort((np.arange(len(mix.labels)), -total))[:top]]
    x = np.arange(len(mix.windows))
    bottom = np.zeros(len(x))
    for j in keep:
        ax.bar(x, mix.shares[:, j], bottom=bottom, label=_short(mix.labels[j]))
        bottom += mix.shares[:, j]
    rest = 1.0 - bottom
    if (rest > 1e-9).any():
        ax.bar(x, rest, bottom=bottom, label="other", color="lightgrey")
    ax.set_xticks(x, mix.windows, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("share of events")
    ax.set_ylim(0, 1)
    ax.set_title(f"category mix per window ({mix.window})", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def plot_profile(profile: ShopperProfile, top: int = 8) -> Any:
    """Horizontal bars: short-term vs long-term share of the `top` labels by max share, with the shift."""
    fig = _figure(7.0, 0.45 * max(top, 3) + 1.5)
    ax = fig.subplots()
    labels = sorted(profile.long, key=lambda k: (-max(profile.long[k], profile.short.get(k, 0.0)), k))[:top]
    if not labels:
        ax.text(0.5, 0.5, "no categorised events", ha="center", va="center")
        ax.axis("off")
        return fig
    y = np.arange(len(labels))[::-1]
    ax.barh(y + 0.2, [profile.long[k] for k in labels], 0.4, label="long term (decayed)")
    ax.barh(y - 0.2, [profile.short.get(k, 0.0) for k in labels], 0.4,
            label=f"short term (last {profile.recent_n})")
    for yi, k in zip(y, labels, strict=True):
        s = profile.shift[k]
        ax.text(max(profile.long[k], profile.short.get(k, 0.0)) + 0.01, yi, f"{s:+.2f}", va="center", fontsize=7,
                color="tab:green" if s > 0 else "tab:red")
    ax.set_yticks(y, [_short(k) for k in labels], fontsize=8)
    ax.set_xlabel("share of events")
    ax.set_xlim(0, 1.1)
    ax.set_title(f"interest profile ({profile.n_events} events; shift = short - long)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_transitions(counts: np.ndarray, labels: Sequence[str], top: int = 15, *, off_diagonal: bool = True) -> Any:
    """Heat map of P(next | last) for the `top` labels by transitions (diagonal masked by default)."""
    from .migration import row_normalise

    counts = np.asarray(counts, dtype=np.float64)
    keep = np.lexsort((np.arange(len(labels)), -(counts.sum(0) + counts.sum(1))))[:top]
    sub = counts[np.ix_(keep, keep)].copy()
    if off_diagonal:
        np.fill_diagonal(sub, 0.0)
    p = row_normalise(sub)
    fig = _figure(0.45 * len(keep) + 3.5, 0.45 * len(keep) + 2.5)
    ax = fig.subplots()
    im = ax.imshow(p, cmap="viridis", vmin=0)
    names = [_short(labels[i], 22) for i in keep]
    ax.set_xticks(range(len(keep)), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(keep)), names, fontsize=7)
    ax.set_xlabel("next category")
    ax.set_ylabel("from category")
    ax.set_title("migration P(next | from)" + (", moves only" if off_diagonal else ""), fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def plot_forecast(metrics: dict[str, dict[str, dict[str, float]]]) -> Any:
    """Bars of total-variation distance and top hit per forecaster, with CIs."""
    fig = _figure(8.0, 3.6)
    axes = fig.subplots(1, 2)
    names = list(metrics)
    for ax, m in zip(axes, ("tv", "top_hit"), strict=True):
        means = [metrics[n][m]["mean"] for n in names]
        lo = [max(0.0, metrics[n][m]["mean"] - metrics[n][m]["low"]) for n in names]
        hi = [max(0.0, metrics[n][m]["high"] - metrics[n][m]["mean"]) for n in names]
        ax.bar(range(len(names)), means, yerr=[lo, hi], capsize=3)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title("total-variation distance (lower is better)" if m == "tv" else "top-category hit", fontsize=9)
        ax.set_ylim(0, 1)
    fig.tight_layout()
    return fig


def save(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Write `fig` as a PNG (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def plot_churn(ev: Any) -> Any:
    """ROC curves of the churn scores of a `ChurnEvaluation` (AUC in the legend)."""
    fig = _figure(4.8, 4.2)
    ax = fig.subplots()
    y = np.asarray(ev.labels, dtype=bool)
    for name, s in ev.scores.items():
        order = np.argsort(-np.asarray(s), kind="stable")
        tp = np.concatenate([[0], np.cumsum(y[order])]) / max(y.sum(), 1)
        fp = np.concatenate([[0], np.cumsum(~y[order])]) / max((~y).sum(), 1)
        ax.plot(fp, tp, label=f"{name} (AUC {ev.auc[name]:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title(f"churn ({ev.mode}; n={ev.n}, base rate {ev.base_rate:.2f})", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
