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

from .bench import COMPILE_MODES
from .cli_analyze import COMMANDS as ANALYZE_COMMANDS
from .cli_service import COMMANDS
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
@click.option("--device", default="cpu", show_default=True,
              help="Device for SASRec training and the LLM systems (cpu, cuda or cuda:N).")
@click.option("--llm-batch-size", type=int, default=4, show_default=True,
              help="Prompts per LLM scoring pass (larger on a GPU, e.g. 64).")
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
@click.option("--zero-shot/--no-zero-shot", "zero_shot", default=True, show_default=True,
              help="With --llm or --adapter: score the zero-shot LLM as well as the adapters.")
@click.option("--dtype", "llm_dtypes", multiple=True, type=click.Choice(["float32", "bfloat16", "float16", "auto"]),
              help="LLM dtype (repeatable: every LLM system in each, the second and later named <system>@<dtype>, "
                   "in the same run; default: float32).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("reports"), show_default=True,
              help="Where the JSON, Markdown and PNG report go.")
def evaluate(dataset: str, level: int | None, tasks: tuple[str, ...], systems: tuple[str, ...], seed: int,
             max_test_cases: int | None, sasrec_epochs: int | None, device: str, llm_batch_size: int, n_boot: int,
             retrieval: bool, embedder: str | None, llm: bool, llm_model: str | None, adapters: tuple[str, ...],
             llm_max_valid: int, zero_shot: bool, llm_dtypes: tuple[str, ...], out_dir: Path) -> None:
    """Evaluate every baseline (and the LLM with --llm) on one dataset: chronological split, full ranking, CIs.

    Writes <out-dir>/<dataset>.json, .md and .png and prints the Markdown table.
    """
    from .evaluate import BASELINES, TASKS, EvalConfig, run

    try:
        cfg = EvalConfig(dataset=dataset, level=level, tasks=tasks or TASKS, systems=systems or BASELINES,
                         seed=seed, max_test_cases=max_test_cases, sasrec_epochs=sasrec_epochs,
                         sasrec_device=device, n_boot=n_boot, retrieval=retrieval, embedder=embedder,
                         llm=llm or bool(adapters), llm_model=llm_model, llm_adapters=adapters,
                         llm_max_valid=llm_max_valid, llm_zero_shot=zero_shot, llm_batch_size=llm_batch_size,
                         llm_device=device, llm_dtypes=llm_dtypes or ("float32",), out_dir=str(out_dir))
        paths = run(cfg, progress=lambda msg: click.echo(f"... {msg}", err=True))
    except LlmintError as err:
        raise _fail(err) from err
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    click.echo(Path(paths["md"]).read_text())
    click.echo(json.dumps({k: str(v) for k, v in paths.items()}), err=True)


@cli.command("explain-eval")
@click.option("--dataset", default="movielens", show_default=True, help="Dataset name or canonical file.")
@click.option("--level", type=int, default=None, help="Category level (default: the dataset's).")
@click.option("--model", "llm_model", default=None,
              help="LLM: registry name, HF folder or GGUF (default: smollm2-135m).")
@click.option("--adapter", default=None, type=click.Path(exists=True, file_okay=False),
              help="peft adapter folder (default: zero-shot).")
@click.option("--n", "n_cases", type=int, default=100, show_default=True, help="Seeded sample of test cases.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-valid", type=int, default=200, show_default=True,
              help="Validation cases used to fit the temperature.")
@click.option("--backend", type=click.Choice(["transformers", "vllm"]), default="transformers", show_default=True,
              help="Engine that writes the explanations (vllm: optional, needs vLLM and a CUDA GPU).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto (the scoring model's device).")
