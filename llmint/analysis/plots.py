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


def sankey_flows(counts: np.ndarray, labels: Sequence[str], top: int = 12) -> list[tuple[int, int, float]]:
    """The `top` largest off-diagonal flows as (source index, target index, count), largest first:
    `migration.top_flows` (ties by lift, then names), so the chart shows the flows the report lists.

    Example:
        >>> sankey_flows(np.array([[9, 2, 3], [2, 0, 0], [0, 1, 0]]), ["A", "B", "C"], 3)
        [(0, 2, 3.0), (1, 0, 2.0), (0, 1, 2.0)]
    """
    from .migration import top_flows

    index = {lab: j for j, lab in enumerate(labels)}
    return [(index[f.source], index[f.target], float(f.count)) for f in top_flows(counts, labels, max(top, 0))]


def _stack(sizes: dict[int, float], gap: float, height: float) -> dict[int, float]:
    """Top y of each node bar, stacked downwards (largest first, ties by index) and centred in `height`."""
    nodes = sorted(sizes, key=lambda j: (-sizes[j], j))
    span = sum(sizes.values()) + gap * (len(nodes) - 1)
    y = height - (height - span) / 2
    tops = {}
    for j in nodes:
        tops[j] = y
        y -= sizes[j] + gap
    return tops


def _band(x0: float, x1: float, top0: float, top1: float, width: float) -> Any:
    """A filled band from (x0, top0) to (x1, top1), `width` thick, edges cubic Bézier curves."""
    from matplotlib.path import Path as MPath

    xm = (x0 + x1) / 2
    verts = [(x0, top0), (xm, top0), (xm, top1), (x1, top1), (x1, top1 - width),
             (xm, top1 - width), (xm, top0 - width), (x0, top0 - width), (x0, top0)]
    codes = [MPath.MOVETO, MPath.CURVE4, MPath.CURVE4, MPath.CURVE4, MPath.LINETO,
             MPath.CURVE4, MPath.CURVE4, MPath.CURVE4, MPath.CLOSEPOLY]
    return MPath(verts, codes)


def _band_ends(flows: Sequence[tuple[int, int, float]], left: dict[int, float],
               right: dict[int, float]) -> dict[tuple[int, int], tuple[float, float]]:
    """(top y at the source bar, top y at the target bar) of each flow's band; within a bar, bands
    leave and arrive in the order of the bars on the other side (fewest crossings)."""
    rank_l = {j: i for i, j in enumerate(left)}
    rank_r = {j: i for i, j in enumerate(right)}
    y_out, y_in = dict(left), dict(right)
    start, end = {}, {}
    for a, b, v in sorted(flows, key=lambda f: (rank_l[f[0]], rank_r[f[1]])):
        start[(a, b)] = y_out[a]
        y_out[a] -= v
    for a, b, v in sorted(flows, key=lambda f: (rank_r[f[1]], rank_l[f[0]])):
        end[(a, b)] = y_in[b]
        y_in[b] -= v
    return {k: (start[k], end[k]) for k in start}


def _palette(cats: Sequence[int]) -> dict[int, Any]:
    """One colour per category index: tab10's strong hues, then tab20's light ones, then cycling."""
    from matplotlib import colormaps

    tab20 = colormaps["tab20"].colors
    palette = list(colormaps["tab10"].colors) + [tab20[i] for i in range(1, 20, 2)]
    return {j: palette[i % len(palette)] for i, j in enumerate(cats)}


def plot_flows(counts: np.ndarray, labels: Sequence[str], top: int = 12) -> Any:
    """Two-column Sankey of the `top` largest moves between categories (the diagonal, staying, ignored).

    From-categories on the left, next categories on the right; each band is a `PathPatch` as wide as its
    count, coloured by its source category, drawn in `sankey_flows` order (largest first); node bars
    (`Rectangle`s) are stacked per side, largest first, with short names and the totals shown.
    """
    from matplotlib.patches import PathPatch, Rectangle

    flows = sankey_flows(counts, labels, top)
    c = np.asarray(counts, dtype=np.float64)
    out: dict[int, float] = {}
    into: dict[int, float] = {}
    for a, b, v in flows:
        out[a] = out.get(a, 0.0) + v
        into[b] = into.get(b, 0.0) + v
    fig = _figure(9.0, max(4.0, 0.32 * max(len(out), len(into)) + 2.0))
    ax = fig.subplots()
    ax.axis("off")
    if not flows:
        ax.text(0.5, 0.5, "no moves between categories", ha="center", va="center")
        return fig
    shown, total = sum(out.values()), float(c.sum() - np.trace(c))
    gap = 0.03 * shown
    height = shown + gap * (max(len(out), len(into)) - 1)
    left, right = _stack(out, gap, height), _stack(into, gap, height)
    colour = _palette(sorted(set(out) | set(into), key=lambda j: (j not in out, -out.get(j, 0.0), j)))
    w, x1 = 0.04, 0.96  # bar width; x of the right bars (the left ones start at 0)
    for tops, sizes, x, tx, ha in ((left, out, 0.0, -0.01, "right"), (right, into, x1, x1 + w + 0.01, "left")):
        for j, y in tops.items():
            ax.add_patch(Rectangle((x, y - sizes[j]), w, sizes[j], color=colour[j], lw=0))
            ax.text(tx, y - sizes[j] / 2, f"{_short(labels[j], 24)} ({sizes[j]:,.0f})", ha=ha, va="center",
                    fontsize=7)
    ends = _band_ends(flows, left, right)
    for a, b, v in flows:
        ax.add_patch(PathPatch(_band(w, x1, *ends[(a, b)], v), facecolor=colour[a], alpha=0.5, lw=0))
    ax.set_xlim(-0.32, 1.32)
    ax.set_ylim(-0.07 * height, 1.01 * height)
    for x, name in ((w / 2, "from"), (x1 + w / 2, "next")):
        ax.text(x, -0.02 * height, name, ha="center", va="top", fontsize=8, weight="bold")
    ax.set_title(f"top {len(flows)} migration flows: {shown:,.0f} of {total:,.0f} moves "
                 f"({shown / total:.0%}; staying excluded)", fontsize=10)
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
