"""The sections of a reading in REPORT.md besides its claims: runs by machine (and whether two pipelines give
the same science), the readings side by side, the early curve, assumptions, flags, determinism, the commands
that reproduce each group, the environment, and the runs that are listed but never counted."""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np

from bench.contract import registry
from bench.contract.registry import Recipe
from bench.judging import early, rule, stats
from bench.judging.verdicts import failed_runs, headline_result, scale_of
from bench.records.evidence import Evidence, rel
from bench.records.format import hardware
from bench.records.groups import Group, ReadingRuns, device_type, host, machine, retraces, split_runs
from bench.report.fmt import finite, interval, mean_sd, num, pvalue, table

EQUIVALENCE_POINTS = 0.1         # two implementations of one reading "give the same science" within this many points


def runs_of(ev: Evidence, recipe: Recipe) -> ReadingRuns:
    return split_runs(ev.of(recipe.name, recipe.variant_name), recipe.fingerprint)


def median_seconds(runs: list[dict]) -> str:
    """Median wall time per run: one slow run on a busy machine does not move it."""
    return f"{num(round(float(np.median([r['wall_time_s'] for r in runs]))))} s"


def same_science(what: str, name_a: str, name_b: str, a: list, b: list, scale, unit: str) -> str:
    """Two implementations of one reading: equivalent within EQUIVALENCE_POINTS (TOST on the judging scale),
    or not shown to be; a large p of a test for a difference is never read as "no difference"."""
    mean_ab = stats.mean(list(a) + list(b))
    margin = rule.points_on_scale(scale, mean_ab, EQUIVALENCE_POINTS)
    p = stats.tost(scale.forward(a), scale.forward(b), margin) if len(a) >= 2 and len(b) >= 2 else math.nan
    found = ("equivalent" if finite(p) and p < stats.ALPHA else "not shown equivalent")
    return (f"Do the {what} give the same science? {name_a} {mean_sd(stats.mean(a), stats.std(a), len(a), unit)} "
            f"(n={len(a)}) vs {name_b} {mean_sd(stats.mean(b), stats.std(b), len(b), unit)} (n={len(b)}): "
            f"**{found}** within ±{EQUIVALENCE_POINTS:g} points (two one-sided Welch tests on the logit scale, "
            f"TOST p = {pvalue(p)}); for a difference, Welch p = {pvalue(stats.welch(a, b))}, Mann-Whitney p = "
            f"{pvalue(stats.mann_whitney(a, b))}.")


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
            good = rule.converged(values, scale)
            rows.append([g.label, label, host_id, len(runs), ", ".join(str(r["seed"]) for r in runs),
                         mean_sd(stats.mean(good), stats.std(good), len(good), unit), len(runs) - len(good),
                         median_seconds(runs)])
    out = [table(rows, ["pipeline / device", "hardware", "host", "runs", "seeds", f"{metric} mean ± std",
                        "failed", "s per run (median)"]), ""]
    for device in sorted({g.device for g in rr.groups}):
        pair = {g.pipeline: g for g in rr.groups if g.device == device and g.precision == "fp32"}
        if {"fast", "faithful"} <= set(pair):
            runs, where = on_shared_machines(pair["fast"].runs, pair["faithful"].runs)
            out += [same_science(f"fast and faithful pipelines on {device}{where}", "fast", "faithful",
                                 *(rule.converged([r["metrics"].get(metric) for r in side], scale) for side in runs),
                                 scale, unit), ""]
    return out


def on_shared_machines(a: list[dict], b: list[dict]) -> tuple[tuple[list, list], str]:
    """Two groups' runs cut to the machines both ran on, so that a comparison of pipelines is not one of
    machines too (and a seed run on two machines is not counted as two draws); both whole when none is shared."""
    shared = {machine(r) for r in a} & {machine(r) for r in b}
    if not shared or shared == {machine(r) for r in a + b}:
        return (a, b), ""
    return ([r for r in a if machine(r) in shared], [r for r in b if machine(r) in shared]), \
        f" ({', '.join(sorted(shared))}, the machines both ran on)"


def readings_lines(canonical: Recipe, ev: Evidence) -> list[str]:
    """Canonical and every variant side by side: the ambiguity of the document, measured."""
    h = canonical.headline
    scale = scale_of(canonical, h)
    base = runs_of(ev, canonical).primary
    a = base.values(h.metric) if base else []
    a_ok = rule.converged(a, scale)
    rows = []
    for r in [canonical] + [registry.load(canonical.name, v.name) for v in canonical.variants]:
        rr = runs_of(ev, r)
        res = headline_result(r, rr.primary)
        j = res.judgement
        b = rr.primary.values(h.metric) if rr.primary else []
        b_ok = rule.converged(b, scale)
        same = r.variant is None
        fisher = stats.fisher_two(j.n_diverged, j.n, len(a) - len(a_ok), len(a)) if b and a else None
        rows.append([r.label, j.n, mean_sd(j.mean, j.std, len(j.values), h.unit),
                     f"{j.n_diverged}/{j.n}" if j.n else "—", res.verdict,
                     "—" if same else pvalue(stats.welch(b_ok, a_ok)),
                     "—" if same else pvalue(stats.mann_whitney(b_ok, a_ok)),
                     "—" if same or fisher is None else pvalue(fisher),
                     "canonical" if same else r.variant.why])
    return [table(rows, ["reading", "runs", f"{h.metric} mean ± std (converged)", "failed", "verdict",
                         "Welch p vs canonical", "Mann-Whitney p", "Fisher p (failed)", "what differs"]), ""]


