"""Numbers over per-seed values: spread, intervals, tests, and whether a claim reproduces.

One value per seed, as a 1-D array. A claim is judged against where one new run would land
(the 95% prediction interval), not against the mean: a document reports one run. Everything
random (the bootstrap) is seeded, so the same values always give the same numbers. Undefined
quantities (a spread from one value) are NaN or None, never an exception.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

LEVEL = 0.95
BEST_OF = (1, 5, 10, 20)
VERDICTS = ("no runs", "insufficient", "reproduced", "not reproduced", "exceeded")
NAN_PAIR = (math.nan, math.nan)


def _arr(values) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]


def mean(values) -> float:
    x = _arr(values)
    return float(x.mean()) if len(x) else math.nan


def std(values) -> float:
    """Sample standard deviation (n - 1); NaN below two values."""
    x = _arr(values)
    return float(x.std(ddof=1)) if len(x) >= 2 else math.nan


def _flat(x: np.ndarray) -> bool:
    """No spread beyond float rounding (scipy's moments lose all precision there)."""
    return bool(x.std() <= 1e-12 * max(1.0, abs(x.mean())))


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def _t(n: int, level: float) -> float:
    return float(st.t.ppf(0.5 + level / 2, n - 1))


def confidence_interval(values, level: float = LEVEL) -> tuple[float, float]:
    """t-interval of the mean: mean ± t·s/√n (a point when every value is equal)."""
    x = _arr(values)
    if len(x) < 2:
        return NAN_PAIR
    m, half = x.mean(), _t(len(x), level) * x.std(ddof=1) / math.sqrt(len(x))
    return float(m - half), float(m + half)


def prediction_interval(values, level: float = LEVEL) -> tuple[float, float]:
    """Where one new run lands: mean ± t·s·√(1 + 1/n)."""
    x = _arr(values)
    if len(x) < 2:
        return NAN_PAIR
    m, half = x.mean(), _t(len(x), level) * x.std(ddof=1) * math.sqrt(1 + 1 / len(x))
    return float(m - half), float(m + half)


def t_test(values, claim: float) -> float:
    """Two-sided p of the one-sample t-test of the mean against the claim.

    With no spread the t statistic is ±inf (p = 0) unless the mean is the claim (p = 1).
    """
    x = _arr(values)
    if len(x) < 2:
        return math.nan
    if _flat(x):
        return 1.0 if _same(x.mean(), claim) else 0.0
    return float(st.ttest_1samp(x, claim).pvalue)


def bootstrap_interval(values, level: float = LEVEL, resamples: int = 9999) -> tuple[float, float]:
    """BCa bootstrap interval of the mean, seeded with default_rng(0) so it is reproducible."""
    x = _arr(values)
    if len(x) < 2:
        return NAN_PAIR
    if _flat(x):
        return float(x.mean()), float(x.mean())
    res = st.bootstrap((x,), np.mean, n_resamples=resamples, confidence_level=level,
                       rng=np.random.default_rng(0))
    lo, hi = res.confidence_interval
    if not (np.isfinite(lo) and np.isfinite(hi)):  # BCa degenerates on tiny samples
        res = st.bootstrap((x,), np.mean, n_resamples=resamples, confidence_level=level,
                           method="percentile", rng=np.random.default_rng(0))
        lo, hi = res.confidence_interval
    return float(lo), float(hi)


def reaches(value: float, claim: float, higher_is_better: bool | None) -> bool:
    return value <= claim if higher_is_better is False else value >= claim


def share_reaching(values, claim: float, higher_is_better: bool | None = True) -> float | None:
    """Share of seeds at least as good as the claim; None when the metric has no better side."""
    x = _arr(values)
    if not len(x) or higher_is_better is None:
        return None
    return float(np.mean([reaches(v, claim, higher_is_better) for v in x]))


def chance_one_run(values, claim: float, higher_is_better: bool | None = True) -> float | None:
    """P(one new run reaches the claim) under the normal fitted to the values."""
    x = _arr(values)
    if len(x) < 2 or higher_is_better is None:
        return None
    m, s = x.mean(), x.std(ddof=1)
    if _flat(x):
        return 1.0 if reaches(m, claim, higher_is_better) or _same(m, claim) else 0.0
    return float(st.norm.cdf(claim, m, s) if higher_is_better is False else st.norm.sf(claim, m, s))


def best_of_k(values, claim: float, higher_is_better: bool | None = True,
              ks=BEST_OF) -> dict[int, float] | None:
    """Chance that the best of k independent runs reaches the claim: 1 - (1 - p)^k.

    A high best-of-20 beside a low single-run chance is what a lucky pick looks like.
    """
    p = chance_one_run(values, claim, higher_is_better)
    if p is None:
        return None
    return {k: float(1 - (1 - p) ** k) for k in ks}


def verdict(values, claim: float, higher_is_better: bool | None = True, level: float = LEVEL) -> str:
    """reproduced: the claim lies in the prediction interval of one new run; otherwise the
    claim is better than the runs (not reproduced) or worse (exceeded). No spread: the
    interval is the single value, compared up to float rounding."""
    x = _arr(values)
    if not len(x):
        return "no runs"
    if len(x) < 3:
        return "insufficient"
    lo, hi = prediction_interval(x, level)
    if lo <= claim <= hi or _same(claim, lo) or _same(claim, hi):
        return "reproduced"
    if higher_is_better is None:
        return "not reproduced"
    above = claim > hi
    return "not reproduced" if above == bool(higher_is_better) else "exceeded"


def _constant_p(a: np.ndarray, b: np.ndarray, alternative: str) -> float:
    """p of a two-sample test when neither side varies: certainty either way."""
    ma, mb = a.mean(), b.mean()
    if _same(ma, mb):
        return 1.0
    if alternative == "less":
        return 0.0 if ma < mb else 1.0
    if alternative == "greater":
        return 0.0 if ma > mb else 1.0
    return 0.0


def welch(a, b, alternative: str = "two-sided") -> float:
    """Welch's t-test (unequal variances) of mean(a) against mean(b); NaN below 2 values a side."""
    a, b = _arr(a), _arr(b)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if _flat(a) and _flat(b):
        return _constant_p(a, b, alternative)
    return float(st.ttest_ind(a, b, equal_var=False, alternative=alternative).pvalue)


def mann_whitney(a, b, alternative: str = "two-sided") -> float:
    """Mann-Whitney U: the rank test, for when the values are not normal; NaN if a side is empty."""
    a, b = _arr(a), _arr(b)
    if not len(a) or not len(b):
        return math.nan
    return float(st.mannwhitneyu(a, b, alternative=alternative).pvalue)


@dataclass(frozen=True)
class ClaimStats:
    """Everything the report says about one claim against one set of runs."""
    n: int
    mean: float
    std: float
    min: float
    median: float
    max: float
    ci: tuple[float, float]
    pi: tuple[float, float]
    bootstrap: tuple[float, float]
    p_value: float
    share: float | None
    best_of: dict[int, float] | None
    verdict: str


def describe(values, claim: float, higher_is_better: bool | None = True) -> ClaimStats:
    x = _arr(values)
    some = len(x) > 0
    return ClaimStats(
        n=len(x), mean=mean(x), std=std(x),
        min=float(x.min()) if some else math.nan, median=float(np.median(x)) if some else math.nan,
        max=float(x.max()) if some else math.nan,
        ci=confidence_interval(x), pi=prediction_interval(x), bootstrap=bootstrap_interval(x),
        p_value=t_test(x, claim), share=share_reaching(x, claim, higher_is_better),
        best_of=best_of_k(x, claim, higher_is_better), verdict=verdict(x, claim, higher_is_better))
