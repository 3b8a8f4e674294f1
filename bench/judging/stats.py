"""Numbers over runs, and the rule that turns them into a verdict on a claim.

A document reports one run, so a claim is judged against where one new run would land. Each
metric is judged on a scale where a normal model holds and its bounds are respected (the logit
of an accuracy, the log of a loss), oriented so that higher is better; results are shown back
on the original scale. With n runs (mean y, sd s) a claim c is

- **reproduced** when c <= y + t(0.95, n-1) * s_eff * sqrt(1 + 1/n): the one-sided 95% upper
  predictive bound of one new run (Student t posterior predictive, Gelman et al. BDA 3.2),
  with s_eff = max(s, s_floor) so that identical runs or a lucky few cannot make the bound a
  point (the floor of a test accuracy is its binomial sampling sd, sqrt(p(1-p)/N));
- **not reproduced** when above it; then the smallest K whose best-of-K run would reach the
  claim with chance >= 5% says whether it is "plausible only as the best of K runs"
  (Dodge et al. 2019, expected validation performance);
- **exceeded** when the claim lies below the lower one-sided bound by a declared margin;
- **unstable** when more than one run diverged (a NaN, or an accuracy no better than twice
  chance), as MLPerf counts a run that does not converge; every run counts in "reaching";
- **insufficient** below 3 runs, and marked **provisional** below 10.

The headline is the primary endpoint at alpha 0.05; a recipe's secondary claims are
Holm-corrected (Holm 1979). Everything random (the bootstrap) is seeded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import stats as st

LEVEL = 0.95
ALPHA = 0.05
BEST_OF = (1, 5, 10, 20)
MAX_K = 1000                     # beyond this a "best of K" is no longer a plausible protocol
CHANCE_ACCURACY = 10.0           # every dataset here has 10 classes
DIVERGED_ACCURACY = 2 * CHANCE_ACCURACY
ACCURACY_MARGIN = 0.1            # points by which runs must beat a claim to call it "exceeded"
LOSS_MARGIN = 0.05               # ... relative, for losses
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


# ---------------------------------------------------------------- the scale a metric is judged on

@dataclass(frozen=True)
class Scale:
    """How a metric's values are judged: "percent" (logit), "loss" (log) or "plain" (as is), oriented so
    that higher is better; n_eval is the number of images behind an accuracy (its binomial floor)."""
    kind: str
    higher_is_better: bool = True
    n_eval: Optional[int] = None

    @staticmethod
    def of(metric: str, unit: str, higher_is_better: Optional[bool], n_eval: Optional[int] = None) -> "Scale":
        if unit == "%" and "acc" in metric:
            return Scale("percent", higher_is_better is not False, n_eval)
        if "loss" in metric:
            return Scale("loss", higher_is_better is not False)
        return Scale("plain", higher_is_better is not False)

    def _clip(self, p):
        eps = 0.5 / self.n_eval if self.n_eval else 1e-6
        return np.clip(p, eps, 1 - eps)

    def forward(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if self.kind == "percent":
            p = self._clip(x / 100)
            y = np.log(p) - np.log1p(-p)
        elif self.kind == "loss":
            y = -np.log(np.maximum(x, 1e-12))
            return y if not self.higher_is_better else -y
        else:
            y = x
        return y if self.higher_is_better else -y

    def inverse(self, y) -> np.ndarray:
        y = np.asarray(y, dtype=float)
        if self.kind == "loss":
            return np.exp(-y) if not self.higher_is_better else np.exp(y)
        y = y if self.higher_is_better else -y
        if self.kind == "percent":
            return 100 / (1 + np.exp(-y))
        return y

    def floor(self, mean_value: float) -> float:
        """The smallest sd the runs are judged with, on this scale."""
        if self.kind == "percent":
            p = float(self._clip(mean_value / 100))
            n = self.n_eval or 10_000
            return 1 / math.sqrt(n * p * (1 - p))       # binomial sd of logit(p), by the delta method
        return 0.01                                      # 1% relative for a loss (log scale), or as is

    def margin(self, value: float) -> float:
        return ACCURACY_MARGIN if self.kind == "percent" else LOSS_MARGIN * abs(value) if self.kind == "loss" else 0.0

    def better(self, a: float, b: float) -> bool:
        """a is at least as good as b on the original scale."""
        return a >= b if self.higher_is_better else a <= b


def diverged(value, scale: Scale) -> bool:
    """A run that failed: no finite value, or an accuracy no better than twice chance."""
    if value is None or not math.isfinite(value):
        return True
    return scale.kind == "percent" and scale.higher_is_better and value <= DIVERGED_ACCURACY


def converged(values, scale: Scale) -> list:
    """The values of the runs that did not diverge (their spread is what a mean ± std may show)."""
    return [v for v in values if not diverged(v, scale)]


# ---------------------------------------------------------------- one claim against runs

@dataclass(frozen=True)
class Judgement:
    """Everything the report says about one claim against one group of runs."""
    n: int                         # runs in the group
    n_diverged: int
    values: tuple                  # converged values, original scale
    mean: float
    std: float
    min: float
    median: float
    max: float
    ci: tuple                      # 95% CI of the mean (back on the original scale)
    bootstrap: tuple
    best_plausible: float          # one-sided 95% predictive bound of one new run on the better side (original scale)
    worst_plausible: float         # ... on the worse side
    p_one: float                   # predictive chance that one new run reaches the claim
    p_adjusted: float              # after Holm, for a secondary claim (= p_one for the headline)
    best_of: dict                  # k -> chance that the best of k runs reaches the claim
    plausible_k: Optional[int]     # smallest K with a >= 5% chance, when not reproduced
    reaching: int                  # runs (of all n, diverged ones failing) at least as good as the claim
    reaching_ci: tuple             # Clopper-Pearson 95% interval of reaching / n
    beats_all: Optional[bool]      # n >= 19: the claim is better than every run
    verdict: str                   # reproduced | not reproduced | exceeded | unstable | insufficient | no runs
    provisional: bool

    @property
    def label(self) -> str:
        return f"{self.verdict} (provisional)" if self.provisional and self.verdict in (
            "reproduced", "not reproduced", "exceeded") else self.verdict


def best_of_k(p: float, ks=BEST_OF) -> dict[int, float]:
    """1 - (1 - p)^k without underflow (k runs drawn from the predictive, independently)."""
    return {k: float(-math.expm1(k * math.log1p(-min(p, 1 - 1e-16)))) for k in ks}


def smallest_k(p: float, target: float = ALPHA) -> Optional[int]:
    """The smallest K with P(best of K reaches the claim) >= target; None when beyond MAX_K."""
    if p >= target:
        return 1
    if p <= 0:
        return None
    k = math.ceil(math.log1p(-target) / math.log1p(-p))
    return k if k <= MAX_K else None


def judge(values: Sequence, claim: float, scale: Scale) -> Judgement:
    """The verdict on one claim (see the module docstring) from every run's value."""
    raw = [math.nan if v is None else float(v) for v in values]
    n = len(raw)
    bad = sum(diverged(v, scale) for v in raw)
    good = np.array([v for v in raw if not diverged(v, scale)], dtype=float)
    reaching = sum(1 for v in raw if not diverged(v, scale) and (scale.better(v, claim) or _same(v, claim)))
    some = len(good) > 0
    y = scale.forward(good) if some else good
    m = len(good)
    ybar = float(y.mean()) if some else math.nan
    s = float(y.std(ddof=1)) if m >= 2 else math.nan
    s_eff = max(s, scale.floor(float(good.mean()))) if m >= 2 else math.nan
    if m >= 2:
        t = float(st.t.ppf(LEVEL, m - 1))
        half = t * s_eff * math.sqrt(1 + 1 / m)
        upper_y, lower_y = ybar + half, ybar - half
        c_y = float(scale.forward([claim])[0])
        p_one = float(st.t.sf((c_y - ybar) / (s_eff * math.sqrt(1 + 1 / m)), m - 1))
        ci_half = float(st.t.ppf(0.5 + LEVEL / 2, m - 1)) * s / math.sqrt(m)
        ci = tuple(sorted(float(v) for v in scale.inverse([ybar - ci_half, ybar + ci_half])))
    else:
        upper_y = lower_y = p_one = math.nan
        ci = NAN_PAIR
    best_plausible, worst_plausible = (float(v) for v in scale.inverse([upper_y, lower_y]))

    if n == 0:
        verdict = "no runs"
    elif n < 3:
        verdict = "insufficient"
    elif bad > 1:
        verdict = "unstable"
    elif m < 2:
        verdict = "insufficient"
    elif p_one >= ALPHA:
        gap = worst_plausible - claim if scale.higher_is_better else claim - worst_plausible
        verdict = "exceeded" if gap > scale.margin(claim) else "reproduced"
    else:
        verdict = "not reproduced"
    return Judgement(
        n=n, n_diverged=bad, values=tuple(float(v) for v in good), mean=mean(good), std=std(good),
        min=float(good.min()) if some else math.nan, median=float(np.median(good)) if some else math.nan,
        max=float(good.max()) if some else math.nan, ci=ci, bootstrap=bootstrap_interval(good),
        best_plausible=best_plausible, worst_plausible=worst_plausible, p_one=p_one, p_adjusted=p_one,
        best_of=best_of_k(p_one) if math.isfinite(p_one) else {},
        plausible_k=smallest_k(p_one) if verdict == "not reproduced" else None,
        reaching=reaching, reaching_ci=clopper_pearson(reaching, n),
        beats_all=(bool(m == n and all(scale.better(claim, v) and not _same(claim, v) for v in good))
                   if n >= 19 else None),
        verdict=verdict, provisional=n < 10)


