"""PII redaction: positives are redacted, product facts survive."""

from __future__ import annotations

import pytest

from llmint.redact import find_pii, redact


@pytest.mark.parametrize(
    "text, expected",
    [
        ("write to jane.doe+shop@example.co.uk now", "write to [email] now"),
        ("call 555-123-4567 today", "call [phone] today"),
        ("call (555) 123-4567", "call [phone]"),
        ("ring +44 20 7946 0958 please", "ring [phone] please"),
        ("phone 5551234567", "phone [phone]"),
        ("card 4111 1111 1111 1111 exp 12/27", "card [card] exp 12/27"),
        ("card 4111111111111111", "card [card]"),
        ("card 1234-5678-9012-3456", "card [card]"),
        ("ship to 42 Elm Avenue, Springfield", "ship to [address], Springfield"),
        ("I live at 1600 Pennsylvania Ave. in DC", "I live at [address] in DC"),
    ],
)
def test_redacts(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "16 fl oz, 2 pack, 3x3 in",
        "VTECH CS6114 DECT 6.0 Cordless Phone",
        "bought on 2017-11-25, rated 4/5",
        "UPC 781584950669",
        "Package Dimensions 8.62 x 5.04 x 2.48 inches; 2.23 Pounds",
        "12-Number Memory (20200-1)",
        "Set of 100 pens in 12 colours",
    ],
)
def test_leaves_product_facts(text: str) -> None:
    assert redact(text) == text and find_pii(text) == []
