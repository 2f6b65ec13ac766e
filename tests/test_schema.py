"""Schema validation and the taxonomy: bad values raise clear errors naming the value."""

from __future__ import annotations

import math

import pytest

from llmint import DataError, Event, Item, Taxonomy, UnknownIdError


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"user_id": "", "item_id": "i", "action": "view", "timestamp": 1.0}, "user_id"),
        ({"user_id": "u", "item_id": "i", "action": "buy", "timestamp": 1.0}, "'buy' is not one of"),
        ({"user_id": "u", "item_id": None, "action": "view", "timestamp": 1.0}, "needs an item_id"),
        ({"user_id": "u", "item_id": None, "action": "search", "timestamp": 1.0}, "query in text"),
        ({"user_id": "u", "item_id": "i", "action": "view"}, "timestamp or an order"),
        ({"user_id": "u", "item_id": "i", "action": "view", "timestamp": -5.0}, ">= 0"),
        ({"user_id": "u", "item_id": "i", "action": "view", "timestamp": math.nan}, "finite"),
        ({"user_id": "u", "item_id": "i", "action": "view", "timestamp": "2020"}, "number"),
        ({"user_id": "u", "item_id": "i", "action": "review", "order": 1, "rating": math.nan}, "0..5"),
        ({"user_id": "u", "item_id": "i", "action": "review", "order": 1, "rating": 7}, "0..5"),
        ({"user_id": "u", "item_id": "i", "action": "view", "order": -1}, "order"),
        ({"user_id": "u", "item_id": "i", "action": "view", "order": 1, "text": b"x"}, "text"),
    ],
)
def test_event_rejects_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        Event(**kwargs)


def test_event_accepts_search_without_item() -> None:
    e = Event("u", None, "search", timestamp=3.0, text="red shoes")
    assert e.item_id is None and e.text == "red shoes"


def test_item_rejects_bad_path() -> None:
    with pytest.raises(DataError, match="category_path"):
        Item("1", "t", ["A"])  # type: ignore[arg-type]
    with pytest.raises(DataError, match="category_path"):
        Item("1", "t", ("A", ""))


def _items() -> list[Item]:
    return [
        Item("1", "phone", ("Office", "Electronics", "Phones")),
        Item("2", "paper", ("Office", "Paper")),
        Item("3", "labels", ("Office", "Paper", "Labels")),
        Item("4", "pen", ("Office",)),
        Item("5", "mystery"),
    ]


def test_taxonomy_levels() -> None:
    t1 = Taxonomy.from_items(_items(), level=1)
    assert t1.labels == ("Office",)
    t2 = Taxonomy.from_items(_items(), level=2)
    assert t2.labels == ("Office", "Office > Electronics", "Office > Paper")
    assert t2.parents["Office > Paper"] == "Office" and t2.parents["Office"] is None
    assert t2.item_labels({i.item_id: i for i in _items()}) == {"1": 1, "2": 2, "3": 2, "4": 0}
    assert t2.subtree("Office") == list(t2.labels)
    assert t2.subtree("Office > Paper") == ["Office > Paper"]


def test_taxonomy_unknown_label_is_clear() -> None:
    t = Taxonomy.from_items(_items(), level=2)
    with pytest.raises(UnknownIdError, match="unknown category 'Toys'"):
        t.index("Toys")
    assert "Toys" not in t and "Office > Paper" in t


def test_taxonomy_rejects_bad_level() -> None:
    with pytest.raises(ValueError, match="level=0"):
        Taxonomy.from_items(_items(), level=0)
