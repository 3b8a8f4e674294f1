"""A claim's block in REPORT.md: its quote and protocol, the numbers of the verdict rule, the verdict within
seed noise and within implementation noise, and the honest number beside the document's."""
from __future__ import annotations

import math
from typing import Optional

from bench.contract.registry import Recipe
from bench.judging import rule, stats
from bench.judging.noise import Tau, tipping_point
from bench.judging.rule import decide
from bench.judging.verdicts import ClaimResult, failed_runs, scale_of, seeding_fault
from bench.records.groups import Group
from bench.records.selection import honest_selection
from bench.report.fmt import chance, finite, interval, mean_sd, num, pvalue, suffix


def failed_text(j) -> str:
    """How many runs failed, and how: "4 diverged", "1 diverged, 1 outlier"."""
    diverged = j.n_diverged - j.n_outliers
    parts = [f"{diverged} diverged" if diverged else "", f"{j.n_outliers} outlier{'s' if j.n_outliers > 1 else ''}"
             if j.n_outliers else ""]
    return ", ".join(p for p in parts if p)


def reach_text(j) -> str:
    """The chance one new run reaches the claim: if it converges, and for any run when some failed."""
    if not j.n_diverged or not finite(j.p_any):
        return chance(j.p_one)
    return f"{chance(j.p_one)} if it converges, {chance(j.p_any)} for any run ({j.n_diverged} of {j.n} failed)"


def noise_lines(res: ClaimResult, recipe: Recipe, tau: Optional[Tau]) -> list[str]:
    """The verdict within implementation noise beside the one within seed noise, and the tipping point."""
    j, c = res.judgement, res.claim
    scale = scale_of(recipe, c)
    if tau is None or j.verdict not in ("reproduced", "not reproduced", "exceeded") or scale.kind != "percent":
        return []                              # tau is measured on the logit of accuracies: it says nothing of a loss
    verdict, p = decide(j, scale, c.value, tau.tau)
    star = tipping_point(j, scale, c.value)
    points = points_per_logit(j.mean)
    out = [f"- within implementation noise (tau = {tau.tau:.3f} on the logit scale, {tau.k} cells; "
           f"[Implementation noise](#implementation-noise)): chance one new run reaches the claim {chance(p)}; "
           f"verdict **{verdict}**"]
    if star is not None:
        out.append(f"- tipping point: the verdict would turn {decide(j, scale, c.value, star + 1e-4)[0]} at "
                   f"tau* = {star:.3f}" + (f" (about {star * points:.2f} points at {num(j.mean, '%')}%)"
                                            if c.unit == "%" else ""))
    else:
        out.append("- tipping point: none: no implementation noise changes this verdict")
    if verdict != j.verdict:
        out.append(f"- the two verdicts differ: within seed noise alone **{j.verdict}**; allowing the implementation "
                   f"noise this suite measured, **{verdict}**")
    return out


def points_per_logit(mean_percent: float) -> float:
    """How many points of accuracy one unit of logit is worth near this accuracy (the derivative of 100 p)."""
    p = mean_percent / 100
    return 100 * p * (1 - p) if finite(mean_percent) else math.nan


