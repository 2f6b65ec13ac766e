"""Events pasted or uploaded as text: one JSON list of objects, or JSON Lines.

`parse_events_text` only checks the JSON shape (a list of objects); the service's
`check_events` then checks each event's keys, ids, action and values. Errors are
`DataError`s that name the line or list entry, for a person to fix.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import DataError

EVENT_KEYS_HINT = "user_id, item_id, action, timestamp or order, rating, text"


def parse_events_text(text: str, where: str = "the pasted events") -> list[dict[str, Any]]:
    """Rows from JSON (a list, or one object) or JSON Lines (one object per line); blank lines skipped."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"{where}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
    if not isinstance(text, str):
        raise DataError(f"{where}: expected text, got {type(text).__name__}")
    head = text.lstrip()[:1]
    rows: Any = None
    if head == "{":  # one object, or JSON Lines
        try:
            rows = json.loads(text)
        except json.JSONDecodeError:
            rows = None
    elif head == "[":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})") from None
    if rows is not None:
        numbered = list(enumerate(rows if isinstance(rows, list) else [rows], start=1))
        what = "entry"
    else:
        numbered = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                numbered.append((n, json.loads(line)))
            except json.JSONDecodeError as err:
                raise DataError(f"{where}: line {n}: not valid JSON: {err.msg}") from None
        what = "line"
    for n, row in numbered:
        if not isinstance(row, dict):
            raise DataError(f"{where}: {what} {n} is a {type(row).__name__}; expected an object with keys "
                            f"{EVENT_KEYS_HINT}")
    return [row for _, row in numbered]


__all__ = ["EVENT_KEYS_HINT", "parse_events_text"]
