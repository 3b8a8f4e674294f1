"""The nightly regression gate: did a recipe get worse or slower between two results folders?

Per recipe present in both with the same fingerprint, over canonical complete seeds: the
headline metric (Welch's t-test, one-sided towards "candidate worse", with Mann-Whitney U
beside it as a check that needs no normality) and the median seconds per epoch. A
regression is a drop that is both significant (Welch p < alpha) and material (at least
min_effect in the metric's unit), or a slowdown beyond max_slowdown on the same machine;
timings from different machines are reported but never judged.
Exit 0: nothing regressed; 1: something did; 2: the folders cannot be compared.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import median

from . import registry, stats
from .report import Group, finite, machine, num, primary, pvalue, split_runs, spread, table
from .store import StoreError, read_records


class CompareError(StoreError):
    """Two results folders with no recipe in common: there is nothing to compare (bad input, exit 2)."""


def load(folder: Path) -> tuple[dict[str, list[dict]], list]:
    """Canonical complete records by recipe, and the store's problems."""
    if not Path(folder).is_dir():
        raise StoreError(f"results folder {folder} does not exist")
    records, problems = read_records(Path(folder))
    by_recipe: dict[str, list[dict]] = {}
    for r in records:
        if r["canonical"] is True and r["status"] == "complete":
            by_recipe.setdefault(r["recipe"], []).append(r)
    return by_recipe, problems


def seconds_per_epoch(group: Group) -> float | None:
    """Median over runs of each run's median seconds per epoch (robust to a slow first epoch)."""
    per_run = [median(t) for r in group.runs if (t := [x for x in r["curves"].get("epoch_time_s", []) if finite(x)])]
    return float(median(per_run)) if per_run else None


def pick_fingerprint(current: str, base: list[dict], cand: list[dict]) -> str | None:
    """A fingerprint both folders ran: today's if they share it, else the candidate's latest shared one."""
    common = {r["fingerprint"] for r in base} & {r["fingerprint"] for r in cand}
    if not common:
        return None
    if current in common:
        return current
    return max(common, key=lambda fp: max(r["started_at"] for r in cand if r["fingerprint"] == fp))


def pick_groups(base: list[Group], cand: list[Group]) -> tuple[Group, Group]:
    """The same pipeline and device type on both sides when possible, else each side's main group."""
    common = {(g.pipeline, g.device) for g in base} & {(g.pipeline, g.device) for g in cand}
    if not common:
        return primary(base), primary(cand)
    c = primary([g for g in cand if (g.pipeline, g.device) in common])
    return next(g for g in base if (g.pipeline, g.device) == (c.pipeline, c.device)), c


def side(group: Group, metric: str) -> dict:
    values = [x for x in group.values(metric) if finite(x)]
    return {"group": group.label, "n": len(values), "seeds": group.seeds, "values": values,
            "mean": stats.mean(values), "std": stats.std(values), "seconds_per_epoch": seconds_per_epoch(group),
            "machines": sorted({machine(r) for r in group.runs})}


def compare_recipe(recipe, base: list[dict], cand: list[dict], alpha: float, min_effect: float,
                   max_slowdown: float) -> dict:
    h = recipe.headline
    row = {"recipe": recipe.name, "metric": h.metric, "higher_is_better": h.higher_is_better, "regressed": False,
           "worse": False, "slower": False, "notes": []}
    fp = pick_fingerprint(recipe.fingerprint, base, cand)
    if fp is None:
        row.update(status="not comparable: recipe changed",
                   baseline_fingerprints=sorted({r["fingerprint"] for r in base}),
                   candidate_fingerprints=sorted({r["fingerprint"] for r in cand}))
        return row
    gb, gc = pick_groups(split_runs(base, fp).groups, split_runs(cand, fp).groups)
    b, c = side(gb, h.metric), side(gc, h.metric)
    row.update(fingerprint=fp, baseline=b, candidate=c, delta=c["mean"] - b["mean"])
    if gb.label != gc.label:
        row["notes"].append(f"different groups: baseline {gb.label}, candidate {gc.label}")

    if h.higher_is_better is None:
        row["notes"].append("the headline has no better side: not judged")
    else:
        worse_side = "less" if h.higher_is_better else "greater"
        row["welch_p"] = stats.welch(c["values"], b["values"], worse_side)
        row["mannwhitney_p"] = (stats.mann_whitney(c["values"], b["values"], worse_side)
                                if min(b["n"], c["n"]) >= 3 else None)
        row["worse_by"] = (b["mean"] - c["mean"]) * (1 if h.higher_is_better else -1)
        if min(b["n"], c["n"]) < 2:
            row["notes"].append("fewer than 2 seeds on a side: the metric is not judged")
        row["worse"] = bool(finite(row["welch_p"]) and row["welch_p"] < alpha
                            and row["worse_by"] >= min_effect - 1e-9)
        mw = row["mannwhitney_p"]
        if row["worse"] and mw is not None and mw >= alpha:
            row["notes"].append(f"Mann-Whitney U does not confirm (p = {pvalue(mw)})")

    same_machine = len(b["machines"]) == 1 and b["machines"] == c["machines"]
    sb, sc = b["seconds_per_epoch"], c["seconds_per_epoch"]
    row["slowdown"] = sc / sb if sb and sc is not None else None
    row["timing_comparable"] = same_machine
    if not same_machine:
        row["notes"].append(f"machines differ (baseline {', '.join(b['machines'])}; candidate "
                            f"{', '.join(c['machines'])}): timings not comparable, slowdown not judged")
    row["slower"] = bool(same_machine and row["slowdown"] is not None and row["slowdown"] > max_slowdown)
    row["regressed"] = row["worse"] or row["slower"]
    what = [w for w, flag in (("worse", row["worse"]), ("slower", row["slower"])) if flag]
    row["status"] = f"regression: {' and '.join(what)}" if what else "ok"
    return row


