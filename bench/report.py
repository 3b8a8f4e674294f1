"""REPORT.md from the results folder and the recipe modules, nothing else.

Statistics use canonical, complete runs of each recipe's current fingerprint, one value per
seed (its earliest record; later reruns of the seed only say whether they match bitwise).
Smoke runs, older fingerprints and unreadable files are listed, never mixed in. Same results
in, same bytes out: no clock, sorted iteration, a seeded bootstrap, stamp-free PNGs.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

from . import figures, registry, stats
from .determinism import hardware, machine_key
from .engine import honest_selection
from .recipe import Claim
from .registry import Recipe
from .store import StoreError, read_records

FIGURES_DIR = "report_figures"


# ---------------------------------------------------------------- which runs count

def device_type(record: dict) -> str:
    return str(record["device"]).split(":")[0]


def machine(record: dict) -> str:
    return record.get("machine") or machine_key(record.get("env") or {})


@dataclass
class Group:
    """Canonical complete runs of one fingerprint on one pipeline and one device type."""
    pipeline: str
    device: str
    runs: list = field(default_factory=list)    # the earliest record of each seed, by seed
    reruns: dict = field(default_factory=dict)  # seed -> all its records, oldest first, when > 1

    @property
    def label(self) -> str:
        return f"{self.pipeline} / {self.device}"

    @property
    def seeds(self) -> list[int]:
        return [r["seed"] for r in self.runs]

    def values(self, metric: str) -> list[float]:
        return [math.nan if r["metrics"].get(metric) is None else r["metrics"][metric] for r in self.runs]


def group_runs(records: list[dict]) -> list[Group]:
    """Canonical complete records of one fingerprint, grouped by pipeline and device type;
    fast before faithful, cuda before cpu. Within a group a seed is one run key, so several
    records of a seed are reruns (--force)."""
    by_seed: dict[tuple, dict[int, list]] = {}
    for r in sorted(records, key=lambda r: (r["started_at"], r.get("_path", ""))):
        by_seed.setdefault((r.get("pipeline", "fast"), device_type(r)), {}).setdefault(r["seed"], []).append(r)
    groups = []
    for (pipeline, device), seeds in by_seed.items():
        runs = [seeds[s][0] for s in sorted(seeds)]
        groups.append(Group(pipeline, device, runs, {s: v for s, v in sorted(seeds.items()) if len(v) > 1}))
    return sorted(groups, key=lambda g: (g.pipeline != "fast", g.device != "cuda", g.pipeline, g.device))


def primary(groups: list[Group]) -> Group | None:
    """The group a summary row stands on: most seeds, then the fast pipeline, then cuda."""
    return max(groups, key=lambda g: (len(g.runs), g.pipeline == "fast", g.device == "cuda"), default=None)


@dataclass
class RecipeRuns:
    """A recipe's records sorted into what counts (groups) and what is only listed."""
    groups: list[Group]
    primary: Group | None
    smoke: list[dict]
    older: list[dict]
    incomplete: list[dict]


def split_runs(records: list[dict], fingerprint: str) -> RecipeRuns:
    canonical = [r for r in records if r["canonical"] is True]
    current = [r for r in canonical if r["fingerprint"] == fingerprint]
    groups = group_runs([r for r in current if r["status"] == "complete"])
    return RecipeRuns(groups, primary(groups), smoke=[r for r in records if r["canonical"] is not True],
                      older=[r for r in canonical if r["fingerprint"] != fingerprint],
                      incomplete=[r for r in current if r["status"] != "complete"])


# ---------------------------------------------------------------- formatting

def finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def num(v, unit: str = "") -> str:
    if not finite(v):
        return "—"
    if unit == "%":
        return f"{v:.2f}"
    return f"{int(v):,}" if float(v).is_integer() and abs(v) < 1e15 else f"{v:.4g}"


def spread(v, unit: str = "") -> str:
    return "—" if not finite(v) else f"{v:.3f}" if unit == "%" else f"{v:.3g}"


def suffix(unit: str) -> str:
    return unit if unit in ("%", "") else f" {unit}"


def interval(pair, unit: str = "") -> str:
    return "—" if not all(map(finite, pair)) else f"[{num(pair[0], unit)}, {num(pair[1], unit)}]"


