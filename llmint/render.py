"""HTML and charts for the app: predictions, explanations, timelines, product cards, audit rows.

Pure functions from library results to HTML strings (golden-tested) and matplotlib
figures. Every piece of text that came from data or a model is HTML-escaped, and
review and query text is PII-redacted before it is shown: a hostile review renders
as inert text. Event numbers are the `[n]` citation numbers of the serialised
history (1 = the oldest event of the history), so a cited `[n]` in an explanation
and row `n` of the timeline are the same event.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .redact import redact
from .schema import Event, Item

CSS = """
.llmint-pred h3 {margin: 0 0 .3em 0}
.llmint-badge {display:inline-block; padding:0 .5em; border-radius:.6em; font-size:.8em; margin-left:.4em;
  background:#e8eef9; color:#1d3f8a}
.llmint-badge.bad {background:#fde8e8; color:#8a1d1d}
.llmint-expl {margin:.4em 0; line-height:1.45}
.llmint-expl mark, .llmint-timeline tr.cited td {background:#fff3b0}
.llmint-timeline {border-collapse:collapse; width:100%; font-size:.9em}
.llmint-timeline td, .llmint-timeline th {border-bottom:1px solid #ddd; padding:.2em .4em; text-align:left;
  vertical-align:top}
.llmint-cards {display:flex; flex-wrap:wrap; gap:.6em}
.llmint-card {border:1px solid #ccd; border-radius:.5em; padding:.5em .7em; width:14em; background:#fafbff}
.llmint-card .title {font-weight:600}
.llmint-card .meta {font-size:.8em; color:#555}
.llmint-error {color:#8a1d1d; font-weight:600}
"""

_CITE = re.compile(r"\[(\d+)\]")


def esc(x: Any) -> str:
    """Escape any value for HTML text or an attribute."""
    return html.escape("" if x is None else str(x), quote=True)


def when(e: Event) -> str:
    """An event's time: a UTC date and minute, or its order number."""
    if e.timestamp is not None:
        return datetime.fromtimestamp(float(e.timestamp), UTC).strftime("%Y-%m-%d %H:%M")
    if e.order is not None:
        return f"order {e.order}"
    return ""


def error_html(message: str) -> str:
    """A readable error line for the page (never a traceback)."""
    return f'<p class="llmint-error">{esc(message)}</p>'


def explanation_html(text: str | None) -> str:
    """The explanation with every [n] citation marked."""
    if not text:
        return ""
    out, last = [], 0
    for m in _CITE.finditer(text):
        out.append(esc(text[last:m.start()]))
        out.append(f"<mark>[{m.group(1)}]</mark>")
        last = m.end()
    out.append(esc(text[last:]))
    return "".join(out)


def prediction_html(pred: Any, window: str | None = None) -> str:
    """The answer card: top category and probability, badges, the explanation."""
    top = pred.top[0]
    badges = []
    if pred.cold_start:
        badges.append(f'<span class="llmint-badge">cold start: prior weight {pred.prior_weight:.0%}</span>')
    if pred.faithful is not None:
        cls = "llmint-badge" if pred.faithful else "llmint-badge bad"
        badges.append(f'<span class="{cls}">{"faithful" if pred.faithful else "not faithful"}</span>')
    if pred.explanation_source:
        src = {"model": "model's words", "evidence": "grounded template", "prior": "population prior"}
        badges.append(f'<span class="llmint-badge">{esc(src.get(pred.explanation_source, pred.explanation_source))}'
                      "</span>")
    scope = f" (from {esc(window)})" if window else ""
    parts = [
        '<div class="llmint-pred">',
        f"<h3>Next interest: {esc(top.category)} <small>{top.probability:.0%}</small>{''.join(badges)}</h3>",
        f"<div>{pred.n_events} events{scope}; audit id <code>{esc(pred.audit_id)}</code></div>",
    ]
    if pred.explanation:
        parts.append(f'<p class="llmint-expl">{explanation_html(pred.explanation)}</p>')
    parts.append("</div>")
    return "".join(parts)


def _event_text(e: Event) -> str:
    bits = []
    if e.rating is not None:
        bits.append(f"rated {e.rating:g}")
    if e.text:
        bits.append(f"“{redact(e.text)}”")
    return " ".join(bits)


def timeline_html(events: Sequence[Event], items: Mapping[str, Item], label_of: Any = None,
                  cited: Iterable[int] = (), limit: int = 200) -> str:
    """The history as a table, newest first, numbered as in the prompt; cited rows highlighted.

    `label_of(item)` gives an item's category label (None: the item's path). Only the
    newest `limit` rows are drawn; a line says how many older ones are hidden.
    """
    cited = set(cited)
    rows = []
    n = len(events)
    for pos in range(n, max(0, n - limit), -1):
        e = events[pos - 1]
        it = items.get(e.item_id) if e.item_id else None
        title = it.title if it else (e.item_id or "")
        cat = (label_of(it) if label_of else " > ".join(it.category_path)) if it else ""
        cls = ' class="cited"' if pos in cited else ""
        rows.append(f"<tr{cls}><td>[{pos}]</td><td>{esc(when(e))}</td><td>{esc(e.action)}</td>"
                    f"<td>{esc(title)}</td><td>{esc(cat or '')}</td><td>{esc(_event_text(e))}</td></tr>")
    more = f"<p>{n - limit} older events not shown.</p>" if n > limit else ""
    head = "<tr><th>#</th><th>when</th><th>action</th><th>item</th><th>category</th><th>rating / text</th></tr>"
    if not rows:
        return "<p>No events.</p>"
    return f'<table class="llmint-timeline">{head}{"".join(rows)}</table>{more}'


def products_html(products: Sequence[Any]) -> str:
    """Product cards: title, category, item id and similarity score."""
    if not products:
        return "<p>No matching products in the index for this category.</p>"
    cards = [
        f'<div class="llmint-card"><div class="title">{esc(p.title or p.item_id)}</div>'
        f'<div class="meta">{esc(p.category or "")}</div>'
        f'<div class="meta">item {esc(p.item_id)} · score {p.score:.3f}</div></div>'
        for p in products
    ]
    return f'<div class="llmint-cards">{"".join(cards)}</div>'


def audit_row_html(row: Any) -> str:
    """One audit row in full: versions, input as the model saw it, output, faithfulness, reviews."""
    out = row.output or {}
    ex = out.get("explanation") or {}
    versions = [
        ("audit id", row.audit_id), ("served (UTC)", row.created_utc), ("shopper", row.user_id or "(pasted)"),
        ("model", f"{row.model_id} sha256 {row.model_sha256[:12]}…"),
        ("adapter", f"{row.adapter_id} sha256 {(row.adapter_sha256 or '')[:12]}…" if row.adapter_id else "none"),
        ("prompt", f"{row.prompt_name} v{row.prompt_version} sha256 {row.prompt_sha256[:12]}…"),
        ("input sha256", row.input_sha256[:16] + "…"), ("latency", f"{row.latency_ms:.0f} ms"),
        ("top category", row.top_category), ("faithful", {True: "yes", False: "NO", None: "not checked"}[row.faithful]),
        ("cold start", "yes" if row.cold_start else "no"), ("status", row.status or "unreviewed"),
    ]
    if row.erased:
        versions.append(("erased", "yes: the shopper's data was removed on request"))
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in versions)
    top = "".join(f"<li>{esc(t['category'])}: {t['probability']:.1%}</li>" for t in out.get("top", []))
    products = "".join(f"<li>{esc(p.get('title') or p.get('item_id'))} ({esc(p.get('item_id'))})</li>"
                       for p in out.get("products", []))
    reasons = ", ".join(ex.get("reasons") or []) or "none"
    reviews = "".join(
        f"<li>{esc(r.created_utc)} {esc(r.reviewer)}: {esc(r.action)}"
        f"{' (' + esc(r.reason) + ')' if r.reason else ''} {esc(r.note)}</li>" for r in row.reviews
    ) or "<li>none</li>"
    decoding = esc(json.dumps(row.decoding, sort_keys=True, default=str)[:2000])
    return (
        f'<div class="llmint-audit"><table class="llmint-timeline">{table}</table>'
        f"<h4>Top categories</h4><ul>{top}</ul>"
        f"<h4>Explanation ({esc(ex.get('source') or 'none')}; failed checks: {esc(reasons)})</h4>"
        f'<p class="llmint-expl">{explanation_html(ex.get("text"))}</p>'
        f"<h4>Products</h4><ul>{products or '<li>none</li>'}</ul>"
        f"<h4>Reviews</h4><ul>{reviews}</ul>"
        f"<h4>Input as the model saw it</h4><pre>{esc(row.input_text)}</pre>"
        f"<h4>Decoding</h4><pre>{decoding}</pre></div>"
    )


def probability_figure(top: Sequence[Any], title: str = "Next-interest probability"):
    """A horizontal bar chart of the top categories (a matplotlib Figure)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    labels = [t.category for t in top][::-1]
    probs = [t.probability for t in top][::-1]
    fig = Figure(figsize=(6, 0.45 * max(3, len(labels)) + 0.8))
    ax = fig.add_subplot(111)
    bars = ax.barh(range(len(labels)), probs, color="#4c72b0")
    ax.set_yticks(range(len(labels)), [lab if len(lab) <= 40 else lab[:37] + "…" for lab in labels])
    ax.set_xlim(0, max(1e-9, max(probs, default=1.0)) * 1.2)
    ax.set_xlabel("probability")
    ax.set_title(title)
    for b, p in zip(bars, probs, strict=True):
        ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f" {p:.0%}", va="center", fontsize=8)
    fig.tight_layout()
    return fig


__all__ = ["CSS", "audit_row_html", "error_html", "esc", "explanation_html", "prediction_html",
           "probability_figure", "products_html", "timeline_html", "when"]