def early_lines(recipe: Recipe, rr: ReadingRuns) -> list[str]:
    records = [r for g in rr.groups for r in g.runs] + rr.truncated
    rows = early.log_rows(recipe, records)
    if not rows:
        return []
    cells = [[r.point.epoch, r.point.metric, num(r.point.value, "%"), r.n,
              mean_sd(r.mean, r.std, r.n, "%"), interval((r.low, r.high), "%"),
              {True: "yes", False: "**no**", None: "—"}[r.agrees]] for r in rows]
    test = early.joint_test(recipe, records, rows)
    fewer = sum(r.n < 2 for r in rows)
    if test is None:
        summary = "Fewer than 2 logged epochs have 2 or more runs: no joint test yet."
    else:
        verdict = ("consistent with the document's run being one more run" if test.p >= stats.ALPHA else
                   "**departs from the runs**: the document's run does not look like one more run")
        summary = (f"{test.inside} of {test.judged} logged epochs lie inside their 95% interval; chance alone puts "
                   f"about {test.expected_inside:.1f} inside (each epoch misses 5% of the time, and the epochs of one "
                   f"run are correlated). Joint test: the largest standardized distance is {test.largest:.2f} (epoch "
                   f"{test.at.epoch}, {test.at.metric}); were the document's run one more run, a distance this large "
                   f"somewhere among the {test.judged} epochs has chance p "
                   f"{'< ' + format(1 / early.SIMULATIONS, '.0e') if test.p == 0 else '= ' + pvalue(test.p)} "
                   f"({early.SIMULATIONS:,} "
                   f"simulated runs with the runs' own correlation across epochs): {verdict}."
                   + (f" {fewer} logged epoch(s) have fewer than 2 runs." if fewer else ""))
    return ["#### Early curve against the document's printed log", "",
            ("The document's per-epoch numbers against this reading's canonical runs at the same epoch (complete "
             "runs and `--stop-after` runs of the unchanged schedule, one record per run; these feed no verdict)."),
            "", table(cells, ["epoch", "metric", "document", "runs", "runs mean ± std", "95% predictive interval",
                              "inside"]), "", summary, ""]


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
            others = sorted(set(r.get("_same_weights_seeds", [])))
            if others:
                out.append(f"- {g.label}: **seeds {', '.join(map(str, [r['seed'], *others]))} gave bitwise identical "
                           "final weights: the seed does not reach the run (a seeding fault; counted once)**")
            elif r["_path"] in ev.copies:
                out.append(f"- {g.label}: seed {r['seed']} was rerun {len(ev.copies[r['_path']])} time(s) on the same "
                           f"machine and thread count: bitwise identical weights (counted once)")
        elsewhere: dict[tuple, list[int]] = {}          # the places a seed ran -> the seeds that ran there
        for seed, runs in g.reruns.items():
            places = Counter(place(r) for r in runs)
            if all(n == 1 for n in places.values()):
                elsewhere.setdefault(tuple(sorted(places)), []).append(seed)
                continue
            out.append(f"- {g.label}: seed {seed} has {len(runs)} distinct runs, each a draw of its own — **different "
                       "bits on one machine and thread count: not deterministic**")
            out += [f"  - weights `{r['weights_sha256'][:12]}`: {r['started_at'][:10]} on {place(r)}" for r in runs]
        for places, seeds in elsewhere.items():
            out.append(f"- {g.label}: seed{'s' if len(seeds) > 1 else ''} {seed_list(seeds)} ran once on each of "
                       f"{len(places)} machines ({'; '.join(places)}), each run a draw of its own (other machines: "
                       "other bits are expected)" + paired_across(recipe, g, seeds, places))
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


def place(record: dict) -> str:
    """Where a run ran, as far as its bits go: the hardware with its thread count, and the host."""
    return f"{machine(record)}, host {host(record)}"


def paired_across(recipe: Recipe, group: Group, seeds: list[int], places: tuple) -> str:
    """The headline of seeds run on two machines, paired by seed: near zero correlation if another machine's
    rounding makes a new draw, near one if the seed decides the run (then the pooled n overstates the evidence)."""
    if len(places) != 2:
        return ""
    metric = recipe.headline.metric
    failed = failed_runs(recipe, group)                  # a failed run says nothing about where its seed lands
    by = {(r["seed"], place(r)): math.nan if bad else r["metrics"].get(metric)
          for r, bad in zip(group.runs, failed) if r["seed"] in seeds}
    pairs = [(by[(s, places[0])], by[(s, places[1])]) for s in seeds]
    pairs = [(a, b) for a, b in pairs if finite(a) and finite(b)]
    r, p = stats.pearson(*zip(*pairs)) if pairs else (math.nan, math.nan)
    if not finite(r):
        return ""
    return (f"; paired by seed, their `{metric}` values correlate r = {r:.2f} (Pearson, {len(pairs)} seeds, "
            f"p = {pvalue(p)})")


def seed_ranges(seeds) -> list[tuple[int, int]]:
    """(first seed, count) for each run of consecutive seeds."""
    ranges: list[list[int]] = []
    for s in sorted(set(seeds)):
        if ranges and s == ranges[-1][0] + ranges[-1][1]:
            ranges[-1][1] += 1
        else:
            ranges.append([s, 1])
    return [(start, n) for start, n in ranges]


def seed_list(seeds) -> str:
    """0-9, 12 rather than ten numbers."""
    return ", ".join(f"{a}" if n == 1 else f"{a}-{a + n - 1}" for a, n in seed_ranges(seeds))


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
    return [f"{base} --seeds {n}" + (f" --seed-start {start}" if start else "") + flags
            for start, n in seed_ranges(group.seeds)]


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