def chance(p: float) -> str:
    return "<0.1%" if 0 < p < 0.001 else ">99.9%" if 0.999 < p < 1 else f"{p:.1%}"


def mean_sd(s: stats.ClaimStats, unit: str) -> str:
    return "—" if not s.n else num(s.mean, unit) if s.n == 1 else f"{num(s.mean, unit)} ± {spread(s.std, unit)}"


def pvalue(p) -> str:
    return f"{p:.3g}" if finite(p) else "—"


def table(rows, headers) -> str:
    clean = [[str(c).replace("|", "\\|").replace("\n", " ") for c in row] for row in rows]
    return tabulate(clean, headers=headers, tablefmt="github", disable_numparse=True)


def rel(path, results: Path) -> str:
    try:
        return Path(path).relative_to(results).as_posix()
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- claims

def judge(recipe: Recipe, claim: Claim, group: Group | None) -> tuple[stats.ClaimStats, str]:
    """Statistics of a claim's metric over a group's seeds, and its verdict."""
    s = stats.describe(group.values(claim.metric) if group else [], claim.value, claim.higher_is_better)
    if claim.measured_on == "model":
        v = "reproduced" if recipe.params == claim.value else "not reproduced"
    elif claim.measured_on == "time":
        v = "no verdict (other hardware)"
    else:
        v = s.verdict
    return s, f"{v} (aspiration)" if claim.aspiration else v


def claim_block(recipe: Recipe, claim: Claim, group: Group | None) -> list[str]:
    u = claim.unit
    s, v = judge(recipe, claim, group)
    out = [f"#### `{claim.metric}`: claimed {num(claim.value, u) + suffix(u)}{' (headline)' if claim.headline else ''}",
           "", f"> {claim.quote}", "",
           (f"- selection `{claim.selection}`, measured on {claim.measured_on}; "
            f"flags: {', '.join(claim.flags) or 'none'}")]
    if claim.note:
        out.append(f"- note: {claim.note}")
    if claim.measured_on == "model":
        recorded = sorted({r["params"] for r in group.runs}) if group else []
        out.append(f"- measured exactly: {recipe.params:,} parameters in the model the recipe builds"
                   + (f" (runs recorded {', '.join(f'{p:,}' for p in recorded)})" if recorded else ""))
        out += [f"- verdict: **{v}**", ""]
        return out
    where = f"{group.label}, n={s.n}" if group else "n=0"
    if group and s.n < len(group.runs):
        where += f"; {len(group.runs) - s.n} run(s) without a finite value"
    if claim.measured_on == "time":
        runs = (f"{mean_sd(s, u)}{suffix(u)} (min {num(s.min, u)}, max {num(s.max, u)}) on "
                + ", ".join(sorted({machine(r) for r in group.runs})) if s.n else "none yet")
        out += [f"- runs ({where}): {runs}",
                "- verdict: **none**: the document's hardware is not ours, so its time is not comparable", ""]
        return out
    if s.n:
        out += [f"- runs ({where}): {mean_sd(s, u)}{suffix(u)}; per seed: "
                + ", ".join(f"{seed}: {num(x, u)}" for seed, x in zip(group.seeds, group.values(claim.metric))),
                (f"- 95% prediction interval of one new run {interval(s.pi, u)}; 95% CI of the mean "
                 f"{interval(s.ci, u)}, bootstrap {interval(s.bootstrap, u)}"),
                f"- one-sample t-test of the mean against the claim: p = {pvalue(s.p_value)}"]
        if s.best_of:
            out.append("- chance that the best of k runs reaches the claim: "
                       + ", ".join(f"k={k}: {chance(p)}" for k, p in s.best_of.items()))
    else:
        out.append(f"- runs: {'the runs do not record this metric' if group else 'none yet'}")
    out += [f"- verdict: **{v}**", ""]
    return out


# ---------------------------------------------------------------- sections

