"""REPORT.md from the results folder and the recipe modules, nothing else.

Records come from bench.records.evidence (validated, cross-checked, copies counted once); rejected ones
open the report. Statistics use the canonical, complete runs of each reading's current
fingerprint; every run counts, a seed rerun on other hardware included. Smoke runs, truncated
runs (early curves only) and older fingerprints are listed, never mixed in. Verdicts follow
bench.judging.stats (see README, "Reading REPORT.md"). Same results in, same bytes out.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from bench.contract import registry
from bench.contract.registry import Recipe
from bench.judging import early, stats
from bench.judging.verdicts import ClaimResult, headline_result, judge_reading, scale_of
from bench.records.evidence import Evidence, rel
from bench.records.format import hardware
from bench.records.groups import (
    Group,
    ReadingRuns,
    device_type,
    host,
    machine,
    retraces,
    split_runs,
)
from bench.records.selection import honest_selection
from bench.report import figures
from bench.report.fmt import (
    chance,
    finite,
    interval,
    mean_sd,
    num,
    pvalue,
    suffix,
    table,
)

FIGURES_DIR = "report_figures"


def runs_of(ev: Evidence, recipe: Recipe) -> ReadingRuns:
    return split_runs(ev.of(recipe.name, recipe.variant_name), recipe.fingerprint)


def slug(recipe: Recipe) -> str:
    return recipe.label.replace(":", "-")


# ---------------------------------------------------------------- claims

def judged_lines(res: ClaimResult, group: Group, unit: str) -> list[str]:
    j = res.judgement
    out = [f"- runs ({group.label}, n={j.n}{f', {j.n_diverged} diverged' if j.n_diverged else ''}): "
           f"{mean_sd(j.mean, j.std, len(j.values), unit)}{suffix(unit)}; per seed: "
           + ", ".join(f"{s}: {num(v, unit)}" for s, v in zip(group.seeds, group.values(res.claim.metric)))]
    if len(j.values) >= 2:
        side = "upper" if res.claim.higher_is_better else "lower"
        out += [f"- one new run: one-sided 95% {side} predictive bound {num(j.best_plausible, unit)}{suffix(unit)}; "
                f"chance it reaches the claim {chance(j.p_one)} (Student t predictive)"
                + (f", Holm-adjusted p = {pvalue(j.p_adjusted)}" if not res.claim.headline else ""),
                f"- 95% CI of the mean {interval(j.ci, unit)}, bootstrap {interval(j.bootstrap, unit)}",
                "- chance that the best of k runs reaches the claim: "
                + ", ".join(f"k={k}: {chance(p)}" for k, p in j.best_of.items())]
    lo, hi = j.reaching_ci
    out.append(f"- runs reaching the claim: {j.reaching}/{j.n} (95% CI {lo:.0%}–{hi:.0%}; diverged runs count "
               "as not reaching)")
    if j.beats_all is not None:
        out.append(f"- distribution-free: a new run beats all {j.n} with chance 1/(n+1) = {1 / (j.n + 1):.1%}; "
                   f"the claim {'beats' if j.beats_all else 'does not beat'} every run")
    tail = ""
    if j.verdict == "not reproduced":
        tail = (f"; plausible only as the best of K = {j.plausible_k} runs" if j.plausible_k
                else f"; not plausible even as the best of {stats.MAX_K:,} runs")
    if res.protocol_k:
        tail += f"; the document's number is {res.protocol_k}"
    return out + [f"- verdict: **{res.verdict}**{tail}"]


def claim_block(recipe: Recipe, res: ClaimResult, group: Group | None) -> list[str]:
    c, u = res.claim, res.claim.unit
    out = [f"#### `{c.metric}`: claimed {num(c.value, u) + suffix(u)}{' (headline)' if c.headline else ''}", "",
           f"> {c.quote}", "",
           f"- selection `{c.selection}`, measured on {c.measured_on}; flags: {', '.join(c.flags) or 'none'}"]
    if c.note:
        out.append(f"- note: {c.note}")
    if res.rule == "model":
        out += [f"- measured exactly: {res.measured_params:,} parameters in the model the runs trained",
                f"- verdict: **{res.verdict}**", ""]
    elif res.rule == "time":
        runs = f"{num(stats.mean(group.values(c.metric)))} s on {', '.join(group.machines)}" if group else "none yet"
        out += [f"- runs: {runs}", "- verdict: **none**: the document's hardware is not ours", ""]
    elif res.rule == "not comparable":
        out += [f"- verdict: **not comparable**: {c.not_comparable}", ""]
    elif res.rule == "described":
        d = res.description
        out += ([f"- runs (n={d.n}): median {num(d.median)}, range {num(d.min)}–{num(d.max)}; "
                 f"{d.equal}/{d.n} runs at {num(c.value)}" + (f"; values: {', '.join(num(v) for v in d.values)}"
                                                              if d.n <= 20 else ""),
                 "- no verdict: the claim has no better side; its distribution is described", ""] if d.n
                else ["- runs: none yet", ""])
    elif group and res.judgement.n:
        out += judged_lines(res, group, u) + [""]
    else:
        out += [f"- runs: none yet; verdict: **{res.verdict}**", ""]
    return out


# ---------------------------------------------------------------- sections

def summary_row(recipe: Recipe, rr: ReadingRuns) -> list:
    h, g = recipe.headline, rr.primary
    res = headline_result(recipe, g)
    j, u = res.judgement, h.unit
    params_claim = next((c for c in recipe.claims if c.metric == "params"), None)
    measured = sorted({r["params"] for r in g.runs}) if g else [recipe.params]
    verdict = res.verdict + (f" — {', '.join(h.flags)}" if h.flags else "")
    if j and j.verdict == "not reproduced" and j.plausible_k:
        verdict += f" (best of K={j.plausible_k})"
    n = f"{j.n}" + (f" ({j.n_diverged} diverged)" if j and j.n_diverged else "") if j else "—"
    return [recipe.label, f"`{h.metric}` {num(h.value, u)}{suffix(u)}", n,
            mean_sd(j.mean, j.std, len(j.values), u) if j else "—", interval(j.ci, u) if j else "—",
            f"{j.reaching}/{j.n}" if j and j.n else "—", chance(j.p_one) if j else "—",
            f"{measured[0]:,} / {f'{int(params_claim.value):,}' if params_claim else '—'}",
            f"{median_seconds(g.runs)} on {', '.join(g.machines)}" if g else "—", verdict]


def median_seconds(runs: list[dict]) -> str:
    """Median wall time per run: one slow run on a busy machine does not move it."""
    return f"{num(round(float(np.median([r['wall_time_s'] for r in runs]))))} s"


def runs_by_machine(recipe: Recipe, rr: ReadingRuns) -> list[str]:
    h = recipe.headline
    metric, unit, scale = h.metric, h.unit, scale_of(recipe, h)
    if not rr.groups:
        return ["No canonical complete run of the current fingerprint yet.", ""]
    rows = []
    for g in rr.groups:
        by: dict[tuple, list] = {}
        for r in g.runs:
            by.setdefault((machine(r), host(r)), []).append(r)
        for (label, host_id), runs in sorted(by.items()):
            values = [r["metrics"].get(metric) for r in runs]
            good = stats.converged(values, scale)
            rows.append([g.label, label, host_id, len(runs), ", ".join(str(r["seed"]) for r in runs),
                         mean_sd(stats.mean(good), stats.std(good), len(good), unit), len(runs) - len(good),
                         median_seconds(runs)])
    out = [table(rows, ["pipeline / device", "hardware", "host", "runs", "seeds", f"{metric} mean ± std",
                        "diverged", "s per run (median)"]), ""]
    for device in sorted({g.device for g in rr.groups}):
        pair = {g.pipeline: g for g in rr.groups if g.device == device and g.precision == "fp32"}
        if {"fast", "faithful"} <= set(pair):
            a, b = (stats.converged(pair[p].values(metric), scale) for p in ("fast", "faithful"))
            out += [(f"Does the fast pipeline change the science? On {device}: fast "
                     f"{mean_sd(stats.mean(a), stats.std(a), len(a), unit)} (n={len(a)}) vs faithful "
                     f"{mean_sd(stats.mean(b), stats.std(b), len(b), unit)} (n={len(b)}); Welch's t-test "
                     f"p = {pvalue(stats.welch(a, b))}, Mann-Whitney p = {pvalue(stats.mann_whitney(a, b))}."), ""]
    return out


def readings_lines(canonical: Recipe, ev: Evidence) -> list[str]:
    """Canonical and every variant side by side: the ambiguity of the document, measured."""
    h = canonical.headline
    scale = scale_of(canonical, h)
    base = runs_of(ev, canonical).primary
    a = base.values(h.metric) if base else []
    a_ok = stats.converged(a, scale)
    rows = []
    for r in [canonical] + [registry.load(canonical.name, v.name) for v in canonical.variants]:
        rr = runs_of(ev, r)
        res = headline_result(r, rr.primary)
        j = res.judgement
        b = rr.primary.values(h.metric) if rr.primary else []
        b_ok = stats.converged(b, scale)
        same = r.variant is None
        fisher = stats.fisher_two(j.n_diverged, j.n, len(a) - len(a_ok), len(a)) if b and a else None
        rows.append([r.label, j.n, mean_sd(j.mean, j.std, len(j.values), h.unit),
                     f"{j.n_diverged}/{j.n}" if j.n else "—", res.verdict,
                     "—" if same else pvalue(stats.welch(b_ok, a_ok)),
                     "—" if same else pvalue(stats.mann_whitney(b_ok, a_ok)),
                     "—" if same or fisher is None else pvalue(fisher),
                     "canonical" if same else r.variant.why])
    return [table(rows, ["reading", "runs", f"{h.metric} mean ± std (converged)", "diverged", "verdict",
                         "Welch p vs canonical", "Mann-Whitney p", "Fisher p (diverged)", "what differs"]), ""]


def early_lines(recipe: Recipe, rr: ReadingRuns) -> list[str]:
    records = [r for g in rr.groups for r in g.runs] + rr.truncated
    rows = early.log_rows(recipe, records)
    if not rows:
        return []
    cells = [[r.point.epoch, r.point.metric, num(r.point.value, "%"), r.n,
              mean_sd(r.mean, r.std, r.n, "%"), interval((r.low, r.high), "%"),
              {True: "yes", False: "**no**", None: "—"}[r.agrees]] for r in rows]
    judged = [r for r in rows if r.agrees is not None]
    return ["#### Early curve against the document's printed log", "",
            ("The document's per-epoch numbers against this reading's canonical runs at the same epoch (complete "
             "runs and `--stop-after` runs of the unchanged schedule; these feed no verdict)."), "",
            table(cells, ["epoch", "metric", "document", "runs", "runs mean ± std", "95% predictive interval",
                          "inside"]), "",
            (f"{sum(r.agrees for r in judged)} of {len(judged)} logged epochs with runs agree with the document; "
             f"{len(rows) - len(judged)} logged epoch(s) have fewer than 2 runs." if judged
             else "No run has reached a logged epoch yet."), ""]


def honest_lines(recipe: Recipe, group: Group | None) -> list[str]:
    h = recipe.headline
    if h.selection != "best_test_epoch":
        return [(f"The document's protocol (`{h.selection}`) did not look at the test set: "
                 "its headline needs no honest counterpart."), ""]
    rule = honest_selection(h.selection, recipe.hparams.split != "official")
    if not group:
        return [f"The document picks its epoch on test; without that the protocol is `{rule}`. No runs yet.", ""]
    doc, honest = group.values(h.metric), group.values("test_acc_honest")
    gap = [a - b for a, b in zip(doc, honest) if finite(a) and finite(b)]
    j = stats.judge(honest, h.value, scale_of(recipe, h))
    return [f"- `{h.metric}` (the document's protocol, epoch picked on test): "
            f"{mean_sd(stats.mean(doc), stats.std(doc), len(doc), h.unit)}{suffix(h.unit)}",
            (f"- `test_acc_honest` (`{rule}`, test never looked at): "
             f"{mean_sd(j.mean, j.std, len(j.values), h.unit)}{suffix(h.unit)}; against the claim: **{j.label}**"),
            (f"- test-set selection adds {mean_sd(stats.mean(gap), stats.std(gap), len(gap), h.unit)} points on "
             f"average (n={len(gap)})"), ""]


def assumption_lines(recipe: Recipe) -> list[str]:
    rows = [[a.name, a.value, a.source, a.why or "—"] for a in recipe.assumptions]
    return [table(rows, ["name", "value", "source", "why"]), ""] if rows else ["None.", ""]


def flag_lines(recipe: Recipe) -> list[str]:
    flags: dict[str, list[str]] = {}
    for c in recipe.claims:
        for f in c.flags:
            flags.setdefault(f, []).append(f"`{c.metric}`")
    return [f"- {f}: {', '.join(metrics)}" for f, metrics in flags.items()] + [""] if flags else ["None.", ""]


def determinism_lines(recipe: Recipe, rr: ReadingRuns, ev: Evidence) -> list[str]:
    out = []
    for g in rr.groups:
        for r in g.runs:
            if r["_path"] in ev.copies:
                out.append(f"- {g.label}: seed {r['seed']} was rerun {len(ev.copies[r['_path']])} time(s) on the same "
                           f"machine and thread count: bitwise identical weights (counted once)")
        for seed, runs in g.reruns.items():
            same_place = Counter((host(r), r.get("threads")) for r in runs)
            alarm = any(n > 1 for n in same_place.values())
            out.append(f"- {g.label}: seed {seed} has {len(runs)} distinct runs, each a draw of its own"
                       + (" — **different bits on one machine and thread count: not deterministic**" if alarm else
                          " (other machines: other bits are expected)"))
            out += [f"  - weights `{r['weights_sha256'][:12]}`: {r['started_at'][:10]} on {machine(r)}, host "
                    f"{host(r)}" for r in runs]
    for x in retraces(rr):
        what = (f"- seed {x.truncated['seed']}: epochs {x.first}-{x.last} of a truncated run "
                f"({x.truncated['epochs_run']} epochs, {x.truncated['started_at'][:10]}) were trained again by a later "
                f"run of the same key ({x.later['status']}, {x.later['started_at'][:10]}): ")
        out.append(what + ("every loss, accuracy and lr identical" if x.differs_at is None else
                           f"**values differ from epoch {x.differs_at} on one machine and thread count: not "
                           "deterministic**"))
    if not out:
        out.append(f"- no seed was rerun; `python -m bench check-determinism --recipe {recipe.label}` "
                   "trains one seed twice and compares the weights")
    return out + [""]


def commands(recipe: Recipe, group: Group | None) -> list[str]:
    """The command lines that rerun a group's seeds (one per contiguous range of seeds)."""
    base = f"python -m bench run --recipe {recipe.name}" + (f" --variant {recipe.variant_name}" if recipe.variant
                                                            else "")
    if group is None:
        return [f"{base} --seeds 5"]
    flags = (" --pipeline faithful" if group.pipeline == "faithful" else "") + f" --device {group.device}"
    if group.precision != "fp32":
        flags += f" --precision {group.precision}"
    threads = {r.get("threads") for r in group.runs}
    if group.device == "cpu" and len(threads) == 1 and None not in threads:
        flags += f" --threads {threads.pop()}"
    ranges: list[list[int]] = []
    for s in sorted(set(group.seeds)):
        if ranges and s == ranges[-1][0] + ranges[-1][1]:
            ranges[-1][1] += 1
        else:
            ranges.append([s, 1])
    return [f"{base} --seeds {n}" + (f" --seed-start {start}" if start else "") + flags for start, n in ranges]


