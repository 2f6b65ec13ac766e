"""The four analyses end to end on one dataset, as JSON-able dicts plus PNG files in an output folder.

`shopper_report`, `migration_report`, `trends_report` and `churn_report` are
what `llmint analyze shopper|migration|trends|churn` call. Each takes an
already loaded `Dataset`, returns a dict (numbers only, ready for
`json.dumps`) and writes its figures into `out_dir`. This module knows
nothing about the command line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..schema import Dataset, Event
from ..taxonomy import Taxonomy
from .association import AssociationConfig, association_graph, evidence
from .churn import ChurnConfig, churn_signal, evaluate_churn
from .evolution import TrendConfig, category_mix, population_trends, trends
from .forecast import ForecastConfig, compare_forecasters, held_out_windows
from .migration import (
    compare_matrices,
    precision_at_k,
    predicted_matrix,
    split_tokens,
    target_lists,
    top_flows,
    transition_counts,
)
from .profile import shopper_profile
from .sequences import has_time, label_sequences, labelled

logger = logging.getLogger(__name__)
Progress = Callable[[str], None] | None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def subsample(histories: Mapping[str, list[Event]], max_users: int | None, seed: int = 0) -> dict[str, list[Event]]:
    """A seeded subsample of `max_users` shoppers (all when None or fewer)."""
    users = sorted(histories)
    if max_users is not None and len(users) > max_users:
        keep = np.random.default_rng(seed).choice(len(users), max_users, replace=False)
        users = sorted(users[i] for i in keep)
    return {u: histories[u] for u in users}


def taxonomy_of(dataset: Dataset, level: int | None) -> Taxonomy:
    """The dataset's taxonomy at `level` (default: its default level); ValueError without categories."""
    if not dataset.has_categories:
        raise ValueError(f"{dataset.name} has no categories below its root: nothing to analyse")
    return Taxonomy.from_items(dataset.items.values(), level or dataset.default_level)


def shopper_report(dataset: Dataset, user_id: str, out_dir: Path, *, level: int | None = None, recent_n: int = 10,
                   half_life_days: float = 90.0, window: str = "auto", top: int = 8) -> dict[str, Any]:
    """Profile, category mix per window, trends, churn signal and association evidence of one shopper."""
    from .plots import plot_category_mix, plot_profile, save

    hist = dataset.histories()
    if user_id not in hist:
        from ..errors import UnknownIdError

        raise UnknownIdError(f"unknown shopper {user_id!r} in {dataset.name} ({len(hist)} shoppers)")
    tax = taxonomy_of(dataset, level)
    events = hist[user_id]
    prof = shopper_profile(events, dataset.items, tax, recent_n=recent_n, half_life_days=half_life_days)
    mix = category_mix(events, dataset.items, tax, window=window)
    graph = association_graph(label_sequences(hist, dataset.items, tax), list(tax.labels))
    seq = labelled(events, dataset.items, tax)
    sig = None
    if seq and has_time(le.event for le in seq):
        times = [le.time for le in seq]
        sig = churn_signal(user_id, times, session_gap_s=3600.0 if times[0] >= 1e8 else 0.0)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"shopper_{_safe(dataset.name)}_{_safe(user_id)}"
    files = {"profile_png": str(save(plot_profile(prof, top), out_dir / f"{stem}_profile.png")),
             "mix_png": str(save(plot_category_mix(mix, top), out_dir / f"{stem}_mix.png"))}
    return {
        "dataset": dataset.name, "user_id": user_id, "level": tax.level,
        "profile": asdict(prof), "top_shift": prof.top_shift(3),
        "mix": {"window": mix.window, "windows": mix.windows, "labels": mix.labels,
                "shares": mix.shares.round(4).tolist(), "counts": mix.counts.tolist()},
        "trends": [asdict(t) for t in trends(mix) if t.direction != "stable"],
        "churn_signal": asdict(sig) if sig else None,
        "evidence": {lab: evidence(graph, lab) for lab, _ in prof.top_shift(3)},
        "files": files,
    }


def _rankers() -> dict[str, Any]:
    from .. import baselines as B

    return {"markov": B.Markov(), "user_most_frequent": B.UserMostFrequent(), "most_popular": B.MostPopular()}


