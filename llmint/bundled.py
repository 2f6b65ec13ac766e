"""LoRA adapters that ship inside the package, and how an `adapter` setting resolves to a folder.

An adapter setting is one of:

- `"auto"` (the default of `ServiceConfig` and the app): the bundled adapter trained for
  this model on this dataset when there is one, else none (zero-shot);
- `None` or `"none"`: zero-shot, whatever is bundled;
- a path: that peft adapter folder.

Bundled adapters live in `llmint/adapters/<name>/` with `adapter_config.json`,
`adapter_model.safetensors`, `train_config.json` (how it was trained), `metrics.json`
and `calibration.json` (the temperature fitted on validation cases). This module
reads nothing at import and knows nothing about torch or peft.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

AUTO = "auto"
NONE = "none"

# (registry model name, dataset name) -> folder under llmint/adapters/
BUNDLED: dict[tuple[str, str], str] = {
    ("smollm2-135m", "movielens"): "smollm2-135m-movielens",
    ("smollm2-135m", "office"): "smollm2-135m-office",
    ("smollm2-135m", "instacart"): "smollm2-135m-instacart",
}


def adapters_dir() -> Path:
    """The folder of bundled adapters inside the installed package."""
    return Path(__file__).resolve().parent / "adapters"


def bundled_adapter(model: str | None, dataset: str | None) -> Path | None:
    """The bundled adapter folder for `model` (None: the default model) on `dataset`, or None."""
    from .models import DEFAULT_MODEL

    name = BUNDLED.get((model or DEFAULT_MODEL, dataset or ""))
    if name is None:
        return None
    folder = adapters_dir() / name
    return folder if (folder / "adapter_config.json").is_file() else None


def resolve_adapter(setting: str | None, model: str | None, dataset: str | None) -> str | None:
    """The adapter folder an `adapter` setting means for this model and dataset (None: zero-shot)."""
    if setting is None or setting == NONE:
        return None
    if setting == AUTO:
        found = bundled_adapter(model, dataset)
        return str(found) if found is not None else None
    return setting


def calibrated_temperature(adapter: str | None) -> float | None:
    """The temperature in `calibration.json` beside an adapter (None when absent or unusable)."""
    if adapter is None:
        return None
    path = Path(adapter) / "calibration.json"
    if not path.is_file():
        return None
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        t = float(data["temperature"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return t if math.isfinite(t) and t > 0 else None


__all__ = ["AUTO", "BUNDLED", "NONE", "adapters_dir", "bundled_adapter", "calibrated_temperature",
           "resolve_adapter"]
