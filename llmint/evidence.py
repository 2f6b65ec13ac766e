"""Grounded explanations: evidence from a shopper's own events, and the faithfulness check.

Given the events of a history *as shown to the model* (with their citation
numbers), the true (or predicted) next category and statistics of the training
split, `select_evidence` picks the events that support the category and
`explain` words them into one short sentence that cites events as "[n]":

    Next interest: Office Products > Paper. Evidence: [12] bought Post-it Super
    Sticky Notes in this category; [9] bought Brother Label Maker in Office
    Electronics, and 18% of next events after Office Electronics are in this category.

Every fact in an explanation comes from the data: item titles (shortened), the
event's action and rating, and counts of the training split. Free text written
by shoppers (review text, search queries) is never copied into an explanation,
so a hostile review cannot turn into an instruction the model learns to repeat.
`check_faithfulness` is the check run on every served explanation.

This module knows nothing about prompts, tokenisers or models.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .schema import Event, Item
from .taxonomy import SEP, Taxonomy

EXPLANATION_VERSION = "evidence-v2"
"""Version tag of the explanation wording and evidence choice (stored with trained adapters).
v2: an item of several categories (`Item.also_in`) is cited as in any of them."""

VERBS: Mapping[str, str] = {
    "view": "viewed",
    "search": "searched",
    "favourite": "saved",
    "cart": "added to cart",
    "purchase": "bought",
    "review": "reviewed",
}


@dataclass(frozen=True)
class CategoryStats:
    """Category popularity and first-order transition counts of the training sequences.

    `transitions[prev][next]` counts consecutive pairs of categorised events
    (events without a category are skipped, as the Markov baseline does).
    """

    transitions: Mapping[str, Mapping[str, int]]
    popularity: Mapping[str, int]
    _totals: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._totals.update({p: sum(nx.values()) for p, nx in self.transitions.items()})

    @classmethod
    def from_sequences(
        cls, sequences: Iterable[Sequence[Event]], items: Mapping[str, Item], taxonomy: Taxonomy
    ) -> CategoryStats:
        """Count over chronological event sequences (pass `split.train.values()`, never test data).

        Example:
            >>> items = {"a": Item("a", "A", ("X",)), "b": Item("b", "B", ("Y",))}
            >>> evs = [Event("u", i, "purchase", order=n) for n, i in enumerate("aab")]
            >>> tax = Taxonomy.from_items(items.values(), 1)
            >>> s = CategoryStats.from_sequences([evs], items, tax)
            >>> s.p_next("X", "Y"), s.popularity["X"]
            (0.5, 2)
        """
        trans: dict[str, Counter[str]] = defaultdict(Counter)
        pop: Counter[str] = Counter()
        for seq in sequences:
            prev = None
            for e in seq:
                lab = label_of_event(e, items, taxonomy)
                if lab is None:
                    continue
                pop[lab] += 1
                if prev is not None:
                    trans[prev][lab] += 1
                prev = lab
        return cls(transitions={p: dict(c) for p, c in trans.items()}, popularity=dict(pop))

    def p_next(self, prev: str, nxt: str) -> float:
        """P(next category = nxt | previous category = prev); 0.0 when `prev` was never seen."""
        total = self._totals.get(prev, 0)
        return self.transitions.get(prev, {}).get(nxt, 0) / total if total else 0.0

    def prior(self, labels: Sequence[str]) -> np.ndarray:
        """The population prior over `labels` (add-one smoothed popularity), float64 summing to 1:
        what a shopper with no events is served, and what short histories are blended with."""
        counts = np.array([self.popularity.get(lab, 0) for lab in labels], np.float64)
        return (counts + 1.0) / (counts + 1.0).sum()

    def share(self, label: str) -> float:
        """The share of training events in `label`."""
        total = sum(self.popularity.values())
        return self.popularity.get(label, 0) / total if total else 0.0

    def rank(self, label: str) -> int:
        """1-based popularity rank of `label` (ties share the better rank; unseen = last + 1)."""
        n = self.popularity.get(label, 0)
        return 1 + sum(1 for v in self.popularity.values() if v > n)


@dataclass(frozen=True)
class Citation:
    """One cited event: its citation number and the facts the explanation states about it."""

    position: int  # 1-based position in the shopper's full history, as shown in the prompt
    action: str
    title: str  # shortened catalogue title
    category: str
    rating: float | None
    role: str  # "target": in the category; "lead-in": in a category that often precedes it


@dataclass(frozen=True)
class TransitionStat:
    """P(category `next` follows category `prev`) in the training data."""

    prev: str
    next: str
    probability: float
    count: int


@dataclass(frozen=True)
class Evidence:
    """What supports one category for one history: cited events and training statistics."""

    category: str
    citations: tuple[Citation, ...]
    transition: TransitionStat | None
    n_shown: int  # events shown in the prompt
    popularity_share: float
    popularity_rank: int

    @property
    def cited_positions(self) -> tuple[int, ...]:
        return tuple(c.position for c in self.citations)


@dataclass(frozen=True)
class Verdict:
    """Result of `check_faithfulness`: ok, and one reason per problem found."""

    ok: bool
    reasons: tuple[str, ...] = ()
    cited: tuple[int, ...] = ()


def label_of_event(e: Event, items: Mapping[str, Item], taxonomy: Taxonomy) -> str | None:
    """The category label of an event's item at the taxonomy's level (None: no item or category)."""
    it = items.get(e.item_id) if e.item_id else None
    return taxonomy.label_of(it) if it is not None else None


def labels_of_event(e: Event, items: Mapping[str, Item], taxonomy: Taxonomy) -> tuple[str, ...]:
    """Every category label of an event's item (`Taxonomy.labels_of`: its own first, then those of
    a multi-label item's `also_in`); () for a search or an item without a category."""
    it = items.get(e.item_id) if e.item_id else None
    return taxonomy.labels_of(it) if it is not None else ()


