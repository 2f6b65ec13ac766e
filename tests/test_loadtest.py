"""`llmint.loadtest` on the small shop: 4 client threads for about 10 s on the real SmolLM2."""

from __future__ import annotations

import json

import pytest
from conftest import shop

from llmint import InterestService, ServiceConfig
from llmint.loadtest import main

pytestmark = pytest.mark.real


def test_loadtest_runs_bounded_and_every_request_has_one_intact_row(smollm2, tmp_path) -> None:
    cfg = ServiceConfig(audit_path=str(tmp_path / "audit.sqlite"))
    with InterestService.from_dataset(shop(n_users=6, length=5), cfg, loaded=smollm2) as svc:
        path = main(["--clients", "4", "--seconds", "10", "--n-products", "1", "--out", str(tmp_path / "lt")],
                    service=svc)
        rep = json.loads(path.read_text())
        assert rep["ok"] >= 4 and rep["errors"] == {} and rep["requests"] == rep["ok"]
        assert rep["audit"]["ok"] and rep["audit"]["rows_written"] == rep["ok"] == svc.audit.count()
        assert rep["audit"]["corrupt_rows"] == 0 and rep["audit"]["integrity_check"] == "ok"
        lat = rep["latency_ms"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert rep["wall_s"] < 10 + 60 and rep["throughput_per_s"] > 0  # stops by itself


def test_loadtest_rejects_bad_arguments(tmp_path) -> None:
    with pytest.raises(ValueError, match="--clients"):
        main(["--clients", "0", "--out", str(tmp_path)], service=object())
