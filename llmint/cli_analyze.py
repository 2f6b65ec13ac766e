"""`llmint analyze shopper|migration|trends|churn`: interest evolution and migration from the command line.

Thin: parse options, load the dataset, call `llmint.analysis.reports`, write
`<out-dir>/<analysis>_<dataset>.json` (PNGs are written by the library), and
turn library errors into one-line click errors. Knows nothing about how the
analyses work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .bundled import resolve_adapter
from .errors import LlmintError

_DATASET = click.option("--dataset", default="movielens", show_default=True, help="Dataset name or canonical file.")
_LEVEL = click.option("--level", type=int, default=None, help="Category level (default: the dataset's).")
_OUT = click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/analysis"),
                    show_default=True, help="Folder for the JSON and PNG files.")
_MAX_USERS = click.option("--max-users", type=int, default=None,
                          help="Seeded subsample of shoppers (default: all).")
_ADAPTER = click.option("--adapter", "llm_adapter", default="auto", show_default=True,
                        help="peft adapter folder for --llm-n, 'none' (zero-shot) or 'auto' (the adapter bundled "
                             "for the model and dataset, else zero-shot).")
_SEED = click.option("--seed", type=int, default=0, show_default=True, help="Tie-shuffle and subsample seed.")


def _load(dataset: str) -> Any:
    from .loaders import load_dataset

    click.echo(f"... loading {dataset}", err=True)
    return load_dataset(dataset)


def _write(res: dict[str, Any], out_dir: Path, stem: str) -> None:
    from .report import to_jsonable

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}.json"
    path.write_text(json.dumps(to_jsonable(res), indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    click.echo(json.dumps(to_jsonable({k: v for k, v in res.items() if k not in ("mix", "profile")}),
                          indent=2, ensure_ascii=False))
    click.echo(str(path), err=True)


def _run(fn: Any, *args: Any, **kw: Any) -> dict[str, Any]:
    try:
        return fn(*args, **kw)
    except LlmintError as err:
        raise click.ClickException(str(err)) from err
    except ValueError as err:
        raise click.ClickException(str(err)) from err


@click.group("analyze", context_settings={"help_option_names": ["-h", "--help"]})
def analyze() -> None:
    """Interest evolution and migration: shopper profiles, transitions, trends and forecasts, churn."""


@analyze.command("shopper")
@click.argument("user_id")
@_DATASET
@_LEVEL
@click.option("--recent-n", type=int, default=10, show_default=True, help="Events in the short-term profile.")
@click.option("--half-life-days", type=float, default=90.0, show_default=True,
              help="Recency half-life of the long-term profile.")
@click.option("--window", default="auto", show_default=True, help="auto, month, week, day or orders:N.")
@_OUT
def shopper(user_id: str, dataset: str, level: int | None, recent_n: int, half_life_days: float, window: str,
            out_dir: Path) -> None:
    """One shopper: short- vs long-term profile and shift, category mix per window, trends, evidence."""
    from .analysis.reports import shopper_report

    ds = _load(dataset)
    res = _run(shopper_report, ds, user_id, out_dir, level=level, recent_n=recent_n,
               half_life_days=half_life_days, window=window)
    _write(res, out_dir, f"shopper_{ds.name}_{user_id}")


@analyze.command("migration")
@_DATASET
@_LEVEL
@click.option("--top", type=int, default=15, show_default=True,
              help="Flows listed and drawn (Sankey), categories in the heat map.")
@click.option("--k", "ks", type=int, multiple=True, default=(10, 50), show_default=True,
              help="precision@k of the migration target lists (repeatable).")
@click.option("--llm-n", type=int, default=0, show_default=True,
              help="Also score the LLM on this many test shoppers and compare its predicted transitions.")
@click.option("--model", "llm_model", default=None, help="LLM for --llm-n (default: smollm2-135m).")
@_ADAPTER
@_MAX_USERS
@_SEED
@_OUT
def migration(dataset: str, level: int | None, top: int, ks: tuple[int, ...], llm_n: int, llm_model: str | None,
              llm_adapter: str, max_users: int | None, seed: int, out_dir: Path) -> None:
    """Population transitions, top flows (heat map, Sankey), predicted vs actual, target lists' precision@k."""
    from .analysis.reports import migration_report

    ds = _load(dataset)
    res = _run(migration_report, ds, out_dir, level=level, top=top, ks=ks, max_users=max_users, seed=seed,
               llm_n=llm_n, llm_model=llm_model, llm_adapter=resolve_adapter(llm_adapter, llm_model, ds.name),
               progress=lambda m: click.echo(f"... {m}", err=True))
    _write(res, out_dir, f"migration_{ds.name}")


@analyze.command("trends")
@_DATASET
@_LEVEL
@click.option("--window", default="auto", show_default=True, help="auto, month, week, day or orders:N.")
@click.option("--min-windows", type=int, default=4, show_default=True, help="Windows a shopper needs (last held out).")
@click.option("--llm-n", type=int, default=0, show_default=True,
              help="Also score the LLM on this many shoppers (CPU: 2-10 s each).")
@click.option("--model", "llm_model", default=None, help="LLM for --llm-n (default: smollm2-135m).")
@_ADAPTER
@_MAX_USERS
@_SEED
@_OUT
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Processes for the per-shopper smoothing fits and trend tests (0: one per CPU; same results).")
def trends_cmd(dataset: str, level: int | None, window: str, min_windows: int, llm_n: int, llm_model: str | None,
               llm_adapter: str, max_users: int | None, seed: int, out_dir: Path, workers: int) -> None:
    """Rising/falling categories and next-window forecasts: exponential smoothing vs Markov and others."""
    from .analysis.reports import trends_report

    ds = _load(dataset)
    res = _run(trends_report, ds, out_dir, level=level, window=window, min_windows=min_windows,
               max_users=max_users, llm_n=llm_n, llm_model=llm_model,
               llm_adapter=resolve_adapter(llm_adapter, llm_model, ds.name), seed=seed,
               progress=lambda m: click.echo(f"... {m}", err=True), workers=workers)
    _write(res, out_dir, f"trends_{ds.name}")


@analyze.command("churn")
@_DATASET
@_LEVEL
@click.option("--mode", type=click.Choice(["auto", "global", "gap"]), default="auto", show_default=True,
              help="global: cutoff on a shared clock; gap: held-out final gap (relative clocks).")
@click.option("--horizon", type=float, default=0.25, show_default=True, help="global: final share of the time span.")
@click.option("--lapse-days", type=float, default=30.0, show_default=True, help="gap: a final gap this long = lapse.")
@click.option("--min-sessions", type=int, default=4, show_default=True, help="Sessions a shopper needs.")
@_MAX_USERS
@_SEED
@_OUT
def churn(dataset: str, level: int | None, mode: str, horizon: float, lapse_days: float, min_sessions: int,
          max_users: int | None, seed: int, out_dir: Path) -> None:
    """Shoppers whose activity and interest intensity are falling: AUC vs a recency baseline, evidence."""
    from .analysis.churn import ChurnConfig
    from .analysis.reports import churn_report

    try:
        cfg = ChurnConfig(mode=mode, horizon=horizon, lapse_days=lapse_days, min_sessions=min_sessions)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    ds = _load(dataset)
    res = _run(churn_report, ds, out_dir, level=level, cfg=cfg, max_users=max_users, seed=seed)
    _write(res, out_dir, f"churn_{ds.name}")


COMMANDS = [analyze]