@click.option("--gen-batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="transformers backend: explanations decoded together (1: one at a time, as the service "
                   "explains). Either way each continues its scored prompt and reads ahead through guessed text "
                   "(llmint.drafting, llmint.draft_batch); the texts agree up to float error.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON result here (default: print it).")
def explain_eval(dataset: str, level: int | None, llm_model: str | None, adapter: str | None, n_cases: int,
                 seed: int, max_valid: int, backend: str, device: str, gen_batch: int, out: Path | None) -> None:
    """Faithfulness of explanations on test cases: check pass rates, counterfactual test, examples."""
    from tqdm.auto import tqdm

    from .evidence import CategoryStats
    from .explanation import HFGenerator, evaluate_explanations
    from .llm_ranker import LLMCategoryRanker, LLMRankerConfig
    from .loaders import load_dataset
    from .split import SplitConfig, make_split

    try:
        ds = load_dataset(dataset)
        split = make_split(ds.histories(), SplitConfig(seed=seed))
        rcfg = LLMRankerConfig(model=llm_model, adapter=adapter, max_valid=max_valid, seed=seed, device=device)
        ranker = LLMCategoryRanker("llm", ds, level or ds.default_level, rcfg)
        generator = HFGenerator(ranker, batch_size=gen_batch) if gen_batch > 1 else None
        if backend == "vllm":
            from .vllm_backend import VLLMGenerator

            generator = VLLMGenerator(ranker.model_folder, ranker.tokenizer.eos_token_id, adapter=adapter)
        with tqdm(desc="temperature", total=min(max_valid, len(split.valid))) as bar:
            ranker.fit_events(split.valid, bar.update)
        stats = CategoryStats.from_sequences(split.train.values(), ds.items, ranker.taxonomy)
        labelled = [c for c in split.test if ds.items.get(c.target.item_id or "") is not None
                    and ranker.taxonomy.label_of(ds.items[c.target.item_id or ""]) is not None]
        with tqdm(desc="explanations", total=min(n_cases, len(labelled))) as bar:
            res = evaluate_explanations(ranker, labelled, stats, n=n_cases, seed=seed, progress=bar.update,
                                        generator=generator)
    except LlmintError as err:
        raise _fail(err) from err
    res = {"dataset": ds.name, "adapter": adapter, "backend": backend,
           "gen_batch": gen_batch if backend == "transformers" else None,
           "drafted": backend == "transformers",  # llmint.drafting (one at a time), llmint.draft_batch (together)
           "temperature": ranker.temperature, **res}
    text = json.dumps(res, indent=2, ensure_ascii=False)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        click.echo(str(out), err=True)
    else:
        click.echo(text)


@cli.command("bench-scoring")
@click.option("--dataset", default="office", show_default=True, help="Dataset whose test shoppers are scored.")
@click.option("--level", type=int, default=None, help="Category level (default: the dataset's).")
@click.option("--model", "llm_model", default=None, help="LLM (default: smollm2-135m).")
@click.option("--adapter", default=None, type=click.Path(exists=True, file_okay=False), help="peft adapter folder.")
@click.option("--n-shoppers", type=int, default=8, show_default=True, help="Shoppers timed per method.")
@click.option("--batch", type=int, default=8, show_default=True, help="Shoppers per pass in the batched run.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--dtype", default="float32", show_default=True,
              help="float32, bfloat16, float16 or auto (bfloat16 where native).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("runs/bench/scoring.json"),
              show_default=True, help="JSON result.")
def bench_scoring(dataset: str, level: int | None, llm_model: str | None, adapter: str | None, n_shoppers: int,
                  batch: int, device: str, dtype: str, out: Path) -> None:
    """Per-shopper latency of category scoring: naive vs KV reuse (flat, trie, batched), same run."""
    from .bench_scoring import BenchScoringConfig, format_table, run, write

    try:
        cfg = BenchScoringConfig(dataset=dataset, level=level, model=llm_model, adapter=adapter,
                                 n_shoppers=n_shoppers, batch=batch, device=device, dtype=dtype)
        res = run(cfg, progress=lambda msg: click.echo(f"... {msg}", err=True))
    except LlmintError as err:
        raise _fail(err) from err
    write(res, out)
    click.echo(format_table(res))
    click.echo(str(out), err=True)


@cli.command("bench")
@click.option("--dataset", default="office", show_default=True, help="Dataset whose test shoppers are scored.")
@click.option("--level", type=int, default=None, help="Category level (default: the dataset's).")
@click.option("--model", "llm_model", default=None, help="LLM (default: smollm2-135m).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--dtype", default="float32", show_default=True,
              help="float32, bfloat16, float16 or auto (bfloat16 where native).")
@click.option("--history-tokens", type=int, multiple=True, default=(256, 512), show_default=True,
              help="History token budget(s) scored (repeatable); the first is used by the other sections.")
@click.option("--n-shoppers", type=int, default=4, show_default=True, help="Shoppers timed per scoring method.")
@click.option("--batch", type=int, default=4, show_default=True, help="Shoppers per pass in the batched scoring run.")
@click.option("--naive-labels", type=int, default=8, show_default=True,
              help="Labels timed with one forward pass each, scaled to all (0: every label).")
@click.option("--batch-sizes", type=int, multiple=True, default=(1, 4, 8), show_default=True,
              help="Batch sizes tried for shoppers/s (repeatable).")
@click.option("--n-throughput", type=int, default=8, show_default=True, help="Shoppers scored per batch size.")
@click.option("--threads", type=int, multiple=True, default=(1, 2), show_default=True,
              help="Torch threads tried by the threads lever (repeatable; CPU only).")
@click.option("--torch-threads", type=int, default=0, show_default=True,
              help="Torch threads everywhere else (CPU; 0: torch's default, all cores, as the service runs).")
@click.option("--compile", "compile_modes", multiple=True,
              type=click.Choice(COMPILE_MODES),
              help="torch.compile mode(s) tried by the compile lever, each decoder layer vs eager (repeatable; "
                   "default: none, compiling takes about a minute on CPU).")
@click.option("--dtype-lever/--no-dtype-lever", default=True, show_default=True,
              help="Time bfloat16 vs float32 scoring (a converted copy of the model) in the levers section.")
@click.option("--graph-bucket", type=int, default=64, show_default=True,
              help="On CUDA: the fused scorer with CUDA graphs pads prompts to a multiple of this (one graph each).")
@click.option("--gen-tokens", type=int, default=32, show_default=True, help="New tokens per explanation.")
@click.option("--gen-batch", type=int, default=8, show_default=True,
              help="Explanations decoded together, timed against the same ones one at a time.")
@click.option("--n-draft", type=int, default=4, show_default=True,
              help="Explanations (the dataset's bundled adapter) decoded drafted vs one token a pass (0: skip).")
@click.option("--prep-workers", type=int, default=2, show_default=True,
              help="Throughput: prompts also built by this many worker processes vs in the scoring process (0: skip).")
@click.option("--n-prep", type=int, default=512, show_default=True, help="Shoppers per prompt-building run.")
@click.option("--concurrent", type=int, default=4, show_default=True,
              help="Client threads calling predict(explain=False) at once: one pass each vs scored together "
                   "(ServiceConfig.coalesce_max).")
@click.option("--n-concurrent", type=int, default=3, show_default=True, help="Requests each concurrent client sends.")
@click.option("--index-size", type=int, default=100_000, show_default=True, help="Synthetic vectors in the index.")
@click.option("--index-embed", type=int, default=480, show_default=True,
              help="Items embedded (bundled MiniLM): token-sorted batches vs sentence-transformers' encode (0: skip).")
@click.option("--lora-dataset", default="movielens", show_default=True, help="Dataset of the LoRA section.")
@click.option("--lora-steps", type=int, default=3, show_default=True, help="LoRA steps timed (the first is warm-up).")
@click.option("--lora-batch", type=int, default=4, show_default=True, help="Examples per LoRA step.")
@click.option("--section", "sections", multiple=True, type=click.Choice(
    ["scoring", "throughput", "levers", "generation", "predict", "index", "lora", "roofline"]),
              help="Section(s) to run (default: all).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("runs/bench/bench.json"),
              show_default=True, help="JSON result; the Markdown table goes beside it (.md).")
def bench(dataset: str, level: int | None, llm_model: str | None, device: str, dtype: str,
          history_tokens: tuple[int, ...], n_shoppers: int, batch: int, naive_labels: int,
          batch_sizes: tuple[int, ...], n_throughput: int, threads: tuple[int, ...], torch_threads: int,
          compile_modes: tuple[str, ...], dtype_lever: bool, graph_bucket: int, gen_tokens: int, gen_batch: int,
          n_draft: int, prep_workers: int, n_prep: int, concurrent: int, n_concurrent: int, index_size: int,
          index_embed: int, lora_dataset: str, lora_steps: int,
          lora_batch: int, sections: tuple[str, ...], out: Path) -> None:
    """Speed of every part (scoring, throughput, generation, predict, index, LoRA), each vs a same-run baseline."""
    from tqdm.auto import tqdm

    from .bench import SECTIONS, BenchConfig, format_table, run, write

    try:
        cfg = BenchConfig(dataset=dataset, level=level, model=llm_model, device=device, dtype=dtype,
                          history_tokens=history_tokens, n_shoppers=n_shoppers, batch=batch,
                          naive_labels=naive_labels or None, batch_sizes=batch_sizes, n_throughput=n_throughput,
                          threads=threads, torch_threads=torch_threads, compile=compile_modes, dtype_lever=dtype_lever,
                          graph_bucket=graph_bucket, gen_tokens=gen_tokens, gen_batch=gen_batch,
                          n_draft=n_draft, prep_workers=prep_workers, n_prep=n_prep, concurrent=concurrent,
                          n_concurrent=n_concurrent, index_size=index_size, index_embed=index_embed,
                          lora_dataset=lora_dataset, lora_steps=lora_steps,
                          lora_batch=lora_batch, sections=sections or SECTIONS)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    with tqdm(total=len(cfg.sections), desc="bench sections started", file=sys.stderr, dynamic_ncols=True) as bar:
        def progress(msg: str) -> None:  # one tick per section started; the current step as postfix
            bar.update(msg.startswith("section "))
            bar.set_postfix_str(msg[:70])

        try:  # written after every section: a run stopped by a time limit keeps what it measured
            res = run(cfg, progress=progress, on_section=lambda partial: write(partial, out))
        except LlmintError as err:
            raise _fail(err) from err
    paths = write(res, out)
    click.echo(format_table(res))
    click.echo(" ".join(str(p) for p in paths), err=True)
    if res["failed"]:
        raise click.ClickException(f"section(s) {', '.join(res['failed'])} failed; the others were written")


@cli.command("score")
@click.option("--dataset", default="movielens", show_default=True,
              help="Dataset name (see `llmint datasets`) or a CSV/JSONL/Parquet events file.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for part-*.parquet and manifest.json.")
@click.option("--level", type=int, default=None, help="Category level (default: the dataset's).")
@click.option("--model", "llm_model", default=None, help="LLM (default: smollm2-135m).")
@click.option("--adapter", default="auto", show_default=True,
              help="peft adapter folder, 'none' (zero-shot) or 'auto' (the bundled one for this dataset, if any).")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu", show_default=True)
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16", "auto"]), default="float32",
              show_default=True, help="Model dtype (auto: bfloat16 where the device computes it natively).")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Prompts per forward pass.")
