"""The `llmint` command line: a thin layer over the library.

Each command parses its options, calls one library function, turns
`LlmintError` into a clean error message, and prints JSON or paths.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from .errors import LlmintError


def _fail(err: LlmintError) -> click.ClickException:
    return click.ClickException(str(err))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llmint")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details to stderr.")
def cli(verbose: bool) -> None:
    """llmint: LLM-based interest reasoning for e-commerce shoppers."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder with the e-commerce datasets (default: LLMINT_DATA_DIR or ../shared/data).")
def datasets(data_dir: Path | None) -> None:
    """List the datasets that can be loaded here, with their sizes."""
    from .loaders import available_datasets, load_dataset

    rows = []
    for name in available_datasets(data_dir):
        try:
            ds = load_dataset(name, data_dir=data_dir)
        except LlmintError as err:
            rows.append({"name": name, "error": str(err)})
            continue
        rows.append({"name": name, **ds.stats(), "clock": ds.clock, "default_level": ds.default_level,
                     "has_categories": ds.has_categories})
    click.echo(json.dumps(rows, indent=2))


@cli.command()
@click.option("--dataset", "dataset", default="movielens", show_default=True,
              help="Dataset name (see `llmint datasets`) or a CSV/JSONL/Parquet file in canonical columns.")
@click.option("--level", type=int, default=None, help="Category level to predict (default: the dataset's).")
@click.option("--task", "tasks", multiple=True, type=click.Choice(["category", "item"]),
              help="Task(s) to evaluate (default: both).")
@click.option("--system", "systems", multiple=True,
              type=click.Choice(["most_popular", "user_most_frequent", "last", "markov", "sasrec_ce"]),
              help="Baseline(s) to run (default: all).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for ties, subsampling, bootstrap, training.")
@click.option("--max-test-cases", type=int, default=None, help="Seeded subsample of test cases (default: all).")
@click.option("--sasrec-epochs", type=int, default=None, help="Override SASRec's maximum epochs.")
@click.option("--device", default="cpu", show_default=True, help="Device for SASRec training (cpu or cuda).")
@click.option("--n-boot", type=int, default=1000, show_default=True,
              help="Bootstrap resamples for confidence intervals.")
@click.option("--retrieval/--no-retrieval", default=True, show_default=True,
              help="Item task: add category distribution x embedding retrieval systems (datasets with item titles).")
@click.option("--embedder", default=None, help="sentence-transformers folder for retrieval (default: bundled MiniLM).")
@click.option("--llm/--no-llm", default=False, show_default=True,
              help="Category task: add the zero-shot LLM (and one system per --adapter).")
@click.option("--model", "llm_model", default=None,
              help="LLM: registry name, HF folder or GGUF (default: smollm2-135m).")
@click.option("--adapter", "adapters", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="peft adapter folder to evaluate as llm+<name> (repeatable; implies --llm).")
@click.option("--llm-max-valid", type=int, default=200, show_default=True,
              help="Validation cases used to fit the LLM's temperature.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("reports"), show_default=True,
              help="Where the JSON, Markdown and PNG report go.")
def evaluate(dataset: str, level: int | None, tasks: tuple[str, ...], systems: tuple[str, ...], seed: int,
             max_test_cases: int | None, sasrec_epochs: int | None, device: str, n_boot: int,
             retrieval: bool, embedder: str | None, llm: bool, llm_model: str | None, adapters: tuple[str, ...],
             llm_max_valid: int, out_dir: Path) -> None:
    """Evaluate every baseline (and the LLM with --llm) on one dataset: chronological split, full ranking, CIs.

    Writes <out-dir>/<dataset>.json, .md and .png and prints the Markdown table.
    """
    from .evaluate import BASELINES, TASKS, EvalConfig, run

    try:
        cfg = EvalConfig(dataset=dataset, level=level, tasks=tasks or TASKS, systems=systems or BASELINES,
                         seed=seed, max_test_cases=max_test_cases, sasrec_epochs=sasrec_epochs,
                         sasrec_device=device, n_boot=n_boot, retrieval=retrieval, embedder=embedder,
                         llm=llm or bool(adapters), llm_model=llm_model, llm_adapters=adapters,
                         llm_max_valid=llm_max_valid, out_dir=str(out_dir))
        paths = run(cfg, progress=lambda msg: click.echo(f"... {msg}", err=True))
    except LlmintError as err:
        raise _fail(err) from err
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    click.echo(Path(paths["md"]).read_text())
    click.echo(json.dumps({k: str(v) for k, v in paths.items()}), err=True)


def main() -> None:
    """Entry point of the `llmint` console script."""
    cli(prog_name="llmint")


if __name__ == "__main__":
    sys.exit(main())