def summary_row(recipe: Recipe, rr: RecipeRuns) -> list:
    h, g = recipe.headline, rr.primary
    s, v = judge(recipe, h, g)
    u = h.unit
    share = sum(stats.reaches(x, h.value, h.higher_is_better) for x in g.values(h.metric) if finite(x)) if g else 0
    wall = stats.mean([r["wall_time_s"] for r in g.runs]) if g else math.nan
    declared = f"{recipe.declared_params:,}" if recipe.declared_params else "—"
    return [recipe.name, recipe.source.split("source:", 1)[-1].strip(), f"`{h.metric}` {num(h.value, u)}{suffix(u)}",
            s.n, mean_sd(s, u), interval(s.ci, u),
            f"{num(s.min, u)} / {num(s.median, u)} / {num(s.max, u)}" if s.n else "—",
            f"{share}/{s.n}" if s.n and h.higher_is_better is not None else "—",
            f"{recipe.params:,} / {declared}", f"{num(wall)} s" if g else "—",
            ", ".join(sorted({machine(r) for r in g.runs})) if g else "—", g.label if g else "—", v]


def runs_overview(recipe: Recipe, rr: RecipeRuns) -> list[str]:
    h = recipe.headline
    out = []
    if rr.groups:
        rows = []
        for g in rr.groups:
            s = stats.describe(g.values(h.metric), h.value, h.higher_is_better)
            rows.append([g.label, s.n, mean_sd(s, h.unit), interval(s.ci, h.unit), interval(s.pi, h.unit), s.verdict,
                         f"{num(stats.mean([r['wall_time_s'] for r in g.runs]))} s",
                         ", ".join(sorted({machine(r) for r in g.runs}))])
        out += [table(rows, ["pipeline / device", "seeds", f"{h.metric} mean ± std", "95% CI", "95% PI",
                             "verdict", "s per seed", "machine"]), ""]
    else:
        out += ["No canonical run of the current fingerprint yet.", ""]
    for device in sorted({g.device for g in rr.groups}):
        pair = {g.pipeline: g for g in rr.groups if g.device == device}
        if {"fast", "faithful"} <= set(pair):
            a, b = (pair[p].values(h.metric) for p in ("fast", "faithful"))
            sa, sb = (stats.describe(x, h.value, h.higher_is_better) for x in (a, b))
            p = stats.welch(a, b)
            test = f"Welch's t-test p = {pvalue(p)}" if finite(p) else "Welch's t-test needs at least 2 seeds in each"
            out += [(f"Does the fast pipeline change the science? On {device}: fast {mean_sd(sa, h.unit)} (n={sa.n}) "
                     f"vs faithful {mean_sd(sb, h.unit)} (n={sb.n}); {test}."), ""]
    if rr.older:
        fps = Counter(r["fingerprint"] for r in rr.older)
        out += [f"{len(rr.older)} canonical record(s) of older fingerprints ("
                + ", ".join(f"`{fp}` ×{n}" for fp, n in sorted(fps.items()))
                + ") are kept but not in these statistics.", ""]
    if rr.incomplete:
        out += [f"{len(rr.incomplete)} record(s) of the current fingerprint are not complete: not in statistics.", ""]
    return out


def honest_lines(recipe: Recipe, group: Group | None) -> list[str]:
    h = recipe.headline
    if h.selection != "best_test_epoch":
        return [(f"The document's protocol (`{h.selection}`) did not look at the test set: "
                "its headline needs no honest counterpart."), ""]
    rule = honest_selection(h.selection, recipe.hparams.split != "official")
    pairs = [(r["metrics"].get(h.metric), r["metrics"].get("test_acc_honest")) for r in (group.runs if group else [])]
    pairs = [(a, b) for a, b in pairs if finite(a) and finite(b)]
    if not pairs:
        return [f"The document picks its epoch on test; without that the protocol is `{rule}`. No runs yet.", ""]
    doc, honest = [a for a, _ in pairs], [b for _, b in pairs]
    gap = [a - b for a, b in pairs]
    sd, sh, sg = (stats.describe(x, h.value, h.higher_is_better) for x in (doc, honest, gap))
    return [f"- `{h.metric}` (the document's protocol, epoch picked on test): {mean_sd(sd, h.unit)}{suffix(h.unit)}",
            (f"- `test_acc_honest` (`{rule}`, test never looked at): {mean_sd(sh, h.unit)}{suffix(h.unit)}; "
             f"against the claim: **{sh.verdict}**"),
            f"- test-set selection adds {mean_sd(sg, h.unit)} points on average (n={sg.n})", ""]


