"""Every claim of a reading judged against a group of runs: which rule applies, on which scale.

A claim about the model (a parameter count) is checked exactly; a wall time on the author's
unnamed hardware gets no verdict; a number the runs cannot measure the way the document did is
"not comparable", with the reason; a claim without a better side (an epoch number) is described,
never judged; every other claim goes through bench.judging.rule.judge on its metric's scale. The
headline is the primary endpoint; the reading's other judged claims are Holm-corrected together. Which
runs failed (diverged, or an outlier) is decided once, on the headline, and holds for every claim.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from bench.contract.recipe import DATASETS, TEST_IMAGES, Claim
from bench.contract.registry import Recipe
from bench.judging import rule
from bench.records.groups import Group


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    rule: str                                   # judged | described | not comparable | model | time
    verdict: str                                # the label shown
    judgement: Optional[rule.Judgement] = None
    description: Optional[rule.Description] = None
    measured_params: Optional[int] = None

    @property
    def protocol_k(self) -> Optional[str]:
        """The document's own best-of-K, when it says."""
        if self.claim.runs_behind is None:
            return None
        return ("its only (or first) run: K=1 was the document's protocol" if self.claim.runs_behind == 1
                else f"the best of {self.claim.runs_behind} runs")


def n_eval(recipe: Recipe, claim: Claim) -> Optional[int]:
    """The number of images behind an accuracy claim (its binomial noise floor)."""
    hp = recipe.hparams
    if claim.measured_on == "test":
        return TEST_IMAGES[hp.dataset]
    if claim.measured_on == "val":
        return hp.val_size or None
    if claim.measured_on == "train":
        return DATASETS[hp.dataset][0] - (hp.val_size if hp.split != "official" else 0)
    return None


def scale_of(recipe: Recipe, claim: Claim) -> rule.Scale:
    return rule.Scale.of(claim.metric, claim.unit, claim.higher_is_better, n_eval(recipe, claim))


def failed_runs(recipe: Recipe, group: Optional[Group]) -> list[bool]:
    """Per run of the group: did it fail as a run (its headline diverged, or an outlier)?"""
    if not group:
        return []
    h = recipe.headline
    return rule.failed_runs(group.values(h.metric), scale_of(recipe, h))


def _label(verdict: str, claim: Claim) -> str:
    return f"{verdict} (aspiration)" if claim.aspiration else verdict


def seeding_fault(group: Optional[Group]) -> bool:
    """Runs of different seeds gave the same final weights (bench.records.evidence counted them once)."""
    return bool(group) and any(r.get("_same_weights_seeds") for r in group.runs)


def judge_reading(recipe: Recipe, group: Optional[Group]) -> list[ClaimResult]:
    """One result per claim, in the recipe's order; secondary judged claims Holm-corrected. Where the seeds did
    not reach the runs, every judged claim is a seeding fault: the runs are no sample of seeds."""
    runs = group.runs if group else []
    failed = failed_runs(recipe, group)
    out: list[Optional[ClaimResult]] = []
    pending = []                                       # (index, judgement) of secondary judged claims
    for i, claim in enumerate(recipe.claims):
        if claim.measured_on == "model":
            measured = sorted({r["params"] for r in runs}) or [recipe.params]
            ok = all(p == claim.value for p in measured)
            out.append(ClaimResult(claim, "model", _label("reproduced" if ok else "not reproduced", claim),
                                   measured_params=measured[0]))
        elif claim.measured_on == "time":
            out.append(ClaimResult(claim, "time", "no verdict (other hardware)"))
        elif claim.not_comparable:
            out.append(ClaimResult(claim, "not comparable", "not comparable"))
        elif claim.higher_is_better is None:           # described over the runs that did not fail
            values = [v for v, bad in zip(group.values(claim.metric), failed) if not bad] if group else []
            out.append(ClaimResult(claim, "described", "described, no verdict",
                                   description=rule.describe(values, claim.value)))
        else:
            j = rule.judge(group.values(claim.metric) if group else [], claim.value, scale_of(recipe, claim),
                           failed if group else None, group.seeds if group else None)
            out.append(None)
            if claim.headline:
                out[i] = ClaimResult(claim, "judged", _label(j.label, claim), judgement=j)
            else:
                pending.append((i, j))
    for (i, _), j in zip(pending, rule.with_holm([j for _, j in pending])):
        out[i] = ClaimResult(recipe.claims[i], "judged", _label(j.label, recipe.claims[i]), judgement=j)
    if seeding_fault(group):
        out = [replace(r, verdict=_label("seeding fault", r.claim),
                       judgement=replace(r.judgement, verdict="seeding fault"))
               if r.judgement is not None else r for r in out]
    return out


def headline_result(recipe: Recipe, group: Optional[Group]) -> ClaimResult:
    return next(r for r in judge_reading(recipe, group) if r.claim.headline)
