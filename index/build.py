"""Build the product-retrieval index of a dataset's catalogue.

    python -m index.build --dataset office --out runs/index/office

Loads the dataset (`llmint.loaders.load_dataset`), embeds every item's text
(`llmint.embed.item_text`, with a digest of its reviews where the dataset has
review text) with a progress bar, builds an `ItemIndex` and saves it to `--out`
together with `build_config.json`, the resolved configuration of this run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from llmint.index import IndexConfig

logger = logging.getLogger("index.build")


@dataclass(frozen=True)
class BuildConfig:
    """One index build: which catalogue, which embedder, which index, where to."""

    dataset: str = field(metadata={"help": "dataset name for llmint.loaders.load_dataset"})
    out: str = field(metadata={"help": "output folder (index.faiss, meta.json, build_config.json)"})
    embedder: str | None = field(
        default=None, metadata={"help": "local sentence-transformers folder; None = bundled MiniLM"}
    )
    batch_size: int = field(default=64, metadata={"help": "texts per encoder batch"})
    limit: int = field(default=0, metadata={"help": "index only the first N items (0 = all)"})
    reviews: bool = field(default=True, metadata={"help": "add a digest of review texts"})
    index: IndexConfig = field(default_factory=IndexConfig)

    def __post_init__(self) -> None:
        if not self.dataset:
            raise ValueError("dataset must be a non-empty name")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}; expected an int >= 1")
        if self.limit < 0:
            raise ValueError(f"limit={self.limit}; expected an int >= 0 (0 = all items)")


def catalogue_version(ids_texts: list[tuple[str, str]]) -> str:
    """A short hash of the indexed (item id, text) pairs, so a changed catalogue is visible."""
    h = hashlib.sha256()
    for iid, text in sorted(ids_texts):
        h.update(iid.encode() + b"\t" + text.encode() + b"\n")
    return h.hexdigest()[:16]


def main(cfg: BuildConfig) -> Path:
    """Build and save the index for `cfg.dataset`; returns the output folder."""
    from llmint import loaders
    from llmint.embed import item_text, load_embedder, review_digests
    from llmint.index import ItemIndex

    t0 = time.perf_counter()
    ds = loaders.load_dataset(cfg.dataset)
    items = list(ds.items.values())
    if cfg.limit:
        items = items[: cfg.limit]
    if not items:
        raise ValueError(f"dataset {cfg.dataset!r} has no items to index")
    digests = review_digests(ds.events) if cfg.reviews else {}
    texts = [item_text(it, digests.get(it.item_id)) for it in items]
    logger.info(
        "%s: %d items (%d with reviews) loaded in %.1fs",
        cfg.dataset,
        len(items),
        sum(it.item_id in digests for it in items),
        time.perf_counter() - t0,
    )

    embedder = load_embedder(cfg.embedder)
    t1 = time.perf_counter()
    vectors = embedder.encode(texts, batch_size=cfg.batch_size, show_progress=True)
    t_encode = time.perf_counter() - t1
    t2 = time.perf_counter()
    index = ItemIndex.build(
        [it.item_id for it in items],
        vectors,
        [it.category_path or None for it in items],
        cfg.index,
        embedder=embedder,
        catalogue_version=catalogue_version(
            [(it.item_id, t) for it, t in zip(items, texts, strict=True)]
        ),
    )
    t_build = time.perf_counter() - t2
    out = index.save(cfg.out)
    resolved = asdict(cfg) | {
        "embedder_name": embedder.name,
        "embedder_sha256": embedder.sha256,
        "resolved_kind": index.kind,
        "n_items": len(index),
        "encode_s": round(t_encode, 3),
        "build_s": round(t_build, 3),
    }
    (out / "build_config.json").write_text(json.dumps(resolved, sort_keys=True, indent=2) + "\n")
    logger.info(
        "%s index of %d items written to %s (encode %.1fs, build %.1fs)",
        index.kind,
        len(index),
        out,
        t_encode,
        t_build,
    )
    return out


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m index.build", description=__doc__.split("\n")[0])
    help_of = {f.name: f.metadata.get("help", "") for f in fields(BuildConfig)}
    p.add_argument("--dataset", required=True, help=help_of["dataset"])
    p.add_argument("--out", required=True, help=help_of["out"])
    p.add_argument("--embedder", default=None, help=help_of["embedder"])
    p.add_argument("--batch-size", type=int, default=64, help=help_of["batch_size"])
    p.add_argument("--limit", type=int, default=0, help=help_of["limit"])
    p.add_argument("--no-reviews", action="store_true", help="do not embed review digests")
    idx_help = {f.name: f.metadata.get("help", "") for f in fields(IndexConfig)}
    defaults = IndexConfig()
    for name in (
        "kind",
        "device",
        "hnsw_threshold",
        "hnsw_m",
        "ef_construction",
        "ef_search",
        "sub_ef_search",
        "exact_filter_max",
    ):
        default = getattr(defaults, name)
        p.add_argument(
            "--" + name.replace("_", "-"),
            type=type(default),
            default=default,
            help=f"{idx_help[name]} (default: {default})",
        )
    return p


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    index_keys = {f.name for f in fields(IndexConfig)}
    index = IndexConfig(**{k: v for k, v in vars(args).items() if k in index_keys})
    return BuildConfig(
        dataset=args.dataset,
        out=args.out,
        embedder=args.embedder,
        batch_size=args.batch_size,
        limit=args.limit,
        reviews=not args.no_reviews,
        index=index,
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    print(main(config_from_args(make_parser().parse_args())))
