"""Pasted events: JSON list, one object, or JSON Lines (llmint.pasted)."""

from __future__ import annotations

import pytest

from llmint.errors import DataError
from llmint.pasted import parse_events_text


def test_forms() -> None:
    one = {"item_id": "a", "action": "view", "timestamp": 1}
    assert parse_events_text('[{"item_id": "a", "action": "view", "timestamp": 1}]') == [one]
    assert parse_events_text('{"item_id": "a", "action": "view", "timestamp": 1}') == [one]
    lines = '{"item_id": "a", "action": "view", "timestamp": 1}\n\n{"item_id": "b", "action": "cart", "timestamp": 2}\n'
    assert [r["item_id"] for r in parse_events_text(lines)] == ["a", "b"]
    assert parse_events_text("") == []
    assert parse_events_text(b'[{"item_id": "\xc3\xa9"}]') == [{"item_id": "é"}]


@pytest.mark.parametrize(("text", "match"), [
    ("[{", "not valid JSON"),
    ('{"a": 1}\nnot json', "line 2: not valid JSON"),
    ("[1, 2]", "entry 1 is a int"),
    ('"just a string"', "line 1 is a str"),
    (b"\xff\xfe", "not valid UTF-8"),
])
def test_errors_name_the_place(text, match: str) -> None:
    with pytest.raises(DataError, match=match):
        parse_events_text(text)
