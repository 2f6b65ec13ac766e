"""The serving and audit commands of the `llmint` CLI: `predict`, `observe` and `audit ...`.

A thin layer over `llmint.service.InterestService` and `llmint.audit.AuditLog`:
each command parses its options, calls the library, prints JSON (or a table) on
stdout, and turns every error a user can cause (`LlmintError`, a bad file, a bad
config value) into one line on stderr and exit code 2. This module knows nothing
about how predictions are computed or stored; torch and the model are loaded only
by the commands that build a service. `cli.py` registers these commands.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import click

from .errors import LlmintError

FILTERS = ("since", "until", "category", "faithful", "status", "user_id")
TABLE_COLUMNS = ("audit_id", "created_utc", "user_id", "top_category", "faithful", "status", "latency_ms")


class CliError(click.ClickException):
    """A user error: printed as one "Error: ..." line on stderr, exit code 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


@contextmanager
def _errors() -> Iterator[None]:
    """Turn library, config and file errors into `CliError` (no traceback)."""
    try:
        yield
    except click.ClickException:
        raise
    except (LlmintError, ValueError, TypeError, OSError) as err:
        raise CliError(str(err) or type(err).__name__) from err


def _echo_json(obj: Any, compact: bool = False) -> None:
    click.echo(json.dumps(obj, indent=None if compact else 2, ensure_ascii=False, default=str))


# ---------------------------------------------------------------- input


def read_events(source: str) -> list[dict[str, Any]]:
    """Events from a JSONL file (one object per line, canonical keys) or "-" for stdin.

    A file whose content starts with "[" is read as one JSON list of objects.
    """
    from .pasted import parse_events_text

    where = "stdin" if source == "-" else source
    if source == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise CliError(f"{where}: not valid UTF-8 ({err.reason} at byte {err.start})") from err
        except OSError as err:
            raise CliError(f"{where}: cannot read the events file ({err.strerror or err})") from err
    try:
        return parse_events_text(text, where)
    except LlmintError as err:
        raise CliError(str(err)) from err


# ---------------------------------------------------------------- the service


_audit_option = click.option(
    "--audit", "audit_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Audit SQLite file (default: <LLMINT_HOME>/audit.sqlite, as ServiceConfig/AuditConfig).")


