"""Render an evaluation report (the dict `llmint.evaluate.evaluate` returns) as JSON, Markdown, PNG.

The report's shape:

    {"dataset": str, "split": {...}, "seed": int, "versions": {...}, "created_utc": str,
     "tasks": {task: {"level": int | None, "n_labels": int, "skipped": {...},
                      "timings": {system: {"fit_s", "score_s"}},
                      "slices": {slice: {
                          "n": int,
                          "systems": {system: {metric: {"mean", "low", "high"}}},
                          "paired": {"a - b": {metric: {"diff", "low", "high", "p_value"}}}}},
                      "fairness": {"groups_info": {...}, "dimensions": {dim: {
                          "groups": {group: <slice>}, "gaps": {system: {metric: {"best", "worst", "gap"...}}},
                          "too_small": {group: n}}}}  (optional)}
               | {"not_run": reason}}}

`render_markdown` is pure (string in, string out). `write_report` does the
file I/O. The chart is drawn on a bare Agg canvas imported inside
`plot_report`, so no global matplotlib backend or pyplot state is touched.
This module knows nothing about how the numbers were computed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

CLASS_ORDER = ("accuracy", "macro_f1", "auc_ovr", "ece", "nll")
LOWER_IS_BETTER = frozenset({"ece", "nll", "rank"})
PLOT_METRICS = ("hit@1", "hit@5", "hit@10", "ndcg@10", "mrr")
_RANK_RE = re.compile(r"^(hit|ndcg)@(\d+)$")


def to_jsonable(obj: Any) -> Any:
    """A copy of `obj` that strict JSON accepts: numpy scalars and arrays become Python values,
    tuples become lists, Paths become strings, NaN and infinities become None.
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy scalar or array
        return to_jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _rank_metric_key(m: str) -> tuple[int, int, str]:
    hit = _RANK_RE.match(m)
    if hit:
        return (0 if hit.group(1) == "hit" else 1, int(hit.group(2)), "")
    return (2 if m == "mrr" else 3, 0, m)


