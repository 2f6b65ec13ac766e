"""Render an evaluation report (a JSON-able dict from `llmint.evaluate`) as JSON, Markdown and PNG.

`render_markdown` is pure; `write_report` does the file I/O. Matplotlib is
imported inside the plotting function with the Agg backend.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAIN_METRICS = ("hit@1", "hit@3", "hit@10", "ndcg@5", "ndcg@10", "mrr")
CLASS_METRICS = ("accuracy", "macro_f1", "auc_ovr", "ece")
LOWER_IS_BETTER = {"ece"}


def _fmt(ci: dict[str, float]) -> str:
    return f"{ci['mean']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"


def _table(systems: dict[str, dict[str, Any]], metrics: tuple[str, ...]) -> list[str]:
    metrics = tuple(m for m in metrics if any(m in row for row in systems.values()))
    if not metrics:
        return []
    best: dict[str, float] = {}
    for m in metrics:
        vals = [row[m]["mean"] for row in systems.values() if m in row and row[m]["mean"] == row[m]["mean"]]
        if vals:
            best[m] = min(vals) if m in LOWER_IS_BETTER else max(vals)
    lines = ["| system | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for name, row in systems.items():
        cells = []
        for m in metrics:
            if m not in row:
                cells.append("")
                continue
            cell = _fmt(row[m])
            cells.append(f"**{cell}**" if best.get(m) == row[m]["mean"] else cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: a header, then per task and slice a table of systems x metrics with 95% CIs."""
    v = report.get("versions", {})
    out = [
        f"# Evaluation: {report['dataset']}",
        "",
        f"- split: {report['split']['kind']}",
        f"- test cases: {report['split']['n_test']}, validation: {report['split']['n_valid']}, "
        f"cold-start (history <= {report['split']['cold_start_max']}): {report['split']['n_cold_start']}",
        f"- seed: {report['seed']}; versions: " + ", ".join(f"{k} {v[k]}" for k in sorted(v)),
        f"- created: {report.get('created_utc', '')}",
        "",
        "Values are means with 95% bootstrap confidence intervals; best per column in bold.",
    ]
    for task, sec in report["tasks"].items():
        out += ["", f"## Task: next {task}"]
        if "not_run" in sec:
            out += ["", f"Not run: {sec['not_run']}."]
            continue
        lvl = f", level {sec['level']}" if sec.get("level") else ""
        out += ["", f"{sec['n_labels']} labels{lvl}; full ranking over all of them."]
        if sec.get("skipped"):
            out += ["", "Not scored: " + ", ".join(f"{n} {r}" for r, n in sorted(sec["skipped"].items())) + "."]
        for slice_name, sl in sec["slices"].items():
            out += ["", f"### {slice_name} (n = {sl['n']})", ""]
            out += _table(sl["systems"], MAIN_METRICS)
            cls = _table(sl["systems"], CLASS_METRICS)
            if cls:
                out += [""] + cls
            if sl.get("paired"):
                out += ["", "Paired bootstrap differences (95% CI, p-value):", ""]
                out += ["| comparison | metric | difference | p |", "|---|---|---|---|"]
                for pair, mets in sl["paired"].items():
                    for m, d in mets.items():
                        out.append(f"| {pair} | {m} | {d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] | {d['p_value']:.3f} |")
        if sec.get("timings"):
            out += ["", "Timings (s): " + "; ".join(
                f"{n} fit {t['fit_s']:.1f} score {t['score_s']:.1f}" for n, t in sec["timings"].items())]
    return "\n".join(out) + "\n"


def plot_report(report: dict[str, Any], path: Path) -> Path:
    """A grouped bar chart of the main metrics per system with CI error bars, one panel per task and slice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (task, name, sl)
        for task, sec in report["tasks"].items() if "slices" in sec
        for name, sl in sec["slices"].items()
    ]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(6 * max(len(panels), 1), 4.2), squeeze=False)
    metrics = ("hit@1", "hit@5", "hit@10", "ndcg@10", "mrr")
    for ax, (task, name, sl) in zip(axes[0], panels, strict=False):
        systems = list(sl["systems"])
        width = 0.8 / max(len(systems), 1)
        for i, s in enumerate(systems):
            row = sl["systems"][s]
            ms = [m for m in metrics if m in row]
            xs = [metrics.index(m) + i * width for m in ms]
            means = [row[m]["mean"] for m in ms]
            err = [[row[m]["mean"] - row[m]["low"] for m in ms], [row[m]["high"] - row[m]["mean"] for m in ms]]
            ax.bar(xs, means, width, yerr=err, capsize=2, label=s)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(metrics))], metrics)
        ax.set_title(f"{report['dataset']}: next {task}, {name} (n={sl['n']})")
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    if panels:
        axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(report: dict[str, Any], out_dir: Path, stem: str) -> dict[str, Path]:
    """Write `{stem}.json` (sorted keys), `{stem}.md` and `{stem}.png` into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md", "png": out_dir / f"{stem}.png"}
    paths["json"].write_text(json.dumps(report, indent=2, sort_keys=True))
    paths["md"].write_text(render_markdown(report))
    plot_report(report, paths["png"])
    return paths
