"""Interest association: categories linked by co-occurrence in histories and by transitions.

Co-occurrence: over shoppers, lift(a, b) = P(a and b in one history) / (P(a) P(b))
and PMI = log2 lift. Transition: lift(a -> b) = P(next = b | last = a) / P(next = b).
`evidence` turns the strongest links of a category into sentences such as
"shoppers who buy X often move to Y (lift 2.3)". This module knows nothing
about models, plots or files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .migration import row_normalise, transition_counts


@dataclass(frozen=True)
class Link:
    """One association between two categories."""

    source: str
    target: str
    kind: str  # "co-occurrence" (symmetric) or "transition" (source -> target)
    support: int  # shoppers with both, or transitions source -> target
    lift: float
    pmi: float  # log2 lift


@dataclass(frozen=True)
class AssociationConfig:
    """Which links are strong enough to report."""

    min_support: int = 5  # fewer shoppers / transitions: not reported
    min_lift: float = 1.2

    def __post_init__(self) -> None:
        if self.min_support < 1:
            raise ValueError(f"min_support={self.min_support}; expected >= 1")
        if self.min_lift <= 0:
            raise ValueError(f"min_lift={self.min_lift}; expected > 0")


@dataclass(frozen=True)
class AssociationGraph:
    """Category links with strengths; `links` sorted by lift (strongest first)."""

    labels: list[str]
    links: list[Link]
    n_shoppers: int

    def neighbours(self, label: str, kind: str | None = None) -> list[Link]:
        """Links leaving `label` (both directions for co-occurrence), strongest first."""
        out = []
        for lk in self.links:
            if kind is not None and lk.kind != kind:
                continue
            if lk.source == label:
                out.append(lk)
            elif lk.kind == "co-occurrence" and lk.target == label:
                out.append(Link(lk.target, lk.source, lk.kind, lk.support, lk.lift, lk.pmi))
        return out


def association_graph(sequences: Mapping[str, Sequence[int]], labels: Sequence[str],
                      cfg: AssociationConfig | None = None) -> AssociationGraph:
    """Co-occurrence and transition links between categories from shoppers' label sequences.

    Example:
        >>> g = association_graph({"1": [0, 1], "2": [0, 1], "3": [2]}, ["A", "B", "C"],
        ...                       AssociationConfig(min_support=2, min_lift=1.0))
        >>> [(lk.source, lk.target, lk.kind, round(lk.lift, 2)) for lk in g.links]
        [('A', 'B', 'co-occurrence', 1.5), ('A', 'B', 'transition', 1.0)]
    """
    cfg = cfg or AssociationConfig()
    n = len(labels)
    seqs = [s for s in sequences.values() if len(s)]
    m = np.zeros((len(seqs), n), dtype=np.float64)
    for i, s in enumerate(seqs):
        m[i, np.unique(np.asarray(s, dtype=np.int64))] = 1.0
    links: list[Link] = []
    n_sh = len(seqs)
    if n_sh:
        both = m.T @ m
        p = m.mean(0)
        for a, b in zip(*np.triu_indices(n, 1), strict=True):
            if both[a, b] < cfg.min_support:
                continue
            lift = float(both[a, b] / n_sh / (p[a] * p[b]))
            if lift >= cfg.min_lift:
                links.append(Link(labels[a], labels[b], "co-occurrence", int(both[a, b]), lift, math.log2(lift)))
    counts = transition_counts(seqs, n)
    cond = row_normalise(counts)
    marg = counts.sum(0) / max(counts.sum(), 1)
    for a, b in zip(*np.nonzero(counts), strict=True):
        if a == b or counts[a, b] < cfg.min_support or marg[b] == 0:
            continue
        lift = float(cond[a, b] / marg[b])
        if lift >= cfg.min_lift:
            links.append(Link(labels[a], labels[b], "transition", int(counts[a, b]), lift, math.log2(lift)))
    links.sort(key=lambda lk: (-lk.lift, lk.kind, lk.source, lk.target))
    return AssociationGraph(list(labels), links, n_sh)


def evidence(graph: AssociationGraph, label: str, k: int = 3) -> list[str]:
    """Up to `k` sentences on `label`'s strongest transition links, then co-occurrence links.

    Example:
        >>> g = AssociationGraph(["X", "Y"], [Link("X", "Y", "transition", 9, 2.31, 1.2)], 10)
        >>> evidence(g, "X")
        ['shoppers who buy X often move to Y next (lift 2.3, 9 transitions)']
    """
    out = []
    for lk in graph.neighbours(label, "transition")[:k]:
        out.append(f"shoppers who buy {lk.source} often move to {lk.target} next "
                   f"(lift {lk.lift:.1f}, {lk.support} transitions)")
    for lk in graph.neighbours(label, "co-occurrence")[: k - len(out)]:
        out.append(f"shoppers who buy {lk.source} also buy {lk.target} "
                   f"(lift {lk.lift:.1f}, {lk.support} shoppers)")
    return out


LINK_COLUMNS = ["from", "to", "link", "support", "lift", "PMI"]


def link_rows(graph: AssociationGraph, k: int = 20, kind: str | None = None) -> list[list[str | int | float]]:
    """The `k` strongest links (of `kind`, or both kinds) as table rows under `LINK_COLUMNS`, strongest first.

    "link" is "co-occurrence" (symmetric; support = shoppers with both) or "transition" (from -> to;
    support = moves); lift and PMI are rounded to 2 decimals.

    Example:
        >>> g = AssociationGraph(["X", "Y"], [Link("X", "Y", "transition", 9, 2.314, 1.21)], 10)
        >>> link_rows(g)
        [['X', 'Y', 'transition', 9, 2.31, 1.21]]
    """
    links = [lk for lk in graph.links if kind is None or lk.kind == kind][: max(k, 0)]
    return [[lk.source, lk.target, lk.kind, lk.support, round(lk.lift, 2), round(lk.pmi, 2)] for lk in links]
