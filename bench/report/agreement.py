"""After a run: do your runs on this machine agree with the committed evidence from other machines?

The first question a user brings is "does it reproduce on MY machine?". This block answers it
from the records alone (read through bench.records.evidence): this machine's canonical runs of the
reading, the runs of every other machine in the same pipeline and device type (mean ± std of the
converged runs, diverged ones counted apart), a Welch and a Mann-Whitney test between them, and the
claim's verdict with this machine's runs included.
"""
from __future__ import annotations

from bench.judging import rule, stats
from bench.judging.verdicts import headline_result, scale_of
from bench.records.evidence import Evidence
from bench.records.groups import Group, host, machine, split_runs
from bench.report.fmt import chance, mean_sd, pvalue, suffix


def agreement_lines(recipe, ev: Evidence, pipeline: str, device: str, this_host: str,
                    precision: str = "fp32") -> list[str]:
    h = recipe.headline
    rr = split_runs(ev.of(recipe.name, recipe.variant_name), recipe.fingerprint)
    group = next((g for g in rr.groups if g.pipeline == pipeline and g.device == device and g.precision == precision),
                 None)
    if group is None:
        return [f"{recipe.label}: no canonical complete run on {Group(pipeline, device, [], precision).label} yet."]
    mine = [r for r in group.runs if r.get("host") == this_host]
    others = [r for r in group.runs if r.get("host") != this_host]
    scale, u = scale_of(recipe, h), h.unit
    a = rule.converged([r["metrics"].get(h.metric) for r in mine], scale)
    b = rule.converged([r["metrics"].get(h.metric) for r in others], scale)

    def runs(records, values) -> str:
        """n runs, mean ± std of the converged ones, and how many diverged (never averaged in)."""
        lost = len(records) - len(values)
        return (f"n={len(records)}, {mean_sd(stats.mean(values), stats.std(values), len(values), u)}{suffix(u)}"
                + (f" ({len(values)} converged; {lost} diverged)" if lost else ""))

    out = [f"== {recipe.label}: your runs against the evidence ({h.metric}, claimed {h.value:g}{suffix(u)})",
           f"this machine ({', '.join(sorted({machine(r) for r in mine})) or '—'}): {runs(mine, a)}"]
    if others:
        hosts = sorted({host(r) for r in others})
        out.append(f"other machines ({', '.join(sorted({machine(r) for r in others}))}; {len(hosts)} "
                   f"host(s)): {runs(others, b)}")
        pw, pm = stats.welch(a, b), stats.mann_whitney(a, b)
        if len(a) >= 2 and len(b) >= 2:
            agree = "they agree (no significant difference)" if pw >= 0.05 and pm >= 0.05 else \
                "they DIFFER (p < 0.05): see REPORT.md's runs by machine"
            out.append(f"Welch p = {pvalue(pw)}, Mann-Whitney p = {pvalue(pm)}: {agree}")
        else:
            out.append("too few runs on one side for a test (2 or more each)")
    else:
        out.append("other machines: no committed runs of this reading to compare with")
    res = headline_result(recipe, Group(group.pipeline, group.device, group.runs, group.precision))
    j = res.judgement
    out.append(f"the claim with your runs included (n={j.n}): {res.verdict}; one new run reaches it with chance "
               f"{chance(j.p_one)}" + (f"; {j.n_diverged} run(s) diverged" if j.n_diverged else ""))
    return out
