"""PII redaction: a table of positives (redacted, with the right kind and span) and a table of
product texts that must come out unchanged."""

from __future__ import annotations

import pytest

from llmint.redact import PII_KINDS, find_pii, redact

# (text, redacted text, the PII substrings found with their kinds)
POSITIVES = [
    (
        "write to jane.doe+shop@example.co.uk now",
        "write to [email] now",
        [("email", "jane.doe+shop@example.co.uk")],
    ),
    ("mail ＪＯ＠example．com", "mail [email]", [("email", "ＪＯ＠example．com")]),
    ("call 555-123-4567 today", "call [phone] today", [("phone", "555-123-4567")]),
    ("call (555) 123-4567", "call [phone]", [("phone", "(555) 123-4567")]),
    ("or 555.123.4567.", "or [phone].", [("phone", "555.123.4567")]),
    ("toll free 1-800-555-0199", "toll free [phone]", [("phone", "1-800-555-0199")]),
    ("my number: +1 (555) 123-4567.", "my number: [phone].", [("phone", "+1 (555) 123-4567")]),
    ("ring +44 20 7946 0958 please", "ring [phone] please", [("phone", "+44 20 7946 0958")]),
    ("appelez +33 1 23 45 67 89", "appelez [phone]", [("phone", "+33 1 23 45 67 89")]),
    ("büro +49 30 12345678", "büro [phone]", [("phone", "+49 30 12345678")]),
    ("tel: 020 7946 0958", "tel: [phone]", [("phone", "020 7946 0958")]),
    ("call me on 07700 900123", "call me on [phone]", [("phone", "07700 900123")]),
    ("phone 5551234567", "phone [phone]", [("phone", "5551234567")]),
    ("text me at 5551234567!", "text me at [phone]!", [("phone", "5551234567")]),
    (
        "card 4111 1111 1111 1111 exp 12/27",
        "card [card] exp 12/27",
        [("card", "4111 1111 1111 1111")],
    ),
    ("paid with 4111111111111111", "paid with [card]", [("card", "4111111111111111")]),
    ("1234-5678-9012-3456 was charged", "[card] was charged", [("card", "1234-5678-9012-3456")]),
    ("Amex 3782 822463 10005", "Amex [card]", [("card", "3782 822463 10005")]),
    ("mastercard 5105105105105100", "mastercard [card]", [("card", "5105105105105100")]),
    ("card 4111 1111 1111 1111 2 pack", "card [card] 2 pack", [("card", "4111 1111 1111 1111")]),
    (
        "4111 1111 1111 1111 555-123-4567",
        "[card] [phone]",
        [("card", "4111 1111 1111 1111"), ("phone", "555-123-4567")],
    ),
    (
        "ship to 42 Elm Ave. Springfield",
        "ship to [address] Springfield",
        [("address", "42 Elm Ave.")],
    ),
    (
        "I live at 1600 Pennsylvania Ave. in DC",
        "I live at [address] in DC",
        [("address", "1600 Pennsylvania Ave.")],
    ),
    ("at 123 Main Street.", "at [address].", [("address", "123 Main Street")]),
    ("221B Baker Street, London", "[address], London", [("address", "221B Baker Street")]),
    ("on 123 5th Avenue", "on [address]", [("address", "123 5th Avenue")]),
    ("10 N Market St", "[address]", [("address", "10 N Market St")]),
    ("123 MAIN STREET", "[address]", [("address", "123 MAIN STREET")]),
    ("I live at 12 oak lane, so", "I live at [address], so", [("address", "12 oak lane")]),
    (
        "Call 555-123-4567 or write to jo@example.org, 12 Elm Street.",
        "Call [phone] or write to [email], [address].",
        [("phone", "555-123-4567"), ("email", "jo@example.org"), ("address", "12 Elm Street")],
    ),
]

# product and review texts that contain numbers but no PII
NEGATIVES = [
    "16 fl oz, 2 pack, 3x3 in",
    "2-Pack, 12 Count, 100 Sheets",
    "VTECH CS6114 DECT 6.0 Cordless Phone",
    "bought on 2017-11-25, rated 4/5",
    "UPC 781584950669",
    "EAN 4006381333931",
    "ISBN 978-0-306-40615-7",
    "Amazon order 112-1234567-1234567",
    "serial 12345678901234",
    "tracking 1Z999AA10123456784",
    "Item model number 12345-67890-12345",
    "Package Dimensions 8.62 x 5.04 x 2.48 inches; 2.23 Pounds",
    "12-Number Memory (20200-1)",
    "Part No. 20200-1",
    "Set of 100 pens in 12 colours",
    "Pack of 100 200 300 sheets",
    "Fits 2018 2019 2020 Honda",
    "model 1234 5678 9012",
    "price $1,299.99 for 3",
    "version 10.0.19041.1",
    "zip 90210",
    "weighs 12 oz, 3000 mAh",
    "64 GB USB Flash Drive",
    "2 TB External Hard Drive",
    "100 Count Ct",
    "3 Piece Place Setting",
    "26 Inch Mountain Road Bike",
    "12 Pack St. Patrick's Day Cups",
    "5 Star Rd trip snacks",
    "drove 3 hours down the road",
    "Dr. Bronner's 18-in-1 Hemp Pure-Castile Soap, 32 oz",
    "1 800 FLOWERS gift card",
]


@pytest.mark.parametrize("text, expected, found", POSITIVES, ids=[p[1] for p in POSITIVES])
def test_redacts(text: str, expected: str, found: list[tuple[str, str]]) -> None:
    assert redact(text) == expected
    spans = find_pii(text)
    assert [(kind, text[s:e]) for kind, (s, e) in spans] == found
    assert all(kind in PII_KINDS for kind, _ in spans)
    assert redact(expected) == expected  # tags are never re-redacted


@pytest.mark.parametrize("text", NEGATIVES)
def test_leaves_product_facts(text: str) -> None:
    assert find_pii(text) == []
    assert redact(text) == text


def test_spans_are_sorted_and_disjoint() -> None:
    text = "jo@x.com 555-123-4567 4111 1111 1111 1111 42 Elm Ave. bob@y.org"
    spans = [sp for _, sp in find_pii(text)]
    assert [k for k, _ in find_pii(text)] == ["email", "phone", "card", "address", "email"]
    assert spans == sorted(spans)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_rejects_non_text() -> None:
    with pytest.raises(TypeError, match="expects a str"):
        find_pii(None)  # type: ignore[arg-type]


def test_docstring_examples() -> None:
    import doctest

    import llmint.redact

    result = doctest.testmod(llmint.redact)
    assert result.attempted >= 2 and result.failed == 0
