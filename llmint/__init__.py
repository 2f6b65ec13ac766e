"""llmint: LLM-based interest reasoning for e-commerce.

Importing this package has no side effects: heavy libraries (torch, faiss,
gradio) are imported inside the functions that need them.
"""

from .errors import (
    DataError,
    HistoryError,
    IntegrityError,
    LlmintError,
    ModelError,
    RunFolderError,
    UnknownIdError,
)
from .schema import ACTIONS, Dataset, Event, Item, LoadReport
from .split import Case, Split, SplitConfig, make_split
from .taxonomy import Taxonomy

__version__ = "0.1.0"

_LAZY = {  # loaded on first use, so `import llmint` stays light
    "InterestService": ".service",
    "Prediction": ".service_config",
    "ServiceConfig": ".service_config",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ACTIONS",
    "Case",
    "DataError",
    "Dataset",
    "Event",
    "HistoryError",
    "IntegrityError",
    "InterestService",
    "Item",
    "LlmintError",
    "LoadReport",
    "ModelError",
    "Prediction",
    "RunFolderError",
    "ServiceConfig",
    "Split",
    "SplitConfig",
    "Taxonomy",
    "UnknownIdError",
    "make_split",
]