_DANGLING = frozenset(
    {
        "",
        "and",
        "or",
        "in",
        "with",
        "for",
        "of",
        "the",
        "a",
        "an",
        "to",
        "by",
        "on",
        "&",
        "x",
        "+",
        "/",
    }
)
_UNSAFE = re.compile(r"[\[\]<>{}|\\`\"\n\r\t]+")


def short_title(title: str, max_words: int = 6, max_chars: int = 48) -> str:
    """A catalogue title cut to its name (before the first ", " / " - " / " (" when that leaves
    two words or more) and to a few words, without brackets or quotes (no fake "[n]").

    Example:
        >>> short_title("Post-it Super Sticky Notes, 3 in x 3 in, Canary Yellow [12 Pads]")
        'Post-it Super Sticky Notes'
    """
    clean = " ".join(_UNSAFE.sub(" ", title).split())
    head = re.split(r",\s| - | \(", clean, maxsplit=1)[0]
    if len(head.split()) >= 2:
        clean = head
    words = clean.split()[:max_words]
    while sum(len(w) + 1 for w in words) - 1 > max_chars and len(words) > 1:
        words.pop()
    if len(words) < len(clean.split()):  # cut: no dangling "and", "in", "-" at the end
        while len(words) > 1 and words[-1].casefold().strip(",;:-(") in _DANGLING:
            words.pop()
    out = " ".join(words).rstrip(" ,;:-(")[:max_chars]
    return out or "an item"


def leaf(label: str) -> str:
    """The last segment of a category label ("A > B" -> "B")."""
    return label.rsplit(SEP, 1)[-1]


def select_evidence(
    shown: Sequence[Event],
    positions: Sequence[int],
    items: Mapping[str, Item],
    taxonomy: Taxonomy,
    category: str,
    stats: CategoryStats,
    *,
    max_target: int = 2,
    max_lead_in: int = 1,
    min_transitions: int = 2,
    min_lift: float = 1.5,
    min_probability: float = 0.05,
) -> Evidence:
    """Pick the shown events that support `category`.

    `shown[i]` is displayed with citation number `positions[i]`. Order of choice:
    events of `category` itself (most recent first); then the most recent event
    of the category with the highest P(category | that category), if that
    probability is at least `min_probability` and `min_lift` times the
    category's base rate, and rests on at least `min_transitions` training
    transitions. One item is cited at most once;
    search events (no item) are never cited.
    """
    if len(shown) != len(positions):
        raise ValueError(f"shown has {len(shown)} events but positions has {len(positions)}")
    rows: list[tuple[int, Event, tuple[str, ...]]] = []  # (position, event, its labels: own first)
    for e, p in zip(shown, positions, strict=True):
        labs = labels_of_event(e, items, taxonomy)
        if labs:
            rows.append((p, e, labs))
    rows.sort(key=lambda r: -r[0])  # most recent first
    seen_items: set[str] = set()
    cites: list[Citation] = []

    def cite(p: int, e: Event, lab: str, role: str) -> None:
        seen_items.add(e.item_id or "")
        cites.append(
            Citation(
                p,
                e.action,
                short_title(items[e.item_id].title),
                lab,  # type: ignore[index]
                e.rating,
                role,
            )
        )

    for p, e, labs in rows:
        if len([c for c in cites if c.role == "target"]) >= max_target:
            break
        if category in labs and e.item_id not in seen_items:  # its own category or, multi-label, another
            cite(p, e, category, "target")

    transition = None
    base = stats.share(category)
    lead: dict[str, float] = {}
    leads = [(p, e, labs[0]) for p, e, labs in rows if category not in labs]  # transitions count own labels
    for _, _, lab in leads:
        if lab not in lead:
            n = stats.transitions.get(lab, {}).get(category, 0)
            pr = stats.p_next(lab, category)
            if n >= min_transitions and pr >= max(min_lift * base, min_probability):
                lead[lab] = pr
    for lab in sorted(lead, key=lambda k: (-lead[k], k))[:max_lead_in]:
        p, e, _ = next(r for r in leads if r[2] == lab)
        cite(p, e, lab, "lead-in")
        if transition is None:
            transition = TransitionStat(lab, category, lead[lab], stats.transitions[lab][category])
    return Evidence(
        category=category,
        citations=tuple(cites),
        transition=transition,
        n_shown=len(shown),
        popularity_share=base,
        popularity_rank=stats.rank(category),
    )


