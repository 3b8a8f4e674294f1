"""Early-curve evidence: the document's printed per-epoch log against the runs at the same epochs.

A full run may need a GPU, but the first epochs of the unchanged schedule (`--stop-after K`) run
anywhere; if the recipe starts the way the document's run started, that is evidence long before
the end is confirmed. Truncated runs feed this table, never a verdict. At each logged epoch the
document's value is compared with the runs' two-sided 95% predictive interval of one new run, on the
judging scale (no floor: the runs' own spread, at least one evaluated image). Those per-epoch checks
are correlated (one run, epoch after epoch) and many: by chance alone about 5% of them fall outside.
So the log is judged by one joint test: the largest standardized distance of the document's value from
the runs over all logged epochs, against its distribution if the document's run were one more run
(simulated with the runs' own correlation across epochs, and the t spread of a few runs).
One run counts once: two records of one seed whose values agree at every logged epoch they share (a
truncated run on one machine and the same seed completed on another of its kind) count as one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import stats as st

from bench.contract.recipe import Claim, LogPoint
from bench.contract.registry import Recipe
from bench.judging import stats
from bench.judging.rule import Scale
from bench.judging.verdicts import scale_of

SIMULATIONS = 20_000
SHRINK = 0.2                # the epochs' correlation matrix pulled this far towards the identity (few runs)


@dataclass(frozen=True)
class LogRow:
    point: LogPoint
    n: int
    mean: float
    std: float
    low: float
    high: float
    distance: float = math.nan      # (document - runs' mean) / predictive sd, on the judging scale

    @property
    def agrees(self):
        """None when fewer than 2 runs reached this epoch."""
        if self.n < 2:
            return None
        return self.low <= self.point.value <= self.high


@dataclass(frozen=True)
class JointTest:
    judged: int                 # logged epochs with 2 or more runs
    inside: int                 # ... whose document value lies inside the runs' 95% predictive interval
    expected_inside: float      # what chance alone gives: 95% of them
    largest: float              # the largest |distance|
    at: LogPoint
    p: float                    # chance of a largest distance at least this large, were the document one more run


def value_at(record: dict, metric: str, epoch: int):
    curves = record["curves"]
    if metric not in curves or epoch not in curves["epoch"]:
        return None
    return curves[metric][curves["epoch"].index(epoch)]


def distinct_runs(records: list[dict], points: list[LogPoint]) -> list[dict]:
    """The records, one per run: of two records of one seed that agree at every logged epoch both reached,
    the one that reached further is kept."""
    def values(r):
        return {(p.epoch, p.metric): v for p in points if (v := value_at(r, p.metric, p.epoch)) is not None}
    kept: list[tuple[dict, dict]] = []
    for r in sorted(records, key=lambda r: -len(values(r))):
        mine = values(r)
        same = any(o["seed"] == r["seed"] and all(theirs.get(k) == v for k, v in mine.items() if k in theirs)
                   for o, theirs in kept)
        if not same:
            kept.append((r, mine))
    order = {id(r): i for i, r in enumerate(records)}
    return sorted((r for r, _ in kept), key=lambda r: order[id(r)])


def _scale(recipe: Recipe, p: LogPoint) -> Scale:
    return scale_of(recipe, Claim(p.metric, p.value, "", selection="none", measured_on=p.metric.split("_")[0]))


def _row(p: LogPoint, values: list[float], scale: Scale) -> LogRow:
    x = stats._arr(values)
    if len(x) < 2:
        return LogRow(p, len(values), stats.mean(values), stats.std(values), math.nan, math.nan)
    y = scale.forward(x)
    s = max(float(y.std(ddof=1)), scale.resolution(float(x.mean())))
    sd = s * math.sqrt(1 + 1 / len(x))
    half = float(st.t.ppf(0.975, len(x) - 1)) * sd
    lo, hi = sorted(float(v) for v in scale.inverse([y.mean() - half, y.mean() + half]))
    distance = (float(scale.forward([p.value])[0]) - float(y.mean())) / sd
    return LogRow(p, len(values), stats.mean(values), stats.std(values), lo, hi, distance)


def log_rows(recipe: Recipe, records: list[dict]) -> list[LogRow]:
    """One row per printed point, over the reading's canonical runs (complete or truncated) that reached it."""
    points = recipe.document_log
    runs = distinct_runs(records, points)
    return [_row(p, [v for r in runs if (v := value_at(r, p.metric, p.epoch)) is not None], _scale(recipe, p))
            for p in points]


def joint_test(recipe: Recipe, records: list[dict], rows: Optional[list[LogRow]] = None) -> Optional[JointTest]:
    """The whole printed log against the runs at once (see the module docstring); None below 2 judged epochs."""
    rows = rows if rows is not None else log_rows(recipe, records)
    judged = [r for r in rows if r.n >= 2 and math.isfinite(r.distance)]
    if len(judged) < 2:
        return None
    runs = distinct_runs(records, [r.point for r in judged])
    grid = np.full((len(runs), len(judged)), np.nan)
    for i, run in enumerate(runs):
        for j, row in enumerate(judged):
            v = value_at(run, row.point.metric, row.point.epoch)
            if v is not None:
                grid[i, j] = float(_scale(recipe, row.point).forward([v])[0])
    resid = (grid - np.nanmean(grid, 0)) / np.maximum(np.nanstd(grid, 0, ddof=1), 1e-12)
    e = len(judged)
    corr = np.eye(e)
    for a in range(e):
        for b in range(a + 1, e):
            both = ~np.isnan(resid[:, a]) & ~np.isnan(resid[:, b])
            if both.sum() >= 3:
                corr[a, b] = corr[b, a] = float(np.clip(np.mean(resid[both, a] * resid[both, b]), -1, 1))
    corr = (1 - SHRINK) * corr + SHRINK * np.eye(e)
    w, v = np.linalg.eigh(corr)
    root = v * np.sqrt(np.clip(w, 1e-9, None))
    rng = np.random.default_rng(0)
    df = min(r.n for r in judged) - 1
    z = rng.standard_normal((SIMULATIONS, e)) @ root.T
    t = z / np.sqrt(rng.chisquare(df, (SIMULATIONS, 1)) / df)
    largest_sim = np.abs(t).max(1)
    worst = max(judged, key=lambda r: abs(r.distance))
    observed = abs(worst.distance)
    return JointTest(judged=e, inside=sum(bool(r.agrees) for r in judged), expected_inside=0.95 * e,
                     largest=observed, at=worst.point, p=float((largest_sim >= observed).mean()))
