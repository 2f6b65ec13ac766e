"""PII redaction for free text (review text, search queries) before it reaches a prompt or a log.

Replaces emails, phone numbers, card-like numbers and street addresses with
`[email]`, `[phone]`, `[card]`, `[address]`. Patterns are conservative so that
product facts ("16 fl oz", "2-pack", "model CS6114", "2017-11-25") survive.
Pure functions; no I/O.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CARD = re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])\d{3,4}[\s.-]\d{3,4}(?![\w-])"
    r"|(?i:(?<=phone )|(?<=call )|(?<=tel )|(?<=tel: )|(?<=phone: ))\+?\d{9,12}\b"
)
_ADDRESS = re.compile(
    r"\b\d{1,5}\s+(?:[A-Z][A-Za-z]+\s+){1,3}"
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Parkway)\b\.?"
)


def _luhn_ok(digits: str) -> bool:
    total, alt = 0, False
    for ch in reversed(digits):
        d = int(ch)
        if alt:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
        alt = not alt
    return total % 10 == 0


def _is_card(match: str) -> bool:
    digits = re.sub(r"\D", "", match)
    if not 13 <= len(digits) <= 19:
        return False
    grouped = bool(re.fullmatch(r"\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}", match))
    return grouped or _luhn_ok(digits)


def find_pii(text: str) -> list[tuple[str, tuple[int, int]]]:
    """The PII spans in `text` as (kind, (start, end)), in order, non-overlapping.

    Example:
        >>> find_pii("mail me at a.b@c.com")
        [('email', (11, 20))]
    """
    spans: list[tuple[str, tuple[int, int]]] = []
    taken: list[tuple[int, int]] = []

    def add(kind: str, m: re.Match[str]) -> None:
        s, e = m.span()
        if any(s < te and ts < e for ts, te in taken):
            return
        taken.append((s, e))
        spans.append((kind, (s, e)))

    for m in _EMAIL.finditer(text):
        add("email", m)
    for m in _CARD.finditer(text):
        if _is_card(m.group()):
            add("card", m)
    for m in _PHONE.finditer(text):
        add("phone", m)
    for m in _ADDRESS.finditer(text):
        add("address", m)
    return sorted(spans, key=lambda x: x[1][0])


def redact(text: str) -> str:
    """`text` with every PII span replaced by a tag such as `[email]`.

    Example:
        >>> redact("Call 555-123-4567 or write to jo@example.org, 12 Elm Street.")
        'Call [phone] or write to [email], [address]'
    """
    out, last = [], 0
    for kind, (s, e) in find_pii(text):
        out.append(text[last:s])
        out.append(f"[{kind}]")
        last = e
    out.append(text[last:])
    return "".join(out)