def _rating(r: float | None) -> str:
    if r is None:
        return ""
    return f" ({int(r)}/5)" if float(r).is_integer() else f" ({r:.1f}/5)"


def event_wording(action: str, title: str, rating: float | None) -> str:
    """What follows an event's "[n]" in an explanation: the verb, the title as given, the rating.

    Example:
        >>> event_wording("review", "Heat", 4.0), event_wording("purchase", "Swingline Stapler", None)
        (' rated Heat (4/5)', ' bought Swingline Stapler')
    """
    verb = "rated" if action == "review" and rating is not None else VERBS.get(action, action)
    return f" {verb} {title}{_rating(rating)}"


def _event_phrase(c: Citation, words: int) -> str:
    return f"[{c.position}]" + event_wording(c.action, short_title(c.title, max_words=words), c.rating)


def _pct(p: float) -> str:
    return f"{p:.0%}" if p >= 0.01 else "<1%"


def approx_tokens(text: str) -> int:
    """A rough token count (words and punctuation marks) for when no tokenizer is at hand."""
    return len(re.findall(r"\w+|[^\w\s]", text))


def wordings(ev: Evidence) -> list[str]:
    """Every wording of `ev` that `explain` chooses from, richest first (duplicates dropped).

    Example:
        >>> c = Citation(3, "purchase", "Swingline Stapler", "Office > Staplers", None, "target")
        >>> wordings(Evidence("Office > Staplers", (c,), None, 4, 0.1, 2))[-1]
        'Next interest: Office > Staplers. Evidence: [3] bought an item in this category.'
    """
    head = f"Next interest: {ev.category}. Evidence: "
    target = [c for c in ev.citations if c.role == "target"]
    lead = [c for c in ev.citations if c.role == "lead-in"]
    candidates: list[str] = []
    for words, n_target, with_lead in (
        (6, 2, True),
        (4, 2, True),
        (4, 1, True),
        (4, 1, False),
        (3, 1, False),
        (0, 1, False),
    ):
        parts = []
        tc = target[:n_target]
        if tc:
            parts.append(" and ".join(_event_phrase(c, words) for c in tc) + " in this category")
        if with_lead and lead and ev.transition is not None:
            c, t = lead[0], ev.transition
            parts.append(
                f"{_event_phrase(c, words)} in {leaf(c.category)}, and "
                f"{_pct(t.probability)} of next events after {leaf(t.prev)} are in this category"
            )
        if not parts:
            parts.append(
                f"none of the {ev.n_shown} events shown is in this category or one that "
                f"often leads to it; it holds {_pct(ev.popularity_share)} of training "
                f"events (popularity rank {ev.popularity_rank})"
            )
        text = head + "; ".join(parts) + "."
        if text not in candidates:
            candidates.append(text)
    return candidates


def explain(
    ev: Evidence,
    *,
    max_tokens: int = 60,
    count_tokens: Callable[[str], int] | None = None,
) -> str:
    """Word `ev` as one short explanation that names the category and cites events as "[n]".

    Tries richer wordings first (`wordings`) and returns the first within `max_tokens`
    (counted with `count_tokens`, default `approx_tokens`), else the shortest.

    Example:
        >>> c = Citation(3, "purchase", "Swingline Stapler", "Office > Staplers", None, "target")
        >>> explain(Evidence("Office > Staplers", (c,), None, 4, 0.1, 2))
        'Next interest: Office > Staplers. Evidence: [3] bought Swingline Stapler in this category.'
    """
    count = count_tokens or approx_tokens
    candidates = wordings(ev)
    for text in candidates:
        if count(text) <= max_tokens:
            return text
    return min(candidates, key=count)