def _service_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options that say which service to load (all override --config)."""
    options = [
        click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     default=None, help="YAML file of ServiceConfig fields; the options below override it."),
        click.option("--dataset", default=None,
                     help="Dataset name (see `llmint datasets`) or a CSV/JSONL/Parquet events file in "
                          "canonical columns."),
        click.option("--items", "items_path", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="Items file (item_id, title, category_path, ...) for an events file --dataset."),
        click.option("--level", type=int, default=None, help="Category level to predict (default: the dataset's)."),
        click.option("--model", default=None, help="LLM: registry name, HF folder or GGUF (default: smollm2-135m)."),
        click.option("--adapter", default=None,
                     help="peft adapter folder, 'none' (zero-shot) or 'auto' (default: the adapter bundled "
                          "for this model and dataset, else zero-shot)."),
        click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default=None,
                     help="Where the model runs (default: cpu)."),
        click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16", "auto"]), default=None,
                     help="Model dtype (default: float32, exact replays). auto: bfloat16 where the device "
                          "computes it natively (CPUs with AVX512-BF16/AMX, most GPUs): about 1.8x faster "
                          "scoring on such a CPU, same accuracy, replays within 1e-2."),
        click.option("--index-dir", type=click.Path(file_okay=False), default=None,
                     help="Saved item index: loaded if present and still matching the catalogue, else built "
                          "and saved there (default: <LLMINT_HOME>/index/<dataset>, as the app)."),
        _audit_option,
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def service_config(config_path: Path | None, **overrides: Any) -> Any:
    """`ServiceConfig` from the YAML file (if any) with every non-None option replacing its field."""
    from .service_config import ServiceConfig

    if config_path is not None:
        import yaml

        try:
            base = ServiceConfig.from_yaml(config_path)
        except yaml.YAMLError as err:
            raise CliError(f"{config_path}: not valid YAML: {err}") from err
    else:
        base = ServiceConfig()
    given = {k: str(v) if isinstance(v, Path) else v for k, v in overrides.items() if v is not None}
    cfg = replace(base, **given)
    if cfg.dataset is None:
        raise CliError("no dataset: pass --dataset NAME_OR_FILE or set `dataset` in --config")
    return cfg


def load_service(config_path: Path | None, dataset: str | None, items_path: str | None, level: int | None,
                 model: str | None, adapter: str | None, device: str | None, index_dir: str | None,
                 audit_path: Path | None, dtype: str | None = None, *, audit_id: str | None = None,
                 events: list[dict[str, Any]] | None = None, user_id: str | None = None) -> Any:
    """Build the `InterestService` the options describe (loads the dataset, then the model; the embedder and
    index load on the first request for products).

    With `audit_id`, a missing audit file or an unknown id is an error found before anything loads.
    With `events` (for `user_id`, or pasted), a malformed event or an unknown item is an error found once
    the dataset is loaded, before the model is (the service checks them again when they are used).
    """
    from .service import InterestService

    cfg, ds, _ = _checked_input(config_path, dataset, items_path, level, model, adapter, device, index_dir,
                                audit_path, dtype, audit_id=audit_id, events=events, user_id=user_id)
    click.echo(f"... loading the service ({cfg.dataset}, model {cfg.model or 'default'})", err=True)
    return InterestService.from_dataset(ds, cfg)


def _checked_input(config_path: Path | None, dataset: str | None, items_path: str | None, level: int | None,
                   model: str | None, adapter: str | None, device: str | None, index_dir: str | None,
                   audit_path: Path | None, dtype: str | None = None, *, audit_id: str | None = None,
                   events: list[dict[str, Any]] | None = None,
                   user_id: str | None = None) -> tuple[Any, Any, list[Any] | None]:
    """The command's `ServiceConfig`, its dataset, and `events` checked against the catalogue
    (None without events): everything `load_service` does before the model loads."""
    from .loaders import load_dataset
    from .service_config import check_events

    cfg = service_config(config_path, dataset=dataset, level=level, model=model, adapter=adapter,
                         device=device, dtype=dtype, index_dir=index_dir, audit_path=audit_path)
    if cfg.index_dir is None:  # the app's folder: later runs load the index instead of embedding every item
        from .paths import index_dir as default_index_dir

        cfg = replace(cfg, index_dir=str(default_index_dir(cfg.dataset)))
    # one command, one answer: the embedder and index load only if products are asked for (--products 0 skips them)
    cfg = replace(cfg, index_at_start=False)
    if audit_id is not None:
        with _open_audit(Path(cfg.audit_path) if cfg.audit_path else None) as log:
            log.get(audit_id)
    ds = load_dataset(cfg.dataset) if items_path is None else load_dataset(cfg.dataset, items_path=items_path)
    checked = None
    if events is not None:
        checked = check_events(events, ds.items, cfg.max_text_chars, user_id,
                               max_events=cfg.max_events_per_history)
    return cfg, ds, checked


def _appended(user_id: str, events: list[dict[str, Any]], **service: Any) -> int:
    """The length of USER_ID's history once `events` are appended, as the service would store it,
    checked the service's way but with no model loaded (what `observe` without --predict prints)."""
    from .errors import DataError
    from .service_config import append_events, check_utf8
    from .split import ordered_histories

    user_id = check_utf8(user_id, "user_id")
    if not user_id:
        raise DataError("user_id is empty; expected a non-empty str")
    cfg, ds, evs = _checked_input(**service, events=events, user_id=user_id)
    stored = ordered_histories(ds.histories(), cfg.seed, cfg.max_events_per_history).get(user_id, [])
    return len(append_events(stored, evs or [], user_id, cfg.max_events_per_history))


