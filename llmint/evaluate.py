"""The evaluation harness: one dataset, one chronological split, every system, same run.

Task "category": rank all categories of the taxonomy at the prediction level
for the shopper's next event. Task "item": rank all items of the catalogue
(full ranking, no sampled negatives, history items not removed). Every system
is trained on the same training sequences, selected on the same validation
cases, and scored on the same test cases (and the cold-start slice), with
bootstrap confidence intervals and paired comparisons.

The harness knows nothing about file formats (loaders) or how systems work
inside (baselines, LLM scorers): a system is anything with the `Ranker`
interface of `llmint.baselines.base`.
"""

from __future__ import annotations

import logging
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .schema import Dataset, Event
from .split import Case, Split, SplitConfig, make_split
from .taxonomy import Taxonomy

logger = logging.getLogger(__name__)

TASKS = ("category", "item")
BASELINES = ("most_popular", "user_most_frequent", "last", "markov", "sasrec_ce")
RANK_METRICS = ("hit@1", "hit@3", "hit@5", "hit@10", "ndcg@5", "ndcg@10", "mrr")
CLASS_METRICS = ("accuracy", "macro_f1", "auc_ovr", "ece")


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how."""

    dataset: str = "movielens"  # a name from llmint.loaders.available_datasets() or a file path
    level: int | None = None  # category level; None = the dataset's default level
    tasks: tuple[str, ...] = TASKS
    systems: tuple[str, ...] = BASELINES
    seed: int = 0  # split tie shuffle, subsampling, bootstrap and training seed
    n_boot: int = 1000  # bootstrap resamples for per-case metrics
    n_boot_slow: int = 200  # resamples for macro-F1 / AUC / ECE
    max_test_cases: int | None = None  # seeded subsample of test cases (None = all)
    sasrec_epochs: int | None = None  # override SASRec max_epochs (None = its default)
    sasrec_device: str = "cpu"
    reference: str = "markov"  # paired differences are reported as system - reference
    retrieval: bool = True  # item task: add category distribution x embedding retrieval systems
    retrieval_priors: tuple[str, ...] = ("markov", "sasrec_ce")  # category systems used as priors
    embedder: str | None = None  # sentence-transformers name or folder (None = bundled MiniLM)
    llm: bool = False  # category task: add the zero-shot LLM ("llm") and one "llm+<adapter>" per adapter
    llm_model: str | None = None  # registry name, HF folder or GGUF (None = the default model)
    llm_adapters: tuple[str, ...] = ()  # peft adapter folders scored as "llm+<folder name>"
    llm_zero_shot: bool = True  # with llm: score the zero-shot LLM too (False: only the adapters)
    llm_max_valid: int = 200  # validation cases for the LLM's temperature
    llm_batch_size: int = 4  # prompts per scoring pass
    llm_device: str = "cpu"  # where the LLM systems score: cpu, cuda or cuda:N
    llm_dtypes: tuple[str, ...] = ("float32",)  # each LLM system in each dtype; after the first: "<name>@<dtype>"
    out_dir: str = "reports"
    fairness: bool = True  # add the fairness breakdown (activity, target popularity, demographics)
    fairness_attributes: tuple[str, ...] = ("gender", "age_bucket")  # user attributes used when present

    def __post_init__(self) -> None:
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            raise ValueError(f"tasks={self.tasks!r}; allowed: {TASKS}")
        if self.level is not None and self.level < 1:
            raise ValueError(f"level={self.level}; expected >= 1 or None")
        if self.n_boot < 10 or self.n_boot_slow < 10:
            raise ValueError("n_boot and n_boot_slow must be >= 10")
        if self.max_test_cases is not None and self.max_test_cases < 1:
            raise ValueError(f"max_test_cases={self.max_test_cases}; expected >= 1 or None")
        if self.llm_batch_size < 1:
            raise ValueError(f"llm_batch_size={self.llm_batch_size}; expected >= 1")
        object.__setattr__(self, "llm_dtypes", tuple(dict.fromkeys(self.llm_dtypes)))
        bad = [d for d in self.llm_dtypes if d not in ("float32", "bfloat16", "float16", "auto")]
        if bad or not self.llm_dtypes:
            raise ValueError(f"llm_dtypes={self.llm_dtypes!r}; expected float32, bfloat16, float16 or auto")


@dataclass
class TokenView:
    """A split mapped into integer tokens for one task."""

    task: str
    labels: list[str]
    train: list[list[int]]
    valid_hist: list[list[int]]
    valid_target: list[int]
    test_users: list[str]
    test_hist: list[list[int]]
    test_target: list[int]
    cold: np.ndarray  # bool (n_test,): cold-start cases
    skipped: dict[str, int] = field(default_factory=dict)
    valid_cases: list[Case] = field(default_factory=list)  # the events behind valid_hist/valid_target
    test_cases: list[Case] = field(default_factory=list)  # the events behind test_hist/test_target


def _tokenizer(task: str, dataset: Dataset, level: int) -> tuple[list[str], Callable[[Event], int | None]]:
    if task == "category":
        tax = Taxonomy.from_items(dataset.items.values(), level)
        item_label = tax.item_labels(dataset.items)
        return list(tax.labels), lambda e: item_label.get(e.item_id) if e.item_id else None
    ids = sorted(dataset.items)
    pos = {iid: i for i, iid in enumerate(ids)}
    return ids, lambda e: pos.get(e.item_id) if e.item_id else None


def token_view(task: str, dataset: Dataset, split: Split, level: int, cold_max: int) -> TokenView:
    """Map events to category or item tokens; events with no token are dropped and counted."""
    labels, tok = _tokenizer(task, dataset, level)
    skipped: dict[str, int] = {}

    def seq(events: Sequence[Event]) -> list[int]:
        out = []
        for e in events:
            t = tok(e)
            if t is None:
                skipped["history event without a token"] = skipped.get("history event without a token", 0) + 1
            else:
                out.append(t)
        return out

    def cases(cs: list[Case], what: str) -> tuple[list[str], list[list[int]], list[int], list[bool], list[Case]]:
        users, hists, targets, cold, kept = [], [], [], [], []
        for c in cs:
            t = tok(c.target)
            if t is None:
                skipped[f"{what} target without a token"] = skipped.get(f"{what} target without a token", 0) + 1
                continue
            users.append(c.user_id)
            hists.append(seq(c.history))
            targets.append(t)
            cold.append(len(c.history) <= cold_max)
            kept.append(c)
        return users, hists, targets, cold, kept

    train = [s for s in (seq(evs) for _, evs in sorted(split.train.items())) if s]
    _, vh, vt, _, vc = cases(split.valid, "valid")
    tu, th, tt, tc, tcs = cases(split.test, "test")
    return TokenView(task, labels, train, vh, vt, tu, th, tt, np.array(tc, dtype=bool), skipped, vc, tcs)


def make_system(name: str, cfg: EvalConfig) -> Any:
    """A fresh, unfitted baseline by name."""
    from . import baselines as B

    if name == "most_popular":
        return B.MostPopular()
    if name == "user_most_frequent":
        return B.UserMostFrequent()
    if name == "last":
        return B.LastCategory()
    if name == "markov":
        return B.Markov()
    if name == "sasrec_ce":
        kw: dict[str, Any] = {"seed": cfg.seed, "device": cfg.sasrec_device}
        if cfg.sasrec_epochs is not None:
            kw["max_epochs"] = cfg.sasrec_epochs
        return B.SASRec(B.SASRecConfig(**kw))
    raise ValueError(f"unknown system {name!r}; known: {BASELINES}")


def llm_systems(dataset: Dataset, level: int, cfg: EvalConfig) -> dict[str, Any]:
    """The zero-shot LLM and one LLM per adapter, as event-level category systems (models load lazily)."""
    from .llm_ranker import LLMCategoryRanker, LLMRankerConfig

    out: dict[str, Any] = {}
    for k, dtype in enumerate(cfg.llm_dtypes):
        tag = "" if k == 0 else f"@{dtype}"
        base = LLMRankerConfig(model=cfg.llm_model, max_valid=cfg.llm_max_valid, batch_size=cfg.llm_batch_size,
                               seed=cfg.seed, dtype=dtype, device=cfg.llm_device)
        if cfg.llm_zero_shot:
            out["llm" + tag] = LLMCategoryRanker("llm" + tag, dataset, level, base)
        for a in cfg.llm_adapters:
            name = f"llm+{Path(a).name if Path(a).name != 'adapter' else Path(a).parent.name}{tag}"
            rcfg = LLMRankerConfig(**{**asdict(base), "adapter": str(a)})
            out[name] = LLMCategoryRanker(name, dataset, level, rcfg)
    return out


def cached_vectors(embedder: Any, texts: list[str]) -> np.ndarray:
    """`embedder.encode(texts)`, cached under home()/cache/vectors by embedder digest and texts."""
    import hashlib

    from .paths import home

    h = hashlib.sha256(embedder.sha256.encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass") + b"\x00")
    path = home() / "cache" / "vectors" / f"{h.hexdigest()[:32]}.npy"
    if path.exists():
        try:
            v = np.load(path)
            if v.shape[0] == len(texts):
                return v
        except (OSError, ValueError):
            logger.warning("unreadable vector cache %s; re-embedding", path)
    v = embedder.encode(texts, show_progress=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, v)
    tmp.replace(path)
    return v


def retrieval_systems(
    dataset: Dataset, split: Split, view: TokenView, cfg: EvalConfig,
    cat_systems: dict[str, Any], progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Next-item systems "retrieval" and "<prior>*retrieval" for a dataset with item text.

    Items are embedded from their text (title, category path, brand, description
    and a digest of reviews written in the training split only, so nothing from
    a validation or test event reaches the vectors). The priors are the category
    task's fitted systems named in `cfg.retrieval_priors` (plus any extra
    category system, e.g. the LLM) from `cat_systems`. Returns (systems, note for the report).
    """
    from .embed import item_text, load_embedder, review_digests
    from .next_item import CategoryRetrieval, CategoryRetrievalConfig

    items = [dataset.items[iid] for iid in view.labels]
    n_text = sum(1 for it in items if it.title and it.title.strip())
    if n_text < 0.5 * len(items):
        return {}, {"not_run": f"only {n_text} of {len(items)} items have a title"}
    level = cfg.level or dataset.default_level
    priors = {  # event-level systems (the LLM) cannot read item tokens: not used as priors here
        n: s for n, s in cat_systems.items()
        if (n in cfg.retrieval_priors or n not in BASELINES) and not hasattr(s, "predict_events")
    }
    item_cat = np.full(len(items), -1, dtype=np.int64)
    n_cat = 0
    if dataset.has_categories:
        tax = Taxonomy.from_items(dataset.items.values(), level)
        label = tax.item_labels(dataset.items)
        n_cat = len(tax.labels)
        item_cat = np.array([label.get(iid, -1) for iid in view.labels], dtype=np.int64)
    no_cat = int((item_cat < 0).sum())
    item_cat[item_cat < 0] = n_cat  # one extra bucket for items without a category
    digests = review_digests(e for evs in split.train.values() for e in evs)
    texts = [item_text(it, digests.get(it.item_id)) for it in items]
    if progress:
        progress(f"{dataset.name}/item: embedding {len(texts)} items")
    embedder = load_embedder(cfg.embedder)
    t0 = time.perf_counter()
    vectors = cached_vectors(embedder, texts)
    rcfg = CategoryRetrievalConfig(seed=cfg.seed)
    systems: dict[str, Any] = {"retrieval": CategoryRetrieval("retrieval", item_cat, vectors, None, rcfg)}
    for name, prior in priors.items():
        systems[f"{name}*retrieval"] = CategoryRetrieval(
            f"{name}*retrieval", item_cat, vectors, prior, rcfg, n_ranker_categories=n_cat
        )
    note = {
        "embedder": embedder.name, "embedder_sha256": embedder.sha256,
        "embed_s": round(time.perf_counter() - t0, 2), "n_items": len(items),
        "items_without_category": no_cat, "items_with_review_digest": len(digests),
        "priors": sorted(priors),
    }
    return systems, note


