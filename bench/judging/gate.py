"""The nightly regression gate: did a recipe get worse, slower, or fail to run?

Both folders are read through bench.records.evidence (by the command, once each). Per reading, over
canonical complete fp32 runs of the fast pipeline on the same device type (never cpu against cuda):
- identical: the candidate reran the baseline's seeds on the same host identity (same seed, host,
  thread count, step, precision) and every final weights hash matches: it passes without statistics.
  Where the same seeds on the same host gave other bits, the row says which environment fields differ
  (a torch upgrade, a driver) and is then judged like any other night;
- worse: the candidate's headline is below the baseline's by more than the minimum effect, by Welch's t
  on a shifted null (one-sided, alpha 0.05 by default), on the verdict's scale: the logit of an accuracy
  (the --min-effect in points converted at the baseline's mean), the log of a loss (--min-effect-rel).
  Runs that failed (diverged, or an outlier on the worse side: bench.judging.rule) are counted apart: a
  fragile recipe's failure rate is compared by Fisher's exact test, and a candidate failure where the
  baseline never failed breaks the night. Mann-Whitney U is shown beside it. The nightly draws fresh
  seeds each night (a seed window that moves with the date), so nights are independent draws;
  tests/test_gate_simulation.py simulates exactly that, against one fixed committed baseline;
- slower: only when every run of both sides ran on one host identity; the candidate/baseline
  ratio of per-run median seconds per epoch, with a 99% interval on the log ratio, and slower
  when the whole interval lies above --max-slowdown;
- not judged: a baseline that is unstable or has fewer than 2 converged runs cannot be compared with;
  when the candidate did no worse than it (no more failures, at least as many converged runs), the row
  says so and passes: identical data always passes;
- broken: only for what the candidate did: no candidate runs of a reading the night was meant to run,
  fewer than 2 converged candidate runs where the baseline had them, a failure the baseline never had,
  or a changed fingerprint (a recipe edit must be accepted explicitly with --accept-changed NAME).
Exit 0: nothing of that; 1: something regressed or failed; 2: bad input; 3: the gate itself broke.
"""
from __future__ import annotations

from statistics import median

from bench.contract import registry
from bench.contract.errors import BadInput
from bench.judging import stats
from bench.judging.rule import Scale, converged, failed_runs, points_on_scale
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


def oriented(values, scale: Scale) -> list[float]:
    """The converged runs on the verdict's scale, higher is better (the logit of an accuracy, -log of a loss)."""
    return list(scale.forward(converged(values, scale)))


def min_effect_on_scale(scale: Scale, base_mean: float, min_effect: float, min_effect_rel: float) -> float:
    """The smallest drop that counts, on the verdict's scale: --min-effect points below the baseline's mean
    for an accuracy, --min-effect-rel higher for a loss, as is for a plain number."""
    return points_on_scale(scale, base_mean, min_effect_rel if scale.kind == "loss" else min_effect)


def side(group: Group, metric: str, scale: Scale) -> dict:
    values = group.values(metric)
    good = converged(values, scale)
    failed = [s for s, bad in zip(group.seeds, failed_runs(values, scale)) if bad]
    return {"group": group.label, "n": len(values), "seeds": group.seeds, "values": values,
            "mean": stats.mean(good), "std": stats.std(good), "converged": len(good), "failed_seeds": failed,
            "seconds_per_epoch": seconds_per_epoch(group.runs), "machines": group.machines,
            "hosts": sorted({host(r) for r in group.runs})}


SAME_PLACE = ("seed", "host", "threads", "step", "precision")


def reruns(base: list[dict], cand: list[dict]) -> tuple[list[tuple[dict, dict]], list[dict]]:
    """(pairs of a candidate run and the baseline run of the same seed on the same host identity, the
    candidate runs without one)."""
    index = {tuple(r.get(k) for k in SAME_PLACE): r for r in base if r.get("host")}
    pairs, alone = [], []
    for r in cand:
        match = index.get(tuple(r.get(k) for k in SAME_PLACE))
        (pairs.append((r, match)) if match is not None else alone.append(r))
    return pairs, alone


