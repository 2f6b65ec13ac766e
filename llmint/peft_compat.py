"""Quiet the one warning peft 0.21 triggers in transformers 5.23 that is not ours to act on.

peft reads `model.is_gradient_checkpointing` whenever it wraps a model (`get_peft_model`,
`PeftModel.from_pretrained`); transformers 5.23 deprecates that property with a FutureWarning,
printed on every CLI call, app start and training run. `quiet_peft()` filters that message and
nothing else, for the duration of a `with` block. No side effects at import.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

GRADIENT_CHECKPOINTING_DEPRECATION = r"`is_gradient_checkpointing` is deprecated"


@contextmanager
def quiet_peft() -> Iterator[None]:
    """Within the block, ignore transformers' `is_gradient_checkpointing` FutureWarning (raised from peft)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", GRADIENT_CHECKPOINTING_DEPRECATION, FutureWarning)
        yield
