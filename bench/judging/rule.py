"""The rule that turns runs into a verdict on one claim (README, "Reading REPORT.md", states it with its
references).

A document reports one run, so a claim is judged against where one new run would land. Each metric is
judged on a scale where a normal model holds and its bounds are respected (the logit of any "%" metric,
the log of a loss), oriented so that higher is better; results are shown back on the original scale.

Runs that failed: a run whose headline is at chance or not finite diverged; a run whose headline lies
more than OUTLIER_MADS robust standard deviations (1.4826 MAD) below the median of the others, on the
judging scale, failed too. Failure is a property of the run, decided on the headline, and holds for every
claim of that reading: a failed run fails "reaching", never enters the mean and spread, and two or more
failed runs make the reading **unstable**. So a worse run can never make a verdict kinder.

With m converged runs (mean y, sample sd s) a claim c is, within seed noise:
- **reproduced** when c <= y + t(0.95, m-1) * s * sqrt(1 + 1/m): the one-sided 95% upper predictive bound
  of one new run (Student t posterior predictive, Gelman et al., BDA 3rd ed., 3.2). No floor on s: the claim
  and every run are scored on the same test images, so test-set sampling cancels, and a binomial floor
  (the largest seed variance possible, not the smallest) made near claims impossible to reject;
- **not reproduced** when above it, with the smallest K whose best-of-K run would reach the claim with
  chance >= 5% (Dodge et al. 2019);
- **exceeded** when the claim lies below the lower bound by a practical margin;
- **seeding fault** when three or more runs of a continuous metric (a loss) are identical: independent
  seeds never agree to the last digit. An accuracy counts images, so its spread is only seen in steps of one
  image (0.02 points on 5,000): runs that land on one step (three seeds' best validation accuracy all at
  4,973 of 5,000) are a tie, not a fault, and s is taken at least as that step's rounding sd, step/sqrt(12)
  (Sheppard), which changes nothing where the runs spread over several images;
- **insufficient** below 3 runs (or seeds), **provisional** below 10 seeds.
A seed run on several machines gives runs that are not independent: their intraclass correlation rho
(one-way ANOVA over seeds) makes the m runs count as m / (1 + (k - 1) rho) in the bounds (Kish's design
effect, k the runs per seed), never more than the m runs nor fewer than the seeds.
Within implementation noise (bench.judging.noise): the predictive variance s^2 (1 + 1/m) + tau^2.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np
from scipy import stats as st

from bench.judging.stats import (
    ALPHA,
    LEVEL,
    NAN_PAIR,
    _arr,
    _same,
    bootstrap_interval,
    clopper_pearson,
    holm,
    mean,
    std,
)

BEST_OF = (1, 5, 10, 20)
MAX_K = 1000                     # beyond this a "best of K" is no longer a plausible protocol
CHANCE_ACCURACY = 10.0           # every dataset here has 10 classes
DIVERGED_ACCURACY = 2 * CHANCE_ACCURACY
CHANCE_LOSS = math.log(10)       # cross-entropy of a uniform guess over 10 classes
ACCURACY_MARGIN = 0.1            # points by which runs must beat a claim to call it "exceeded"
LOSS_MARGIN = 0.05               # ... relative, for losses
OUTLIER_MADS = 5.0               # a run this many robust sds below the median of the others failed
MAD_SD = 1.4826                  # MAD to sd for a normal sample


@dataclass(frozen=True)
class Scale:
    """How a metric's values are judged: "percent" (logit), "loss" (log) or "plain" (as is), oriented so
    that higher is better; n_eval is the number of images behind an accuracy (for clipping 0% and 100%
    and for the outlier rule's smallest spread: one image)."""
    kind: str
    higher_is_better: bool = True
    n_eval: Optional[int] = None

    @staticmethod
    def of(metric: str, unit: str, higher_is_better: Optional[bool], n_eval: Optional[int] = None) -> "Scale":
        if unit == "%":
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

    def resolution(self, mean_value: float) -> float:
        """The smallest difference that means anything on this scale: one evaluated image of an accuracy."""
        if self.kind == "percent" and self.n_eval:
            p = float(self._clip(mean_value / 100))
            return 1 / (self.n_eval * p * (1 - p))
        return 1e-9 * max(1.0, abs(float(self.forward([mean_value])[0])))

    def resolved_sd(self, s: float, mean_value: float) -> float:
        """The runs' sd, at least the rounding sd of one step of what the metric counts (one evaluated image of an
        accuracy, on this scale): a spread below one image cannot be seen, only a tie. Unchanged (0 stays 0) for a
        metric that counts nothing."""
        if self.kind == "percent" and self.n_eval and math.isfinite(s):
            return max(s, self.resolution(mean_value) / math.sqrt(12))
        return s

    def margin(self, value: float) -> float:
        return ACCURACY_MARGIN if self.kind == "percent" else LOSS_MARGIN * abs(value) if self.kind == "loss" else 0.0

    def better(self, a: float, b: float) -> bool:
        """a is at least as good as b on the original scale."""
        return a >= b if self.higher_is_better else a <= b


def points_on_scale(scale: Scale, at: float, points: float) -> float:
    """A difference of `points` on the original scale near `at`, on the judging scale (for an accuracy, the
    logit difference between at and at - points); a relative one for a loss, as is for a plain number."""
    if scale.kind == "percent" and math.isfinite(at):
        return abs(float(scale.forward([at])[0] - scale.forward([at - points if scale.higher_is_better
                                                                 else at + points])[0]))
    if scale.kind == "loss":
        return math.log1p(points)
    return points


def diverged(value, scale: Scale) -> bool:
    """A run that never learned: no finite value, an accuracy no better than twice chance, a loss at chance."""
    if value is None or not math.isfinite(value):
        return True
    if scale.kind == "percent" and scale.higher_is_better:
        return value <= DIVERGED_ACCURACY
    if scale.kind == "loss" and not scale.higher_is_better:
        return value >= CHANCE_LOSS
    return False


def failed_runs(values: Sequence, scale: Scale) -> list[bool]:
    """Per run: diverged, or an outlier on the worse side (more than OUTLIER_MADS robust sds below the median
    of the converged runs, with at least 3 of them; the robust sd is at least one image of an accuracy)."""
    raw = [math.nan if v is None else float(v) for v in values]
    bad = [diverged(v, scale) for v in raw]
    good = [v for v, b in zip(raw, bad) if not b]
    if len(good) < 3:
        return bad
    y = scale.forward(good)
    median = float(np.median(y))
    spread = max(MAD_SD * float(np.median(np.abs(y - median))), scale.resolution(float(np.median(good))))
    low = median - OUTLIER_MADS * spread
    return [b or float(scale.forward([v])[0]) < low for v, b in zip(raw, bad)]


def converged(values, scale: Scale) -> list:
    """The values of the runs that did not fail (their spread is what a mean ± std may show)."""
    return [v for v, bad in zip(values, failed_runs(values, scale)) if not bad]


# ---------------------------------------------------------------- one claim against runs

@dataclass(frozen=True)
class Judgement:
    """Everything the report says about one claim against one group of runs."""
    n: int                         # runs in the group
    n_diverged: int                # runs that failed: diverged or outliers (n_outliers of them)
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
    p_one: float                   # predictive chance that one new run reaches the claim, if it converges
    p_any: float                   # ... whether or not it converges (a failed run does not reach it)
    p_adjusted: float              # after Holm, for a secondary claim (= p_one for the headline)
    best_of: dict                  # k -> chance that the best of k runs reaches the claim
    plausible_k: Optional[int]     # smallest K with a >= 5% chance, when not reproduced
    reaching: int                  # runs (of all n, failed ones failing) at least as good as the claim
    reaching_ci: tuple             # Clopper-Pearson 95% interval of reaching / n
    beats_all: Optional[bool]      # n >= 19: the claim is better than every run
    # reproduced | not reproduced | exceeded | unstable | seeding fault | insufficient | no runs
    verdict: str
    provisional: bool
    n_outliers: int = 0
    y_mean: float = math.nan       # the converged runs on the judging scale: mean, sd, count
    y_sd: float = math.nan
    m: int = 0
    claim_y: float = math.nan      # the claim on the judging scale
    margin: float = 0.0            # the "exceeded" margin, on the original scale
    seeds: int = 0                 # distinct seeds among the converged runs
    m_eff: float = math.nan        # what the m runs count as in the bounds (m, unless seeds repeat)
    icc: float = math.nan          # intraclass correlation of runs of one seed (NaN if none repeats)

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


def seed_correlation(y, seeds) -> float:
    """The intraclass correlation of runs that share a seed (one-way ANOVA estimator, clipped to [0, 1]); NaN
    when no seed has two runs. Near 0: another machine's rounding made a new draw; near 1: the seed decided."""
    by: dict = {}
    for v, s in zip(y, seeds):
        by.setdefault(s, []).append(float(v))
    groups = [np.array(g) for g in by.values()]
    n, k = sum(len(g) for g in groups), len(groups)
    if k < 2 or n == k:
        return math.nan
    grand = float(np.mean(np.concatenate(groups)))
    msb = sum(len(g) * (g.mean() - grand) ** 2 for g in groups) / (k - 1)
    msw = sum(float(((g - g.mean()) ** 2).sum()) for g in groups) / (n - k)
    n0 = (n - sum(len(g) ** 2 for g in groups) / n) / (k - 1)
    denominator = msb + (n0 - 1) * msw
    return float(min(1.0, max(0.0, (msb - msw) / denominator))) if denominator > 0 else math.nan


def effective_runs(y, seeds) -> tuple[float, float]:
    """(what m runs count as, their seed correlation): m / (1 + (k - 1) rho) with k = sum(n_s^2) / m the
    runs per seed (Kish's design effect); the number of seeds where rho cannot be measured (m itself when every
    seed ran once, one run's worth for a single seed)."""
    m = len(y)
    rho = seed_correlation(y, seeds)
    if not math.isfinite(rho):
        return float(len(set(seeds))), rho
    counts = np.array(list(Counter(seeds).values()), dtype=float)
    k = float((counts ** 2).sum() / m)
    return max(float(len(counts)), m / (1 + (k - 1) * rho)), rho


def predictive(y_mean: float, y_sd: float, m: float, claim_y: float, tau: float = 0.0) -> tuple[float, float]:
    """(chance one new run reaches the claim, half-width of the one-sided 95% predictive interval), on the
    judging scale, with implementation noise tau added to the seed noise."""
    scale = math.sqrt(y_sd ** 2 * (1 + 1 / m) + tau ** 2)
    return float(st.t.sf((claim_y - y_mean) / scale, m - 1)), float(st.t.ppf(LEVEL, m - 1)) * scale


def decide(j: Judgement, scale: Scale, claim: float, tau: float = 0.0) -> tuple[str, float]:
    """(verdict, chance one new run reaches the claim) with implementation noise tau; the seed-noise verdict
    at tau = 0. Verdicts that are not about where a run lands (unstable, insufficient...) stay as they are."""
    if j.verdict not in ("reproduced", "not reproduced", "exceeded"):
        return j.verdict, math.nan
    p, half = predictive(j.y_mean, j.y_sd, j.m_eff if math.isfinite(j.m_eff) else j.m, j.claim_y, tau)
    if p < ALPHA:
        return "not reproduced", p
    worst = float(scale.inverse([j.y_mean - half])[0])
    gap = worst - claim if scale.higher_is_better else claim - worst
    return ("exceeded" if gap > j.margin else "reproduced"), p


def judge(values: Sequence, claim: float, scale: Scale, failed: Optional[Sequence[bool]] = None,
          seeds: Optional[Sequence[int]] = None) -> Judgement:
    """The verdict on one claim from every run's value; `failed` (from the reading's headline) marks the runs
    that failed as runs, whatever this metric says (else they are found from these values); `seeds` (one per
    value) lets runs of one seed on several machines count as what they are worth (effective_runs)."""
    raw = [math.nan if v is None else float(v) for v in values]
    seeds = list(range(len(raw))) if seeds is None else list(seeds)
    n = len(raw)
    if failed is not None:      # failure is the run's (decided on the headline); a value that is no number is none
        bad_mask = [bool(a) or not math.isfinite(v) for a, v in zip(failed, raw)]
    else:
        bad_mask = failed_runs(raw, scale)
    outliers = sum(b and not diverged(v, scale) for v, b in zip(raw, bad_mask))
    bad = sum(bad_mask)
    good = np.array([v for v, b in zip(raw, bad_mask) if not b], dtype=float)
    reaching = sum(1 for v, b in zip(raw, bad_mask) if not b and (scale.better(v, claim) or _same(v, claim)))
    good_seeds = [sd for sd, b in zip(seeds, bad_mask) if not b]
    m = len(good)
    y = scale.forward(good) if m else good
    m_eff, icc = effective_runs(y, good_seeds) if m else (0.0, math.nan)
    ybar = float(y.mean()) if m else math.nan
    s = scale.resolved_sd(float(y.std(ddof=1)), float(np.mean(good))) if m >= 2 else math.nan
    c_y = float(scale.forward([claim])[0])
    if m >= 2 and s > 0 and m_eff > 1:
        p_one, half = predictive(ybar, s, m_eff, c_y)
        upper_y, lower_y = ybar + half, ybar - half
        ci_half = float(st.t.ppf(0.5 + LEVEL / 2, m_eff - 1)) * s / math.sqrt(m_eff)
        ci = tuple(sorted(float(v) for v in scale.inverse([ybar - ci_half, ybar + ci_half])))
    else:
        upper_y = lower_y = p_one = math.nan
        ci = NAN_PAIR
    best_plausible, worst_plausible = (float(v) for v in scale.inverse([upper_y, lower_y]))

    if n == 0:
        verdict = "no runs"
    elif bad > 1:
        verdict = "unstable"
    elif n < 3 or m < 2 or len(set(seeds)) < 3:      # three runs of one seed on three machines are no 3 seeds
        verdict = "insufficient"
    elif s == 0:
        verdict = "seeding fault" if m >= 3 else "insufficient"
    elif p_one >= ALPHA:
        gap = worst_plausible - claim if scale.higher_is_better else claim - worst_plausible
        verdict = "exceeded" if gap > scale.margin(claim) else "reproduced"
    else:
        verdict = "not reproduced"
    p_any = p_one * m / n if n and math.isfinite(p_one) else math.nan
    return Judgement(
        n=n, n_diverged=bad, values=tuple(float(v) for v in good), mean=mean(good), std=std(good),
        min=float(good.min()) if m else math.nan, median=float(np.median(good)) if m else math.nan,
        max=float(good.max()) if m else math.nan, ci=ci, bootstrap=bootstrap_interval(good),
        best_plausible=best_plausible, worst_plausible=worst_plausible, p_one=p_one, p_any=p_any,
        p_adjusted=p_one, best_of=best_of_k(p_any) if math.isfinite(p_any) else {},
        plausible_k=smallest_k(p_any) if verdict == "not reproduced" else None,
        reaching=reaching, reaching_ci=clopper_pearson(reaching, n),
        beats_all=(bool(m == n and all(scale.better(claim, v) and not _same(claim, v) for v in good))
                   if n >= 19 and len(set(seeds)) == n else None),     # exchangeable runs only: no seed twice
        verdict=verdict, provisional=len(set(seeds)) < 10, n_outliers=outliers, y_mean=ybar, y_sd=s, m=m,
        claim_y=c_y, margin=scale.margin(claim), seeds=len(set(good_seeds)), m_eff=m_eff, icc=icc)


def with_holm(judgements: list[Judgement]) -> list[Judgement]:
    """Secondary claims of one reading, Holm-corrected: a verdict resting on p_one moves with its adjusted p."""
    adjusted = holm([j.p_one for j in judgements])
    out = []
    for j, p in zip(judgements, adjusted):
        verdict = j.verdict
        if verdict == "not reproduced" and math.isfinite(p) and p >= ALPHA:
            verdict = "reproduced"
        out.append(replace(j, p_adjusted=p, verdict=verdict,
                           plausible_k=j.plausible_k if verdict == "not reproduced" else None))
    return out


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
