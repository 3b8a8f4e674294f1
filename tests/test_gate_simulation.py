"""The regression gate's error rates, simulated with a fixed RNG (a statistics check, not a timing test), the way
the nightly runs: one committed baseline of 10 runs, fixed for months, against nights of 5 fresh seeds each
(the nightly's seed window moves with the date, so nights are independent draws). It uses the gate's own test
(Welch's t on a shifted null, on the logit scale, the 0.1-point minimum effect converted at the baseline's
mean), so a change to the gate that breaks these targets fails here.

Measured (300 baselines x 150 nights per sd, README "Nightly regression gate"): with no true change, the mean
false-alarm rate per reading and night is 0.002% / 0.1% / 0.2% at a seed sd of 0.07 / 0.11 / 0.15 points,
and the 95th-percentile baseline's is 0% / 0.7% / 1.3%; a 0.3-point drop at sd 0.086 is caught 98.7% of
the nights.
"""
from __future__ import annotations

import numpy as np

from bench.judging import stats
from bench.judging.gate import min_effect_on_scale
from bench.judging.rule import Scale

ACC = Scale("percent", True, 10_000)
BASELINE_N, NIGHT_N = 10, 5


def alarm(base: np.ndarray, cand: np.ndarray, min_effect: float = 0.1) -> bool:
    delta = min_effect_on_scale(ACC, float(np.mean(base)), min_effect, 0.1)
    return stats.shifted_drop(ACC.forward(base), ACC.forward(cand), delta) < stats.ALPHA


def false_alarm_rates(sigma: float, baselines: int, nights: int, seed: int) -> np.ndarray:
    """Per fixed baseline: the share of no-change nights it raises an alarm on."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(baselines):
        base = rng.normal(99.2, sigma, BASELINE_N)
        out.append(np.mean([alarm(base, rng.normal(99.2, sigma, NIGHT_N)) for _ in range(nights)]))
    return np.array(out)


def test_a_fixed_baseline_raises_few_false_alarms_even_at_its_95th_percentile():
    for sigma, worst in ((0.07, 0.01), (0.15, 0.05)):
        rates = false_alarm_rates(sigma, baselines=80, nights=50, seed=2026)
        assert rates.mean() <= 0.01, (sigma, rates.mean())
        assert np.percentile(rates, 95) <= worst, (sigma, np.percentile(rates, 95))


def test_power_for_a_drop_of_three_tenths_of_a_point():
    rng = np.random.default_rng(7)
    trials = 1000
    hits = sum(alarm(rng.normal(99.2, 0.086, BASELINE_N), rng.normal(98.9, 0.086, NIGHT_N)) for _ in range(trials))
    assert hits / trials >= 0.95, f"power {hits / trials:.3f}"


def test_a_drop_smaller_than_the_minimum_effect_is_rarely_an_alarm():
    rng = np.random.default_rng(8)
    trials = 1000
    hits = sum(alarm(rng.normal(99.2, 0.086, BASELINE_N), rng.normal(99.15, 0.086, NIGHT_N)) for _ in range(trials))
    assert hits / trials <= 0.05
