"""`bench report`: REPORT.md and its figures from a results folder, read once through the evidence layer."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from bench.cli.args import check_folder_arg, check_output_arg, path_arg, warn_broken
from bench.contract import registry
from bench.records import evidence
from bench.records.store import StoreError
from bench.report.markdown import FIGURES_DIR, write_report


@dataclass(frozen=True)
class ReportOptions:
    results: Path
    out: Path
    strict: bool = False


def options(args) -> ReportOptions:
    results, out = path_arg("--results", args.results), path_arg("--out", args.out)
    check_folder_arg("--results", results)
    if not results.is_dir():
        raise StoreError(f"results folder {results} does not exist (run `python -m bench run` first, "
                         "or pass --results)")
    check_output_arg("--out", out, [results, Path("results")], also=(out.parent / FIGURES_DIR,))
    return ReportOptions(results, out, args.strict)


def main(opts: ReportOptions) -> int:
    ev = evidence.read(opts.results)
    try:
        out = write_report(ev, opts.out)
    except OSError as exc:                   # the disk or a special folder refused: no record is touched
        raise StoreError(f"cannot write the report to {opts.out}: {exc.strerror or exc}") from exc
    for w in ev.warnings():
        print(f"warning: {w}", file=sys.stderr)
    warn_broken(registry.broken())
    print(f"wrote {out} (figures in {out.parent / FIGURES_DIR})")
    if ev.rejected and opts.strict:
        print(f"error: {len(ev.rejected)} rejected record(s) (--strict)", file=sys.stderr)
        return 1
    return 0
