"""Implementation noise: how far two implementations of the same science land apart, beyond seed noise.

A reading's runs fall into cells that should compute the same science but not the same bits: the fast and
the faithful pipeline, two kinds of CPU (or GPU), CPU against CUDA, the eager and the graph step, fp32 and
tf32, two numerics revisions of one code. Each cell gives a mean of its converged runs on the judging
scale (the logit of the headline accuracy) and the variance of that mean. If cells differed only by seed
noise, their means would scatter by those variances alone; the excess is the between-implementation
variance tau^2, estimated by the DerSimonian-Laird method of moments (DerSimonian & Laird 1986) pooled
across readings (each reading its own mean, one tau for all: the same harness differences act on every
recipe), with a Q-profile 95% interval (Viechtbauer 2007). A claim is then judged again with the
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

from bench.judging.rule import Judgement, Scale, converged, decide, failed_runs
from bench.judging.stats import pearson
from bench.records.groups import machine

MAX_TAU = 5.0               # on the logit scale: beyond this (a factor 150 in the odds) nothing is "the same science"


@dataclass(frozen=True)
class Cell:
    reading: str
    label: str                  # what makes it a cell: pipeline / device / step / precision / hardware / revision
    n: int                      # converged runs
    mean: float                 # of the converged runs, on the judging scale
    var: float                  # of that mean: s^2 / n


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


def shared_seed_correlations(records: list[dict], metric: str, scale: Scale, revision_of=lambda r: 0) -> list[float]:
    """Pearson's r, paired by seed, between every two cells of one reading that share 3 or more seeds (converged
    runs only). DerSimonian-Laird takes cells as independent; cells whose runs follow each other seed by seed
    have means that move together, so their spread, and tau with it, comes out too small."""
    bad = failed_runs([r["metrics"].get(metric) for r in records], scale)
    by: dict[str, dict[int, float]] = {}
    for r, failed in zip(records, bad):
        if not failed:
            key = cell_key(r) + (f" / revision {revision_of(r)}" if revision_of(r) else "")
            by.setdefault(key, {})[r["seed"]] = float(r["metrics"][metric])
    out = []
    keys = sorted(by)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            shared = sorted(set(by[a]) & set(by[b]))
            r_ab, _ = pearson([by[a][x] for x in shared], [by[b][x] for x in shared])
            if math.isfinite(r_ab):
                out.append(r_ab)
    return out


def cells_of(reading: str, records: list[dict], metric: str, scale: Scale, revision_of=lambda r: 0) -> list[Cell]:
    """A reading's cells with at least 2 converged runs; `revision_of(record)` names its numerics revision."""
    by: dict[str, list[float]] = {}
    for r in records:
        key = cell_key(r) + (f" / revision {revision_of(r)}" if revision_of(r) else "")
        by.setdefault(key, []).append(r["metrics"].get(metric))
    out = []
    for key, values in sorted(by.items()):
        good = converged(values, scale)
        if len(good) >= 2:
            y = scale.forward(good)
            var = float(y.var(ddof=1)) / len(y)
            if var > 0:
                out.append(Cell(reading, key, len(y), float(y.mean()), var))
    return out


def _q(groups: list[list[Cell]], tau2: float) -> float:
    """Generalized Q at tau^2: each reading's cells about their own weighted mean."""
    total = 0.0
    for cells in groups:
        w = np.array([1 / (c.var + tau2) for c in cells])
        y = np.array([c.mean for c in cells])
        total += float((w * (y - (w * y).sum() / w.sum()) ** 2).sum())
    return total


def estimate_tau(cells: list[Cell]) -> Optional[Tau]:
    """DerSimonian-Laird tau over readings with two or more cells, with its Q-profile interval; None without any."""
    by: dict[str, list[Cell]] = {}
    for c in cells:
        by.setdefault(c.reading, []).append(c)
    groups = [g for g in by.values() if len(g) >= 2]
    if not groups:
        return None
    df = sum(len(g) - 1 for g in groups)
    q = _q(groups, 0.0)
    c = sum(sum(1 / x.var for x in g) - sum(1 / x.var ** 2 for x in g) / sum(1 / x.var for x in g) for g in groups)
    tau2 = max(0.0, (q - df) / c)

    def solve(target: float) -> float:
        """The tau^2 at which the generalized Q equals target (Q falls as tau^2 grows); 0 if Q(0) is below it."""
        if _q(groups, 0.0) <= target:
            return 0.0
        if _q(groups, MAX_TAU ** 2) >= target:
            return MAX_TAU ** 2
        return float(optimize.brentq(lambda t2: _q(groups, t2) - target, 0.0, MAX_TAU ** 2, xtol=1e-12))

    low2, high2 = solve(float(st.chi2.ppf(0.975, df))), solve(float(st.chi2.ppf(0.025, df)))
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