def assumption_lines(recipe: Recipe) -> list[str]:
    rows = [[a.name, a.value, a.source, a.why or "—"] for a in recipe.assumptions]
    return [table(rows, ["name", "value", "stated / assumed / deviation", "why"]), ""] if rows else ["None.", ""]


def flag_lines(recipe: Recipe) -> list[str]:
    flags: dict[str, list[str]] = {}
    for c in recipe.claims:
        for f in c.flags:
            flags.setdefault(f, []).append(f"`{c.metric}`")
    return [f"- {f}: {', '.join(metrics)}" for f, metrics in flags.items()] + [""] if flags else ["None.", ""]


def determinism_lines(recipe: Recipe, groups: list[Group]) -> list[str]:
    out = []
    for g in groups:
        for seed, recs in g.reruns.items():
            by_hash: dict[str, list] = {}
            for r in recs:
                by_hash.setdefault(r["weights_sha256"], []).append(r)
            same = len(by_hash) == 1
            out.append(f"- {g.label}: reruns of seed {seed} matched bitwise: {'yes' if same else 'no'} "
                       f"({len(recs)} records)")
            if not same:   # which record ran where and when: bits are only promised on one machine
                out += [f"  - weights `{h[:12]}`: " + "; ".join(
                    f"{r['started_at'][:10]} on {machine(r)}, {(r.get('env') or {}).get('platform', '?')}"
                    for r in rs) for h, rs in by_hash.items()]
    if not out:
        out.append(f"- no seed was rerun; `python -m bench check-determinism --recipe {recipe.name}` "
                   "trains one seed twice and compares the weights")
    return out + [""]


def commands(name: str, group: Group | None) -> list[str]:
    """The command lines that rerun a group's seeds (one per contiguous range of seeds)."""
    if group is None:
        return [f"python -m bench run --recipe {name} --seeds 5"]
    flags = " --pipeline faithful" if group.pipeline == "faithful" else ""
    flags += f" --device {group.device}"
    threads = {(r.get("env") or {}).get("threads") for r in group.runs}
    if group.device == "cpu" and len(threads) == 1 and None not in threads:
        flags += f" --threads {threads.pop()}"
    ranges: list[list[int]] = []
    for s in group.seeds:
        if ranges and s == ranges[-1][0] + ranges[-1][1]:
            ranges[-1][1] += 1
        else:
            ranges.append([s, 1])
    return [f"python -m bench run --recipe {name} --seeds {n}" + (f" --seed-start {start}" if start else "") + flags
            for start, n in ranges]


def environment_lines(groups: list[Group]) -> list[str]:
    envs, commits = Counter(), Counter()
    for g in groups:
        for r in g.runs:
            e = r.get("env") or {}
            envs[(g.label, e.get("python"), e.get("torch"), e.get("cuda") or "—",
                  hardware(e), e.get("threads"))] += 1
            commits[(g.label, r.get("git_commit") or "unknown")] += 1
    if not envs:
        return ["No runs.", ""]
    rows = [[*k, n] for k, n in sorted(envs.items(), key=str)]
    return [table(rows, ["group", "python", "torch", "cuda", "gpu / cpu", "threads", "runs"]), "",
            "Git commits: " + "; ".join(f"{label}: `{c}` ×{n}" for (label, c), n in sorted(commits.items())), ""]


def smoke_lines(recipe: Recipe, smoke: list[dict], results: Path) -> list[str]:
    h = recipe.headline
    rows = [[rel(r["_path"], results), r["seed"], f"{r.get('pipeline', 'fast')} / {device_type(r)}",
             "current" if r["fingerprint"] == recipe.fingerprint else f"older `{r['fingerprint']}`",
             ", ".join(f"{k}={v}" for k, v in sorted(r["overrides"].items())) or "—",
             num(r["metrics"].get(h.metric), h.unit), num(r["metrics"].get("test_acc_honest"), "%"), r["epochs_run"]]
            for r in smoke]
    return [f"{len(smoke)} smoke run(s), never in statistics:", "",
            table(rows, ["record", "seed", "pipeline / device", "fingerprint", "overrides", h.metric,
                         "test_acc_honest", "epochs"]), ""]


