"""llmint: LLM-based interest reasoning for e-commerce.

Importing this package has no side effects: heavy libraries (torch, faiss,
gradio) are imported inside the functions that need them.
"""

from .errors import DataError, HistoryError, IntegrityError, LlmintError, ModelError, UnknownIdError
from .schema import ACTIONS, Dataset, Event, Item, LoadReport
from .split import Case, Split, SplitConfig, make_split
from .taxonomy import Taxonomy

__version__ = "0.1.0"

__all__ = [
    "ACTIONS",
    "Case",
    "DataError",
    "Dataset",
    "Event",
    "HistoryError",
    "IntegrityError",
    "Item",
    "LlmintError",
    "LoadReport",
    "ModelError",
    "Split",
    "SplitConfig",
    "Taxonomy",
    "UnknownIdError",
    "make_split",
]