def env_differences(a: dict, b: dict) -> list[str]:
    """The environment fields two runs disagree on (what may have changed the bits)."""
    ea, eb = a.get("env") or {}, b.get("env") or {}
    return sorted(k for k in set(ea) | set(eb) if ea.get(k) != eb.get(k) and k not in ("threads", "blas_threads"))


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

    def groups(records):
        return {g.device: g for g in group_runs(r for r in records if r["fingerprint"] == fp
                                                and r["pipeline"] == "fast" and r["precision"] == "fp32")}
    base_groups, cand_groups = groups(base), groups(cand)
    common = sorted(set(base_groups) & set(cand_groups), key=lambda d: d != "cuda")
    if not common:
        where = {side: ', '.join(sorted(g)) or 'no fast pipeline' for side, g in (("base", base_groups),
                                                                              ("cand", cand_groups))}
        row.update(status=f"not compared: baseline on {where['base']}, candidate on {where['cand']} "
                          "(never cpu against cuda)")
        row["notes"].append(row["status"])
        return row
    gb, gc = base_groups[common[0]], cand_groups[common[0]]
    b, c = side(gb, h.metric, scale), side(gc, h.metric, scale)
    row.update(fingerprint=fp, device=common[0], baseline=b, candidate=c, delta=c["mean"] - b["mean"])
    row["diverged"] = {"baseline": [len(b["failed_seeds"]), b["n"]], "candidate": [len(c["failed_seeds"]), c["n"]]}

    pairs, alone = reruns(gb.runs, gc.runs)
    if len(pairs) >= 2 and not alone and all(x["weights_sha256"] == y["weights_sha256"] for x, y in pairs):
        row.update(status="ok: identical (the baseline's seeds rerun on the same host gave the same weights)",
                   identical=True)
        return _timing(row, b, c, max_slowdown)
    changed = [(x, y) for x, y in pairs if x["weights_sha256"] != y["weights_sha256"]]
    if changed:
        fields = sorted({f for x, y in changed for f in env_differences(x, y)})
        row["notes"].append(f"bits changed: {len(changed)} seed(s) rerun on the same host gave other weights"
                            + (f" (environment differs in {', '.join(fields)})" if fields else
                               " with the same recorded environment: a nondeterminism or a harness change"))

    base_judgeable = b["converged"] >= 2 and len(b["failed_seeds"]) <= 1
    no_worse = len(c["failed_seeds"]) <= len(b["failed_seeds"]) and c["converged"] >= min(b["converged"], 2)
    if not base_judgeable:
        why = (f"the baseline is unstable ({len(b['failed_seeds'])} of {b['n']} runs failed)"
               if len(b["failed_seeds"]) > 1 else f"the baseline has {b['converged']} converged run(s)")
        if no_worse:
            row.update(status=f"not judged: {why}; the candidate did no worse")
            row["notes"].append(row["status"])
            return _timing(row, b, c, max_slowdown)
        row["broken"] = True
        row["notes"].append(f"{why}, and the candidate did worse: {len(c['failed_seeds'])} of {c['n']} failed, "
                            f"{c['converged']} converged")
    elif c["failed_seeds"] and not b["failed_seeds"]:
        row["broken"] = True
        row["notes"].append(f"candidate run(s) of seed(s) {', '.join(map(str, c['failed_seeds']))} diverged, gave no "
                            "value or fell far below the others")
    elif c["failed_seeds"]:    # a recipe that fails now and then: worse only if it now fails more often
        p = stats.fisher_more(len(c["failed_seeds"]), c["n"], len(b["failed_seeds"]), b["n"])
        row["p_diverged"] = p
        row["notes"].append(f"diverged {len(c['failed_seeds'])}/{c['n']} against the baseline's "
                            f"{len(b['failed_seeds'])}/{b['n']} (Fisher's exact p = {p:.3g})")
        row["diverges_more"] = bool(p < alpha)
    if base_judgeable and c["converged"] < 2:
        row["broken"] = True
        row["notes"].append(f"only {c['converged']} converged candidate run(s): at least 2 are needed")
    if h.higher_is_better is None:
        row["notes"].append("the headline has no better side: not judged")
    elif base_judgeable:
        yb, yc = oriented(b["values"], scale), oriented(c["values"], scale)
        delta = min_effect_on_scale(scale, b["mean"], min_effect, min_effect_rel)
        row["min_effect_on_scale"] = delta
        row["p_worse"] = stats.shifted_drop(yb, yc, delta)
        row["welch_p"] = stats.welch(yc, yb, "less")
        row["mannwhitney_p"] = stats.mann_whitney(yc, yb, "less") if min(len(yb), len(yc)) >= 3 else None
        row["worse"] = bool(finite(row["p_worse"]) and row["p_worse"] < alpha) or row.get("diverges_more", False)
    row = _timing(row, b, c, max_slowdown)
    row["regressed"] = row["worse"] or row["slower"]
    what = [w for w, flag in (("worse", row["worse"]), ("slower", row["slower"])) if flag]
    row["status"] = ("broken: " + "; ".join(n for n in row["notes"] if "diverged" in n or "converged" in n
                                            or "did worse" in n)
                     if row["broken"] else f"regression: {' and '.join(what)}" if what else "ok")
    return row


