"""Build the product-retrieval index of a dataset's catalogue, or of a catalogue file.

    python -m index.build --dataset office --out runs/index/office

    python -m index.build --items catalogue.parquet --out runs/index/shop --kind ivfpq

    python -m index.build --dataset instacart --out runs/index/instacart-pq --kind ivfpq --pq-m 48

Loads the dataset (`llmint.loaders.load_dataset`) or the items file (`--items`: the
item columns of `llmint.loaders.generic`; Parquet, JSONL and CSV read a group of rows at a
time by `llmint.loaders.catalogue`), embeds every item's text (`llmint.embed.item_text`,
with a digest of its reviews where the dataset has review text) with a progress bar, builds
an `ItemIndex` and saves it to `--out` together with `build_config.json`, the resolved
configuration of this run.
Items are embedded and added a window at a time (`ItemIndex.from_texts`), so the
vectors of the whole catalogue are never held at once; an IVF-PQ build writes its
float16 rows straight to `--out` (renamed into place when the index is saved;
removed if the build fails before its first checkpoint). Every `--checkpoint-minutes` (10)
the partial index is saved to `--out/.partial` (`llmint.index_checkpoint`): after a failure,
the same command goes on from the last save and gives the same index as a build that never
stopped.
The index options are `IndexConfig` fields with its defaults; an invalid value or
combination (an IVF-PQ option without `--kind ivfpq`, a `--pq-m` that does not divide
the embedding dimension, too few items to train IVF-PQ) is a usage error (exit 2),
reported before anything is encoded.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from llmint.errors import DataError, LlmintError
from llmint.index_cache import catalogue_fingerprint
from llmint.index_config import DEVICES, KINDS, IndexConfig, ivfpq_plan

logger = logging.getLogger("index.build")

IVFPQ_OPTIONS = ("ivf_nlist", "pq_m", "nprobe", "rerank", "train_max", "train_seed")
INDEX_OPTIONS = (
    "kind",
    "device",
    "hnsw_threshold",
    "hnsw_m",
    "ef_construction",
    "ef_search",
    "sub_ef_search",
    "exact_filter_max",
    "filter_ef_max",
    "filter_cache_mb",
    "single_query_threads",
    *IVFPQ_OPTIONS,
)  # the IndexConfig fields offered as --options (search-time ones are kept in meta.json)
CHOICES = {"kind": KINDS, "device": DEVICES}
EMBED_DEVICES = ("auto", "cpu", "cuda")
EMBED_DTYPES = ("float32", "bfloat16", "float16", "auto")


class BuildConfigError(ValueError):
    """A configuration that cannot build this catalogue: a usage error on the command line."""


@dataclass(frozen=True)
class BuildConfig:
    """One index build: which catalogue, which embedder, which index, where to."""

    out: str = field(metadata={"help": "output folder (index.faiss, meta.json, build_config.json)"})
    dataset: str | None = field(
        default=None, metadata={"help": "dataset name for llmint.loaders.load_dataset (or give --items)"}
    )
    items: str | None = field(
        default=None,
        metadata={"help": "a catalogue file instead of a dataset: the item columns of llmint.loaders.generic "
                          "(item_id, title, category_path, brand, text, ...) in Parquet, JSONL or CSV, read a group "
                          "of rows at a time, so a catalogue of any size is never held as texts. "
                          "No review digests (there are no events)"},
    )
    embedder: str | None = field(
        default=None, metadata={"help": "local sentence-transformers folder; None = bundled MiniLM"}
    )
    batch_size: int | None = field(
        default=None, metadata={"help": "texts per encoder batch (default: 32 on a CPU, 128 on a GPU)"}
    )
    limit: int = field(default=0, metadata={"help": "index only the first N items (0 = all)"})
    reviews: bool = field(default=True, metadata={"help": "add a digest of review texts"})
    embed_device: str = field(
        default="auto", metadata={"help": "where the texts are embedded: cpu, cuda or auto (cuda when available)"}
    )
    embed_dtype: str = field(
        default="float32",
        metadata={"help": "embedder weights: float32 (exact), bfloat16, float16, or auto (bfloat16 where the "
                          "device computes it natively: about 1.7x faster on a CPU with AVX512-BF16, top-10 "
                          "neighbours 994 in 1,000 the same, measured on Office)"},
    )
    checkpoint_minutes: float = field(
        default=10.0,
        metadata={"help": "save the partial index to OUT/.partial at most this often (0: never); the same "
                          "command run again after a failure goes on from the last save"},
    )
    index: IndexConfig = field(default_factory=IndexConfig)

    def __post_init__(self) -> None:
        if bool(self.dataset) == bool(self.items):
            raise ValueError("give a dataset name or an items file (exactly one of --dataset and --items)")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}; expected an int >= 1")
        if self.limit < 0:
            raise ValueError(f"limit={self.limit}; expected an int >= 0 (0 = all items)")
        if not self.checkpoint_minutes >= 0:
            raise ValueError(f"checkpoint_minutes={self.checkpoint_minutes}; expected a number >= 0 (0 = never)")
        if self.embed_device not in EMBED_DEVICES and not self.embed_device.startswith("cuda:"):
            raise ValueError(f"embed_device={self.embed_device!r}; expected one of {EMBED_DEVICES} or cuda:N")
        if self.embed_dtype not in EMBED_DTYPES:
            raise ValueError(f"embed_dtype={self.embed_dtype!r}; expected one of {EMBED_DTYPES}")


@dataclass
class Source:
    """What an index is built from: item ids, their texts and categories, and a version."""

    item_ids: Sequence[str]
    texts: Sequence[str]
    categories: Sequence[tuple[str, ...] | None]
    version: str
    described: str  # for the log: where it came from, how many items


def load_source(cfg: BuildConfig) -> Source:
    """The catalogue of `cfg`: a dataset's items (with review digests) or an items file."""
    from llmint import loaders
    from llmint.embed import item_text, review_digests
    from llmint.loaders.catalogue import catalogue_file

    if cfg.items is not None:  # Parquet, JSONL or CSV, read a group of rows at a time
        streamed = catalogue_file(cfg.items, limit=cfg.limit, show_progress=True)
        if not len(streamed):
            raise DataError(f"{cfg.items} has no items to index")
        return Source(streamed.item_ids, streamed.texts(item_text), streamed.categories, streamed.version(),
                      f"{cfg.items}: {len(streamed)} items, read a group of rows at a time")
    ds = loaders.load_dataset(cfg.dataset)
    items = list(ds.items.values())
    digests = review_digests(ds.events) if cfg.reviews else {}
    name = str(cfg.dataset)
    if cfg.limit:
        items = items[: cfg.limit]
    if not items:
        raise DataError(f"{name} has no items to index")
    texts = [item_text(it, digests.get(it.item_id)) for it in items]
    return Source(
        [it.item_id for it in items],
        texts,
        [it.category_path or None for it in items],
        catalogue_fingerprint([(it.item_id, t) for it, t in zip(items, texts, strict=True)]),
        f"{name}: {len(items)} items ({sum(it.item_id in digests for it in items)} with reviews)",
    )


