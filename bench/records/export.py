"""`bench export`: the usable runs as one tidy table (and the curves as a long one).

Why: people analyse a benchmark's runs themselves, in pandas, a notebook or a spreadsheet, and a
hand-written loop over results/**/*.json gets it subtly wrong (rejected records, copies, smoke
runs and older fingerprints mixed in). The frames are built from bench.evidence, the same
records REPORT.md and the gate count; rejected records are never exported.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Optional

import pandas as pd

from . import evidence, registry
from .evidence import Evidence, device_type, machine
from .store import StoreError

FORMATS = ("csv", "jsonl", "parquet")
RUN_COLUMNS = ["recipe", "variant", "reading", "seed", "fingerprint", "current", "canonical", "status", "truncated",
               "pipeline", "device", "host", "hardware", "threads", "params", "wall_time_s", "epochs_run",
               "epochs_planned", "torch", "cuda", "started_at", "weights_sha256", "record"]


def _current() -> dict[tuple, str]:
    return {(r.name, r.variant_name): r.fingerprint for r in registry.all_readings()}


def runs_frame(ev: Evidence) -> pd.DataFrame:
    """One row per usable run: identity columns, then one column per metric."""
    current = _current()
    rows = []
    for r in ev.records:
        env = r.get("env") or {}
        row = {"recipe": r["recipe"], "variant": r["variant"],
               "reading": r["recipe"] if r["variant"] is None else f"{r['recipe']}:{r['variant']}",
               "seed": r["seed"], "fingerprint": r["fingerprint"],
               "current": current.get((r["recipe"], r["variant"])) == r["fingerprint"],
               "canonical": r["canonical"], "status": r["status"], "truncated": r["truncated"],
               "pipeline": r["pipeline"], "device": device_type(r), "host": evidence.host(r), "hardware": machine(r),
               "threads": r["threads"], "params": r["params"], "wall_time_s": r["wall_time_s"],
               "epochs_run": r["epochs_run"], "epochs_planned": r["epochs_planned"], "torch": env.get("torch"),
               "cuda": env.get("cuda"), "started_at": r["started_at"], "weights_sha256": r["weights_sha256"],
               "record": evidence.rel(r["_path"], ev.root)}
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
        run = evidence.rel(r["_path"], ev.root)
        epochs = r["curves"]["epoch"]
        for metric, values in sorted(r["curves"].items()):
            if metric == "epoch":
                continue
            rows += [{"recipe": r["recipe"], "reading": reading, "seed": r["seed"], "run": run, "epoch": e,
                      "metric": metric, "value": v} for e, v in zip(epochs, values)]
    return pd.DataFrame(rows, columns=["recipe", "reading", "seed", "run", "epoch", "metric", "value"])


def export(results: Path, out: Optional[Path], fmt: Optional[str], curves: bool = False,
           recipe: Optional[str] = None, canonical_only: bool = False) -> int:
    """Write the table; rejected records are counted on stderr, never exported."""
    if not results.is_dir():
        raise StoreError(f"results folder {results} does not exist")
    if recipe is not None:
        registry.load(recipe)                               # an unknown recipe is bad input (exit 2)
    fmt = fmt or (out.suffix.lstrip(".").lower() if out is not None and out.suffix else "csv")
    if fmt not in FORMATS:
        raise StoreError(f"--out {out}: unknown format {fmt!r}; use --format csv, jsonl or parquet")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise StoreError("parquet needs pyarrow: `pip install pyarrow` (or export --format csv)") from None
        if out is None:
            raise StoreError("parquet is binary: give a file with --out")
    if out is not None and (out.is_dir() or not out.parent.absolute().exists()):
        raise StoreError(f"--out {out}: not a file in an existing folder")
    ev = evidence.read(results, recipe)
    if canonical_only:
        ev.records = [r for r in ev.records if r["canonical"]]
    frame = curves_frame(ev) if curves else runs_frame(ev)
    if ev.rejected:
        print(f"{len(ev.rejected)} rejected record(s) left out (`python -m bench report` lists why)", file=sys.stderr)
    if fmt == "parquet":
        frame.to_parquet(out, index=False)
    else:
        buf = io.StringIO()
        frame.to_csv(buf, index=False) if fmt == "csv" else frame.to_json(buf, orient="records", lines=True)
        if out is None:
            sys.stdout.write(buf.getvalue())
        else:
            try:
                out.write_text(buf.getvalue())
            except OSError as exc:
                raise StoreError(f"--out {out}: {exc.strerror}") from None
    if out is not None:
        print(f"wrote {len(frame)} row(s) to {out}", file=sys.stderr)
    return 0
