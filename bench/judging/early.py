"""Early-curve evidence: the document's printed per-epoch log against the runs at the same epochs.

A full run may need a GPU, but the first epochs of the unchanged schedule (`--stop-after K`) run
anywhere; if the recipe starts the way the document's run started, that is evidence long before
the end is confirmed. Truncated runs feed this table, never a verdict. At each logged epoch the
document's value is compared with the runs' two-sided 95% predictive interval of one new run, on
the same scale and with the same noise floor as the verdicts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as st

from bench.contract.recipe import Claim, LogPoint
from bench.contract.registry import Recipe
from bench.judging import stats
from bench.judging.verdicts import scale_of


@dataclass(frozen=True)
class LogRow:
    point: LogPoint
    n: int
    mean: float
    std: float
    low: float
    high: float

    @property
    def agrees(self):
        """None when fewer than 2 runs reached this epoch."""
        if self.n < 2:
            return None
        return self.low <= self.point.value <= self.high


def value_at(record: dict, metric: str, epoch: int):
    curves = record["curves"]
    if metric not in curves or epoch not in curves["epoch"]:
        return None
    return curves[metric][curves["epoch"].index(epoch)]


def interval(values, scale: stats.Scale) -> tuple[float, float]:
    """Two-sided 95% predictive interval of one new run (floored sd, on the metric's scale)."""
    x = stats._arr(values)
    if len(x) < 2:
        return math.nan, math.nan
    y = scale.forward(x)
    s = max(float(y.std(ddof=1)), scale.floor(float(x.mean())))
    half = float(st.t.ppf(0.975, len(x) - 1)) * s * math.sqrt(1 + 1 / len(x))
    lo, hi = sorted(float(v) for v in scale.inverse([y.mean() - half, y.mean() + half]))
    return lo, hi


def log_rows(recipe: Recipe, records: list[dict]) -> list[LogRow]:
    """One row per printed point, over the reading's canonical runs (complete or truncated) that reached it."""
    rows = []
    for p in recipe.document_log:
        values = [v for r in records if (v := value_at(r, p.metric, p.epoch)) is not None]
        probe = Claim(p.metric, p.value, "", selection="none", measured_on=p.metric.split("_")[0])
        low, high = interval(values, scale_of(recipe, probe))
        rows.append(LogRow(p, len(values), stats.mean(values), stats.std(values), low, high))
    return rows