def main(cfg: BuildConfig) -> Path:
    """Build and save the index of `cfg.dataset` or `cfg.items`; returns the output folder."""
    from llmint.embed import load_embedder
    from llmint.index import SPILL, ItemIndex
    from llmint.index_checkpoint import Checkpoint

    t0 = time.perf_counter()
    src = load_source(cfg)
    logger.info("%s, loaded in %.1fs", src.described, time.perf_counter() - t0)

    embedder = load_embedder(cfg.embedder, device=cfg.embed_device, dtype=cfg.embed_dtype)
    check_index_plan(cfg.index, len(src.item_ids), embedder.dim)  # before the slow encoding
    t1 = time.perf_counter()
    spill = Path(cfg.out) / SPILL  # IVF-PQ's float16 rows go to disk as they are made
    checkpoint = Checkpoint(cfg.out, every_s=cfg.checkpoint_minutes * 60) if cfg.checkpoint_minutes else None
    try:
        index = ItemIndex.from_texts(  # a window of vectors at a time, never all of them
            src.item_ids,
            src.texts,
            src.categories,
            embedder,
            cfg.index,
            batch_size=cfg.batch_size,
            show_progress=True,
            catalogue_version=src.version,
            spill_dir=cfg.out,
            checkpoint=checkpoint,
        )
        out = index.save(cfg.out)
    except BaseException:
        if checkpoint is not None and checkpoint.resumable():
            logger.error("the build stopped; its rows up to the last checkpoint are in %s: run the same "
                         "command again to go on from there", checkpoint.partial)
        else:
            spill.unlink(missing_ok=True)  # a failed build leaves no half-written rows beside an older index
        raise
    if checkpoint is not None:
        checkpoint.clear()
    t_build = time.perf_counter() - t1
    resolved = asdict(cfg) | {
        "embedder_name": embedder.name,
        "embedder_sha256": embedder.sha256,
        "embedder_device": str(embedder.model.device),
        "embedder_dtype": embedder.dtype,
        "resolved_kind": index.kind,
        "n_items": len(index),
        "build_s": round(t_build, 3),
    }
    (out / "build_config.json").write_text(json.dumps(resolved, sort_keys=True, indent=2) + "\n")
    logger.info(
        "%s index of %d items written to %s (embedded, built and saved in %.1fs)", index.kind, len(index), out, t_build
    )
    return out