def _predict_chunks(system: Any, view: TokenView, chunk: int = 1024):
    if hasattr(system, "predict_events"):
        from tqdm.auto import tqdm

        with tqdm(total=len(view.test_cases), desc=getattr(system, "name", "system"), leave=False) as bar:
            for s in range(0, len(view.test_cases), chunk):
                yield system.predict_events([c.history for c in view.test_cases[s : s + chunk]], bar.update)
        return
    for s in range(0, len(view.test_hist), chunk):
        yield system.predict_proba(view.test_hist[s : s + chunk])


def score_system(system: Any, view: TokenView, *, keep_probs: bool) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Per-case rank metrics on the test cases (and the full probability matrix if asked)."""
    from .metrics import rank_metrics

    targets = np.asarray(view.test_target)
    per: dict[str, list[np.ndarray]] = {}
    kept: list[np.ndarray] = []
    start = 0
    for probs in _predict_chunks(system, view):
        n = probs.shape[0]
        m = rank_metrics(probs, targets[start : start + n], ks=(1, 3, 5, 10))
        for k, v in m.items():
            per.setdefault(k, []).append(np.asarray(v, dtype=np.float64))
        if keep_probs:
            kept.append(probs.astype(np.float32, copy=False))
        start += n
    merged = {k: np.concatenate(v) for k, v in per.items()}
    return merged, (np.concatenate(kept) if keep_probs else None)


def _summarise(
    per_case: dict[str, dict[str, np.ndarray]],
    probs: dict[str, np.ndarray | None],
    targets: np.ndarray,
    mask: np.ndarray,
    cfg: EvalConfig,
    with_class_metrics: bool,
) -> dict[str, Any]:
    from .bootstrap import bootstrap_ci, bootstrap_stats, paired_bootstrap
    from .metrics import classification_metrics

    systems: dict[str, dict[str, Any]] = {}
    for name, per in per_case.items():
        row: dict[str, Any] = {}
        for met in RANK_METRICS:
            if met in per:
                row[met] = bootstrap_ci(per[met][mask], n_boot=cfg.n_boot, seed=cfg.seed).to_dict()
        p = probs.get(name)
        if with_class_metrics and p is not None and mask.sum() >= 2:
            pm, tm = p[mask], targets[mask]
            cis = bootstrap_stats(
                lambda pp, tt: {m: v for m, v in classification_metrics(pp, tt).items() if m in CLASS_METRICS},
                (pm, tm), n_boot=cfg.n_boot_slow, seed=cfg.seed,
            )
            for met in CLASS_METRICS:
                row[met] = cis[met].to_dict()
        systems[name] = row
    paired: dict[str, Any] = {}
    ref = cfg.reference if cfg.reference in per_case else None
    if ref:
        for name, per in per_case.items():
            if name == ref:
                continue
            paired[f"{name} - {ref}"] = {
                met: paired_bootstrap(
                    per[met][mask], per_case[ref][met][mask], n_boot=cfg.n_boot, seed=cfg.seed
                ).to_dict()
                for met in ("hit@1", "ndcg@5", "ndcg@10")
            }
    return {"n": int(mask.sum()), "systems": systems, "paired": paired}


def evaluate_task(
    task: str, dataset: Dataset, split: Split, cfg: EvalConfig, extra_systems: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None, fitted: dict[str, Any] | None = None,
    priors: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train and score every system on one task; returns the task's report section.

    `fitted`, when given, receives the fitted systems by name (the category
    task's systems become the priors of the item task's retrieval systems).
    `priors`: fitted category systems for the item task's retrieval systems.
    """
    level = cfg.level or dataset.default_level
    view = token_view(task, dataset, split, level, split.config.cold_start_max)
    if cfg.max_test_cases is not None and len(view.test_target) > cfg.max_test_cases:
        rng = np.random.default_rng(cfg.seed)
        keep = np.sort(rng.choice(len(view.test_target), cfg.max_test_cases, replace=False))
        view.test_users = [view.test_users[i] for i in keep]
        view.test_hist = [view.test_hist[i] for i in keep]
        view.test_target = [view.test_target[i] for i in keep]
        view.test_cases = [view.test_cases[i] for i in keep]
        view.cold = view.cold[keep]
    n_classes = len(view.labels)
    with_class = task == "category"
    per_case: dict[str, dict[str, np.ndarray]] = {}
    probs: dict[str, np.ndarray | None] = {}
    timings: dict[str, dict[str, float]] = {}
    systems = {name: make_system(name, cfg) for name in cfg.systems}
    if task == "category" and cfg.llm:
        systems.update(llm_systems(dataset, level, cfg))
    systems.update(extra_systems or {})
    notes: dict[str, Any] = {}
    if task == "item" and cfg.retrieval:
        built, notes["retrieval"] = retrieval_systems(dataset, split, view, cfg, priors or {}, progress)
        systems.update(built)
    for name, system in systems.items():
        if progress:
            progress(f"{dataset.name}/{task}: {name}")
        t0 = time.perf_counter()
        system.fit(view.train, n_classes, valid=(view.valid_hist, view.valid_target))
        if hasattr(system, "fit_events"):  # event-level systems (the LLM) read the cases' events
            system.fit_events(view.valid_cases)
            notes.setdefault("event_systems", {})[name] = dict(getattr(system, "fit_note", {}))
        t1 = time.perf_counter()
        per_case[name], probs[name] = score_system(system, view, keep_probs=with_class)
        timings[name] = {"fit_s": round(t1 - t0, 3), "score_s": round(time.perf_counter() - t1, 3)}
        if fitted is not None:
            fitted[name] = system
        if getattr(system, "grid", None):
            notes.setdefault("validation_grid", {})[name] = {
                "chosen": system.chosen, "grid": system.grid,
            }
        logger.info("%s/%s %s: hit@1=%.4f", dataset.name, task, name, per_case[name]["hit@1"].mean())
    targets = np.asarray(view.test_target)
    all_mask = np.ones(len(targets), dtype=bool)
    slices = {"test": _summarise(per_case, probs, targets, all_mask, cfg, with_class)}
    if view.cold.any():
        slices["cold_start"] = _summarise(per_case, probs, targets, view.cold, cfg, with_class)
    extra: dict[str, Any] = {}
    if cfg.fairness and len(targets):
        extra["fairness"] = fairness_section(per_case, probs, targets, view, dataset, split, cfg, with_class)
    return {
        "level": level if task == "category" else None,
        "n_labels": n_classes,
        "n_train_sequences": len(view.train),
        "n_valid": len(view.valid_target),
        "skipped": view.skipped,
        "timings": timings,
        "notes": notes,
        "slices": slices,
        **extra,
    }