_CITE = re.compile(r"\[\s*(\d+(?:\s*[-,–]\s*\d+)*)\s*\]")


def cited_positions(text: str) -> tuple[int, ...]:
    """Every event number cited in `text` as "[n]", "[n, m]" or "[n-m]" (ranges expanded).

    Example:
        >>> cited_positions("[3] and [5-7], also [9, 12]")
        (3, 5, 6, 7, 9, 12)
    """
    out: list[int] = []
    for m in _CITE.finditer(text):
        for part in re.split(r"\s*,\s*", m.group(1)):
            rng = re.fullmatch(r"(\d+)\s*[-–]\s*(\d+)", part)
            if rng is None:
                out.append(int(part))
                continue
            a, b = int(rng.group(1)), int(rng.group(2))
            out.extend(range(a, b + 1) if 0 <= b - a < 1000 else (a, b))
    return tuple(out)


def _norm(s: str) -> str:
    return " ".join(s.casefold().split())


def shown_labels(
    shown: Sequence[Event], positions: Sequence[int], items: Mapping[str, Item], taxonomy: Taxonomy
) -> dict[int, tuple[str, ...]]:
    """Citation number -> the category labels of each shown event (its own first; more for a
    multi-label item; () for a search or an item without a category): what `check_faithfulness`
    compares an explanation's category claims with."""
    if len(shown) != len(positions):
        raise ValueError(f"shown has {len(shown)} events but positions has {len(positions)}")
    return {p: labels_of_event(e, items, taxonomy) for e, p in zip(shown, positions, strict=True)}


def _label_sets(labels: Mapping[int, str | Sequence[str] | None]) -> dict[int, tuple[str, ...]]:
    """`event_labels` with one label (or None) per event read as a set of one (or none)."""
    return {p: () if v is None else (v,) if isinstance(v, str) else tuple(v) for p, v in labels.items()}


_LEAD_IN = re.compile(
    r"^(?P<phrase>.*), and (?P<pct>\S+) of next events after (?P<prev>.+?) are in this category", re.S)
_PCT = re.compile(r"(?P<lt><)?(?P<n>\d+(?:\.\d+)?)%")
PCT_TOLERANCE = 1.0
"""Percentage points a lead-in's stated share may differ from the training statistic (rounding)."""


def _pct_claim(stated: str, label: str, prev_labels: Sequence[str], stats: CategoryStats) -> str | None:
    """A problem with "<stated> of next events after <prev> are in this category", or None when the
    share is right for one of the labels the lead-in may mean (within `PCT_TOLERANCE` points)."""
    m = _PCT.fullmatch(stated.strip())
    truths = [100 * stats.p_next(a, label) for a in prev_labels]
    if m is None:
        return f"states {stated!r} as a share of next events, which is not a percentage"
    n = float(m.group("n"))
    if any((t < n) if m.group("lt") else abs(t - n) <= PCT_TOLERANCE for t in truths):
        return None
    return f"states {stated} of next events after {leaf(prev_labels[0])!r} are in this category; the training " \
           f"sequences say {_pct(truths[0] / 100)}"
_NONE_SHOWN = re.compile(r"none of the \d+ events shown is in this category")