def environment_lines(groups: list[Group]) -> list[str]:
    envs, commits = Counter(), Counter()
    for g in groups:
        for r in g.runs:
            e = r.get("env") or {}
            envs[(g.label, e.get("python"), e.get("torch"), e.get("cuda") or "—", hardware(e), r.get("threads"))] += 1
            commits[(g.label, r.get("git_commit") or "unknown")] += 1
    if not envs:
        return ["No runs.", ""]
    rows = [[*k, n] for k, n in sorted(envs.items(), key=str)]
    return [table(rows, ["group", "python", "torch", "cuda", "gpu / cpu", "threads", "runs"]), "",
            "Git commits: " + "; ".join(commit_list(commits)), ""]


def commit_list(commits: Counter) -> list[str]:
    """One entry per group: its commits with run counts, so a group that spans commits is named once."""
    by_group: dict[str, list[str]] = {}
    for (label, c), n in sorted(commits.items()):
        by_group.setdefault(label, []).append(f"`{c}` ×{n}")
    return [f"{label}: " + ", ".join(cs) for label, cs in by_group.items()]


def listed_lines(recipe: Recipe, title: str, records: list[dict], results: Path) -> list[str]:
    if not records:
        return []
    h = recipe.headline
    rows = [[rel(r["_path"], results), r["seed"], f"{r['pipeline']} / {device_type(r)}",
             "current" if r["fingerprint"] == recipe.fingerprint else f"older `{r['fingerprint']}`",
             ", ".join(f"{k}={v}" for k, v in sorted(r["overrides"].items())) or "—",
             num(r["metrics"].get(h.metric), h.unit), f"{r['epochs_run']}" + (
                 f" of {r['epochs_planned']}" if r.get("truncated") else "")] for r in records]
    return [f"#### {title}", "", f"{len(records)} record(s), never in the statistics:", "",
            table(rows, ["record", "seed", "pipeline / device", "fingerprint", "overrides", h.metric, "epochs"]), ""]