def migration_report(dataset: Dataset, out_dir: Path, *, level: int | None = None, top: int = 15,
                     ks: Sequence[int] = (10, 50), max_users: int | None = None, seed: int = 0,
                     llm_n: int = 0, llm_model: str | None = None, llm_adapter: str | None = None,
                     progress: Progress = None) -> dict[str, Any]:
    """Population transitions and top flows (heat map and Sankey PNGs), ranker-predicted vs actual
    transitions, migration target lists with precision@k on a chronological split, and the association
    graph's strongest links.

    `llm_n` > 0 also scores the LLM (zero-shot, or with `llm_adapter`) on a seeded sample of that many
    test shoppers and compares its predicted transition matrix with the baselines' on the same rows.
    """
    from ..split import SplitConfig, make_split
    from .plots import plot_flows, plot_transitions, save

    tax = taxonomy_of(dataset, level)
    labels = list(tax.labels)
    hist = subsample(dataset.histories(), max_users, seed)
    if progress:
        progress(f"{dataset.name}: category sequences of {len(hist)} shoppers")
    seqs = label_sequences(hist, dataset.items, tax, seed=seed)
    counts = transition_counts(seqs, len(labels))
    split = make_split(hist, SplitConfig(seed=seed))
    tokens = split_tokens(split, dataset.items, tax)
    last = [h[-1] for h in tokens.test_hist]
    test_counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(test_counts, (np.asarray(last, dtype=np.int64), tokens.test_target), 1)
    rankers: dict[str, Any] = {}
    for name, r in _rankers().items():
        if progress:
            progress(f"{dataset.name}: {name}")
        r.fit(tokens.train, len(labels))
        probs = r.predict_proba(tokens.test_hist)
        cmp = compare_matrices(test_counts, predicted_matrix(probs, last, len(labels)), labels)
        lists = target_lists(probs, tokens, labels, k=max(ks))
        rankers[name] = {"matrix_tv": cmp.mean_tv, **precision_at_k(lists, tokens, labels, ks)}
        if name == "markov":
            example = {tl.label: {"users": tl.users[:10], "scores": [round(s, 4) for s in tl.scores[:10]],
                                  "n_candidates": tl.n_candidates, "n_movers": tl.n_movers}
                       for tl in sorted(lists, key=lambda t: -t.n_movers)[:5]}
    llm_sample = _llm_migration(dataset, tax, tokens, last, llm_n, llm_model, llm_adapter, seed, progress) \
        if llm_n > 0 else None
    graph = association_graph(seqs, labels, AssociationConfig())
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"migration_{_safe(dataset.name)}"
    png = save(plot_transitions(counts, labels, top), out_dir / f"{stem}.png")
    sankey = save(plot_flows(counts, labels, top), out_dir / f"{stem}_flows.png")
    strongest = [asdict(lk) for lk in graph.links if lk.kind == "transition"][:10]
    return {
        "dataset": dataset.name, "level": tax.level, "n_shoppers": len(seqs), "n_transitions": int(counts.sum()),
        "stay_share": float(np.trace(counts) / max(counts.sum(), 1)),
        "top_flows": [asdict(f) for f in top_flows(counts, labels, top)],
        "test_cases": len(tokens.test_target),
        "rankers": rankers,
        "target_lists_markov": example,
        "llm_sample": llm_sample,
        "association_top": strongest,
        "association_evidence": {lk["source"]: evidence(graph, lk["source"], 2) for lk in strongest[:3]},
        "files": {"heatmap_png": str(png), "sankey_png": str(sankey)},
    }


def _llm(dataset: Dataset, tax: Any, model: str | None, adapter: str | None, seed: int, progress: Progress,
         what: str) -> Any:
    """The LLM ranker of a comparison: zero-shot or `adapter`, at the adapter's calibrated temperature
    (else 1; nothing is fitted here); says how it scores on `progress`."""
    from ..llm_ranker import LLMCategoryRanker, LLMRankerConfig

    llm = LLMCategoryRanker("llm", dataset, tax.level,
                            LLMRankerConfig(model=model, adapter=adapter, max_valid=0, seed=seed))
    llm.fit_events([])
    if progress:
        name = Path(adapter).name if adapter else "zero-shot"
        progress(f"{dataset.name}: LLM on {what} ({name}, temperature {llm.temperature:.3g})")
    return llm


def _llm_migration(dataset: Dataset, tax: Any, tokens: Any, last: Sequence[int], n: int, model: str | None,
                   adapter: str | None, seed: int, progress: Progress) -> dict[str, Any]:
    """Predicted-vs-actual transition matrices of the LLM and the baselines on one seeded sample of test rows."""
    labels = list(tax.labels)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(tokens.test_cases), min(n, len(tokens.test_cases)), replace=False))
    last_s = [last[i] for i in rows]
    actual = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(actual, (np.asarray(last_s, dtype=np.int64), tokens.test_target[rows]), 1)
    llm = _llm(dataset, tax, model, adapter, seed, progress, f"{len(rows)} test shoppers")
    out: dict[str, Any] = {"n": int(len(rows)), "adapter": adapter, "temperature": llm.temperature}
    hists = [tokens.test_hist[i] for i in rows]
    probs = {"llm": llm.predict_events([tokens.test_cases[i].history for i in rows])}
    for name, r in _rankers().items():
        r.fit(tokens.train, len(labels))
        probs[name] = r.predict_proba(hists)
    for name, p in probs.items():
        p = np.asarray(p, dtype=np.float64)
        out[name] = {"matrix_tv": compare_matrices(actual, predicted_matrix(p, last_s, len(labels)), labels).mean_tv,
                     "hit@1": float((p.argmax(1) == tokens.test_target[rows]).mean())}
    return out