def _claims(text: str, label: str, labels: Mapping[int, tuple[str, ...]],
            stats: CategoryStats | None = None) -> list[str]:
    """Problems with the category claims an explanation makes about cited events.

    Reads the clauses (split at ";") of the evidence wording `explain` teaches:
    "[n] bought X in this category" says event n is in `label`; "[n] bought X in
    Leaf, and 18% of next events after Leaf are in this category" says event n is
    in a category whose last segment is Leaf; "none of the k events shown is in
    this category" says no shown event is in `label`. An event is in each of its
    labels (several for a multi-label item). With `stats`, the lead-in's share ("18%")
    must be P(label | Leaf) of the training sequences. Free wording makes no claim this reads."""
    out: list[str] = []
    want = _norm(label)
    body = text.split("Evidence:", 1)[-1]
    for clause in body.split(";"):
        lead = _LEAD_IN.search(clause)
        if lead is not None:
            phrase, prev = _norm(lead.group("phrase")), _norm(lead.group("prev"))
            for p in dict.fromkeys(cited_positions(phrase)):
                if p not in labels:
                    continue  # reported as not shown
                actual = labels[p]
                if not actual:
                    out.append(f"cites [{p}] as a lead-in from {prev!r}, but it has no category")
                elif not any(phrase.endswith(" in " + _norm(leaf(a))) and prev == _norm(leaf(a)) for a in actual):
                    out.append(f"cites [{p}] as a lead-in from {prev!r}, but it is in {leaf(actual[0])!r}")
                elif stats is not None:
                    prevs = [a for a in actual if _norm(leaf(a)) == prev]
                    problem = _pct_claim(lead.group("pct"), label, prevs, stats)
                    if problem is not None:
                        out.append(problem)
            continue
        if _NONE_SHOWN.search(_norm(clause)):
            hits = [p for p, labs in labels.items() if any(_norm(a) == want for a in labs)]
            if hits:
                out.append(f"says none of the events shown is in this category, but [{hits[0]}] is")
            continue
        at = _norm(clause).find("in this category")
        if at < 0:
            continue
        for p in dict.fromkeys(cited_positions(_norm(clause)[:at])):
            if p not in labels:
                continue
            actual = labels[p]
            if not actual:
                out.append(f"cites [{p}] as in this category, but it has no category")
            elif not any(_norm(a) == want for a in actual):
                out.append(f"cites [{p}] as in this category, but it is in {actual[0]!r}")
    return out


def reason_kind(reason: str) -> str:
    """A failure reason without its numbers and names, for counting reasons over many checks.

    Example:
        >>> reason_kind("cites [7] as in this category, but it is in 'Paper'")
        'cites [n] as in this category'
    """
    reason = re.sub(r"<?\d+(?:\.\d+)?%", "N%", re.sub(r"\[\d+\]", "[n]", reason))
    return reason.split(" '")[0].split(",")[0].split(" (")[0]


def check_faithfulness(
    explanation_text: str,
    history_positions: Collection[int],
    category_label: str,
    *,
    require_citation: bool = False,
    event_labels: Mapping[int, str | Sequence[str] | None] | None = None,
    stats: CategoryStats | None = None,
) -> Verdict:
    """Check one explanation: every cited [n] is an event shown in the history, and the
    category label is named (whitespace and case aside). With `require_citation`, an
    explanation that cites no event while the history shows some also fails (a
    generated explanation must point at evidence; the grounded template may say
    that no shown event supports the category). With `event_labels` (citation
    number -> the shown event's category labels, from `shown_labels`; a single label
    or None is accepted too), the category each cited event is said to be in must be
    one of its categories: "[n] bought X in this category" fails when event n is in
    none of them. With `stats` too, a lead-in's share of next events must be the
    training statistic (within `PCT_TOLERANCE` percentage points).

    Example:
        >>> check_faithfulness("Next interest: Paper. Evidence: [2] bought pens.", [1, 2], "Paper")
        Verdict(ok=True, reasons=(), cited=(2,))
        >>> for r in check_faithfulness("Evidence: [7] bought pens.", [1, 2], "Paper").reasons:
        ...     print(r)
        cites [7], which is not in the history shown (positions 1..2)
        does not name the category 'Paper'
    """
    reasons: list[str] = []
    shown = set(history_positions)
    if not explanation_text.strip():
        return Verdict(False, ("the explanation is empty",))
    cited = cited_positions(explanation_text)
    span = f"positions {min(shown)}..{max(shown)}" if shown else "no events"
    for p in dict.fromkeys(cited):
        if p not in shown:
            reasons.append(f"cites [{p}], which is not in the history shown ({span})")
    if not category_label or _norm(category_label) not in _norm(explanation_text):
        reasons.append(f"does not name the category {category_label!r}")
    if require_citation and shown and not cited:
        reasons.append("cites no event of the history")
    if event_labels is not None:
        reasons.extend(_claims(explanation_text, category_label, _label_sets(event_labels), stats))
    return Verdict(not reasons, tuple(reasons), cited)


__all__ = [
    "EXPLANATION_VERSION",
    "PCT_TOLERANCE",
    "CategoryStats",
    "Citation",
    "Evidence",
    "TransitionStat",
    "Verdict",
    "check_faithfulness",
    "cited_positions",
    "event_wording",
    "explain",
    "label_of_event",
    "labels_of_event",
    "reason_kind",
    "select_evidence",
    "short_title",
    "shown_labels",
    "wordings",
]
