"""`bench compare`: the nightly regression gate, baseline against candidate; exit 1 when worse, slower or broken."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bench.cli.args import check_folder_arg, check_output_arg, path_arg
from bench.contract import registry
from bench.judging import gate
from bench.records import evidence
from bench.records.format import clean
from bench.records.store import StoreError
from bench.report.gate import render


@dataclass(frozen=True)
class CompareOptions:
    baseline: Path
    candidate: Path
    json_path: Path
    alpha: float = 0.05
    min_effect: float = 0.1
    min_effect_rel: float = 0.1
    max_slowdown: float = 1.25
    accepted: tuple = field(default_factory=tuple)
    scope: tuple = field(default_factory=tuple)         # --readings: the readings the night was meant to run


def options(args) -> CompareOptions:
    for flag, folder in (("--baseline", args.baseline), ("--candidate", args.candidate)):
        check_folder_arg(flag, path_arg(flag, folder))
        if not Path(folder).is_dir():
            raise StoreError(f"{flag}: results folder {folder} does not exist")
    check_output_arg("--json", path_arg("--json", args.json), [Path(args.baseline), Path(args.candidate),
                                                                Path("results")])
    scope = tuple(registry.load(name.strip()) for part in args.readings or () for name in part.split(",")
                  if name.strip())
    return CompareOptions(Path(args.baseline), Path(args.candidate), Path(args.json), args.alpha, args.min_effect,
                          args.min_effect_rel, args.max_slowdown, tuple(args.accept_changed or ()), scope)


def main(opts: CompareOptions) -> int:
    summary = gate.compare(evidence.read(opts.baseline), evidence.read(opts.candidate), opts.alpha, opts.min_effect,
                           opts.min_effect_rel, opts.max_slowdown, opts.accepted, opts.scope)
    print(render(summary))
    for w in summary["warnings"]:
        print(f"warning: {w}")
    opts.json_path.parent.mkdir(parents=True, exist_ok=True)
    opts.json_path.write_text(json.dumps(clean(summary), indent=1, sort_keys=True, allow_nan=False) + "\n")
    bad, broken = summary["regressed"], summary["broken"]
    if bad or broken:
        print(f"REGRESSION in {', '.join(bad)}" if bad else "", f"BROKEN: {', '.join(broken)}" if broken else "",
              f"(summary in {opts.json_path})")
        return 1
    print(f"no regression (summary in {opts.json_path})")
    return 0