@click.option("--chunk", type=int, default=None,
              help="Prompts per scoring call, sorted by length before batching (default: max(64, 8 x batch size)).")
@click.option("--scorer-mode", type=click.Choice(["trie", "fused", "flat"]), default="trie", show_default=True,
              help="trie: a prompt pass then a label-tree pass; fused: both in one pass.")
@click.option("--limit", type=int, default=None, help="A seeded sample of this many shoppers (default: all).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--segment-size", type=int, default=None,
              help="Shoppers per output file, the unit of resuming (default: the folder's run, else at least "
                   "4 per process, at most 16,384).")
@click.option("--prep-workers", type=int, default=0, show_default=True,
              help="Processes building prompts ahead of the model (0: the scoring process; one process feeds "
                   "~550-900 shoppers/s, a GPU wants 2-4). The scores do not depend on it.")
@click.option("--overwrite", is_flag=True,
              help="Start afresh in a folder that holds another run (default: resume the same run, refuse another).")
def score(dataset: str, out_dir: str, level: int | None, llm_model: str | None, adapter: str, device: str,
          dtype: str, batch_size: int, chunk: int | None, scorer_mode: str, limit: int | None, seed: int,
          segment_size: int | None, prep_workers: int, overwrite: bool) -> None:
    """Every shopper's next-category distribution as Parquet (category only, no audit rows).

    Written segment by segment (seg-*.parquet); run the same command again to resume a run that
    stopped: written segments are skipped. One process here; for several, run the same module
    under torchrun or accelerate:
    `torchrun --nproc_per_node 4 -m llmint.batch_score --dataset D --out DIR` (CPU) or
    `accelerate launch --num_processes 8 -m llmint.batch_score --device cuda --dataset D --out DIR`.
    """
    from .batch_score import ScoreConfig, run

    try:
        cfg = ScoreConfig(out_dir=out_dir, dataset=dataset, level=level, model=llm_model, adapter=adapter,
                          device=device, dtype=dtype, batch_size=batch_size, chunk=chunk, mode=scorer_mode,
                          limit=limit, seed=seed, segment_size=segment_size, overwrite=overwrite,
                          prep_workers=prep_workers)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    try:
        res = run(cfg, lambda msg: click.echo(msg, err=True))
    except LlmintError as err:  # RunFolderError: the folder holds another run
        raise _fail(err) from err
    click.echo(json.dumps({k: res[k] for k in ("n_users", "n_scored", "n_resumed", "world_size", "wall_s",
                                               "shoppers_per_s")}))


for _command in COMMANDS:  # predict, observe, audit (llmint/cli_service.py)
    cli.add_command(_command)
for _command in ANALYZE_COMMANDS:  # analyze shopper|migration|trends|churn (llmint/cli_analyze.py)
    cli.add_command(_command)


def main() -> None:
    """Entry point of the `llmint` console script."""
    cli(prog_name="llmint")


if __name__ == "__main__":
    sys.exit(main())
