"""REPORT.md's implementation-noise section: tau with its interval and the cells it stands on, and every
reading's headline verdict within seed noise beside the one within implementation noise, with its
tipping point."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from bench.contract.registry import Recipe
from bench.judging import noise
from bench.judging.noise import Tau
from bench.judging.rule import decide
from bench.judging.verdicts import headline_result, scale_of
from bench.records.groups import ReadingRuns
from bench.report.fmt import chance, table


def revision_of(recipe: Recipe):
    """A record's numerics revision when it ran this reading's code and hyperparameters (0 for today's)."""
    older = {recipe.fingerprint_for(k): k for k in range(recipe.revision)}
    return lambda record: older.get(record["fingerprint"], 0)


def cells(readings: list[Recipe], runs: dict[str, ReadingRuns]) -> list[noise.Cell]:
    """Every reading's implementation cells of its headline: today's fingerprint and its older numerics
    revisions (same code, same hyperparameters), canonical complete runs only."""
    out = []
    for r in readings:
        h, rr = r.headline, runs[r.label]
        revision = revision_of(r)
        records = [x for g in rr.groups for x in g.runs]
        records += [x for x in rr.older if x["status"] == "complete" and revision(x)]
        if h.unit == "%" and h.higher_is_better is not None:
            out += noise.cells_of(r.label, records, h.metric, scale_of(r, h), revision)
    return out


def shared_seed_lines(tau: Tau) -> list[str]:
    """Says so when cells share seeds and their runs follow each other (the estimate allows for it)."""
    rs = noise.shared_seed_correlations(list(tau.cells))
    if not rs:
        return []
    return [(f"The cells of a reading share seeds, and their runs follow each other seed by seed: Pearson's r between "
             f"two cells, paired by seed, from {min(rs):.2f} to {max(rs):.2f} (median {float(np.median(rs)):.2f}, "
             f"{len(rs)} pairs of cells). Their means move together, so the covariance that shared seeds give them "
             "enters Q (taken as independent, they would make tau lean low)."), ""]


def section(readings: list[Recipe], runs: dict[str, ReadingRuns]) -> tuple[list[str], Optional[Tau]]:
    tau = noise.estimate_tau(cells(readings, runs))
    out = ["## Implementation noise", ""]
    if tau is None:
        return out + ["No reading has two implementation cells with 2 or more converged runs each yet: tau cannot be "
                      "estimated, and every verdict stands within seed noise alone.", ""], None
    p = 1 / (1 + math.exp(-sum(c.mean for c in tau.cells) / tau.k))          # the cells' typical accuracy
    out += [(f"tau = **{tau.tau:.3f}** on the logit scale (95% interval {tau.low:.3f}–{tau.high:.3f}; Paule-Mandel "
             f"over {tau.k} cells of {tau.readings} reading(s), Q = {tau.q:.2f} with {tau.df} degree(s) of "
             "freedom): how far two implementations of one reading land apart beyond what their seeds explain. At "
             f"{100 * p:.1f}%, a tau of {tau.tau:.3f} is about {tau.tau * 100 * p * (1 - p):.3f} points (its upper "
             f"bound {tau.high * 100 * p * (1 - p):.3f}). The cells:"), "",
            table([[c.reading, c.label, c.n, f"{c.mean:.4f}", f"{c.var ** 0.5:.4f}"] for c in tau.cells],
                  ["reading", "cell", "converged runs", "mean (logit)", "sd of the mean"]), "",
            *shared_seed_lines(tau),
            "Every headline within seed noise and within implementation noise (the predictive variance "
            "s²(1 + 1/n) + tau²); the tipping point tau* is the implementation noise at which the verdict would "
            "flip:", ""]
    rows = []
    for r in readings:
        res = headline_result(r, runs[r.label].primary)
        j = res.judgement
        if j is None or j.verdict not in ("reproduced", "not reproduced", "exceeded"):
            continue
        scale = scale_of(r, r.headline)
        verdict, p = decide(j, scale, r.headline.value, tau.tau)
        star = noise.tipping_point(j, scale, r.headline.value)
        rows.append([r.label, j.verdict, chance(j.p_one), verdict, chance(p),
                     "none" if star is None else f"{star:.3f}",
                     "**differ**" if verdict != j.verdict else "agree"])
    return out + [table(rows, ["reading", "within seed noise", "chance", "within implementation noise", "chance",
                               "tau*", "the two"]), ""], tau