def _timing(row: dict, b: dict, c: dict, max_slowdown: float) -> dict:
    """The slowdown, judged only when every run of both sides ran on one host identity."""
    hosts = set(b["hosts"]) | set(c["hosts"])
    row["timing_comparable"] = len(hosts) == 1 and not next(iter(hosts)).startswith("unknown")
    ratio, lo, hi = stats.log_ratio_interval(b["seconds_per_epoch"], c["seconds_per_epoch"])
    row.update(slowdown=ratio if finite(ratio) else None, slowdown_interval=[lo, hi])
    if not row["timing_comparable"]:
        row["notes"].append(f"hosts differ ({', '.join(sorted(hosts))}): timings not judged")
    row["slower"] = bool(row["timing_comparable"] and finite(lo) and lo > max_slowdown)
    if row["slower"]:
        row["regressed"] = True
        if row.get("identical") or row.get("status", "").startswith("not judged"):
            row["status"] = "regression: slower"
    return row


def compare(base_ev: Evidence, cand_ev: Evidence, alpha: float = stats.ALPHA, min_effect: float = 0.1,
            min_effect_rel: float = 0.1, max_slowdown: float = 1.25, accepted=(), scope=None) -> dict:
    """The whole comparison of two results folders' evidence, as plain data (what --json writes); `scope`
    names the readings the night was meant to run (default: every reading either side holds)."""
    baseline, candidate = base_ev.root, cand_ev.root
    readings = {}
    for ev in (base_ev, cand_ev):
        for r in ev.records:
            if r["canonical"] and r["status"] == "complete":
                readings.setdefault((r["recipe"], r["variant"]), None)
    if scope:
        wanted = {(x.name, x.variant_name) for x in scope}
        readings = {k: None for k in readings if k in wanted}
    if not readings:
        raise NothingToCompare(f"neither {baseline} nor {candidate} holds a canonical complete run"
                               + (" of the readings named" if scope else ""))
    rows, warnings = [], []
    for name, variant in sorted(readings, key=lambda k: (k[0], k[1] or "")):
        base, cand = canonical_complete(base_ev, name, variant), canonical_complete(cand_ev, name, variant)
        try:
            recipe = registry.load(name, variant)
        except registry.RecipeError as exc:          # a recipe module that fails to load: that reading, not the gate
            rows.append({"reading": f"{name}:{variant}" if variant else name, "status": f"broken: {exc}",
                         "regressed": False, "broken": True, "notes": [str(exc)]})
            warnings.append(str(exc))
            continue
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
            "scope": sorted(x.label for x in scope) if scope else None,
            "regressed": [r["reading"] for r in rows if r["regressed"]], "broken": broken,
            "rejected_candidate_records": len(cand_ev.rejected), "readings": rows, "warnings": warnings}