def fairness_section(
    per_case: dict[str, dict[str, np.ndarray]], probs: dict[str, np.ndarray | None], targets: np.ndarray,
    view: TokenView, dataset: Dataset, split: Split, cfg: EvalConfig, with_class: bool,
) -> dict[str, Any]:
    """Every metric per shopper-activity bucket, target-popularity bucket and user attribute, with gaps.

    Returns {"groups_info": {...}, "dimensions": {dim: {"groups": {group: slice summary},
    "gaps": {system: {metric: {"best", "best_mean", "worst", "worst_mean", "gap"}}}}}}.
    """
    from .analysis.fairness import FairnessConfig, gaps, group_masks

    fcfg = FairnessConfig(cold_max=split.config.cold_start_max, attributes=cfg.fairness_attributes)
    lengths = [len(c.history) for c in view.test_cases] if view.test_cases else [len(h) for h in view.test_hist]
    dims, info = group_masks(lengths, targets, view.train, len(view.labels), view.test_users, dataset.users, fcfg)
    metrics = list(RANK_METRICS) + (list(CLASS_METRICS) if with_class else [])
    out: dict[str, Any] = {"groups_info": info, "dimensions": {}}
    for dim, groups in dims.items():
        summ = {g: _summarise(per_case, probs, targets, m, cfg, with_class)
                for g, m in groups.items() if m.sum() >= fcfg.min_group}
        small = {g: int(m.sum()) for g, m in groups.items() if m.sum() < fcfg.min_group}
        out["dimensions"][dim] = {"groups": summ, "gaps": gaps(summ, metrics), "too_small": small}
    return out


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("llmint", "numpy", "torch"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    try:
        from .paths import repo_root

        out["git"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo_root(), capture_output=True, text=True, timeout=5
        ).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        out["git"] = "unknown"
    return out


def evaluate(cfg: EvalConfig, dataset: Dataset | None = None, progress: Callable[[str], None] | None = None,
             extra_systems: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run the whole evaluation and return the report as a JSON-able dict.

    `extra_systems` maps a task to {name: Ranker} evaluated beside the baselines
    (e.g. the LLM scorer for the category task).
    """
    if dataset is None:
        from .loaders import load_dataset

        dataset = load_dataset(cfg.dataset)
    split = make_split(dataset.histories(), SplitConfig(seed=cfg.seed))
    report: dict[str, Any] = {
        "dataset": dataset.name,
        "dataset_stats": dataset.stats(),
        "load_reports": [r.summary() for r in dataset.reports],
        "split": {
            "kind": "per-user chronological leave-last-out (valid = second to last); "
                    "timestamp ties shuffled with the seed; history = events strictly before the target",
            "n_test": len(split.test), "n_valid": len(split.valid),
            "n_cold_start": len(split.cold_start()), "cold_start_max": split.config.cold_start_max,
        },
        "seed": cfg.seed,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "versions": _versions(),
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tasks": {},
    }
    fitted: dict[str, dict[str, Any]] = {}
    for task in sorted(cfg.tasks, key=TASKS.index):  # category first: its systems are item priors
        if task == "category" and not dataset.has_categories:
            report["tasks"][task] = {"not_run": f"{dataset.name} has no categories below its root"}
            continue
        report["tasks"][task] = evaluate_task(
            task, dataset, split, cfg, extra_systems=(extra_systems or {}).get(task), progress=progress,
            fitted=fitted.setdefault(task, {}), priors=fitted.get("category"),
        )
    return report


def run(cfg: EvalConfig, progress: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Evaluate and write `<out_dir>/<dataset>.{json,md,png}`; returns the paths."""
    from .report import write_report

    report = evaluate(cfg, progress=progress)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(report["dataset"]).stem
    return write_report(report, out, stem)
