"""The nightly regression gate: did a recipe get worse, slower, or fail to run?

Both folders are read through bench.records.evidence (by the command, once each). Per reading, over canonical complete runs on the
same device type (never cpu against cuda):
- worse: the candidate's headline is below the baseline's by more than the minimum effect, by
  Student's t on a shifted null (pooled variance, one-sided, alpha 0.05 by default; accuracies
  in points, losses on the log scale with a relative effect). Simulated (tests/test_gate_simulation.py):
  about 0.5 false alarms a month over 9 recipes x 30 nights, power 95% for a 0.3-point drop at
  sd 0.086 with 5 runs a side. Welch's t and Mann-Whitney U are shown beside it;
- slower: only when every run of both sides ran on one host identity; the candidate/baseline
  ratio of per-run median seconds per epoch, with a 99% interval on the log ratio, and slower
  when the whole interval lies above --max-slowdown;
- broken: a canonical reading of the baseline with no candidate runs, fewer than 2 finite
  candidate runs, a diverged candidate run where the baseline never diverged (where it did, the
  recipe is known to be fragile, and a higher divergence rate by Fisher's exact test is "worse"),
  or a changed fingerprint (a recipe edit must be accepted explicitly with --accept-changed NAME).
Exit 0: nothing of that; 1: something regressed or failed; 2: bad input; 3: the gate itself broke.
"""
from __future__ import annotations

import math
from statistics import median

from bench.contract import registry
from bench.contract.errors import BadInput
from bench.judging import stats
from bench.judging.verdicts import scale_of
from bench.records.evidence import Evidence, rel
from bench.records.format import finite
from bench.records.groups import Group, group_runs, host


class NothingToCompare(BadInput):
    """Two results folders with no reading in common: there is nothing to compare (bad input, exit 2)."""


def canonical_complete(ev: Evidence, recipe, variant) -> list[dict]:
    return [r for r in ev.of(recipe, variant) if r["canonical"] and r["status"] == "complete"]


def seconds_per_epoch(runs: list[dict]) -> list[float]:
    """Each run's median seconds per epoch (robust to a slow first epoch)."""
    return [median(t) for r in runs if (t := [x for x in r["curves"].get("epoch_time_s", []) if finite(x)])]


def oriented(values, scale: stats.Scale) -> list[float]:
    """Accuracies in points, losses as -log: higher is better on both."""
    good = stats.converged(values, scale)
    if scale.kind == "loss":
        return list(scale.forward(good))
    return [v if scale.higher_is_better else -v for v in good]


def side(group: Group, metric: str) -> dict:
    values = group.values(metric)
    finite_values = [v for v in values if finite(v)]
    return {"group": group.label, "n": len(values), "seeds": group.seeds, "values": values,
            "mean": stats.mean(finite_values), "std": stats.std(finite_values),
            "seconds_per_epoch": seconds_per_epoch(group.runs), "machines": group.machines,
            "hosts": sorted({host(r) for r in group.runs})}