def check_index_plan(cfg: IndexConfig, n_items: int, dim: int) -> None:
    """Raise BuildConfigError when `cfg` cannot index `n_items` vectors of dimension `dim`.

    Only IVF-PQ has such limits (`ivfpq_plan`: `pq_m` must divide `dim`, and enough
    items to train its quantizers); checking them first saves a failed build the encoding.
    """
    if cfg.kind != "ivfpq":
        return
    try:
        ivfpq_plan(n_items, dim, cfg)
    except ValueError as e:
        raise BuildConfigError(str(e)) from None


def make_parser() -> argparse.ArgumentParser:
    """The command line: BuildConfig's fields, then the IndexConfig fields in INDEX_OPTIONS.

    Index options default to None (not given) and show IndexConfig's default in --help;
    `config_from_args` fills in the rest from IndexConfig.
    """
    p = argparse.ArgumentParser(prog="python -m index.build", description=__doc__.split("\n")[0])
    help_of = {f.name: f.metadata.get("help", "") for f in fields(BuildConfig)}
    p.add_argument("--dataset", default=None, help=help_of["dataset"])
    p.add_argument("--items", default=None, metavar="FILE", help=help_of["items"])
    p.add_argument("--out", required=True, help=help_of["out"])
    p.add_argument("--embedder", default=None, help=help_of["embedder"])
    p.add_argument("--batch-size", type=int, default=None, help=help_of["batch_size"])
    p.add_argument("--limit", type=int, default=0, help=help_of["limit"])
    p.add_argument("--no-reviews", action="store_true", help="do not embed review digests")
    p.add_argument("--embed-device", default="auto", help=help_of["embed_device"])
    p.add_argument("--embed-dtype", default="float32", choices=EMBED_DTYPES, help=help_of["embed_dtype"])
    p.add_argument("--checkpoint-minutes", type=float, default=10.0, help=help_of["checkpoint_minutes"])
    idx_help = {f.name: f.metadata.get("help", "") for f in fields(IndexConfig)}
    defaults = IndexConfig()
    group = p.add_argument_group(
        "index options", "IndexConfig fields; the IVF-PQ ones need --kind ivfpq"
    )
    for name in INDEX_OPTIONS:
        default = getattr(defaults, name)
        group.add_argument(
            option(name),
            type=type(default),
            default=None,
            choices=CHOICES.get(name),
            help=f"{idx_help[name]} (default: {default})",
        )
    return p


def option(name: str) -> str:
    """The command-line spelling of a config field: pq_m -> --pq-m."""
    return "--" + name.replace("_", "-")


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    """The BuildConfig of parsed arguments; raises ValueError for invalid values or
    an IVF-PQ option given without --kind ivfpq."""
    given = {k: v for k in INDEX_OPTIONS if (v := getattr(args, k, None)) is not None}
    kind = given.get("kind", IndexConfig().kind)
    stray = [option(k) for k in IVFPQ_OPTIONS if k in given]
    if stray and kind != "ivfpq":
        raise ValueError(f"{', '.join(stray)}: only for --kind ivfpq (got --kind {kind})")
    return BuildConfig(
        dataset=args.dataset,
        items=args.items,
        out=args.out,
        embedder=args.embedder,
        batch_size=args.batch_size,
        limit=args.limit,
        reviews=not args.no_reviews,
        embed_device=args.embed_device,
        embed_dtype=args.embed_dtype,
        checkpoint_minutes=args.checkpoint_minutes,
        index=IndexConfig(**given),
    )


def cli(argv: Sequence[str] | None = None) -> Path:
    """Parse `argv` (None: sys.argv), build and save; returns the output folder.

    An invalid configuration exits 2 with one `error:` line (argparse's usage error),
    whether it shows in the arguments or only against the catalogue (`check_index_plan`).
    """
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ValueError as e:
        parser.error(str(e))
    try:
        return main(cfg)
    except BuildConfigError as e:
        parser.error(str(e))
    except LlmintError as e:  # data or model trouble: one line, exit 1
        parser.exit(1, f"{parser.prog}: {e}\n")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    print(cli())
