"""Fairness slices of an evaluation: which groups of test cases a metric is broken down by, and the gaps.

Three kinds of groups, each a boolean mask over the test cases:
- activity: "cold" (history of at most `cold_max` events), "light" and "heavy"
  (heavy from `heavy_min` events, by default: longer than the median history of the non-cold cases);
- popularity of the target token: "head" (the most frequent training tokens that
  together cover `head_share` of training events) and "tail" (all others);
- demographics: one group per value of each user attribute in `attributes`
  (e.g. MovieLens gender and age bucket) that the dataset has.
The gap of a metric is the best group's mean minus the worst group's mean
(groups with fewer than `min_group` cases are left out). This module knows
nothing about models or files; the harness (`llmint.evaluate`) summarises the groups.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FairnessConfig:
    """How test cases are grouped for the fairness breakdown."""

    cold_max: int = 3  # history length up to which a case is "cold"
    heavy_min: int | None = None  # history length from which a case is "heavy"; None = above the non-cold median
    head_share: float = 0.5  # head tokens cover this share of the training events
    attributes: tuple[str, ...] = ("gender", "age_bucket")  # user attributes used when present
    min_group: int = 10  # smaller groups are not summarised

    def __post_init__(self) -> None:
        if self.cold_max < 0:
            raise ValueError(f"cold_max={self.cold_max}; expected >= 0")
        if self.heavy_min is not None and self.heavy_min <= self.cold_max:
            raise ValueError(f"heavy_min={self.heavy_min}; expected None or > cold_max={self.cold_max}")
        if not 0 < self.head_share < 1:
            raise ValueError(f"head_share={self.head_share}; expected 0 < head_share < 1")
        if self.min_group < 1:
            raise ValueError(f"min_group={self.min_group}; expected >= 1")


def head_tokens(train: Sequence[Sequence[int]], n_classes: int, head_share: float) -> np.ndarray:
    """bool (n_classes,): the most frequent tokens that together cover `head_share` of training events
    (at least one; ties by token index).

    Example:
        >>> head_tokens([[0, 0, 0, 1, 2]], 3, 0.5).tolist()
        [True, False, False]
    """
    counts = np.zeros(n_classes, dtype=np.float64)
    for s in train:
        if len(s):
            counts += np.bincount(np.asarray(s, dtype=np.int64), minlength=n_classes)
    order = np.lexsort((np.arange(n_classes), -counts))
    cum = np.cumsum(counts[order]) / max(counts.sum(), 1.0)
    n_head = int(np.searchsorted(cum, head_share) + 1) if counts.sum() > 0 else 1
    head = np.zeros(n_classes, dtype=bool)
    head[order[:n_head]] = True
    return head


def _natural(value: str) -> tuple[float, int, str]:
    """Sort key putting "<18" before "18-24" before "25-34" ... before "56+", and text alphabetically."""
    digits = re.search(r"\d+", value)
    return (float(digits.group()) if digits else float("inf"), 0 if value.startswith("<") else 1, value)


def group_masks(
    history_lengths: Sequence[int], targets: Sequence[int], train: Sequence[Sequence[int]], n_classes: int,
    users: Sequence[str], user_attrs: Mapping[str, Mapping[str, str]], cfg: FairnessConfig | None = None,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """({dimension: {group: bool mask (n_cases,)}}, the thresholds used).

    Example:
        >>> m, info = group_masks([0, 5, 9, 20], [0, 0, 1, 2], [[0, 0, 0, 1, 2]], 3, ["a", "b", "c", "d"],
        ...                       {"a": {"gender": "F"}, "b": {"gender": "M"}}, FairnessConfig(min_group=1))
        >>> {d: {g: v.tolist() for g, v in gs.items()} for d, gs in m.items()}["activity"]
        {'cold': [True, False, False, False], 'light': [False, True, True, False], 'heavy': [False, False, False, True]}
    """
    cfg = cfg or FairnessConfig()
    hl = np.asarray(history_lengths, dtype=np.int64)
    t = np.asarray(targets, dtype=np.int64)
    cold = hl <= cfg.cold_max
    heavy_min = cfg.heavy_min
    if heavy_min is None:
        warm = hl[~cold]
        heavy_min = int(np.floor(np.median(warm))) + 1 if len(warm) else cfg.cold_max + 2
        heavy_min = max(heavy_min, cfg.cold_max + 2)
    dims: dict[str, dict[str, np.ndarray]] = {
        "activity": {"cold": cold, "light": ~cold & (hl < heavy_min), "heavy": hl >= heavy_min},
    }
    head = head_tokens(train, n_classes, cfg.head_share)
    dims["popularity"] = {"head": head[t], "tail": ~head[t]}
    for attr in cfg.attributes:
        vals = np.array([user_attrs.get(u, {}).get(attr, "") for u in users], dtype=object)
        if (vals != "").sum() == 0:
            continue
        dims[attr] = {str(v): vals == v for v in sorted(set(vals.tolist()) - {""}, key=_natural)}
    info = {"cold_max": cfg.cold_max, "heavy_min": int(heavy_min), "head_share": cfg.head_share,
            "n_head_tokens": int(head.sum()), "min_group": cfg.min_group}
    return dims, info


def gaps(groups: Mapping[str, Mapping[str, Any]], metrics: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per system and metric: best and worst group (by mean) and the gap between them.

    `groups` maps a group name to a harness slice summary ({"n", "systems": {system: {metric: {"mean"...}}}}).
    Lower-is-better metrics (ece) still report best = the lowest.

    Example:
        >>> g = {"a": {"systems": {"s": {"hit@1": {"mean": 0.5}}}}, "b": {"systems": {"s": {"hit@1": {"mean": 0.2}}}}}
        >>> gaps(g, ["hit@1"])["s"]["hit@1"]
        {'best': 'a', 'best_mean': 0.5, 'worst': 'b', 'worst_mean': 0.2, 'gap': 0.3}
    """
    out: dict[str, dict[str, Any]] = {}
    systems = sorted({s for g in groups.values() for s in (g.get("systems") or {})})
    for s in systems:
        for m in metrics:
            vals = {
                name: g["systems"][s][m]["mean"] for name, g in groups.items()
                if s in g.get("systems", {}) and m in g["systems"][s]
                and g["systems"][s][m].get("mean") is not None and np.isfinite(g["systems"][s][m]["mean"])
            }
            if len(vals) < 2:
                continue
            lower = m in ("ece", "nll")
            best = (min if lower else max)(vals, key=lambda k: (vals[k], k))
            worst = (max if lower else min)(vals, key=lambda k: (vals[k], k))
            out.setdefault(s, {})[m] = {"best": best, "best_mean": vals[best], "worst": worst,
                                        "worst_mean": vals[worst], "gap": round(abs(vals[best] - vals[worst]), 12)}
    return out
