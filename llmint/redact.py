"""PII redaction for customer-written text (reviews, search queries) before it reaches a prompt.

`redact` replaces emails, phone numbers, card-like numbers and street
addresses with the tags `[email]`, `[phone]`, `[card]`, `[address]`;
`find_pii` returns where they are. The patterns are conservative heuristics,
tuned so that product facts survive: "16 fl oz", "2 pack", "model CS6114",
"2017-11-25", "UPC 781584950669", "ISBN 978-0-306-40615-7", "64 GB USB Flash
Drive", "100 Count" and lists of sizes like "100 200 300".

Rules, in the order they claim text (an earlier kind wins an overlap):

- email: `name@host.tld` (fullwidth `＠`/`．` too);
- card: 13-19 digits, bare or grouped 4-4-4-4(-3) or 4-6-5 by spaces or dashes,
  accepted when named as a card nearby ("card", "visa"...), or grouped
  4-4-4-4, or when it starts with 2-6 and passes the Luhn check; never when a
  product-code word ("ISBN", "UPC", "order", "serial"...) precedes it;
- phone: international `+CC ...` (8-15 digits), North American
  `(555) 123-4567` / `555-123-4567` / `1-800-555-0199`, national trunk format
  `020 7946 0958` (10-11 digits starting with 0), or any 7-15 digits right
  after a phone word ("call", "tel", "phone"...);
- address: house number + capitalised street name + street type
  ("123 Main Street", "42 Elm Ave.", "221B Baker St", "123 5th Avenue"), or an
  all-lowercase one right after an address word ("I live at 12 oak lane").

`redact` also looks through look-alike characters (NFKC forms, zero-width and
bidi characters, Unicode dashes and spaces); `find_pii` reports spans of the
text exactly as given. The serialiser normalises first and then redacts twice. Pure functions; no I/O.
This module knows nothing about events, prompts or models.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

PII_KINDS: tuple[str, ...] = ("email", "card", "phone", "address")
"""The kinds `find_pii` reports, in the order they claim text; `redact` writes `[kind]`."""

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+[@＠﹫][\w-]+(?:[.．][\w-]+)*[.．][^\W\d_]{2,}(?![\w-])")

# -- cards -------------------------------------------------------------------------------------
_CARD = re.compile(
    r"(?<![\w.,+/-])(?:\d{13,19}"  # bare
    r"|\d{4}([ -])\d{4}\1\d{4}\1\d{1,4}(?:\1\d{3})?"  # 4-4-4-4 (13-19 digits)
    r"|\d{4}([ -])\d{6}\2\d{4,5})"  # 4-6-5 (Amex), 4-6-4 (Diners)
    r"(?![\w-]|[.,]\d)"
)
_CARD_WORDS = re.compile(
    r"(?i)\b(?:card|credit|debit|visa|mastercard|master card|amex|american express|discover|cc)\b"
)
_CODE_WORDS = re.compile(
    r"(?i)\b(?:isbn|ean|upc|gtin|asin|sku|order|tracking|serial|model|part|barcode|imei|item)\b"
)

# -- phones ------------------------------------------------------------------------------------
_PHONE_INTL = re.compile(
    r"(?<![\w+])\+\d{1,3}(?:[ .-]?(?:\(\d{1,5}\)|\d{1,5})){1,6}(?![\w-]|[.,]\d)"
)
_PHONE_NANP = re.compile(
    r"(?<![\w+.-])(?:1[ .-]?)?(?:\([2-9]\d\d\)[ .-]?|[2-9]\d\d[ .-])\d{3}[ .-]\d{4}(?![\w-]|[.,]\d)"
)
_PHONE_TRUNK = re.compile(r"(?<![\w+.-])0\d{1,4}(?:[ .-]\d{2,8}){1,3}(?![\w-]|[.,]\d)")
_PHONE_AFTER_WORD = re.compile(
    r"(?i)\b(?:phone|telephone|tel|call|mobile|cell|whatsapp|text|sms|fax)\b"
    r"(?:\s*(?:me|us|number|no\.?|nr\.?|\#|at|on|:))*\s*"
    r"(\+?\d[\d .()-]{5,22}\d)(?![\w-]|[.,]\d)"
)

# -- addresses ---------------------------------------------------------------------------------
_SUFFIX = (  # full words, or abbreviations with their optional dot ("42 Elm Ave.")
    r"(?i:(?:street|avenue|road|boulevard|lane|drive|court|way|place|terrace|parkway|highway"
    r"|circle)\b|(?:st|ave|av|rd|blvd|ln|dr|ct|pl|ter|pkwy|hwy|cir)\b(?:\.(?!\d))?)"
)
_ADDRESS = re.compile(
    r"(?<![\w.,/$€£-])\d{1,6}[A-Za-z]?\s+"
    r"((?:(?:[A-Z][A-Za-z'’-]*|\d{1,3}(?:st|nd|rd|th))\.?\s+){1,4}?)" + _SUFFIX
)
_ADDRESS_AFTER_WORD = re.compile(
    r"(?i)\b(?:live[sd]?|living|address|ship(?:ped)?\s+to|deliver(?:ed)?\s+to|located\s+at|"
    r"send\s+(?:it\s+)?to|mail(?:ed)?\s+to|house|apartment|apt)\b[^.\n\d]{0,20}?"
    r"(\d{1,6}[a-z]?\s+(?:[a-z][a-z'’-]*\s+){1,3}"
    r"(?:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl"
    r"|terrace|parkway|highway)\b\.?)"
)
# Words that make "<number> <words> <street type>" a product, not an address:
# "100 Count Ct", "64 GB USB Flash Drive", "3 Piece Place Setting", "26 Inch Mountain Road Bike".
_NOT_STREET_NAMES = frozenset(
    """pack packs count ct piece pieces pc pcs pk star stars ring rings inch inches in ft foot feet
    oz lb lbs mm cm gb tb mb kb sheet sheets pad pads roll rolls set sets pair pairs box boxes case
    cases hole holes tab tabs color colors colour colours hard flash thumb usb ssd hdd dvd cd disk
    disc external internal solid state optical pen tape test door doors way speed port ply layer
    layers tier tiers milky level levels year years month months day days hour hours minute minutes
    times x gallon gallons quart quarts liter liters litre litres ml lane lanes bay bays""".split()
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


def _before(text: str, start: int, width: int = 30) -> str:
    return text[max(0, start - width) : start]


def _is_card(text: str, m: re.Match[str]) -> bool:
    before = _before(text, m.start())
    if _CARD_WORDS.search(before):
        return True
    if _CODE_WORDS.search(before):
        return False
    digits = re.sub(r"\D", "", m.group())
    return bool(m.group(1)) or (digits[0] in "23456" and _luhn_ok(digits))


def _n_digits(s: str) -> int:
    return sum(ch.isdigit() for ch in s)


def _phone_spans(text: str) -> list[tuple[int, int]]:
    spans = [m.span() for m in _PHONE_INTL.finditer(text) if 8 <= _n_digits(m.group()) <= 15]
    spans += [m.span() for m in _PHONE_NANP.finditer(text)]
    spans += [m.span() for m in _PHONE_TRUNK.finditer(text) if 10 <= _n_digits(m.group()) <= 11]
    spans += [
        m.span(1) for m in _PHONE_AFTER_WORD.finditer(text) if 7 <= _n_digits(m.group(1)) <= 15
    ]
    return spans


def _address_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for m in _ADDRESS.finditer(text):
        words = re.findall(r"[A-Za-z'’-]+", m.group(1))
        if not any(w.casefold() in _NOT_STREET_NAMES for w in words):
            spans.append(m.span())
    for m in _ADDRESS_AFTER_WORD.finditer(text):
        words = m.group(1).split()[1:-1]
        if not any(w.casefold() in _NOT_STREET_NAMES for w in words):
            spans.append(m.span(1))
    return spans


def find_pii(text: str) -> list[tuple[str, tuple[int, int]]]:
    """The PII spans in `text` as `(kind, (start, end))`, sorted by start and non-overlapping.

    Example:
        >>> find_pii("mail me at a.b@c.com or call 555-123-4567")
        [('email', (11, 20)), ('phone', (29, 41))]
    """
    if not isinstance(text, str):
        raise TypeError(f"find_pii expects a str, got {type(text).__name__}")
    found: list[tuple[str, tuple[int, int]]] = []
    taken = bytearray(len(text))  # 1 where an earlier span already claimed the character

    def claim(kind: str, span: tuple[int, int]) -> None:
        s, e = span
        if s < e and not any(taken[s:e]):
            taken[s:e] = b"\x01" * (e - s)
            found.append((kind, (s, e)))

    for m in _EMAIL.finditer(text):
        claim("email", m.span())
    for m in _CARD.finditer(text):
        if _is_card(text, m):
            claim("card", m.span())
    # longest first, so "+1 (555) 123-4567" is claimed whole rather than as its NANP tail
    for span in sorted(_phone_spans(text), key=lambda sp: (sp[0] - sp[1], sp[0])):
        claim("phone", span)
    for span in _address_spans(text):
        claim("address", span)
    return sorted(found, key=lambda f: f[1][0])


@lru_cache(maxsize=4096)
def _fold_char(ch: str) -> str:
    """What one character looks like to the PII patterns: NFKC, invisible characters dropped,
    any dash as "-" and any space as " " (so "555\u200b\u2011123" reads "555-123")."""
    cat = unicodedata.category(ch)
    if cat == "Cf" or "\ufe00" <= ch <= "\ufe0f":  # zero-width, bidi controls, soft hyphen, selectors
        return ""
    if cat == "Pd":
        return "-"
    if cat == "Zs":
        return " "
    return unicodedata.normalize("NFKC", ch)


def _folded(text: str) -> tuple[str, list[int]] | None:
    """(`text` folded char by char, the original index of each folded char); None if nothing changes."""
    parts = [_fold_char(ch) for ch in text]
    if all(p == ch for p, ch in zip(parts, text, strict=True)):
        return None
    index = [i for i, p in enumerate(parts) for _ in p]
    return "".join(parts), index


def redact(text: str) -> str:
    """`text` with every PII span replaced by its tag, e.g. `[email]`.

    PII hidden by look-alike characters is found too: the patterns run over a
    folded copy of the text (NFKC, zero-width and bidi characters dropped, every
    dash and space made ASCII) and each span found there replaces the original
    characters it came from; the rest of the text is kept as it was.

    Example:
        >>> redact("Call 555-123-4567 or write to jo@example.org, 12 Elm Street.")
        'Call [phone] or write to [email], [address].'
        >>> redact("call 555\u200b-123\u2011""4567 now")
        'call [phone] now'
    """
    if not isinstance(text, str):
        raise TypeError(f"redact expects a str, got {type(text).__name__}")
    folded = _folded(text)
    if folded is None:
        spans = find_pii(text)
    else:
        view, index = folded
        spans = [(kind, (index[s], index[e - 1] + 1)) for kind, (s, e) in find_pii(view)]
    out, last = [], 0
    for kind, (s, e) in spans:
        out.append(text[last:s])
        out.append(f"[{kind}]")
        last = e
    out.append(text[last:])
    return "".join(out)