def recipe_section(recipe: Recipe, rr: RecipeRuns, results: Path, figs: dict[str, str]) -> list[str]:
    g = rr.primary
    intro = recipe.doc.split("\n\n")[0].splitlines()
    out = [f"## {recipe.name}", "", *(f"> {line}" for line in intro), "",
           (f"Fingerprint `{recipe.fingerprint}`; dataset {recipe.hparams.dataset}, {recipe.hparams.epochs} epochs, "
            f"selection `{recipe.hparams.selection}`."), "", "### Runs", "", *runs_overview(recipe, rr)]
    out += [f"![{name}]({path})" for name, path in figs.items()] + ([""] if figs else [])
    out += [f"### Claims{f' (against {g.label}, n={len(g.runs)})' if g else ''}", ""]
    for claim in recipe.claims:
        out += claim_block(recipe, claim, g)
    out += ["### The honest number beside the document's", "", *honest_lines(recipe, g),
            "### Assumptions", "", *assumption_lines(recipe), "### Protocol flags", "", *flag_lines(recipe),
            "### Determinism", "", *determinism_lines(recipe, rr.groups),
            "### Reproduce", "", "```bash"]
    for group in rr.groups or [None]:
        out += commands(recipe.name, group)
    out += ["```", "", "### Environment", "", *environment_lines(rr.groups)]
    if rr.smoke:
        out += ["### Smoke runs (non-canonical)", "", *smoke_lines(recipe, rr.smoke, results)]
    return out


# ---------------------------------------------------------------- the report

def draw(recipe: Recipe, rr: RecipeRuns, folder: Path) -> dict[str, str]:
    """Both figures of a recipe with runs; returns alt text -> path relative to the report."""
    g, h = rr.primary, recipe.headline
    if g is None:
        return {}
    series = {grp.label: [(seed, x) for seed, x in zip(grp.seeds, grp.values(h.metric)) if finite(x)]
              for grp in rr.groups}
    seeds = figures.seeds_figure(folder / f"{recipe.name}_seeds.png", f"{recipe.name}: {h.metric} per seed",
                                 series, h.value, f"{h.metric} ({h.unit})" if h.unit else h.metric)
    curves = figures.curves_figure(folder / f"{recipe.name}_curves.png", f"{recipe.name}: {g.label}",
                                   [r["curves"] for r in g.runs])
    return {f"{recipe.name} per seed": f"{FIGURES_DIR}/{seeds.name}",
            f"{recipe.name} learning curves": f"{FIGURES_DIR}/{curves.name}"}


def write_report(results: Path, out: Path) -> Path:
    """REPORT.md at `out`, its figures in report_figures/ beside it."""
    results, out = Path(results), Path(out)
    if not results.is_dir():
        raise StoreError(f"results folder {results} does not exist (run `python -m bench run` first, "
                         "or pass --results)")
    records, problems = read_records(results)
    recipes = registry.all_recipes()
    known = {r.name for r in recipes}
    skipped = [(rel(p.path, results), p.reason) for p in problems]
    skipped += [(rel(r["_path"], results), f"no recipe module recipes/{r['recipe']}.py")
                for r in records if r["recipe"] not in known]
    runs = {r.name: split_runs([x for x in records if x["recipe"] == r.name], r.fingerprint) for r in recipes}
    lines = ["# Reproduction report", "",
             (f"Generated by `python -m bench report` from the run records in `{results.as_posix()}/` and the recipe "
              "modules. Statistics use canonical, complete runs of each recipe's current fingerprint, one value per "
              "seed; smoke runs and older fingerprints are listed but never mixed in. A claim is **reproduced** when "
              "it lies inside the 95% prediction interval of one new run, **not reproduced** when it is better than "
              "that interval, **exceeded** when the runs do better; **insufficient** means fewer than 3 seeds."), "",
             "## Summary", "",
             table([summary_row(r, runs[r.name]) for r in recipes],
                   ["recipe", "source", "claimed headline", "n", "mean ± std", "95% CI of mean", "min / median / max",
                    "seeds reaching claim", "params (measured / claimed)", "wall time per seed", "hardware",
                    "pipeline / device", "verdict"]), ""]
    for r in recipes:
        figs = draw(r, runs[r.name], out.parent / FIGURES_DIR)
        lines += recipe_section(r, runs[r.name], results, figs)
    lines += ["## Skipped records", ""]
    lines += [table(sorted(skipped), ["record", "reason"]), ""] if skipped else ["None: every record was readable.", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    return out