def _split_metrics(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """Ranking metrics (hit@k, ndcg@k, mrr, rank) in canonical order, and the rest."""
    names = set(names)
    ranking = sorted(
        (m for m in names if _RANK_RE.match(m) or m in ("mrr", "rank")), key=_rank_metric_key
    )
    rest = [m for m in CLASS_ORDER if m in names] + sorted(names - set(ranking) - set(CLASS_ORDER))
    return ranking, rest


def _cell(ci: Mapping[str, Any] | None) -> tuple[str, str | None]:
    """(cell text, the rounded mean used to pick the best) for one {"mean", "low", "high"}."""
    if not isinstance(ci, Mapping) or not _finite(ci.get("mean")):
        return "n/a", None
    mean = f"{ci['mean']:.3f}"
    if _finite(ci.get("low")) and _finite(ci.get("high")):
        return f"{mean} [{ci['low']:.3f}, {ci['high']:.3f}]", mean
    return mean, mean


def _esc(name: Any) -> str:
    return str(name).replace("|", "\\|")


def _table(systems: Mapping[str, Mapping[str, Any]], metrics: list[str]) -> list[str]:
    """Rows = systems, columns = metrics; every system sharing the best shown value is bold."""
    if not metrics or not systems:
        return []
    cells = {s: {m: _cell(row.get(m)) for m in metrics} for s, row in systems.items()}
    best: dict[str, str] = {}
    for m in metrics:
        shown = [float(c[m][1]) for c in cells.values() if c[m][1] is not None]
        if len(systems) > 1 and shown:
            best[m] = f"{(min(shown) if m in LOWER_IS_BETTER else max(shown)):.3f}"
    lines = ["| system | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for s, row in cells.items():
        out = [
            f"**{text}**" if key is not None and best.get(m) == key else text
            for m, (text, key) in row.items()
        ]
        lines.append(f"| {_esc(s)} | " + " | ".join(out) + " |")
    return lines


def _paired(paired: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = ["| comparison | metric | difference [CI] | p |", "|---|---|---:|---:|"]
    for pair, mets in paired.items():
        for m, d in mets.items():
            if not _finite(d.get("diff")):
                lines.append(f"| {_esc(pair)} | {m} | n/a | n/a |")
                continue
            ci = (
                f" [{d['low']:+.3f}, {d['high']:+.3f}]"
                if _finite(d.get("low")) and _finite(d.get("high"))
                else ""
            )
            p = f"{d['p_value']:.3f}" if _finite(d.get("p_value")) else "n/a"
            lines.append(f"| {_esc(pair)} | {m} | {d['diff']:+.3f}{ci} | {p} |")
    return lines


def _header(report: Mapping[str, Any]) -> list[str]:
    split = dict(report.get("split") or {})
    kind = split.pop("kind", None)
    parts = ([str(kind)] if kind else []) + [f"{k}: {split[k]}" for k in sorted(split)]
    versions = report.get("versions") or {}
    level = report.get("ci_level", 0.95)
    out = [f"# Evaluation: {report.get('dataset', '?')}", ""]
    out.append("- split: " + ("; ".join(parts) if parts else "not recorded"))
    out.append(f"- seed: {report.get('seed', 'not recorded')}")
    out.append(
        "- versions: "
        + (", ".join(f"{k} {versions[k]}" for k in sorted(versions)) or "not recorded")
    )
    if report.get("created_utc"):
        out.append(f"- created (UTC): {report['created_utc']}")
    lower = ", ".join(sorted(LOWER_IS_BETTER))
    out += [
        "",
        "Cells are `mean [low, high]`: the value on all cases and its "
        f"{level:.0%} percentile-bootstrap confidence interval over cases. "
        f"The best value per column is in bold (lower is better for {lower}). "
        "Ranks treat tied scores as randomly ordered (expected value).",
    ]
    return out


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown: a header, then per task and slice the systems x metrics tables.

    Pure: the same dict always gives the same string. Missing or NaN values
    show as "n/a".
    """
    out = _header(report)
    for task, sec in (report.get("tasks") or {}).items():
        out += ["", f"## Task: next {task}"]
        if "not_run" in sec:
            out += ["", f"Not run: {sec['not_run']}."]
            continue
        level = f", level {sec['level']}" if sec.get("level") is not None else ""
        out += ["", f"{sec.get('n_labels', '?')} labels{level}; every case ranks all of them."]
        if sec.get("skipped"):
            skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(sec["skipped"].items()))
            out += ["", f"Not scored: {skipped}."]
        for name, sl in (sec.get("slices") or {}).items():
            systems = sl.get("systems") or {}
            out += ["", f"### {name} (n = {sl.get('n', '?')})"]
            ranking, rest = _split_metrics(m for row in systems.values() for m in row)
            for metrics in (ranking, rest):
                table = _table(systems, metrics)
                if table:
                    out += [""] + table
            if sl.get("paired"):
                out += [
                    "",
                    "Paired differences on the same resampled cases; p is the two-sided share of "
                    "resamples on the far side of zero (0.000: no resample reached zero).",
                    "",
                ] + _paired(sl["paired"])
        if sec.get("timings"):
            nan = float("nan")
            times = "; ".join(
                f"{_esc(s)} fit {t.get('fit_s', nan):.2f}, score {t.get('score_s', nan):.2f}"
                for s, t in sec["timings"].items()
            )
            out += ["", f"Timings (s): {times}."]
        out += _notes(sec.get("notes") or {})
        out += _fairness(sec.get("fairness") or {})
    return "\n".join(out) + "\n"


FAIRNESS_METRICS = ("hit@1", "ndcg@10")


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if _finite(x) else "n/a"


def _fairness(fair: Mapping[str, Any]) -> list[str]:
    """Per dimension: rows = groups (with n), columns = systems, cells = hit@1 / ndcg@10 means,
    then the gap (best group - worst group) per system."""
    dims = fair.get("dimensions") or {}
    if not dims:
        return []
    info = fair.get("groups_info") or {}
    out = ["", "### fairness", "",
           f"Cells are `{' / '.join(FAIRNESS_METRICS)}` means per group (CIs in the JSON). Activity: cold = at "
           f"most {info.get('cold_max', '?')} prior events, heavy = at least {info.get('heavy_min', '?')}; "
           f"popularity: head = the {info.get('n_head_tokens', '?')} most frequent training targets covering "
           f"{info.get('head_share', '?')} of training events. Gap = best group - worst group."]
    for dim, d in dims.items():
        groups = d.get("groups") or {}
        if not groups:
            continue
        systems = list(dict.fromkeys(s for g in groups.values() for s in (g.get("systems") or {})))
        out += ["", f"#### by {dim}", "", "| group | n | " + " | ".join(_esc(s) for s in systems) + " |",
                "|---|---:|" + "---:|" * len(systems)]
        for g, sl in groups.items():
            cells = []
            for s in systems:
                row = (sl.get("systems") or {}).get(s) or {}
                cells.append(" / ".join(_fmt((row.get(m) or {}).get("mean")) for m in FAIRNESS_METRICS))
            out.append(f"| {_esc(g)} | {sl.get('n', '?')} | " + " | ".join(cells) + " |")
        gap = d.get("gaps") or {}
        cells = [" / ".join(_fmt(((gap.get(s) or {}).get(m) or {}).get("gap")) for m in FAIRNESS_METRICS)
                 for s in systems]
        out.append("| **gap** | | " + " | ".join(cells) + " |")
        if d.get("too_small"):
            out += ["", "Too small to summarise: " + ", ".join(f"{_esc(g)} (n = {n})"
                                                             for g, n in d["too_small"].items()) + "."]
    return out


def _notes(notes: Mapping[str, Any]) -> list[str]:
    """The retrieval systems' set-up and the hyper-parameters chosen on validation."""
    out: list[str] = []
    r = notes.get("retrieval") or {}
    if r.get("not_run"):
        out += ["", f"Retrieval systems not run: {r['not_run']}."]
    elif r:
        out += [
            "",
            f"Retrieval: {r.get('n_items')} items embedded with {_esc(str(r.get('embedder')))} "
            f"(sha256 {str(r.get('embedder_sha256'))[:12]}); review digests from the training split "
            f"for {r.get('items_with_review_digest')} items; category priors: "
            f"{', '.join(r.get('priors') or []) or 'none'}.",
        ]
    for name, g in (notes.get("validation_grid") or {}).items():
        chosen = ", ".join(f"{k}={v}" for k, v in (g.get("chosen") or {}).items())
        out += ["", f"{_esc(name)}: chosen on validation: {chosen}."]
    return out


def _panels(report: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    return [
        (task, name, sl)
        for task, sec in (report.get("tasks") or {}).items()
        for name, sl in (sec.get("slices") or {}).items()
        if sl.get("systems")
    ]


def plot_report(
    report: Mapping[str, Any], path: Path, metrics: tuple[str, ...] = PLOT_METRICS
) -> Path:
    """Grouped bars of `metrics` per system with CI error bars, one panel per task and slice."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = _panels(report)
    cols = min(2, max(len(panels), 1))
    rows = max(1, math.ceil(len(panels) / cols))
    fig = Figure(figsize=(6.5 * cols, 4.2 * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(panels) :]:
        ax.axis("off")
    if not panels:
        axes[0].text(0.5, 0.5, "no scored slices", ha="center", va="center")
    for ax, (task, name, sl) in zip(axes, panels, strict=False):
        systems = list(sl["systems"])
        shown = [
            m
            for m in metrics
            if any(_finite((row.get(m) or {}).get("mean")) for row in sl["systems"].values())
        ]
        width = 0.8 / max(len(systems), 1)
        for i, s in enumerate(systems):
            row = sl["systems"][s]
            xs, means, lo, hi = [], [], [], []
            for j, m in enumerate(shown):
                ci = row.get(m) or {}
                if not _finite(ci.get("mean")):
                    continue
                xs.append(j + i * width)
                means.append(ci["mean"])
                lo.append(max(0.0, ci["mean"] - ci["low"]) if _finite(ci.get("low")) else 0.0)
                hi.append(max(0.0, ci["high"] - ci["mean"]) if _finite(ci.get("high")) else 0.0)
            ax.bar(xs, means, width, yerr=[lo, hi], capsize=2, label=str(s))
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(shown))], shown)
        ax.set_title(
            f"{report.get('dataset', '?')}: next {task}, {name} (n={sl.get('n', '?')})", fontsize=10
        )
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    return Path(path)


def write_report(report: Mapping[str, Any], out_dir: Path, stem: str) -> dict[str, Path]:
    """Write `{stem}.json` (strict, sorted keys), `{stem}.md` and `{stem}.png` into `out_dir`.

    NaN and infinite values are written as JSON null (and shown as "n/a").
    Returns {"json": path, "md": path, "png": path}.
    """
    if not stem or "/" in stem or "\\" in stem:
        raise ValueError(f"stem must be a plain file name without directories, got {stem!r}")
    clean = to_jsonable(report)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / f"{stem}.json",
        "md": out_dir / f"{stem}.md",
        "png": out_dir / f"{stem}.png",
    }
    paths["json"].write_text(
        json.dumps(clean, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8"
    )
    paths["md"].write_text(render_markdown(clean), encoding="utf-8")
    plot_report(clean, paths["png"])
    return paths
