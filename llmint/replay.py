"""Replay a seeded random sample of audit rows and summarise how many come back identical.

What audit teams run to check that served predictions are reproducible: each sampled row
is re-run by `InterestService.replay` (no new audit row). Rows of another taxonomy (another
dataset or level) and erased rows are skipped and counted, not replayed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def replay_sample(service: Any, n: int, *, seed: int = 0,
                  progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Replay up to `n` audit rows drawn at random (seeded) from `service.audit`; return the summary."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r}; expected an int >= 1")
    total = service.audit.count()
    order = np.random.default_rng(seed).permutation(total)
    results, skipped = [], {"erased": 0, "other_taxonomy": 0}
    for offset in order:
        if len(results) == n:
            break
        rows = service.audit.list(limit=1, offset=int(offset))
        if not rows:  # rows were erased meanwhile
            continue
        row = rows[0]
        if row.erased:
            skipped["erased"] += 1
            continue
        if row.decoding.get("labels_sha256") != service.labels_sha256:
            skipped["other_taxonomy"] += 1
            continue
        results.append(service.replay(row.audit_id))
        if progress:
            progress(1)
    return {
        "n_rows": total, "n": len(results), "seed": seed,
        "identical": sum(r.identical for r in results),
        "versions_match": sum(r.versions_match for r in results),
        "input_identical": sum(r.input_identical for r in results),
        "differs": [{"audit_id": r.audit_id, "fields": sorted(r.differences),
                     "versions": list(r.version_differences)} for r in results if not r.identical],
        "skipped": skipped,
    }


__all__ = ["replay_sample"]