# ---------------------------------------------------------------- predict and observe


@click.command()
@click.argument("targets", nargs=-1, metavar="[USER_ID]... | -")
@click.option("--events", "events_src", default=None, metavar="FILE.jsonl|-",
              help="Predict from these events (JSONL, canonical keys) instead of a stored shopper; - is stdin.")
@_service_options
@click.option("--explain/--no-explain", default=True, show_default=True,
              help="Generate and check an explanation (--no-explain: category and products only, faster).")
@click.option("--top-k", type=int, default=5, show_default=True, help="Categories listed in `top`.")
@click.option("--products", "n_products", type=int, default=5, show_default=True,
              help="Products retrieved inside the top category (0: none).")
@click.option("--compact", is_flag=True, help="Print the JSON on one line.")
def predict(targets: tuple[str, ...], events_src: str | None, explain: bool, top_k: int, n_products: int,
            compact: bool, **service: Any) -> None:
    """Predict a shopper's next interest; print the Prediction as JSON and write one audit row.

    Give a stored shopper's USER_ID, several (one batched pass; a JSON list is
    printed), or "-" (or --events FILE) for a history as JSONL events with the
    canonical keys: user_id, item_id, action, timestamp or order, rating, text.

    \b
    Examples:
      llmint predict 42 --dataset movielens
      llmint predict 1 2 3 --dataset movielens --no-explain --compact
      cat events.jsonl | llmint predict - --dataset movielens
    """
    if targets == ("-",):
        events_src = events_src or "-"
        targets = ()
    if "-" in targets:
        raise click.UsageError("'-' reads events from stdin; it cannot be mixed with user ids")
    if targets and events_src is not None:
        raise click.UsageError("give user id(s) or --events, not both (to add events to a shopper: `llmint observe`)")
    if not targets and events_src is None:
        raise click.UsageError("give a USER_ID, several, or '-' / --events FILE for a history")
    events = read_events(events_src) if events_src is not None else None
    with _errors():
        with load_service(**service, events=events) as svc:
            if events is not None:
                out: Any = svc.predict(events, explain=explain, top_k=top_k, n_products=n_products).to_dict()
            elif len(targets) == 1:
                out = svc.predict(targets[0], explain=explain, top_k=top_k, n_products=n_products).to_dict()
            else:
                out = [p.to_dict() for p in svc.predict_batch(list(targets), explain=explain, top_k=top_k,
                                                              n_products=n_products)]
    _echo_json(out, compact)


@click.command()
@click.argument("user_id")
@click.option("--events", "events_src", required=True, metavar="FILE.jsonl|-",
              help="Events to append (JSONL, canonical keys; user_id may be left out); - is stdin.")
@_service_options
@click.option("--predict", "then_predict", is_flag=True, help="Then predict from the updated history.")
@click.option("--explain/--no-explain", default=True, show_default=True, help="With --predict: explain it.")
@click.option("--top-k", type=int, default=5, show_default=True, help="With --predict: categories in `top`.")
@click.option("--products", "n_products", type=int, default=5, show_default=True,
              help="With --predict: products retrieved.")
@click.option("--compact", is_flag=True, help="Print the JSON on one line.")
def observe(user_id: str, events_src: str, then_predict: bool, explain: bool, top_k: int, n_products: int,
            compact: bool, **service: Any) -> None:
    """Check events and append them to USER_ID's history (a new shopper is created); print its length.

    The service keeps observed events in memory only: the updated history lives
    as long as this process, so it is lost when the command ends. Use --predict
    to predict from it in the same run, or the Python API
    (`InterestService.observe`) in a long-running process to keep it live.
    Events must not be older than the shopper's last stored event. Without
    --predict no model is loaded: the events are checked and counted.
    """
    events = read_events(events_src)
    with _errors():
        if not then_predict:  # the history is checked and counted, then dropped: no model needed
            n = _appended(user_id, events, **service)
            _echo_json({"user_id": user_id, "observed": len(events), "n_events": n}, compact)
            return
        with load_service(**service, events=events, user_id=user_id) as svc:
            svc.observe(user_id, events)
            _echo_json(svc.predict(user_id, explain=explain, top_k=top_k, n_products=n_products).to_dict(),
                       compact)


