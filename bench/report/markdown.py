"""REPORT.md from the results folder and the recipe modules, nothing else.

Records come from bench.records.evidence (validated, cross-checked, copies counted once); rejected ones
open the report. Statistics use the canonical, complete runs of each reading's current
fingerprint; every run counts, a seed rerun on other hardware included. Smoke runs, truncated
runs (early curves only) and older fingerprints are listed, never mixed in. Verdicts follow
bench.judging.stats (see README, "Reading REPORT.md"). Same results in, same bytes out.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from bench.contract import registry
from bench.contract.registry import Recipe
from bench.judging.noise import Tau
from bench.judging.verdicts import headline_result, judge_reading
from bench.records.evidence import Evidence, rel
from bench.records.groups import ReadingRuns
from bench.report import figures, noise
from bench.report.claims import claim_block, honest_lines
from bench.report.fmt import chance, finite, interval, mean_sd, num, suffix, table
from bench.report.sections import (
    assumption_lines,
    commands,
    determinism_lines,
    early_lines,
    environment_lines,
    flag_lines,
    listed_lines,
    median_seconds,
    readings_lines,
    runs_by_machine,
    runs_of,
)

FIGURES_DIR = "report_figures"


def slug(recipe: Recipe) -> str:
    return recipe.label.replace(":", "-")


# ---------------------------------------------------------------- the summary

def summary_row(recipe: Recipe, rr: ReadingRuns) -> list:
    h, g = recipe.headline, rr.primary
    res = headline_result(recipe, g)
    j, u = res.judgement, h.unit
    params_claim = next((c for c in recipe.claims if c.metric == "params"), None)
    measured = sorted({r["params"] for r in g.runs}) if g else [recipe.params]
    verdict = res.verdict + (f" — {', '.join(h.flags)}" if h.flags else "")
    if j and j.verdict == "not reproduced" and j.plausible_k:
        verdict += f" (best of K={j.plausible_k})"
    n = f"{j.n}" + (f" ({j.n_diverged} failed)" if j and j.n_diverged else "") if j else "—"
    reach = "—" if not j else chance(j.p_one) + (f" (any run {chance(j.p_any)})" if j.n_diverged
                                                  and finite(j.p_any) else "")
    return [recipe.label, f"`{h.metric}` {num(h.value, u)}{suffix(u)}", n,
            mean_sd(j.mean, j.std, len(j.values), u) if j else "—", interval(j.ci, u) if j else "—",
            f"{j.reaching}/{j.n}" if j and j.n else "—", reach,
            f"{measured[0]:,} / {f'{int(params_claim.value):,}' if params_claim else '—'}",
            f"{median_seconds(g.runs)} on {', '.join(g.machines)}" if g else "—", verdict]


def reading_section(recipe: Recipe, rr: ReadingRuns, ev: Evidence, results: Path, figs: dict,
                    tau: Optional[Tau] = None) -> list[str]:
    g = rr.primary
    level = "##" if recipe.variant is None else "###"
    out = [f"{level} {recipe.label}", ""]
    if recipe.variant is None:
        out += [*(f"> {line}" for line in recipe.doc.split("\n\n")[0].splitlines()), ""]
    else:
        out += [f"A reading of the same document: {recipe.variant.why}", ""]
    out += [(f"Fingerprint `{recipe.fingerprint}`; dataset {recipe.hparams.dataset}, {recipe.hparams.epochs} epochs, "
             f"selection `{recipe.hparams.selection}`."), "", "#### Runs", "", *runs_by_machine(recipe, rr)]
    out += [f"![{name}]({path})" for name, path in figs.items()] + ([""] if figs else [])
    out += [f"#### Claims{f' (against {g.label}, n={len(g.runs)})' if g else ''}", ""]
    for res in judge_reading(recipe, g):
        out += claim_block(recipe, res, g, tau)
    out += early_lines(recipe, rr)
    out += ["#### The honest number beside the document's", "", *honest_lines(recipe, g)]
    if recipe.variant is None:
        if recipe.variants:
            out += ["#### Readings", "", *readings_lines(recipe, ev)]
        out += ["#### Assumptions", "", *assumption_lines(recipe), "#### Protocol flags", "", *flag_lines(recipe)]
    else:
        out += ["#### Assumptions this reading changes", "",
                table([[a.name, a.value, a.source, a.why or "—"] for a in recipe.changed_assumptions],
                      ["name", "value", "source", "why"]), ""]
    out += ["#### Determinism", "", *determinism_lines(recipe, rr, ev), "#### Reproduce", "", "```bash"]
    for group in rr.groups or [None]:
        out += commands(recipe, group)
    out += ["```", "", "#### Environment", "", *environment_lines(rr.groups)]
    out += listed_lines(recipe, "Truncated runs (--stop-after: early curves only)", rr.truncated, results)
    out += listed_lines(recipe, "Truncated runs continued by a later record (counted once, through it)",
                        rr.continued, results)
    out += listed_lines(recipe, "Smoke runs (non-canonical)", rr.smoke, results)
    out += listed_lines(recipe, "Older fingerprints", rr.older, results)
    return out


# ---------------------------------------------------------------- the report

def draw(recipe: Recipe, rr: ReadingRuns, folder: Path) -> dict[str, str]:
    """The figures of a reading with runs; returns alt text -> path relative to the report."""
    h = recipe.headline
    curve_runs = rr.primary.runs if rr.primary else rr.truncated
    if not curve_runs:
        return {}
    out = {}
    if rr.primary:
        series = {g.label: [(seed, x) for seed, x in zip(g.seeds, g.values(h.metric)) if finite(x)]
                  for g in rr.groups}
        seeds = figures.seeds_figure(folder / f"{slug(recipe)}_seeds.png", f"{recipe.label}: {h.metric} per run",
                                     series, h.value, f"{h.metric} ({h.unit})" if h.unit else h.metric)
        out[f"{recipe.label} per run"] = f"{FIGURES_DIR}/{seeds.name}"
    label = rr.primary.label if rr.primary else "truncated runs"
    curves = figures.curves_figure(folder / f"{slug(recipe)}_curves.png", f"{recipe.label}: {label}",
                                   [r["curves"] for r in curve_runs], recipe.document_log)
    out[f"{recipe.label} learning curves"] = f"{FIGURES_DIR}/{curves.name}"
    return out


def rejected_lines(ev: Evidence, results: Path) -> list[str]:
    if not (ev.rejected or ev.not_records):
        return []
    rows = [[rel(x.path, results), x.reason] for x in ev.rejected]
    rows += [[rel(p, results), "not a record (no schema_version): skipped"] for p in ev.not_records]
    return ["## Rejected records", "",
            (f"**{len(ev.rejected)} record(s) failed validation and are in no statistic below** (fix or move them; "
             "`python -m bench report --strict` fails on them):"), "", table(sorted(rows), ["file", "reason"]), ""]


def broken_lines(broken: dict[str, str]) -> list[str]:
    if not broken:
        return []
    return ["## Recipe modules that fail to load", "",
            "Left out of everything below (every other recipe is reported):", "",
            *(f"- `{name}`: {why}" for name, why in sorted(broken.items())), ""]


def write_report(ev: Evidence, out: Path) -> Path:
    """REPORT.md at `out` from a results folder's evidence, its figures in report_figures/ beside it."""
    results, out = Path(ev.root), Path(out)
    recipes = registry.all_recipes()
    readings = [r for c in recipes for r in [c] + [registry.load(c.name, v.name) for v in c.variants]]
    runs = {r.label: runs_of(ev, r) for r in readings}
    copies = sum(len(v) for v in ev.copies.values())
    noise_lines, tau = noise.section(readings, runs)
    lines = ["# Reproduction report", "",
             (f"Generated by `python -m bench report` from the run records in `{results.as_posix()}/` and the recipe "
              "modules. Every claim is judged against the canonical, complete runs of its reading's current "
              "fingerprint, on a scale that respects its bounds (logit for accuracies, log for losses), within seed "
              "noise (the runs' own spread, no floor): **reproduced** when one new run would reach it with chance of "
              "at least 5% (the one-sided 95% predictive bound), **not reproduced** otherwise (with the best-of-K at "
              "which it becomes plausible), **exceeded** when the runs beat it by a margin, **unstable** when more "
              "than one run failed (diverged, or fell far below the others), **seeding fault** when the runs of a "
              "loss are identical (accuracies that tie on one image are judged at that step), **insufficient** "
              "below 3 runs; **provisional** below 10 seeds (runs of one seed on several machines count as what "
              "their correlation leaves them worth). Secondary claims are "
              "Holm-corrected. Beside it, the verdict within implementation noise (tau, measured across the suite's "
              "cells). README, \"Reading REPORT.md\", gives the rule and its references."), "",
             *rejected_lines(ev, results), *broken_lines(registry.broken()), "## Summary", "",
             table([summary_row(r, runs[r.label]) for r in readings],
                   ["reading", "claimed headline", "runs", "mean ± std", "95% CI of mean", "reaching claim",
                    "one new run reaches claim", "params (measured / claimed)", "time per run (median)",
                    "verdict"]), "",
             (f"{len(ev.records)} usable record(s); {len(ev.rejected)} rejected; "
              f"{copies} bitwise cop{'y' if copies == 1 else 'ies'} counted once."), "", *noise_lines]
    for r in readings:
        figs = draw(r, runs[r.label], out.parent / FIGURES_DIR)
        lines += reading_section(r, runs[r.label], ev, results, figs, tau)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    return out