def trends_report(dataset: Dataset, out_dir: Path, *, level: int | None = None, window: str = "auto",
                  min_windows: int = 4, max_users: int | None = None, llm_n: int = 0,
                  llm_model: str | None = None, llm_adapter: str | None = None, seed: int = 0,
                  progress: Progress = None, workers: int = 1) -> dict[str, Any]:
    """Population trends (rising/falling labels), next-window forecast comparison (exponential
    smoothing vs last window, history mean, Markov, most frequent; the LLM, zero-shot or with
    `llm_adapter`, on a seeded sample of `llm_n` shoppers when > 0) and an example shopper's
    category-mix chart. `workers`: processes for the per-shopper fits and tests (0: one per CPU)."""
    from tqdm.auto import tqdm

    from .plots import plot_category_mix, plot_forecast, save

    tax = taxonomy_of(dataset, level)
    hist = subsample(dataset.histories(), max_users, seed)
    fcfg = ForecastConfig(window=window, min_windows=min_windows, seed=seed)
    problems, train = held_out_windows(hist, dataset.items, tax, fcfg)
    if not problems:
        raise ValueError(f"no shopper of {dataset.name} has {min_windows} windows of {window!r}")
    rankers = {k: v for k, v in _rankers().items() if k != "most_popular"}
    with tqdm(total=len(problems), desc="forecast", leave=False) as bar:
        res = compare_forecasters(problems, train, len(tax.labels), rankers=rankers, cfg=fcfg, progress=bar.update,
                                  workers=workers)
    out: dict[str, Any] = {"dataset": dataset.name, "level": tax.level, "window": window,
                           "n_shoppers": len(hist), "forecast": {"n": res.n, "metrics": res.metrics}}
    if llm_n > 0:
        rng = np.random.default_rng(seed)
        sub = [problems[i] for i in np.sort(rng.choice(len(problems), min(llm_n, len(problems)), replace=False))]
        llm = _llm(dataset, tax, llm_model, llm_adapter, seed, progress, f"{len(sub)} shoppers")
        small = compare_forecasters(sub, train, len(tax.labels), rankers={**_rankers(), "llm": llm},
                                    cfg=ForecastConfig(window=window, min_windows=min_windows, seed=seed, n_boot=200))
        out["forecast_llm_sample"] = {"n": small.n, "adapter": llm_adapter, "temperature": llm.temperature,
                                      "metrics": small.metrics}
    mixes = {p.user_id: None for p in problems}
    pop = population_trends({u: category_mix(hist[u], dataset.items, tax, window=window) for u in mixes},
                            TrendConfig(min_windows=min_windows), workers=workers)
    out["population_trends"] = {"n_shoppers": pop.n_shoppers, "rising": dict(list(pop.rising.items())[:10]),
                                "falling": dict(list(pop.falling.items())[:10])}
    # the example shopper: the evaluable one with most windows (ties by id)
    ex = max(problems, key=lambda p: (len(p.train_shares), p.user_id))
    mix = category_mix(hist[ex.user_id], dataset.items, tax, window=window)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = _safe(dataset.name)
    out["example"] = {"user_id": ex.user_id, "window": mix.window, "windows": mix.windows,
                      "trends": [asdict(t) for t in trends(mix)[:5]]}
    out["files"] = {"example_mix_png": str(save(plot_category_mix(mix), out_dir / f"trends_{stem}_example.png")),
                    "forecast_png": str(save(plot_forecast(res.metrics), out_dir / f"trends_{stem}_forecast.png"))}
    return out


def churn_report(dataset: Dataset, out_dir: Path, *, level: int | None = None, cfg: ChurnConfig | None = None,
                 max_users: int | None = None, seed: int = 0, top: int = 10) -> dict[str, Any]:
    """Churn evaluation (AUC, precision in the top share: signal vs recency) and the top-risk shoppers."""
    from .plots import plot_churn, save

    if dataset.clock == "order":
        raise ValueError(f"{dataset.name} has only an order index (no time between events): churn cannot be "
                         "evaluated; use a dataset with timestamps (instacart, taobao, movielens)")
    tax = taxonomy_of(dataset, level)
    ev = evaluate_churn(subsample(dataset.histories(), max_users, seed), dataset.items, tax, cfg)
    order = np.lexsort((np.arange(ev.n), -ev.scores["combined"]))[:top]
    out_dir.mkdir(parents=True, exist_ok=True)
    png = save(plot_churn(ev), out_dir / f"churn_{_safe(dataset.name)}.png")
    return {
        "dataset": dataset.name, "config": asdict(cfg or ChurnConfig()), "mode": ev.mode, "n": ev.n,
        "base_rate": ev.base_rate, "auc": ev.auc, "precision_top": ev.precision_top, "cutoff": ev.cutoff,
        "top_risk": [{**asdict(ev.signals[i]), "churned": bool(ev.labels[i]),
                      "score": float(ev.scores["combined"][i])} for i in order],
        "files": {"roc_png": str(png)},
    }
