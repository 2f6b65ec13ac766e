"""`quiet_peft` filters transformers' `is_gradient_checkpointing` FutureWarning and nothing else."""

from __future__ import annotations

import warnings

from llmint.peft_compat import quiet_peft


def _warn(message: str, category: type[Warning]) -> None:
    warnings.warn(message, category, stacklevel=2)


def test_only_the_gradient_checkpointing_deprecation_is_filtered():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_peft():
            _warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
            _warn("`something_else` is deprecated", FutureWarning)
            _warn("`is_gradient_checkpointing` is deprecated", UserWarning)  # another category passes
        _warn("`is_gradient_checkpointing` is deprecated", FutureWarning)  # outside the block it passes
    assert [(w.category, str(w.message)) for w in caught] == [
        (FutureWarning, "`something_else` is deprecated"),
        (UserWarning, "`is_gradient_checkpointing` is deprecated"),
        (FutureWarning, "`is_gradient_checkpointing` is deprecated"),
    ]
