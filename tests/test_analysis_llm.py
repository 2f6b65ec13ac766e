"""The LLM in the migration analysis: its predicted transition matrix beside the baselines' on one sample."""

from __future__ import annotations

import pytest
from conftest import shop

from llmint.analysis.reports import migration_report

pytestmark = pytest.mark.real


def test_migration_report_scores_the_llm_on_a_sample(smollm2, tmp_path) -> None:
    # smollm2: the session fixture has converted the model into this run's shared cache
    ds = shop(n_users=12, length=6)
    res = migration_report(ds, tmp_path, llm_n=5, seed=0)
    s = res["llm_sample"]
    assert s["n"] == 5 and s["adapter"] is None
    assert {"llm", "markov", "user_most_frequent", "most_popular"} <= set(s)
    for name in ("llm", "markov"):
        assert 0.0 <= s[name]["matrix_tv"] <= 1.0 and s[name]["hit@1"] in {k / 5 for k in range(6)}
    assert res["rankers"]["markov"]["matrix_tv"] >= 0.0  # the full-population comparison is still there


def test_trends_report_scores_the_llm_with_an_adapter_at_its_calibrated_temperature(smollm2, tmp_path) -> None:
    from llmint.analysis.reports import trends_report
    from llmint.bundled import adapters_dir, calibrated_temperature

    adapter = str(adapters_dir() / "smollm2-135m-movielens")  # any real adapter: this checks the wiring
    ds = shop(n_users=8, length=6)
    res = trends_report(ds, tmp_path, window="day", min_windows=4, llm_n=2, llm_adapter=adapter, seed=0)
    s = res["forecast_llm_sample"]
    assert s["n"] == 2 and s["adapter"] == adapter
    assert s["temperature"] == pytest.approx(calibrated_temperature(adapter))
    assert {"llm", "markov", "ses", "last_window"} <= set(s["metrics"]), set(s["metrics"])
    assert 0.0 <= s["metrics"]["llm"]["tv"]["mean"] <= 1.0
