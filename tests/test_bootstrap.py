"""Bootstrap CIs: exact degenerate cases, width against normal theory, determinism, pairing."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from llmint.bootstrap import (
    CI,
    PairedCI,
    bootstrap_ci,
    bootstrap_stat,
    bootstrap_stats,
    paired_bootstrap,
    resample_indices,
)


@pytest.mark.parametrize("value", [1.0, 0.0, 0.1, 1 / 3])
def test_ci_of_a_constant_is_degenerate(value: float) -> None:
    assert bootstrap_ci(np.full(23, value)) == CI(value, value, value)


def test_ci_covers_the_mean_and_has_the_normal_theory_width() -> None:
    x = np.random.default_rng(1).normal(size=400)
    ci = bootstrap_ci(x, n_boot=2000, seed=3)
    assert ci.mean == x.mean()
    assert ci.low < ci.mean < ci.high
    # 95% normal interval: +-1.96 * sd / sqrt(n)
    expected = 2 * 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert (ci.high - ci.low) == pytest.approx(expected, rel=0.1)


def test_interval_narrows_with_alpha() -> None:
    x = np.random.default_rng(2).random(300)
    wide, narrow = bootstrap_ci(x, alpha=0.01), bootstrap_ci(x, alpha=0.5)
    assert wide.low < narrow.low < narrow.high < wide.high


def test_determinism_under_seed() -> None:
    x = np.random.default_rng(1).random(500)
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    assert bootstrap_ci(x, seed=3) != bootstrap_ci(x, seed=4)
    a = [b.copy() for b in resample_indices(500, 20_000, seed=7)]
    b = list(resample_indices(500, 20_000, seed=7))
    assert len(a) > 1  # chunked
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    assert sum(len(u) for u in a) == 20_000 and all(u.max() < 500 for u in a)


def test_paired_diff_of_identical_systems_is_zero() -> None:
    x = np.random.default_rng(1).random(500)
    assert paired_bootstrap(x, x) == PairedCI(0.0, 0.0, 0.0, 1.0)


def test_paired_constant_shift_is_exact_and_significant() -> None:
    x = np.random.default_rng(1).random(500)
    shifted = paired_bootstrap(np.full(500, 1.0), np.full(500, 0.75))
    assert shifted == PairedCI(0.25, 0.25, 0.25, 0.0)
    better = paired_bootstrap(x + (x > 0.5), x)  # +1 on about half of the cases
    assert better.low > 0.4 and better.p_value == 0.0


def test_paired_noise_is_not_significant() -> None:
    rng = np.random.default_rng(5)
    b = rng.integers(0, 2, 800).astype(float)
    a = b.copy()
    flip = rng.choice(800, 40, replace=False)
    a[flip] = 1 - a[flip]  # a differs from b on 40 random cases, in both directions
    r = paired_bootstrap(a, b, seed=0)
    assert r.low < 0 < r.high and r.p_value > 0.05
    assert r.diff == pytest.approx(a.mean() - b.mean(), abs=1e-15)


def test_paired_uses_the_same_resamples_as_the_single_ci() -> None:
    x = np.random.default_rng(6).random(300)
    p, ci = paired_bootstrap(x, np.zeros(300), seed=2), bootstrap_ci(x, seed=2)
    assert (p.diff, p.low, p.high) == (ci.mean, ci.low, ci.high)


def test_bootstrap_stat_of_the_mean_agrees_with_bootstrap_ci() -> None:
    x = np.random.default_rng(3).random(250)
    st, ci = bootstrap_stat(np.mean, [x], n_boot=300, seed=1), bootstrap_ci(x, n_boot=300, seed=1)
    assert st.mean == pytest.approx(ci.mean, rel=1e-14)
    assert (st.low, st.high) == pytest.approx((ci.low, ci.high), rel=1e-12)


def test_bootstrap_stats_resamples_rows_of_every_array_together() -> None:
    x = np.arange(50.0)
    # x and 2x resampled with the same rows: the ratio is exactly 2 on every resample
    cis = bootstrap_stats(
        lambda a, b: {"ratio": b.sum() / a.sum(), "max": a.max()}, [x, 2 * x], n_boot=40
    )
    assert cis["ratio"] == CI(2.0, 2.0, 2.0)
    assert cis["max"].mean == 49.0 and cis["max"].high == 49.0


def test_bootstrap_stat_drops_undefined_resamples(caplog: pytest.LogCaptureFixture) -> None:
    x = np.array([0.0, 1.0])

    def undefined_without_both(v: np.ndarray) -> float:
        return float(v.mean()) if len(set(v.tolist())) == 2 else float("nan")

    ci = bootstrap_stat(undefined_without_both, [x], n_boot=200, seed=0)
    assert ci == CI(0.5, 0.5, 0.5)  # only mixed resamples {0, 1} survive
    assert "undefined and dropped" in caplog.text
    never = bootstrap_stat(lambda v: float("nan"), [x], n_boot=5)
    assert math.isnan(never.mean) and math.isnan(never.low) and math.isnan(never.high)


def test_to_dict_is_json_ready() -> None:
    assert json.loads(json.dumps(CI(0.5, 0.25, 0.75).to_dict())) == {
        "mean": 0.5,
        "low": 0.25,
        "high": 0.75,
    }
    d = PairedCI(0.1, 0.0, 0.2, 0.04).to_dict()
    assert d == {"diff": 0.1, "low": 0.0, "high": 0.2, "p_value": 0.04}


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci(np.array([]))
    with pytest.raises(ValueError, match="finite"):
        bootstrap_ci(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(np.ones(3), n_boot=0)
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci(np.ones(3), alpha=1.0)
    with pytest.raises(ValueError, match="same cases"):
        paired_bootstrap(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="same number of rows"):
        bootstrap_stat(np.mean, [np.ones(3), np.ones(4)])
