"""`bench export`: every usable run (or curve point) as one tidy table, in csv, jsonl or parquet."""
from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from bench.cli.args import check_folder_arg, check_output_arg, path_arg, warn_broken
from bench.contract import registry
from bench.contract.registry import Recipe
from bench.records import evidence
from bench.records.export import curves_frame, runs_frame
from bench.records.store import StoreError

FORMATS = ("csv", "jsonl", "parquet")


@dataclass(frozen=True)
class ExportOptions:
    results: Path
    out: Optional[Path]
    fmt: str
    curves: bool = False
    reading: Optional[Recipe] = None      # --recipe NAME (all its readings) or NAME:VARIANT (that one)
    canonical_only: bool = False


def options(args) -> ExportOptions:
    results = path_arg("--results", args.results)
    out = path_arg("--out", args.out) if args.out is not None else None
    check_folder_arg("--results", results)
    if not results.is_dir():
        raise StoreError(f"results folder {results} does not exist")
    reading = registry.load(args.recipe) if args.recipe else None     # an unknown recipe is bad input (exit 2)
    fmt = args.format or (out.suffix.lstrip(".").lower() if out is not None and out.suffix else "csv")
    if fmt not in FORMATS:
        raise StoreError(f"--out {out}: unknown format {fmt!r}; use --format csv, jsonl or parquet")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401  (an optional dependency: only asked for when parquet is)
        except ImportError:
            raise StoreError("parquet needs pyarrow: `pip install pyarrow` (or export --format csv)") from None
        if out is None:
            raise StoreError("parquet is binary: give a file with --out")
    if out is not None:
        if not out.parent.absolute().exists():
            raise StoreError(f"--out {out}: its folder {out.parent} does not exist")
        check_output_arg("--out", out, [results, Path("results")])
    return ExportOptions(results, out, fmt, args.curves, reading, args.canonical_only)


def main(opts: ExportOptions) -> int:
    """Write the table; rejected records are counted on stderr, never exported."""
    r = opts.reading
    ev = evidence.read(opts.results, r.name if r else None)
    if r is not None and r.variant is not None:          # one variant: its records sit in the recipe's folder
        ev.records = [x for x in ev.records if x["variant"] == r.variant_name]
    if opts.canonical_only:
        ev.records = [x for x in ev.records if x["canonical"]]
    current = {(x.name, x.variant_name): x.fingerprint for x in registry.all_readings()}
    warn_broken(registry.broken())
    frame = curves_frame(ev) if opts.curves else runs_frame(ev, current)
    if ev.rejected:
        print(f"{len(ev.rejected)} rejected record(s) left out (`python -m bench report` lists why)", file=sys.stderr)
    if opts.fmt == "parquet":
        frame.to_parquet(opts.out, index=False)
    else:
        buf = io.StringIO()
        frame.to_csv(buf, index=False) if opts.fmt == "csv" else frame.to_json(buf, orient="records", lines=True)
        if opts.out is None:
            sys.stdout.write(buf.getvalue())
        else:
            try:
                opts.out.write_text(buf.getvalue())
            except OSError as exc:
                raise StoreError(f"--out {opts.out}: {exc.strerror}") from None
    if opts.out is not None:
        print(f"wrote {len(frame)} row(s) to {opts.out}", file=sys.stderr)
    return 0
