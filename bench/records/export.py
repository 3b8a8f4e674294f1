"""The export frames: the usable runs as one tidy table, and the curves as a long one (`bench export`).

Why: people analyse a benchmark's runs themselves, in pandas, a notebook or a spreadsheet, and a
hand-written loop over results/**/*.json gets it subtly wrong (rejected records, copies, smoke
runs and older fingerprints mixed in). The frames are built from bench.records.evidence, the same
records REPORT.md and the gate count; rejected records are never exported.
"""
from __future__ import annotations

import pandas as pd

from bench.records.evidence import Evidence, rel
from bench.records.groups import device_type, host, machine

RUN_COLUMNS = ["recipe", "variant", "reading", "seed", "fingerprint", "current", "canonical", "status", "truncated",
               "pipeline", "device", "host", "hardware", "threads", "params", "wall_time_s", "epochs_run",
               "epochs_planned", "torch", "cuda", "started_at", "weights_sha256", "record"]


def runs_frame(ev: Evidence, current: dict[tuple, str]) -> pd.DataFrame:
    """One row per usable run: identity columns, then one column per metric; `current` maps
    (recipe, variant) to today's fingerprint."""
    rows = []
    for r in ev.records:
        env = r.get("env") or {}
        row = {"recipe": r["recipe"], "variant": r["variant"],
               "reading": r["recipe"] if r["variant"] is None else f"{r['recipe']}:{r['variant']}",
               "seed": r["seed"], "fingerprint": r["fingerprint"],
               "current": current.get((r["recipe"], r["variant"])) == r["fingerprint"],
               "canonical": r["canonical"], "status": r["status"], "truncated": r["truncated"],
               "pipeline": r["pipeline"], "device": device_type(r), "host": host(r), "hardware": machine(r),
               "threads": r["threads"], "params": r["params"], "wall_time_s": r["wall_time_s"],
               "epochs_run": r["epochs_run"], "epochs_planned": r["epochs_planned"], "torch": env.get("torch"),
               "cuda": env.get("cuda"), "started_at": r["started_at"], "weights_sha256": r["weights_sha256"],
               "record": rel(r["_path"], ev.root)}
        row.update({k: v for k, v in sorted(r["metrics"].items()) if k not in row})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=RUN_COLUMNS)
    metrics = sorted(c for c in frame.columns if c not in RUN_COLUMNS)
    return frame[RUN_COLUMNS + metrics]


def curves_frame(ev: Evidence) -> pd.DataFrame:
    """Long format: one row per (run, epoch, metric)."""
    rows = []
    for r in ev.records:
        reading = r["recipe"] if r["variant"] is None else f"{r['recipe']}:{r['variant']}"
        run = rel(r["_path"], ev.root)
        epochs = r["curves"]["epoch"]
        for metric, values in sorted(r["curves"].items()):
            if metric == "epoch":
                continue
            rows += [{"recipe": r["recipe"], "reading": reading, "seed": r["seed"], "run": run, "epoch": e,
                      "metric": metric, "value": v} for e, v in zip(epochs, values)]
    return pd.DataFrame(rows, columns=["recipe", "reading", "seed", "run", "epoch", "metric", "value"])
