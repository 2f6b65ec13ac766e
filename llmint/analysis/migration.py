"""Interest migration: population category-to-category transitions, top flows, and who moves next.

A transition is a pair of consecutive categorised events of one shopper
(a -> b, a == b allowed: staying is counted, flows skip it). The data matrix
is compared with the one a ranker implies (its next-event distributions
averaged per last category) by row-wise total-variation distance. Migration
targets: per category c, the test shoppers currently elsewhere (last history
category != c), ranked by the ranker's P(next = c | history), evaluated as
precision@k against who actually moved into c on the test event of a
chronological split (`llmint.split.make_split`). This module knows nothing
about plots or files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..schema import Item
from ..split import Split
from ..taxonomy import Taxonomy
from .sequences import total_variation


def transition_counts(sequences: Sequence[Sequence[int]] | Mapping[str, Sequence[int]], n_labels: int) -> np.ndarray:
    """int64 (n_labels, n_labels): counts of consecutive pairs a -> b over all sequences.

    Example:
        >>> transition_counts([[0, 1, 1], [1, 0]], 2).tolist()
        [[0, 1], [1, 1]]
    """
    seqs = sequences.values() if isinstance(sequences, Mapping) else sequences
    keys = [np.asarray(s, dtype=np.int64)[:-1] * n_labels + np.asarray(s, dtype=np.int64)[1:]
            for s in seqs if len(s) >= 2]
    flat = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    return np.bincount(flat, minlength=n_labels * n_labels).reshape(n_labels, n_labels)


def row_normalise(counts: np.ndarray) -> np.ndarray:
    """Rows divided by their sums (rows with no count stay zero)."""
    counts = np.asarray(counts, dtype=np.float64)
    s = counts.sum(1, keepdims=True)
    return np.divide(counts, s, out=np.zeros_like(counts), where=s > 0)


@dataclass(frozen=True)
class Flow:
    """One migration flow between two different categories."""

    source: str
    target: str
    count: int  # transitions source -> target
    prob: float  # P(target | source) among all transitions out of source (staying included)
    lift: float  # prob / P(target) over all transition targets


def top_flows(counts: np.ndarray, labels: Sequence[str], k: int = 10, *, min_count: int = 1) -> list[Flow]:
    """The `k` largest off-diagonal flows by count (ties by lift, then names).

    Example:
        >>> [(f.source, f.target, f.count) for f in top_flows(np.array([[5, 2], [3, 0]]), ["A", "B"], 1)]
        [('B', 'A', 3)]
    """
    counts = np.asarray(counts)
    p = row_normalise(counts)
    col = counts.sum(0) / max(counts.sum(), 1)
    out = []
    for a, b in zip(*np.nonzero(counts), strict=True):
        if a == b or counts[a, b] < min_count:
            continue
        lift = float(p[a, b] / col[b]) if col[b] > 0 else float("nan")
        out.append(Flow(labels[a], labels[b], int(counts[a, b]), float(p[a, b]), lift))
    return sorted(out, key=lambda f: (-f.count, -f.lift, f.source, f.target))[:k]


def predicted_matrix(probs: np.ndarray, last: Sequence[int], n_labels: int) -> np.ndarray:
    """float64 (n_labels, n_labels): a ranker's next distributions `probs` (n, n_labels) averaged
    per last category `last` (n,); rows of categories never last stay zero."""
    probs = np.asarray(probs, dtype=np.float64)
    last = np.asarray(last, dtype=np.int64)
    out = np.zeros((n_labels, n_labels))
    np.add.at(out, last, probs)
    return row_normalise(out)


@dataclass(frozen=True)
class MatrixComparison:
    """Row-wise total-variation distance between the data and a predicted transition matrix."""

    mean_tv: float  # weighted by the data rows' transition counts
    row_tv: dict[str, float]  # per source label with data


def compare_matrices(data_counts: np.ndarray, predicted: np.ndarray, labels: Sequence[str]) -> MatrixComparison:
    """Compare a data count matrix with a predicted (row-stochastic) matrix, row by row.

    Example:
        >>> compare_matrices(np.array([[2, 0], [0, 0]]), np.array([[0.5, 0.5], [1, 0]]), ["A", "B"]).mean_tv
        0.5
    """
    data_counts = np.asarray(data_counts, dtype=np.float64)
    rows = np.flatnonzero((data_counts.sum(1) > 0) & (np.asarray(predicted).sum(1) > 0))
    if not len(rows):
        return MatrixComparison(float("nan"), {})
    tv = np.asarray(total_variation(row_normalise(data_counts)[rows], np.asarray(predicted)[rows]))
    w = data_counts.sum(1)[rows]
    per_row = {labels[r]: float(v) for r, v in zip(rows, tv, strict=True)}
    return MatrixComparison(float((tv * w).sum() / w.sum()), per_row)


@dataclass(frozen=True)
class SplitTokens:
    """A chronological split in label space (events without a category dropped)."""

    train: list[list[int]]
    test_users: list[str]
    test_hist: list[list[int]]
    test_target: np.ndarray  # int64 (n,)
    test_cases: list[Any] = field(default_factory=list)  # the llmint.split.Case of each test row


def split_tokens(split: Split, items: Mapping[str, Item], taxonomy: Taxonomy) -> SplitTokens:
    """Map a split's training sequences and test cases to label indices; cases whose target has
    no category, or whose history has none, are dropped."""
    lab = taxonomy.item_labels(items)

    def seq(evs):
        return [lab[e.item_id] for e in evs if e.item_id in lab]

    train = [s for s in (seq(v) for _, v in sorted(split.train.items())) if s]
    users, hist, target, cases = [], [], [], []
    for c in split.test:
        h = seq(c.history)
        if c.target.item_id not in lab or not h:
            continue
        users.append(c.user_id)
        hist.append(h)
        target.append(lab[c.target.item_id])
        cases.append(c)
    return SplitTokens(train, users, hist, np.asarray(target, dtype=np.int64), cases)


@dataclass(frozen=True)
class TargetList:
    """The shoppers most likely to move into one category next."""

    label: str
    users: list[str]  # best first
    scores: list[float]  # P(next = label | history)
    n_candidates: int  # shoppers whose last category is elsewhere
    n_movers: int  # of those, how many moved into the label on the test event


def target_lists(probs: np.ndarray, tokens: SplitTokens, labels: Sequence[str], k: int = 50) -> list[TargetList]:
    """Per category, the top-`k` candidate shoppers by the ranker's probability `probs` (n, n_labels)."""
    probs = np.asarray(probs, dtype=np.float64)
    last = np.array([h[-1] for h in tokens.test_hist], dtype=np.int64)
    out = []
    for c, name in enumerate(labels):
        cand = np.flatnonzero(last != c)
        movers = int((tokens.test_target[cand] == c).sum())
        # stable ranking: score desc, then user id
        order = cand[np.lexsort((np.array(tokens.test_users, dtype=object)[cand].astype(str), -probs[cand, c]))]
        top = order[:k]
        out.append(TargetList(name, [tokens.test_users[i] for i in top], [float(probs[i, c]) for i in top],
                              len(cand), movers))
    return out


def precision_at_k(lists: Sequence[TargetList], tokens: SplitTokens, labels: Sequence[str],
                   ks: Sequence[int] = (10, 50)) -> dict[str, float]:
    """Macro precision@k over categories with at least one mover, and the random base rate.

    precision@k of a category = movers among its top min(k, candidates) shoppers / that number;
    base_rate = movers / candidates, averaged the same way (what a random list would get).
    """
    moved = {u: int(t) for u, t in zip(tokens.test_users, tokens.test_target, strict=True)}
    pos = {lab: i for i, lab in enumerate(labels)}
    out: dict[str, float] = {}
    valid = [tl for tl in lists if tl.n_movers > 0]
    for k in ks:
        vals = [sum(moved[u] == pos[tl.label] for u in tl.users[:k]) / max(1, min(k, len(tl.users)))
                for tl in valid]
        out[f"precision@{k}"] = float(np.mean(vals)) if vals else float("nan")
    out["base_rate"] = float(np.mean([tl.n_movers / tl.n_candidates for tl in valid])) if valid else float("nan")
    out["n_categories"] = float(len(valid))
    return out
