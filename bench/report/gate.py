"""The gate's console table: one row per reading, baseline against candidate (`bench compare`)."""
from __future__ import annotations

from statistics import median

from bench.report.fmt import num, pvalue, spread, table


def render(summary: dict) -> str:
    rows = []
    for r in summary["readings"]:
        b, c = r.get("baseline"), r.get("candidate")
        if b is None:
            rows.append([r["reading"], r.get("metric", "—"), "—", "—", "—", "—", "—", "—", "—", r["status"]])
            continue
        spe = [f"{num(median(x)) if x else '—'}" for x in (b["seconds_per_epoch"], c["seconds_per_epoch"])]
        ratio = f" (×{r['slowdown']:.2f})" if r.get("slowdown") else ""
        rows.append([r["reading"], f"{r['metric']} ({r['device']})",
                     f"{num(b['mean'])} ± {spread(b['std'])} (n={b['n']})",
                     f"{num(c['mean'])} ± {spread(c['std'])} (n={c['n']})", num(r["delta"]),
                     pvalue(r.get("p_worse")), pvalue(r.get("welch_p")), pvalue(r.get("mannwhitney_p")),
                     f"{spe[0]} → {spe[1]}{ratio}", r["status"]])
    return table(rows, ["reading", "headline", "baseline", "candidate", "Δ mean", "p (worse by > min effect)",
                        "Welch p", "Mann-Whitney p", "s / epoch", "verdict"])
