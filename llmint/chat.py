"""What a support agent's question asks for, read from plain words.

`parse_question` maps a chat message to a `Question`: an intent (predict, why,
products, history, help), an optional time window ("the last month only", "last 10
events", "this session") and an optional shopper id ("customer 42"). It is pure and
knows nothing about models: the app decides what to run for each intent.
`window_events` applies a window to a history, relative to the shopper's own last
event (data sets are historical: "last month" means the month before their latest
activity, not before today).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .schema import Event

INTENTS = ("predict", "why", "products", "history", "help")
SESSION_GAP_S = 30 * 60  # a gap longer than this starts a new session

_UNITS_S = {"day": 86_400, "week": 7 * 86_400, "month": 30 * 86_400, "year": 365 * 86_400}
_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
            "nine": 9, "ten": 10, "twelve": 12, "a": 1, "an": 1}
_NUM = r"(\d+|" + "|".join(_NUMBERS) + r")"
_WINDOW_TIME = re.compile(r"\b(?:last|past|previous|recent)\s+(?:" + _NUM + r"\s+)?(day|week|month|year)s?\b")
_WINDOW_EVENTS = re.compile(r"\b(?:last|latest|recent|past)\s+" + _NUM + r"\s+(events?|actions?|orders?|items?)\b")
_SESSION = re.compile(r"\b(this|current|last|latest)\s+session\b|\bright now\b|\btoday\b")
_ALL = re.compile(r"\b(all|whole|entire|full)\s+(history|time)\b|\ball events\b")
_USER = re.compile(r"\b(?:customer|shopper|user|client)\s*(?:id\s*)?[#:]?\s*([A-Za-z0-9_\-]+)", re.I)
_WHY = re.compile(r"\bwhy\b|\bexplain|\breason|\bhow come\b|\bwhat makes\b|\bevidence\b|\bbased on what\b")
_PRODUCTS = re.compile(r"\bwhat else\b|\bproducts?\b|\bitems?\b|\bsuggest|\brecommend|\bshow me\b|\bmore\b"
                       r"|\balternatives?\b|\bsimilar\b")
_HISTORY = re.compile(r"\b(show|see|list|display|view|open)\b.*\b(history|timeline|events)\b|^\s*(history|timeline)\W*$"
                      r"|\bwhat did (she|he|they) (do|buy)\b|\bpast (purchases|orders)\b")
_HELP = re.compile(r"^\s*(help|\?|what can you do\??)\s*$")
_PREDICT = re.compile(r"\bnext\b|\blikely\b|\bwant\b|\binterest|\bpredict|\bwill (she|he|they)\b|\bbuy\b")
_NOT_IDS = {"id", "is", "the", "with", "who", "whose", "likely", "want", "next", "only", "please"}


@dataclass(frozen=True)
class Window:
    """A part of a history: the last `seconds` of time, the last `events` events, or the last session."""

    seconds: int | None = None
    events: int | None = None
    session: bool = False

    def describe(self) -> str:
        if self.session:
            return "the latest session"
        if self.events is not None:
            return f"the last {self.events} events"
        days = (self.seconds or 0) // 86_400
        for unit, n in (("year", 365), ("month", 30), ("week", 7)):
            if days % n == 0 and days >= n:
                k = days // n
                return f"the last {unit}" if k == 1 else f"the last {k} {unit}s"
        return "the last day" if days == 1 else f"the last {days} days"


@dataclass(frozen=True)
class Question:
    """A parsed chat message. `window` None with `all_history` True resets a previous window."""

    intent: str
    window: Window | None = None
    all_history: bool = False
    user_id: str | None = None
    text: str = ""


def _number(tok: str | None) -> int:
    if tok is None:
        return 1
    return int(tok) if tok.isdigit() else _NUMBERS[tok]


def parse_question(text: str) -> Question:
    """Read intent, window and shopper id from a message (case-insensitive, English)."""
    if not isinstance(text, str):
        raise TypeError(f"a question must be text, got {type(text).__name__}")
    raw = " ".join(text.split())
    t = raw.lower()
    window = None
    if m := _WINDOW_EVENTS.search(t):
        window = Window(events=max(1, _number(m.group(1))))
    elif m := _WINDOW_TIME.search(t):
        window = Window(seconds=_number(m.group(1)) * _UNITS_S[m.group(2)])
    elif _SESSION.search(t):
        window = Window(session=True)
    user = None
    if m := _USER.search(raw):
        if m.group(1).lower() not in _NOT_IDS:
            user = m.group(1)
    if _HELP.match(t):
        intent = "help"
    elif _WHY.search(t):
        intent = "why"
    elif _HISTORY.search(t) and not _PREDICT.search(t):
        intent = "history"
    elif _PRODUCTS.search(t) and not re.search(r"\bnext\b|\blikely\b", t):
        intent = "products"
    else:
        intent = "predict"  # the default question: what next?
    return Question(intent, window, bool(_ALL.search(t)), user, raw)


def _time(e: Event) -> float:
    return float(e.timestamp if e.timestamp is not None else e.order if e.order is not None else 0)


def window_events(events: Sequence[Event], window: Window | None, session_gap_s: int = SESSION_GAP_S,
                  ) -> list[Event]:
    """The events of `window`, oldest first, measured back from the shopper's last event.

    Histories with order numbers instead of timestamps (Instacart) treat a time window
    as that many orders back per 30 days (one order a month is unknowable; the window
    falls back to the last `seconds // 86400 // 30` orders, at least one) and a session
    as the last order.
    """
    evs = list(events)
    if window is None or not evs:
        return evs
    if window.events is not None:
        return evs[-window.events:]
    clocked = evs[-1].timestamp is not None
    last = _time(evs[-1])
    if window.session:
        if not clocked:
            return [e for e in evs if _time(e) == last]
        start = len(evs) - 1
        while start > 0 and _time(evs[start]) - _time(evs[start - 1]) <= session_gap_s:
            start -= 1
        return evs[start:]
    if not clocked:
        n_orders = max(1, (window.seconds or 0) // (30 * 86_400))
        return [e for e in evs if _time(e) > last - n_orders]
    return [e for e in evs if _time(e) > last - (window.seconds or 0)]


HELP_TEXT = (
    "Ask about the selected shopper in plain words, for example: "
    "\"what is she likely to want next?\", \"why?\", \"what else in that category?\", "
    "\"what about the last month only?\", \"last 10 events\", \"this session\", "
    "\"show the history\", or \"customer 42\" to switch shopper."
)

__all__ = ["HELP_TEXT", "INTENTS", "Question", "Window", "parse_question", "window_events"]
