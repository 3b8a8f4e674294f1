"""Implementation noise: how far two implementations of the same science land apart, beyond seed noise.

A reading's runs fall into cells that should compute the same science but not the same bits: the fast and
the faithful pipeline, two kinds of CPU (or GPU), CPU against CUDA, the eager and the graph step, fp32 and
tf32, two numerics revisions of one code. Each cell gives a mean of its converged runs on the judging
scale (the logit of the headline accuracy) and the variance of that mean. If cells differed only by seed
noise, their means would scatter by those variances alone; the excess is the between-implementation
variance tau^2, estimated by the Paule-Mandel method (the tau^2 at which the generalized Q equals its degrees
of freedom; Paule & Mandel 1982, recommended by Veroniki et al. 2016) pooled across readings (each reading its
own mean, one tau for all: the same harness differences act on every recipe), with a Q-profile 95% interval
(Viechtbauer 2007). Cells that share seeds are not independent: the same seed on two machines lands close to
where it landed before, so their means move together; the covariance of their means (from their runs paired
by seed) enters Q, which otherwise would come out too small and tau with it. A claim is then judged again with the
predictive variance s^2 (1 + 1/n) + tau^2, and its tipping point tau* is the implementation noise at which
its verdict would flip.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import optimize
from scipy import stats as st

from bench.judging.rule import Judgement, Scale, decide, failed_runs
from bench.judging.stats import pearson
from bench.records.groups import machine

MAX_TAU = 5.0               # on the logit scale: beyond this (a factor 150 in the odds) nothing is "the same science"
MAX_R = 0.95                # two cells' runs of one seed never count as more alike than this (S stays invertible)


@dataclass(frozen=True)
class Cell:
    reading: str
    label: str                  # what makes it a cell: pipeline / device / step / precision / hardware / revision
    n: int                      # converged runs
    mean: float                 # of the converged runs, on the judging scale
    var: float                  # of that mean: s^2 / n
    by_seed: tuple = ()         # (seed, value on the judging scale) of its converged runs: cells that share seeds


@dataclass(frozen=True)
class Tau:
    tau: float                  # on the judging scale (logit of an accuracy)
    low: float                  # 95% interval
    high: float
    cells: tuple                # the Cells it stands on
    readings: int               # readings with two or more cells
    q: float                    # Cochran's Q, pooled over readings
    df: int

    @property
    def k(self) -> int:
        return len(self.cells)


def cell_key(record: dict) -> str:
    """What distinguishes one implementation of a reading from another (never the seed or the host alone:
    two hosts of one CPU kind give the same bits)."""
    parts = [record["pipeline"], str(record["device"]).split(":")[0], record.get("step") or "eager",
             record.get("precision") or "fp32", machine(record).rsplit(" / ", 1)[0]]
    return " / ".join(parts)


def cells_of(reading: str, records: list[dict], metric: str, scale: Scale, revision_of=lambda r: 0) -> list[Cell]:
    """A reading's cells with at least 2 converged runs; `revision_of(record)` names its numerics revision."""
    by: dict[str, list[tuple]] = {}
    for r in records:
        key = cell_key(r) + (f" / revision {revision_of(r)}" if revision_of(r) else "")
        by.setdefault(key, []).append((r["seed"], r["metrics"].get(metric)))
    out = []
    for key, runs in sorted(by.items()):
        values = [v for _, v in runs]
        good = [(seed, v) for (seed, v), bad in zip(runs, failed_runs(values, scale)) if not bad]
        if len(good) >= 2:
            y = scale.forward([v for _, v in good])
            var = float(y.var(ddof=1)) / len(y)
            if var > 0:
                out.append(Cell(reading, key, len(y), float(y.mean()), var,
                                tuple((seed, float(v)) for (seed, _), v in zip(good, y))))
    return out


def paired_by_seed(a: Cell, b: Cell) -> tuple[float, int]:
    """(Pearson's r of two cells' runs paired by seed, how many seeds they share); NaN below 3 shared seeds."""
    x, y = dict(a.by_seed), dict(b.by_seed)
    shared = sorted(set(x) & set(y))
    return pearson([x[s] for s in shared], [y[s] for s in shared])[0], len(shared)