# ---------------------------------------------------------------- audit


def _open_audit(path: Path | None) -> Any:
    """The audit log at `path` (default: AuditConfig's); a missing file is an error, never created."""
    from .audit import AuditConfig, AuditLog

    cfg = AuditConfig() if path is None else AuditConfig(path=path)
    if not cfg.path.is_file():
        raise CliError(f"no audit log at {cfg.path} (pass --audit PATH or set LLMINT_HOME)")
    return AuditLog(cfg)


def _filter_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    from .audit import STATUSES

    options = [
        click.option("--since", default=None, help="Rows created at or after this ISO-8601 time (UTC if naive)."),
        click.option("--until", default=None, help="Rows created before this ISO-8601 time."),
        click.option("--category", default=None, help="Rows whose top category is this label."),
        click.option("--faithful/--unfaithful", "faithful", default=None,
                     help="Rows whose explanation passed (failed) the check (default: any)."),
        click.option("--status", type=click.Choice(STATUSES), default=None, help="Rows by their latest review."),
        click.option("--user", "user_id", default=None, help="Rows of this user id."),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _filters(kw: dict[str, Any]) -> dict[str, Any]:
    return {k: kw.pop(k) for k in FILTERS if kw.get(k) is not None}


def _table(rows: list[dict[str, Any]]) -> str:
    cells = [[("" if r[c] is None else f"{r[c]:.1f}" if isinstance(r[c], float) else str(r[c]))
              for c in TABLE_COLUMNS] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(TABLE_COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(TABLE_COLUMNS, widths, strict=True))]
    lines += ["  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


@click.group()
def audit() -> None:
    """Review the audit log of served predictions: list, show, replay, flag, approve, export, summary, forget."""


@audit.command("list")
@_filter_options
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True, help="Rows at most.")
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True, help="Rows skipped first.")
@click.option("--table", "as_table", is_flag=True, help="Print a table instead of JSON lines.")
@_audit_option
def audit_list(limit: int, offset: int, as_table: bool, audit_path: Path | None, **kw: Any) -> None:
    """Rows matching every filter, newest first: one JSON object per line (or a table)."""
    filters = _filters(kw)
    with _errors(), _open_audit(audit_path) as log:
        rows = [asdict(r) for r in log.list(limit=limit, offset=offset, **filters)]
    if as_table:
        click.echo(_table(rows))
        return
    for r in rows:
        _echo_json(r, compact=True)


@audit.command("show")
@click.argument("audit_id")
@_audit_option
def audit_show(audit_id: str, audit_path: Path | None) -> None:
    """One stored prediction with its reviews, as JSON."""
    with _errors(), _open_audit(audit_path) as log:
        row = log.get(audit_id)
    _echo_json(asdict(row))


@audit.command("replay")
@click.argument("audit_id", required=False)
@click.option("--sample", type=int, default=None,
              help="Instead of one id: replay this many random rows (of this dataset's taxonomy) and summarise.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --sample.")