def reading_section(recipe: Recipe, rr: ReadingRuns, ev: Evidence, results: Path, figs: dict) -> list[str]:
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
        out += claim_block(recipe, res, g)
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


def write_report(ev: Evidence, out: Path) -> Path:
    """REPORT.md at `out` from a results folder's evidence, its figures in report_figures/ beside it."""
    results, out = Path(ev.root), Path(out)
    recipes = registry.all_recipes()
    readings = [r for c in recipes for r in [c] + [registry.load(c.name, v.name) for v in c.variants]]
    runs = {r.label: runs_of(ev, r) for r in readings}
    copies = sum(len(v) for v in ev.copies.values())
    lines = ["# Reproduction report", "",
             (f"Generated by `python -m bench report` from the run records in `{results.as_posix()}/` and the recipe "
              "modules. Every claim is judged against the canonical, complete runs of its reading's current "
              "fingerprint, on a scale that respects its bounds (logit for accuracies, log for losses): "
              "**reproduced** when one new run would reach it with chance of at least 5% (the one-sided 95% "
              "predictive bound), **not reproduced** otherwise (with the best-of-K at which it becomes plausible), "
              "**exceeded** when the runs beat it by a margin, **unstable** when more than one run diverged, "
              "**insufficient** below 3 runs; **provisional** below 10. Secondary claims are Holm-corrected. "
              "README, \"Reading REPORT.md\", gives the rule and its references."), "",
             *rejected_lines(ev, results), "## Summary", "",
             table([summary_row(r, runs[r.label]) for r in readings],
                   ["reading", "claimed headline", "runs", "mean ± std", "95% CI of mean", "reaching claim",
                    "one new run reaches claim", "params (measured / claimed)", "time per run (median)",
                    "verdict"]), "",
             (f"{len(ev.records)} usable record(s); {len(ev.rejected)} rejected; {copies} bitwise copies counted "
              "once."), ""]
    for r in readings:
        figs = draw(r, runs[r.label], out.parent / FIGURES_DIR)
        lines += reading_section(r, runs[r.label], ev, results, figs)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    return out