def compare_reading(recipe, base: list[dict], cand: list[dict], alpha: float, min_effect: float,
                    min_effect_rel: float, max_slowdown: float, accepted: set) -> dict:
    h = recipe.headline
    scale = scale_of(recipe, h)
    row = {"reading": recipe.label, "metric": h.metric, "regressed": False, "broken": False, "worse": False,
           "slower": False, "notes": []}
    base_fps = sorted({r["fingerprint"] for r in base})
    cand_fps = sorted({r["fingerprint"] for r in cand})
    if not cand:
        row.update(status="broken: no candidate runs (did every run crash?)", broken=True)
        return row
    if set(cand_fps) - set(base_fps):
        if recipe.name in accepted or recipe.label in accepted:
            row.update(status="changed (accepted): not compared", baseline_fingerprints=base_fps,
                       candidate_fingerprints=cand_fps)
        else:
            row.update(status=f"broken: the recipe changed (fingerprint {', '.join(base_fps)} -> "
                              f"{', '.join(cand_fps)}); review, then pass --accept-changed {recipe.label}",
                       broken=True, baseline_fingerprints=base_fps, candidate_fingerprints=cand_fps)
        return row
    fp = cand_fps[-1] if len(cand_fps) == 1 else recipe.fingerprint
    base_groups = {g.device: g for g in group_runs(r for r in base if r["fingerprint"] == fp and r["pipeline"] == "fast"
                                                   and r["precision"] == "fp32")}
    cand_groups = {g.device: g for g in group_runs(r for r in cand if r["fingerprint"] == fp and r["pipeline"] == "fast"
                                                   and r["precision"] == "fp32")}
    common = sorted(set(base_groups) & set(cand_groups), key=lambda d: d != "cuda")
    if not common:
        row.update(status=f"not compared: baseline on {', '.join(sorted(base_groups)) or 'no fast pipeline'}, "
                          f"candidate on {', '.join(sorted(cand_groups)) or 'no fast pipeline'} (never cpu against cuda)")
        row["notes"].append(row["status"])
        return row
    gb, gc = base_groups[common[0]], cand_groups[common[0]]
    b, c = side(gb, h.metric), side(gc, h.metric)
    row.update(fingerprint=fp, device=common[0], baseline=b, candidate=c, delta=c["mean"] - b["mean"])

    bad = [s for s, v in zip(gc.seeds, c["values"]) if stats.diverged(v, scale)]
    base_bad = sum(stats.diverged(v, scale) for v in b["values"])
    converged = stats.converged(c["values"], scale)
    row["diverged"] = {"baseline": [base_bad, b["n"]], "candidate": [len(bad), c["n"]]}
    if bad and not base_bad:
        row["broken"] = True
        row["notes"].append(f"candidate run(s) of seed(s) {', '.join(map(str, bad))} diverged or gave no value")
    elif bad:          # a recipe that diverges now and then: worse only if it now diverges more often
        p = stats.fisher_more(len(bad), c["n"], base_bad, b["n"])
        row["p_diverged"] = p
        row["notes"].append(f"diverged {len(bad)}/{c['n']} against the baseline's {base_bad}/{b['n']} "
                            f"(Fisher's exact p = {p:.3g})")
        row["diverges_more"] = bool(p < alpha)
    if len(converged) < 2:
        row["broken"] = True
        row["notes"].append(f"only {len(converged)} converged candidate run(s): at least 2 are needed")
    if h.higher_is_better is None:
        row["notes"].append("the headline has no better side: not judged")
    else:
        yb, yc = oriented(b["values"], scale), oriented(c["values"], scale)
        delta = math.log1p(min_effect_rel) if scale.kind == "loss" else min_effect
        row["p_worse"] = stats.shifted_drop(yb, yc, delta)
        row["welch_p"] = stats.welch(yc, yb, "less")
        row["mannwhitney_p"] = stats.mann_whitney(yc, yb, "less") if min(len(yb), len(yc)) >= 3 else None
        row["worse"] = bool(finite(row["p_worse"]) and row["p_worse"] < alpha) or row.get("diverges_more", False)
        if len(yb) < 2:
            row["notes"].append("fewer than 2 baseline runs: the metric is not judged")

    hosts = set(b["hosts"]) | set(c["hosts"])
    row["timing_comparable"] = len(hosts) == 1 and not next(iter(hosts)).startswith("unknown")
    ratio, lo, hi = stats.log_ratio_interval(b["seconds_per_epoch"], c["seconds_per_epoch"])
    row.update(slowdown=ratio if finite(ratio) else None, slowdown_interval=[lo, hi])
    if not row["timing_comparable"]:
        row["notes"].append(f"hosts differ ({', '.join(sorted(hosts))}): timings not judged")
    row["slower"] = bool(row["timing_comparable"] and finite(lo) and lo > max_slowdown)
    row["regressed"] = row["worse"] or row["slower"]
    what = [w for w, flag in (("worse", row["worse"]), ("slower", row["slower"])) if flag]
    row["status"] = ("broken: " + "; ".join(n for n in row["notes"] if "diverged" in n or "converged" in n)
                     if row["broken"] else f"regression: {' and '.join(what)}" if what else "ok")
    return row


def compare(base_ev: Evidence, cand_ev: Evidence, alpha: float = stats.ALPHA, min_effect: float = 0.1,
            min_effect_rel: float = 0.1, max_slowdown: float = 1.25, accepted=()) -> dict:
    """The whole comparison of two results folders' evidence, as plain data (what --json writes)."""
    baseline, candidate = base_ev.root, cand_ev.root
    readings = {}
    for ev in (base_ev, cand_ev):
        for r in ev.records:
            if r["canonical"] and r["status"] == "complete":
                readings.setdefault((r["recipe"], r["variant"]), None)
    if not readings:
        raise NothingToCompare(f"neither {baseline} nor {candidate} holds a canonical complete run")
    rows, warnings = [], []
    for name, variant in sorted(readings, key=lambda k: (k[0], k[1] or "")):
        base, cand = canonical_complete(base_ev, name, variant), canonical_complete(cand_ev, name, variant)
        recipe = registry.load(name, variant)
        if not base:
            rows.append({"reading": recipe.label, "status": "new: only in the candidate", "regressed": False,
                         "broken": False})
            warnings.append(f"{recipe.label}: runs only in the candidate (no baseline yet)")
            continue
        if not cand and variant is not None:
            rows.append({"reading": recipe.label, "status": "variant not run tonight", "regressed": False,
                         "broken": False})
            continue
        rows.append(compare_reading(recipe, base, cand, alpha, min_effect, min_effect_rel, max_slowdown,
                                    set(accepted)))
        warnings += [f"{recipe.label}: {n}" for n in rows[-1]["notes"]]
    warnings += [f"{baseline}: {w}" for w in base_ev.warnings()]
    warnings += [f"{candidate}: {w}" for w in cand_ev.warnings()]
    broken = [r["reading"] for r in rows if r["broken"]]
    broken += [f"rejected candidate record {rel(x.path, candidate)}" for x in cand_ev.rejected]
    return {"baseline": str(baseline), "candidate": str(candidate), "alpha": alpha, "min_effect": min_effect,
            "min_effect_rel": min_effect_rel, "max_slowdown": max_slowdown, "accepted": sorted(accepted),
            "regressed": [r["reading"] for r in rows if r["regressed"]], "broken": broken,
            "rejected_candidate_records": len(cand_ev.rejected), "readings": rows, "warnings": warnings}