@_service_options
def audit_replay(audit_id: str | None, sample: int | None, seed: int, **service: Any) -> None:
    """Re-run a stored prediction (or --sample N random ones) with the service the options load.

    Prints the ReplayResult (or, with --sample, the summary) as JSON. Exit code 0 when
    every replay is identical, 1 when one differs, 2 on an error (e.g. an unknown id).
    Replays write no audit rows.
    """
    if (audit_id is None) == (sample is None):
        raise click.UsageError("give one AUDIT_ID or --sample N")
    if sample is not None and sample < 1:
        raise click.BadParameter("--sample must be >= 1")
    with _errors():
        with load_service(**service, audit_id=audit_id) as svc:
            if sample is None:
                res = svc.replay(audit_id)
                summary, same = asdict(res), res.identical
            else:
                from tqdm import tqdm

                from .replay import replay_sample

                with tqdm(total=sample, desc="replay", file=sys.stderr) as bar:
                    summary = replay_sample(svc, sample, seed=seed, progress=bar.update)
                same = summary["identical"] == summary["n"]
    _echo_json(summary)
    if not same:
        click.get_current_context().exit(1)


@audit.command("flag")
@click.argument("audit_id")
@click.option("--reviewer", required=True, help="Who reviews.")
@click.option("--reason", required=True, help="Why, e.g. unfaithful, wrong-category, offensive.")
@click.option("--note", default="", help="Free text (PII is redacted before it is stored).")
@_audit_option
def audit_flag(audit_id: str, reviewer: str, reason: str, note: str, audit_path: Path | None) -> None:
    """Flag a prediction; print the review id and the row's new status."""
    with _errors(), _open_audit(audit_path) as log:
        rid = log.flag(audit_id, reviewer, reason, note)
        status = log.get(audit_id).status
    _echo_json({"audit_id": audit_id, "review_id": rid, "status": status})


@audit.command("approve")
@click.argument("audit_id")
@click.option("--reviewer", required=True, help="Who reviews.")
@click.option("--note", default="", help="Free text (PII is redacted before it is stored).")
@_audit_option
def audit_approve(audit_id: str, reviewer: str, note: str, audit_path: Path | None) -> None:
    """Approve a prediction; print the review id and the row's new status."""
    with _errors(), _open_audit(audit_path) as log:
        rid = log.approve(audit_id, reviewer, note)
        status = log.get(audit_id).status
    _echo_json({"audit_id": audit_id, "review_id": rid, "status": status})


@audit.command("export")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@_filter_options
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "parquet"]), default=None,
              help="File format (default: from PATH's suffix).")
@_audit_option
def audit_export(path: Path, fmt: str | None, audit_path: Path | None, **kw: Any) -> None:
    """Write the rows matching the filters to PATH (CSV, JSONL or Parquet); print how many."""
    filters = _filters(kw)
    with _errors(), _open_audit(audit_path) as log:
        n = log.export(path, format=fmt, **filters)
    _echo_json({"path": str(path), "rows": n}, compact=True)


@audit.command("summary")
@_filter_options
@_audit_option
def audit_summary(audit_path: Path | None, **kw: Any) -> None:
    """Figures over the matching rows as JSON: counts, faithful share, reviews, per category, latency."""
    filters = _filters(kw)
    with _errors(), _open_audit(audit_path) as log:
        out = log.summary(**filters)
    _echo_json(out)


@audit.command("forget")
@click.argument("user_id")
@_audit_option
def audit_forget(user_id: str, audit_path: Path | None) -> None:
    """Delete a shopper from the audit log (right to erasure); print how many rows were erased.

    Every row of USER_ID keeps its provenance, category and verdict, but its input
    text, explanation and event texts become "[erased]" and its user id is cleared
    (`AuditLog.redact_user`); running it again erases nothing more. A running
    service also holds the shopper's history in memory: call
    `InterestService.forget(USER_ID)` there. Files already exported from the log,
    reviewers' notes and the source data files are not changed.
    """
    if not user_id.strip():
        raise CliError("USER_ID is empty; expected the shopper's id")
    with _errors(), _open_audit(audit_path) as log:
        n = log.redact_user(user_id)
        left = log.count(user_id=user_id)
    _echo_json({"user_id": user_id, "audit_rows_erased": n, "rows_left_with_user_id": left})


COMMANDS = (predict, observe, audit)

__all__ = ["COMMANDS", "CliError", "audit", "load_service", "observe", "predict", "read_events", "service_config"]