def with_holm(judgements: list[Judgement]) -> list[Judgement]:
    """Secondary claims of one reading, Holm-corrected: a verdict resting on p_one moves with its adjusted p."""
    adjusted = holm([j.p_one for j in judgements])
    out = []
    for j, p in zip(judgements, adjusted):
        verdict = j.verdict
        if verdict == "not reproduced" and math.isfinite(p) and p >= ALPHA:
            verdict = "reproduced"
        out.append(_replace(j, p_adjusted=p, verdict=verdict,
                            plausible_k=j.plausible_k if verdict == "not reproduced" else None))
    return out


def _replace(j: Judgement, **kw) -> Judgement:
    from dataclasses import replace
    return replace(j, **kw)


# ---------------------------------------------------------------- claims with no better side

@dataclass(frozen=True)
class Description:
    """A claim without a better side (an epoch number, a count): its distribution, never a verdict."""
    n: int
    values: tuple
    median: float
    min: float
    max: float
    equal: int                     # runs whose value equals the claim


def describe(values: Sequence, claim: float) -> Description:
    x = _arr(values)
    return Description(n=len(x), values=tuple(float(v) for v in x),
                       median=float(np.median(x)) if len(x) else math.nan,
                       min=float(x.min()) if len(x) else math.nan, max=float(x.max()) if len(x) else math.nan,
                       equal=int(sum(_same(float(v), claim) for v in x)))


# ---------------------------------------------------------------- the regression gate's tests

def shifted_drop(base, cand, min_effect: float) -> float:
    """One-sided p of "the candidate is worse than the baseline by more than min_effect" (Student's
    t with pooled variance, a shifted null: H0 mean_b - mean_c <= min_effect). Both sides oriented so
    that higher is better. Pooled: the same recipe on the same machine has one seed spread, and the
    pooled test keeps the power target (see tests/test_gate_simulation.py)."""
    a, b = _arr(base), _arr(cand)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if _flat(a) and _flat(b):
        return 0.0 if a.mean() - b.mean() > min_effect and not _same(a.mean() - b.mean(), min_effect) else 1.0
    return float(st.ttest_ind(a - min_effect, b, equal_var=True, alternative="greater").pvalue)


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
