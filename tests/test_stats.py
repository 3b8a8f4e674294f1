"""bench.stats against values computed by hand (numpy formulas, textbook tables), edge cases
n = 0, 1, 2 and zero spread, and every verdict in both orientations."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from bench import stats

# The textbook sample: mean 5, sample variance 32/7.
X = [2, 4, 4, 4, 5, 5, 7, 9]
S = math.sqrt(32 / 7)
T_975_7 = 2.364624251592785   # t table, 0.975 quantile, 7 degrees of freedom (2.365)
T_975_2 = 4.302652729911275   # ... 2 degrees of freedom (4.303)


def normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def test_mean_and_sample_std():
    assert stats.mean(X) == 5
    assert stats.std(X) == pytest.approx(S)
    assert stats.std(X) == pytest.approx(np.std(X, ddof=1))


def test_confidence_interval_of_the_mean():
    half = T_975_7 * S / math.sqrt(8)
    assert stats.confidence_interval(X) == pytest.approx((5 - half, 5 + half), abs=1e-9)


def test_prediction_interval_of_one_new_run():
    half = T_975_7 * S * math.sqrt(1 + 1 / 8)
    assert stats.prediction_interval(X) == pytest.approx((5 - half, 5 + half), abs=1e-9)
    lo, hi = stats.prediction_interval(X)
    assert hi - lo > np.subtract(*reversed(stats.confidence_interval(X)))


def test_t_test_against_the_claim_by_hand():
    from scipy.stats import t as t_dist
    claim = 6.5
    t = (5 - claim) / (S / math.sqrt(8))
    assert stats.t_test(X, claim) == pytest.approx(2 * t_dist.sf(abs(t), 7))
    assert stats.t_test(X, 5.0) == pytest.approx(1.0)


def test_bootstrap_is_reproducible_and_agrees_with_the_t_interval_on_a_large_sample():
    x = np.random.default_rng(42).normal(99.2, 0.1, 400)
    a, b = stats.bootstrap_interval(x), stats.bootstrap_interval(x)
    assert a == b
    lo, hi = stats.confidence_interval(x)
    assert a[0] == pytest.approx(lo, abs=0.003) and a[1] == pytest.approx(hi, abs=0.003)
    small = stats.bootstrap_interval(X)
    assert min(X) <= small[0] < 5 < small[1] <= max(X)


def test_best_of_k_by_hand_both_orientations():
    values = [99.1, 99.2, 99.3, 99.2]
    m, s = np.mean(values), np.std(values, ddof=1)
    p = normal_sf((99.35 - m) / s)
    got = stats.best_of_k(values, 99.35, True)
    assert list(got) == [1, 5, 10, 20]
    for k, chance in got.items():
        assert chance == pytest.approx(1 - (1 - p) ** k)
    assert got[20] > got[1]
    lower = stats.best_of_k(values, 99.35, False)
    assert lower[1] == pytest.approx(1 - p)
    assert stats.best_of_k(values, 99.35, None) is None


def test_share_reaching():
    assert stats.share_reaching([1, 2, 3, 4], 3, True) == 0.5
    assert stats.share_reaching([1, 2, 3, 4], 3, False) == 0.75
    assert stats.share_reaching([], 3) is None


def test_welch_by_hand():
    from scipy.stats import t as t_dist
    a, b = np.array([99.1, 99.3, 99.2, 99.4]), np.array([98.8, 99.0, 98.7, 99.1, 98.9])
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    assert stats.welch(a, b) == pytest.approx(2 * t_dist.sf(abs(t), df))
    assert stats.welch(a, b, "greater") == pytest.approx(t_dist.sf(t, df))
    assert stats.welch(a, b, "less") == pytest.approx(t_dist.cdf(t, df))
    assert math.isnan(stats.welch([1.0], b))


def test_mann_whitney_exact_value():
    # all 20 ways to pick 3 ranks of 6 are equally likely; only one puts a entirely below b
    assert stats.mann_whitney([1, 2, 3], [4, 5, 6], "less") == pytest.approx(1 / 20)
    assert stats.mann_whitney([1, 2, 3], [4, 5, 6], "greater") == pytest.approx(1.0)


# ---------------------------------------------------------------- edge cases

def test_n0():
    s = stats.describe([], 99.0)
    assert s.n == 0 and s.verdict == "no runs" and math.isnan(s.mean) and s.best_of is None


def test_n1():
    s = stats.describe([99.2], 99.0)
    assert s.n == 1 and s.mean == 99.2 and math.isnan(s.std)
    assert all(math.isnan(v) for v in (*s.ci, *s.pi, *s.bootstrap, s.p_value))
    assert s.best_of is None and s.share == 1.0 and s.verdict == "insufficient"


def test_n2():
    x = [99.0, 99.4]
    s = stats.describe(x, 99.3)
    half = 12.706204736174698 * math.sqrt(0.08) * math.sqrt(1.5)   # t table, 1 degree of freedom
    assert s.pi == pytest.approx((99.2 - half, 99.2 + half))
    assert s.verdict == "insufficient"
    assert s.bootstrap[0] <= s.bootstrap[1]


def test_zero_spread():
    x = [99.3, 99.3, 99.3]
    assert stats.std(x) == 0
    assert stats.confidence_interval(x) == (99.3, 99.3)
    assert stats.prediction_interval(x) == (99.3, 99.3)
    assert stats.bootstrap_interval(x) == (99.3, 99.3)
    assert stats.t_test(x, 99.3) == 1.0 and stats.t_test(x, 99.4) == 0.0
    assert stats.chance_one_run(x, 99.3) == 1.0 and stats.chance_one_run(x, 99.4) == 0.0
    assert stats.chance_one_run(x, 99.2, higher_is_better=False) == 0.0
    assert stats.verdict(x, 99.3) == "reproduced"
    assert stats.verdict(x, 100.0 * 9930 / 10000) == "reproduced"     # equal up to float rounding
    assert stats.verdict(x, 99.4) == "not reproduced"
    assert stats.verdict(x, 99.2) == "exceeded"
    assert stats.welch(x, [99.1, 99.1], "greater") == 0.0 and stats.welch(x, [99.1, 99.1], "less") == 1.0
    assert stats.welch(x, x) == 1.0


def test_spread_of_float_rounding_only_counts_as_zero():
    gaps = [v - (v - 0.01) for v in (1.1, 2.3, 99.12)]     # 0.01 up to the last bits
    assert len(set(gaps)) > 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = stats.describe(gaps, 0.01)
    assert s.p_value == 1.0 and s.bootstrap == pytest.approx((0.01, 0.01)) and s.verdict == "reproduced"
    assert stats.welch(gaps, [0.02, 0.02], "less") == 0.0


def test_non_finite_values_are_left_out():
    assert stats.describe([99.0, float("nan"), 99.2, None, 99.4], 99.0).n == 3


# ---------------------------------------------------------------- verdicts

# [1, 2, 3]: mean 2, s = 1, prediction interval 2 ± 4.3027 * sqrt(4/3) = [-2.968, 6.968]
HALF = T_975_2 * math.sqrt(4 / 3)


def test_prediction_interval_of_the_verdict_sample():
    assert stats.prediction_interval([1, 2, 3]) == pytest.approx((2 - HALF, 2 + HALF))


@pytest.mark.parametrize("claim, higher, expected", [
    (6.0, True, "reproduced"), (7.0, True, "not reproduced"), (-3.0, True, "exceeded"),
    (6.0, False, "reproduced"), (7.0, False, "exceeded"), (-3.0, False, "not reproduced"),
    (6.0, None, "reproduced"), (7.0, None, "not reproduced"), (-3.0, None, "not reproduced"),
    (2 + HALF - 1e-6, True, "reproduced"), (2 + HALF + 1e-6, True, "not reproduced"),
])
def test_verdict(claim, higher, expected):
    assert stats.verdict([1, 2, 3], claim, higher) == expected


def test_verdict_needs_three_runs():
    assert stats.verdict([], 1.0) == "no runs"
    assert stats.verdict([1.0], 1.0) == "insufficient"
    assert stats.verdict([1.0, 2.0], 1.5) == "insufficient"


def test_describe_agrees_with_the_functions():
    x = [99.12, 99.33, 99.14, 99.28, 99.28]
    s = stats.describe(x, 99.43)
    assert (s.mean, s.std, s.min, s.median, s.max) == (stats.mean(x), stats.std(x), 99.12, 99.28, 99.33)
    assert s.pi == stats.prediction_interval(x) and s.ci == stats.confidence_interval(x)
    assert s.bootstrap == stats.bootstrap_interval(x) and s.p_value == stats.t_test(x, 99.43)
    assert s.share == 0.0 and s.verdict == "reproduced"
