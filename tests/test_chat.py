"""Reading support agents' questions (llmint.chat) and windows over a history."""

from __future__ import annotations

import pytest

from llmint import Event
from llmint.chat import Window, parse_question, window_events


@pytest.mark.parametrize(("text", "intent"), [
    ("what is she likely to want next?", "predict"),
    ("What will he buy next", "predict"),
    ("why?", "why"),
    ("Why that category?", "why"),
    ("explain please", "why"),
    ("what else in that category?", "products"),
    ("show me more products", "products"),
    ("show the history", "history"),
    ("timeline", "history"),
    ("and over the whole history?", "predict"),
    ("help", "help"),
    ("?", "help"),
    ("hello", "predict"),  # anything else: the default question
])
def test_intents(text: str, intent: str) -> None:
    assert parse_question(text).intent == intent


@pytest.mark.parametrize(("text", "window"), [
    ("what about the last month only?", Window(seconds=30 * 86_400)),
    ("last 2 weeks", Window(seconds=14 * 86_400)),
    ("the past three days", Window(seconds=3 * 86_400)),
    ("last year", Window(seconds=365 * 86_400)),
    ("only the last 10 events", Window(events=10)),
    ("latest five orders", Window(events=5)),
    ("what about this session?", Window(session=True)),
    ("what next?", None),
])
def test_windows(text: str, window: Window | None) -> None:
    assert parse_question(text).window == window


def test_window_descriptions() -> None:
    assert Window(seconds=30 * 86_400).describe() == "the last month"
    assert Window(seconds=14 * 86_400).describe() == "the last 2 weeks"
    assert Window(seconds=3 * 86_400).describe() == "the last 3 days"
    assert Window(events=7).describe() == "the last 7 events"
    assert Window(session=True).describe() == "the latest session"


def test_user_mentions_and_reset() -> None:
    assert parse_question("customer 42: what next?").user_id == "42"
    assert parse_question("and shopper #A17?").user_id == "A17"
    assert parse_question("is the customer likely to buy?").user_id is None
    assert parse_question("what is she likely to want next?").user_id is None
    q = parse_question("over the whole history")
    assert q.all_history and q.window is None


def test_non_text_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse_question(None)  # type: ignore[arg-type]


def _events(times, clock="timestamp"):
    return [Event("u", f"i{k}", "view", **{clock: t}) for k, t in enumerate(times)]


def test_window_events_by_time_count_and_session() -> None:
    day = 86_400
    evs = _events([0, 10 * day, 40 * day, 60 * day, 60 * day + 600, 60 * day + 1200])
    assert [e.item_id for e in window_events(evs, Window(seconds=30 * day))] == ["i2", "i3", "i4", "i5"]
    assert [e.item_id for e in window_events(evs, Window(events=2))] == ["i4", "i5"]
    assert [e.item_id for e in window_events(evs, Window(session=True))] == ["i3", "i4", "i5"]
    assert window_events(evs, None) == evs
    assert window_events([], Window(events=3)) == []


def test_window_events_with_order_numbers() -> None:
    evs = _events([1, 1, 2, 3, 3, 4], clock="order")
    assert [e.order for e in window_events(evs, Window(session=True))] == [4]
    assert [e.order for e in window_events(evs, Window(seconds=60 * 86_400))] == [3, 3, 4]