def compare(baseline: Path, candidate: Path, alpha: float = 0.05, min_effect: float = 0.1,
            max_slowdown: float = 1.25) -> dict:
    """The whole comparison as plain data (what --json writes)."""
    base, base_problems = load(baseline)
    cand, cand_problems = load(candidate)
    common = sorted(set(base) & set(cand))
    if not common:
        listed = [", ".join(sorted(names)) or "none" for names in (base, cand)]
        raise CompareError(f"no recipe has canonical complete runs in both {baseline} ({listed[0]}) "
                           f"and {candidate} ({listed[1]})")
    known = {r.name: r for r in registry.all_recipes()}
    rows, warnings = [], []
    for name in common:
        if name not in known:
            rows.append({"recipe": name, "status": f"unknown recipe: no recipes/{name}.py", "regressed": False})
            continue
        rows.append(compare_recipe(known[name], base[name], cand[name], alpha, min_effect, max_slowdown))
        warnings += [f"{name}: {note}" for note in rows[-1]["notes"]]
    for name in sorted(set(base) ^ set(cand)):
        where = "baseline" if name in base else "candidate"
        rows.append({"recipe": name, "status": f"only in {where}", "regressed": False})
        warnings.append(f"{name}: runs only in the {where}")
    rows.sort(key=lambda r: r["recipe"])
    for folder, problems in ((baseline, base_problems), (candidate, cand_problems)):
        warnings += [f"{folder}: skipped {p.path}: {p.reason}" for p in problems]
    return {"baseline": str(baseline), "candidate": str(candidate), "alpha": alpha, "min_effect": min_effect,
            "max_slowdown": max_slowdown, "regressed": [r["recipe"] for r in rows if r["regressed"]],
            "recipes": rows, "warnings": warnings}


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def render(summary: dict) -> str:
    rows = []
    for r in summary["recipes"]:
        b, c = r.get("baseline"), r.get("candidate")
        if b is None:
            rows.append([r["recipe"], r.get("metric", "—"), "—", "—", "—", "—", "—", "—", r["status"]])
            continue
        ratio = f" (×{r['slowdown']:.2f})" if r.get("slowdown") else ""
        rows.append([r["recipe"], r["metric"], f"{num(b['mean'])} ± {spread(b['std'])} (n={b['n']})",
                     f"{num(c['mean'])} ± {spread(c['std'])} (n={c['n']})", num(r["delta"]),
                     pvalue(r.get("welch_p")), pvalue(r.get("mannwhitney_p")),
                     f"{num(b['seconds_per_epoch'])} → {num(c['seconds_per_epoch'])}{ratio}", r["status"]])
    return table(rows, ["recipe", "headline", "baseline", "candidate", "Δ mean", "Welch p (worse)",
                        "Mann-Whitney p", "s / epoch", "verdict"])


def run_gate(baseline: Path, candidate: Path, json_path: Path, alpha: float = 0.05, min_effect: float = 0.1,
             max_slowdown: float = 1.25) -> int:
    """`python -m bench compare`: print the table, write the JSON summary, 1 when something regressed."""
    summary = compare(baseline, candidate, alpha, min_effect, max_slowdown)
    print(render(summary))
    for w in summary["warnings"]:
        print(f"warning: {w}")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(_json_safe(summary), indent=1, sort_keys=True, allow_nan=False) + "\n")
    bad = summary["regressed"]
    print(f"REGRESSION in {', '.join(bad)}" if bad else "no regression", f"(summary in {json_path})")
    return 1 if bad else 0
