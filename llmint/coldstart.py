"""Cold start: how a model's distribution is blended with the population prior for short histories.

One pure function shared by the service and the batch scorer, so both give a shopper
the same distribution.
"""

from __future__ import annotations

import numpy as np

COLD_MAX = 3  # histories with at most this many events are cold (the service's and batch scorer's default)
COLD_STRENGTH = 3.0  # k in the model weight n / (n + k) of a cold history of n events (their default)


def blend_prior(model_p: np.ndarray | None, n_events: int, prior: np.ndarray, *, cold_max: int,
                strength: float) -> tuple[np.ndarray, float]:
    """The served distribution and the prior's weight in it.

    No events: the prior alone (weight 1). At most `cold_max` events: `w * model_p +
    (1 - w) * prior` with `w = n / (n + strength)`. Longer histories: the model alone.

    Example:
        >>> p, w = blend_prior(np.array([1.0, 0.0]), 1, np.array([0.5, 0.5]), cold_max=3, strength=3.0)
        >>> p.round(3).tolist(), w
        ([0.625, 0.375], 0.75)
    """
    if n_events == 0 or model_p is None:
        return prior.copy(), 1.0
    if n_events <= cold_max:
        w = n_events / (n_events + strength)
        return w * model_p + (1.0 - w) * prior, 1.0 - w
    return model_p, 0.0


__all__ = ["COLD_MAX", "COLD_STRENGTH", "blend_prior"]
