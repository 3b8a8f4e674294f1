#!/usr/bin/env python3
"""One night of the regression gate: fresh seeds of some readings into a fresh folder, the gate against the
committed results, the report --strict. The workflow (.github/workflows/nightly.yml) runs exactly this, on a
GPU and on a CPU, and CI runs it once on two short lenet_sgd seeds (tests/test_nightly.py), so a change that
breaks the nightly fails CI.

Fresh seeds: the seed window moves with the date (SEED_BASE + day number x seeds), so every night draws
seeds no night drew before, and nights are independent draws of the same distribution, which is what the
gate's test assumes (rerunning the baseline's seeds on the same host would be one draw repeated).

  python3 tools/nightly.py --readings lenet_sgd,mnist_99_4 --seeds 5 --device cpu --out nightly-cpu
Writes OUT/results/ (the records), OUT/compare.json, OUT/REPORT.md and OUT/nightly.json (each step's command
and exit code). Exit: 0 when every step passed; else the first failing step's code (1: a regression or a
broken night; 2: bad input; 3: a bug).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

SEED_BASE = 1000


def seed_window(day: dt.date, seeds: int) -> int:
    """The first seed of a night: never drawn by an earlier night, far above the committed 0-9."""
    return SEED_BASE + (day.toordinal() % 100_000) * seeds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="tools/nightly.py", description=__doc__.splitlines()[0])
    p.add_argument("--readings", required=True,
                   help="comma-separated readings (recipe or recipe:variant), or all (`bench run --all`)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--seed-start", type=int, help="default: the night's window (from today's date, UTC)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--baseline", default="results")
    p.add_argument("--out", type=Path, default=Path("nightly"))
    p.add_argument("--extra", default="", help="more `bench run` options, as one string (e.g. for Ray)")
    args = p.parse_args(argv)
    start = args.seed_start if args.seed_start is not None else seed_window(dt.datetime.now(dt.timezone.utc).date(),
                                                                            args.seeds)
    readings = [r.strip() for r in args.readings.split(",") if r.strip()]
    results = args.out / "results"
    steps = []

    def step(name: str, cmd: list[str]) -> int:
        print(f"== {name}: {' '.join(cmd)}", flush=True)
        code = subprocess.run(cmd).returncode
        steps.append({"step": name, "command": cmd, "exit": code})
        (args.out / "nightly.json").write_text(json.dumps({"seed_start": start, "steps": steps}, indent=1) + "\n")
        return code

    args.out.mkdir(parents=True, exist_ok=True)
    bench = [sys.executable, "-m", "bench"]
    codes = []
    common = ["--seeds", str(args.seeds), "--seed-start", str(start), "--device", args.device, "--threads",
              str(args.threads), "--results", str(results), "--no-progress", *args.extra.split()]
    everything = readings == ["all"]
    for reading in [] if everything else readings:
        name, _, variant = reading.partition(":")
        codes.append(step(f"run {reading}", bench + ["run", "--recipe", name,
                                                     *(["--variant", variant] if variant else []), *common]))
    if everything:
        codes.append(step("run --all", bench + ["run", "--all", *common]))
    scope = [] if everything else ["--readings", ",".join(readings)]
    codes.append(step("compare", bench + ["compare", "--baseline", args.baseline, "--candidate", str(results),
                                          *scope, "--json", str(args.out / "compare.json")]))
    codes.append(step("report", bench + ["report", "--results", str(results), "--out", str(args.out / "REPORT.md"),
                                         "--strict"]))
    return next((c for c in codes if c), 0)


if __name__ == "__main__":
    sys.exit(main())
