"""Serialise a shopper's history into the text the LLM reads. Pure and versioned.

The format (tag `HISTORY_FORMAT`) lists events oldest to newest, one per line,
each with a citation number: its 1-based position in the *full* history, so
"[12]" means the same event whether or not older events were dropped. Under
the budget the *most recent* events are kept first; how many older events
were omitted is stated. Review and search text is customer-written data: it
is PII-redacted, cleaned (NFKC, no control/bidi/zero-width characters, no
angle or square brackets, one line) and fenced as `<review>...</review>` or
`<query>...</query>`; since the text can contain no '<', it cannot close its
fence or open a new one, and since it holds no '[' it cannot fake a citation.

No I/O and no tokenisation here: a token counter may be injected.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from .redact import redact
from .schema import Clock, Event, Item
from .taxonomy import SEP

HISTORY_FORMAT = "llmint-history/1"

ACTION_WORDS = {
    "view": "viewed",
    "search": "searched for",
    "favourite": "favourited",
    "cart": "added to cart",
    "purchase": "bought",
    "review": "reviewed",
}

_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\u00ad]")
_BRACKETS = str.maketrans({"<": "(", ">": ")", "[": "(", "]": ")", "{": "(", "}": ")"})


@dataclass(frozen=True)
class SerializeConfig:
    """How a history becomes text."""

    max_events: int = 50  # at most this many (most recent) events are shown
    token_budget: int = 512  # at most this many tokens of event lines (by the injected counter)
    review_chars: int = 200  # review and query text is cut to this many characters
    title_chars: int = 80  # item titles are cut to this many characters
    include_dates: bool = True
    include_ratings: bool = True
    include_category: bool = True
    redact_pii: bool = True

    def __post_init__(self) -> None:
        for name in ("max_events", "token_budget", "review_chars", "title_chars"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}; expected an int >= 1")


@dataclass(frozen=True)
class SerializedHistory:
    """The text plus which events it shows and under which citation numbers."""

    text: str
    events: tuple[Event, ...]  # the events shown, oldest first
    positions: tuple[int, ...]  # citation number of each shown event
    n_dropped: int  # older events left out by the budget
    version: str = HISTORY_FORMAT


def clean_text(text: str, limit: int, *, redact_pii: bool = True) -> str:
    """Customer text made safe to fence: NFKC, no controls/brackets, PII redacted, one line, cut to `limit`."""
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text)
    text = text.translate(_BRACKETS)
    if redact_pii:  # after the bracket pass, so the tags read "[phone]"; they can't pass for "[12]" citations
        text = redact(text)
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def _when(e: Event, clock: Clock) -> str:
    if clock == "order" or e.timestamp is None:
        return ""
    if clock == "relative":
        return f"day {int(e.timestamp // 86400)}"
    return datetime.fromtimestamp(e.timestamp, UTC).strftime("%Y-%m-%d")


def _rating(r: float) -> str:
    return f"{int(r)}/5" if float(r).is_integer() else f"{r:.1f}/5"


def format_event(
    e: Event, position: int, items: Mapping[str, Item], cfg: SerializeConfig, clock: Clock, level: int | None
) -> str:
    """One history line, e.g. `[3] 2017-11-25: bought "Post-it Notes" (Office > Paper), rated 4/5`."""
    parts = [f"[{position}]"]
    when = _when(e, clock) if cfg.include_dates else ""
    head = f"{when}: " if when else ""
    verb = ACTION_WORDS[e.action]
    if e.item_id is None:
        q = clean_text(e.text or "", cfg.review_chars, redact_pii=cfg.redact_pii)
        return f"[{position}] {head}{verb} <query>{q}</query>"
    item = items.get(e.item_id)
    if item is None:
        what = f"item {clean_text(e.item_id, 40, redact_pii=False)} (unknown item)"
    else:
        title = clean_text(item.title or f"item {item.item_id}", cfg.title_chars, redact_pii=False)
        what = f'"{title}"'
        if cfg.include_category and item.category_path:
            path = item.category_path[:level] if level else item.category_path
            what += " (" + SEP.join(clean_text(c, 60, redact_pii=False) for c in path) + ")"
    parts.append(f"{head}{verb} {what}")
    line = " ".join(parts)
    if cfg.include_ratings and e.rating is not None:
        line += f", rated {_rating(e.rating)}"
    if e.text and e.action != "search":
        line += f", review <review>{clean_text(e.text, cfg.review_chars, redact_pii=cfg.redact_pii)}</review>"
    return line


def _default_count(s: str) -> int:
    return len(s) // 4 + 1


def serialize_history(
    events: Sequence[Event],
    items: Mapping[str, Item],
    cfg: SerializeConfig | None = None,
    *,
    clock: Clock = "unix",
    taxonomy_level: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> SerializedHistory:
    """Serialise a chronological history (oldest first) under the budget, newest events kept first.

    Example:
        >>> items = {"p1": Item("p1", "Post-it Notes", ("Office", "Paper"))}
        >>> evs = [Event("u", "p1", "review", timestamp=1511568000, rating=4, text="Sticky! <b>")]
        >>> print(serialize_history(evs, items).text)
        History (llmint-history/1): 1 event, oldest first.
        [1] 2017-11-25: reviewed "Post-it Notes" (Office > Paper), rated 4/5, review <review>Sticky! (b)</review>
    """
    cfg = cfg or SerializeConfig()
    count = count_tokens or _default_count
    n = len(events)
    lines: list[str] = []
    kept: list[Event] = []
    used = 0
    for pos in range(n, 0, -1):  # newest first, only as far back as the budget allows
        if len(kept) >= cfg.max_events:
            break
        line = format_event(events[pos - 1], pos, items, cfg, clock, taxonomy_level)
        cost = count(line)
        if kept and used + cost > cfg.token_budget:
            break
        lines.append(line)
        kept.append(events[pos - 1])
        used += cost
    lines.reverse()
    kept.reverse()
    dropped = n - len(kept)
    if n == 0:
        header = f"History ({HISTORY_FORMAT}): no events yet."
    else:
        header = f"History ({HISTORY_FORMAT}): {len(kept)} event{'s' if len(kept) != 1 else ''}, oldest first."
        if dropped:
            header += f" {dropped} earlier event{'s' if dropped != 1 else ''} omitted."
    return SerializedHistory(
        text="\n".join([header, *lines]),
        events=tuple(kept),
        positions=tuple(range(dropped + 1, n + 1)),
        n_dropped=dropped,
    )