def judged_lines(res: ClaimResult, group: Group, unit: str, recipe: Recipe, tau: Optional[Tau]) -> list[str]:
    j = res.judgement
    by_seed: dict[int, list[str]] = {}
    for s, v in zip(group.seeds, group.values(res.claim.metric)):
        by_seed.setdefault(s, []).append(num(v, unit))
    out = [f"- runs ({group.label}, n={j.n}{f', {failed_text(j)}' if j.n_diverged else ''}): "
           f"{mean_sd(j.mean, j.std, len(j.values), unit)}{suffix(unit)}; per seed: "
           + ", ".join(f"{s}: {' / '.join(vs)}" for s, vs in by_seed.items())]
    if finite(j.icc):
        out.append(f"- seeds run more than once (on other machines): their runs correlate, intraclass correlation "
                   f"{j.icc:.2f} over {j.seeds} seeds, so the {len(j.values)} converged runs count as {j.m_eff:.1f} "
                   "independent runs in the bounds below (Kish's design effect)")
    if len(j.values) >= 2 and not finite(j.best_plausible):
        why = f"the {len(j.values)} runs gave one value, no spread to predict from" if j.std == 0 else "undefined"
        out.append(f"- one new run: no predictive bound, interval or best-of-k chance ({why})")
    elif len(j.values) >= 2:
        side = "upper" if res.claim.higher_is_better else "lower"
        if j.std == 0:
            out.append(f"- the {len(j.values)} runs tie: one value, on a metric that counts images (a spread below one "
                       "image cannot be seen), so their spread is taken as one image's rounding sd (1/√12 of it)")
        out += [f"- one new run: one-sided 95% {side} predictive bound {num(j.best_plausible, unit)}{suffix(unit)}; "
                f"chance it reaches the claim {reach_text(j)} (Student t predictive)"
                + (f", Holm-adjusted p = {pvalue(j.p_adjusted)}" if not res.claim.headline else ""),
                f"- 95% CI of the mean {interval(j.ci, unit)}, bootstrap {interval(j.bootstrap, unit)}",
                "- chance that the best of k runs reaches the claim: "
                + ", ".join(f"k={k}: {chance(p)}" for k, p in j.best_of.items())]
    lo, hi = j.reaching_ci
    out.append(f"- runs reaching the claim: {j.reaching}/{j.n} (95% CI {lo:.0%}–{hi:.0%}; failed runs count "
               "as not reaching)")
    if j.beats_all is not None:
        out.append(f"- distribution-free: a new run beats all {j.n} with chance 1/(n+1) = {1 / (j.n + 1):.1%}; "
                   f"the claim {'beats' if j.beats_all else 'does not beat'} every run")
    tail = ""
    if j.verdict == "not reproduced":
        tail = (f"; plausible only as the best of K = {j.plausible_k} runs" if j.plausible_k
                else f"; not plausible even as the best of {rule.MAX_K:,} runs")
    if res.protocol_k:
        tail += f"; the document's number is {res.protocol_k}"
    if j.verdict == "seeding fault":
        tail = (": runs of different seeds gave bitwise identical final weights (see Determinism): the seed does not "
                "reach the run, so the runs are no sample of seeds (check the seeding)" if seeding_fault(group) else
                f": {j.m} converged runs gave one identical value, which independent seeds never do (check the "
                "seeding)")
    return out + [f"- verdict within seed noise: **{res.verdict}**{tail}", *noise_lines(res, recipe, tau)]


def claim_block(recipe: Recipe, res: ClaimResult, group: Group | None, tau: Optional[Tau] = None) -> list[str]:
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
        out += judged_lines(res, group, u, recipe, tau) + [""]
    else:
        out += [f"- runs: none yet; verdict: **{res.verdict}**", ""]
    return out


def honest_lines(recipe: Recipe, group: Group | None) -> list[str]:
    h = recipe.headline
    if h.selection != "best_test_epoch":
        return [(f"The document's protocol (`{h.selection}`) did not look at the test set: "
                 "its headline needs no honest counterpart."), ""]
    protocol = honest_selection(h.selection, recipe.hparams.split != "official")
    if not group:
        return [f"The document picks its epoch on test; without that the protocol is `{protocol}`. No runs yet.", ""]
    doc, honest = group.values(h.metric), group.values("test_acc_honest")
    gap = [a - b for a, b in zip(doc, honest) if finite(a) and finite(b)]
    j = rule.judge(honest, h.value, scale_of(recipe, h), failed_runs(recipe, group), group.seeds)
    return [f"- `{h.metric}` (the document's protocol, epoch picked on test): "
            f"{mean_sd(stats.mean(doc), stats.std(doc), len(doc), h.unit)}{suffix(h.unit)}",
            (f"- `test_acc_honest` (`{protocol}`, test never looked at): "
             f"{mean_sd(j.mean, j.std, len(j.values), h.unit)}{suffix(h.unit)}; against the claim: **{j.label}**"),
            (f"- test-set selection adds {mean_sd(stats.mean(gap), stats.std(gap), len(gap), h.unit)} points on "
             f"average (n={len(gap)})"), ""]