def shared_seed_correlations(cells: list[Cell]) -> list[float]:
    """r between every two cells of one reading that share seeds: cells whose runs follow each other seed by
    seed have means that move together (covariance puts that into Q)."""
    pairs = [paired_by_seed(a, b) for i, a in enumerate(cells) for b in cells[i + 1:] if a.reading == b.reading]
    return [r for r, _ in pairs if math.isfinite(r)]


def covariance(a: Cell, b: Cell) -> float:
    """Cov of two cells' means through the seeds they share: n_shared r s_a s_b / (n_a n_b), with r (clipped to
    [0, MAX_R]) the Pearson r of their runs paired by seed; 0 below 3 shared seeds or without seeds."""
    r, shared = paired_by_seed(a, b)
    if not math.isfinite(r):
        return 0.0
    sd_a, sd_b = math.sqrt(a.var * a.n), math.sqrt(b.var * b.n)        # one run's sd in each cell
    return shared * min(max(r, 0.0), MAX_R) * sd_a * sd_b / (a.n * b.n)


def within(cells: list[Cell]) -> np.ndarray:
    """The covariance matrix of one reading's cell means from seed noise alone (shared seeds off the diagonal)."""
    return np.array([[a.var if i == j else covariance(a, b) for j, b in enumerate(cells)]
                     for i, a in enumerate(cells)])


def _q(groups: list[list[Cell]], tau2: float, covs: Optional[list[np.ndarray]] = None) -> float:
    """Generalized Q at tau^2: each reading's cells about their own GLS mean, (y - mu)' (S + tau^2 I)^-1 (y - mu);
    with S diagonal (no shared seeds) Cochran's weighted sum of squares."""
    total = 0.0
    for i, cells in enumerate(groups):
        y = np.array([c.mean for c in cells])
        s = covs[i] if covs is not None else np.diag([c.var for c in cells])
        w = np.linalg.inv(s + tau2 * np.eye(len(cells)))
        one = np.ones(len(cells))
        mu = float(one @ w @ y / (one @ w @ one))
        total += float((y - mu) @ w @ (y - mu))
    return total


def estimate_tau(cells: list[Cell]) -> Optional[Tau]:
    """Paule-Mandel tau over readings with two or more cells (the tau^2 at which the generalized Q, shared seeds
    in its covariance, equals its degrees of freedom), with its Q-profile interval; None without any."""
    by: dict[str, list[Cell]] = {}
    for c in cells:
        by.setdefault(c.reading, []).append(c)
    groups = [g for g in by.values() if len(g) >= 2]
    if not groups:
        return None
    covs = [within(g) for g in groups]
    df = sum(len(g) - 1 for g in groups)
    q = _q(groups, 0.0, covs)

    def solve(target: float) -> float:
        """The tau^2 at which the generalized Q equals target (Q falls as tau^2 grows); 0 if Q(0) is below it."""
        if q <= target:
            return 0.0
        if _q(groups, MAX_TAU ** 2, covs) >= target:
            return MAX_TAU ** 2
        return float(optimize.brentq(lambda t2: _q(groups, t2, covs) - target, 0.0, MAX_TAU ** 2, xtol=1e-12))

    tau2, low2, high2 = solve(df), solve(float(st.chi2.ppf(0.975, df))), solve(float(st.chi2.ppf(0.025, df)))
    return Tau(math.sqrt(tau2), math.sqrt(low2), math.sqrt(high2), tuple(c for g in groups for c in g), len(groups),
               q, df)


def tipping_point(j: Judgement, scale: Scale, claim: float) -> Optional[float]:
    """The smallest implementation noise tau at which the verdict differs from the seed-noise one (more noise
    widens the predictive interval: "not reproduced" and "exceeded" can turn "reproduced", never the other way);
    None when no tau up to MAX_TAU flips it."""
    base, _ = decide(j, scale, claim, 0.0)
    if base not in ("not reproduced", "exceeded") or decide(j, scale, claim, MAX_TAU)[0] == base:
        return None
    return float(optimize.brentq(lambda t: (decide(j, scale, claim, t)[0] == base) - 0.5, 0.0, MAX_TAU, xtol=1e-6))
