"""`llmint.loadtest` on the small shop: 4 client threads for about 10 s on the real SmolLM2."""

from __future__ import annotations

import json

import pytest
from conftest import shop

from llmint import InterestService, ServiceConfig
from llmint.loadtest import main

pytestmark = pytest.mark.real


@pytest.mark.parametrize("coalesce", [1, 4])
def test_loadtest_runs_bounded_and_every_request_has_one_intact_row(smollm2, tmp_path, coalesce) -> None:
    cfg = ServiceConfig(audit_path=str(tmp_path / "audit.sqlite"), coalesce_max=coalesce)
    with InterestService.from_dataset(shop(n_users=6, length=5), cfg, loaded=smollm2) as svc:
        path = main(["--clients", "4", "--seconds", "8", "--n-products", "1", "--out", str(tmp_path / "lt")],
                    service=svc)
        rep = json.loads(path.read_text())
        if coalesce == 1:
            assert rep["score_batches"] is None
        else:  # every request went through the coalescer, in passes of 1..4
            sb = rep["score_batches"]
            assert sb["items"] == rep["ok"] and 1 <= sb["largest"] <= 4
            assert sum(int(k) * v for k, v in sb["sizes"].items()) == rep["ok"]
            rows = svc.audit.list(limit=rep["ok"])
            got = {n: sum(r.decoding["score_batch"] == n for r in rows) for n in range(1, 5)}
            assert got == {n: n * sb["sizes"].get(str(n), 0) for n in range(1, 5)}  # n rows per pass of n
        assert rep["ok"] >= 4 and rep["errors"] == {} and rep["requests"] == rep["ok"]
        assert rep["audit"]["ok"] and rep["audit"]["rows_written"] == rep["ok"] == svc.audit.count()
        assert rep["audit"]["corrupt_rows"] == 0 and rep["audit"]["integrity_check"] == "ok"
        lat = rep["latency_ms"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert rep["wall_s"] < 8 + 60 and rep["throughput_per_s"] > 0  # stops by itself


def test_loadtest_rejects_bad_arguments(tmp_path) -> None:
    with pytest.raises(ValueError, match="--clients"):
        main(["--clients", "0", "--out", str(tmp_path)], service=object())
