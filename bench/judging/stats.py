"""Numbers over runs: means, spreads, intervals and the tests the report and the gate use (Welch, Mann-Whitney,
Fisher, Clopper-Pearson, Holm, TOST equivalence, the gate's shifted-null Welch test). The rule that turns
them into a verdict is bench.judging.rule; implementation noise is bench.judging.noise. Everything random
(the bootstrap) is seeded.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as st

LEVEL = 0.95
ALPHA = 0.05
NAN_PAIR = (math.nan, math.nan)


# ---------------------------------------------------------------- plain numbers

def _arr(values) -> np.ndarray:
    x = np.asarray([math.nan if v is None else v for v in values], dtype=float).ravel()
    return x[np.isfinite(x)]


def mean(values) -> float:
    x = _arr(values)
    return float(x.mean()) if len(x) else math.nan


def std(values) -> float:
    """Sample standard deviation (n - 1); NaN below two values."""
    x = _arr(values)
    return float(x.std(ddof=1)) if len(x) >= 2 else math.nan


def _flat(x: np.ndarray) -> bool:
    return bool(x.std() <= 1e-12 * max(1.0, abs(x.mean())))


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def confidence_interval(values, level: float = LEVEL) -> tuple[float, float]:
    """Two-sided t-interval of the mean (a point when every value is equal)."""
    x = _arr(values)
    if len(x) < 2:
        return NAN_PAIR
    half = st.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def bootstrap_interval(values, level: float = LEVEL, resamples: int = 9999) -> tuple[float, float]:
    """BCa bootstrap interval of the mean, seeded with default_rng(0) so it is reproducible."""
    x = _arr(values)
    if len(x) < 2:
        return NAN_PAIR
    if _flat(x):
        return float(x.mean()), float(x.mean())
    res = st.bootstrap((x,), np.mean, n_resamples=resamples, confidence_level=level, rng=np.random.default_rng(0))
    lo, hi = res.confidence_interval
    if not (np.isfinite(lo) and np.isfinite(hi)):  # BCa degenerates on tiny samples
        res = st.bootstrap((x,), np.mean, n_resamples=resamples, confidence_level=level, method="percentile",
                           rng=np.random.default_rng(0))
        lo, hi = res.confidence_interval
    return float(lo), float(hi)


def welch(a, b, alternative: str = "two-sided") -> float:
    """Welch's t-test (unequal variances) of mean(a) against mean(b); NaN below 2 values a side."""
    a, b = _arr(a), _arr(b)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if _flat(a) and _flat(b):
        ma, mb = a.mean(), b.mean()
        if _same(ma, mb):
            return 1.0
        worse = {"less": ma < mb, "greater": ma > mb}.get(alternative, True)
        return 0.0 if worse else 1.0
    return float(st.ttest_ind(a, b, equal_var=False, alternative=alternative).pvalue)


def mann_whitney(a, b, alternative: str = "two-sided") -> float:
    """Mann-Whitney U: the rank test, for when the values are not normal; NaN if a side is empty."""
    a, b = _arr(a), _arr(b)
    if not len(a) or not len(b):
        return math.nan
    return float(st.mannwhitneyu(a, b, alternative=alternative).pvalue)


def pearson(a, b) -> tuple[float, float]:
    """Pearson's r of paired values with its two-sided p (NaNs without 3 pairs or with a constant side)."""
    a, b = _arr(a), _arr(b)
    if len(a) != len(b) or len(a) < 3 or _flat(a) or _flat(b):
        return NAN_PAIR
    res = st.pearsonr(a, b)
    return float(res.statistic), float(res.pvalue)


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Exact binomial interval of a share k/n (0/5 still allows up to 52%)."""
    if n == 0:
        return NAN_PAIR
    a = 1 - level
    lo = 0.0 if k == 0 else float(st.beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(st.beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def fisher_more(k_a: int, n_a: int, k_b: int, n_b: int) -> float:
    """One-sided Fisher's exact p that a's rate k_a/n_a is higher than b's k_b/n_b."""
    return float(st.fisher_exact([[k_a, n_a - k_a], [k_b, n_b - k_b]], alternative="greater").pvalue)


def fisher_two(k_a: int, n_a: int, k_b: int, n_b: int) -> float:
    """Two-sided Fisher's exact p that two rates k_a/n_a and k_b/n_b differ."""
    return float(st.fisher_exact([[k_a, n_a - k_a], [k_b, n_b - k_b]]).pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN and is not counted)."""
    idx = [i for i, p in enumerate(pvalues) if p is not None and math.isfinite(p)]
    order = sorted(idx, key=lambda i: pvalues[i])
    m, out, running = len(order), [math.nan] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


# ---------------------------------------------------------------- the regression gate's tests

def shifted_drop(base, cand, min_effect: float) -> float:
    """One-sided p of "the candidate is worse than the baseline by more than min_effect": Welch's t on a
    shifted null (H0: mean_b - mean_c <= min_effect), both sides oriented so that higher is better. Welch,
    not pooled: with unequal sides (10 committed runs against 5 of a night) the pooled test's false alarms
    at the null boundary were 10-11% where Welch keeps the 5% it promises, with the same power."""
    a, b = _arr(base), _arr(cand)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if _flat(a) and _flat(b):
        return 0.0 if a.mean() - b.mean() > min_effect and not _same(a.mean() - b.mean(), min_effect) else 1.0
    return float(st.ttest_ind(a - min_effect, b, equal_var=False, alternative="greater").pvalue)


def tost(a, b, margin: float) -> float:
    """Two one-sided Welch tests that |mean(a) - mean(b)| < margin (Schuirmann 1987): the larger of the two
    p-values; below 0.05 the two are shown equivalent within the margin. A large p of an ordinary test
    never shows that (absence of evidence); this does, or says it could not."""
    a, b = _arr(a), _arr(b)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if _flat(a) and _flat(b):
        return 0.0 if abs(a.mean() - b.mean()) < margin else 1.0
    lower = st.ttest_ind(a + margin, b, equal_var=False, alternative="greater").pvalue   # H0: diff <= -margin
    upper = st.ttest_ind(a - margin, b, equal_var=False, alternative="less").pvalue      # H0: diff >= margin
    return float(max(lower, upper))


def log_ratio_interval(base, cand, level: float = 0.99) -> tuple[float, float, float]:
    """Candidate/baseline ratio of times: the point estimate and a two-sided Welch interval on the log scale."""
    a, b = np.log(_arr(base)), np.log(_arr(cand))
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan, math.nan
    d = b.mean() - a.mean()
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return float(math.exp(d)), float(math.exp(d)), float(math.exp(d))
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(st.t.ppf(0.5 + level / 2, df)) * se
    return float(math.exp(d)), float(math.exp(d - half)), float(math.exp(d + half))
