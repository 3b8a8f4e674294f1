"""The command line's parser: every command's arguments and their types, and nothing heavy.

`python -m bench list | run | report | compare | export | data | freeze | check-determinism | speed`.
Each command lives in its own module of bench.cli (named in `command_module`), imported only when
that command runs (bench.cli.main), so that `bench list` never loads the training code.
"""
from __future__ import annotations

import argparse

from bench.cli.args import (
    Parser,
    bounded_float,
    duration,
    fraction,
    nonnegative_int,
    positive_int,
)
from bench.contract.recipe import DATASETS


def _add_run_args(p, seeds: bool = True):
    p.add_argument("--recipe", required=not seeds, help="recipe name (python -m bench list)")
    p.add_argument("--variant", help="one of the recipe's named readings (python -m bench list): canonical runs")
    if seeds:
        p.add_argument("--all", action="store_true",
                       help="every recipe whose dataset is present, in alphabetical order (canonical readings)")
        p.add_argument("--seeds", type=positive_int, default=1, help="number of seeds (default 1)")
        p.add_argument("--seed-start", type=nonnegative_int, default=0, help="first seed (default 0)")
        p.add_argument("--jobs", type=positive_int, default=1, help="seeds trained at once, one process each")
        p.add_argument("--force", action="store_true", help="rerun seeds already recorded, into new records")
        p.add_argument("--budget", type=duration, metavar="DURATION",
                       help="run the seeds that fit (e.g. 90m, 2h), stop cleanly, say how to continue")
        p.add_argument("--stop-after", type=positive_int, metavar="K",
                       help="train the first K epochs of the unchanged schedule and stop (a truncated record; "
                            "rerun with a larger K, or without, to continue it)")
        p.add_argument("--dry-run", action="store_true",
                       help="print the plan (seeds to run) and the time estimate, then exit: nothing is trained "
                            "or written")
        p.add_argument("--progress-lines", action="store_true", help=argparse.SUPPRESS)   # a --jobs child
        p.add_argument("--backend", choices=("local", "ray"), default="local",
                       help="local (default): this machine, --jobs processes; ray: one Ray task per seed, on a "
                            'local Ray instance or a cluster (pip install -e ".[ray]")')
        p.add_argument("--address", help="--backend ray: join the Ray cluster at HOST:PORT (`ray start --head` "
                                         "prints it; or auto); default: start a local instance")
        p.add_argument("--gpus-per-run", type=fraction, metavar="F",
                       help="--backend ray: GPUs per seed, in (0, 1]; 0.25 packs four seeds on a GPU (default 1)")
        p.add_argument("--cpus-per-run", type=positive_int, metavar="N",
                       help="--backend ray: CPUs Ray reserves per seed (default: --threads, else 1); a seed uses "
                            "--threads threads, else this many")
        p.add_argument("--checkpoint-dir", metavar="DIR",
                       help="--backend ray: a folder every node shares, so a lost seed resumes from its checkpoint "
                            "(default: the results folder on a local instance; none, i.e. restart, on a cluster)")
    else:
        p.add_argument("--seed", type=nonnegative_int, default=0)
        p.add_argument("--force", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--pipeline", choices=("fast", "faithful"), default="fast",
                   help="fast: batched augmentation on the device; faithful: the documents' torchvision pipeline")
    p.add_argument("--step", choices=("eager", "graph"),
                   help="training step: eager, or graph (forward, backward and clipping replayed as one CUDA graph; "
                        "CUDA and the fast pipeline only, else eager). Default: graph on CUDA with the fast "
                        "pipeline, eager elsewhere. Recorded and part of the run key")
    p.add_argument("--precision", choices=("fp32", "tf32"), default="fp32",
                   help="float32 matmuls and convolutions: fp32 (default; the canonical runs, as on a CPU) or tf32 "
                        "(CUDA tensor cores: another implementation cell, recorded and part of the run key)")
    p.add_argument("--epochs", type=positive_int, help="smoke run: fewer epochs (non-canonical)")
    p.add_argument("--train-limit", type=positive_int, help="smoke run: first K training images (non-canonical)")
    p.add_argument("--eval-limit", type=positive_int, help="smoke run: first K val/test images (non-canonical)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a hyperparameter (non-canonical)")
    p.add_argument("--results", default="results", help="results folder (default results/)")
    p.add_argument("--data-dir", help="dataset folder (default $BENCH_DATA_DIR or ./data)")
    p.add_argument("--threads", type=positive_int,
                   help="CPU threads for torch and NumPy's BLAS (recorded; part of the run key on CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m bench",
                    description="Reproducibility benchmark suite for published training recipes.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="every recipe and variant with dataset, parameters and headline claim")
    p.add_argument("--json", action="store_true")
    p.set_defaults(command_module="list")

    p = sub.add_parser("run", help="train a recipe over seeds and record each run")
    _add_run_args(p)
    p.set_defaults(command_module="run")

    p = sub.add_parser("report", help="the statistical report (REPORT.md and figures) from a results folder")
    p.add_argument("--results", default="results", help="results folder (default results/)")
    p.add_argument("--out", default="REPORT.md", help="report path; figures go to report_figures/ beside it")
    p.add_argument("--strict", action="store_true", help="exit 1 when any record is rejected (the nightly)")
    p.set_defaults(command_module="report")

    p = sub.add_parser("compare", help="regression gate: exit 1 when a recipe got worse, slower or did not run")
    p.add_argument("--baseline", required=True, help="results folder to compare against (e.g. results/)")
    p.add_argument("--candidate", required=True, help="results folder of the new runs")
    p.add_argument("--alpha", type=bounded_float(0, 1, closed_low=False), default=0.05,
                   help="significance level of the one-sided shifted-null Welch test (default 0.05)")
    p.add_argument("--min-effect", type=bounded_float(0), default=0.1,
                   help="smallest drop of an accuracy headline that counts, in points at the baseline's mean "
                        "(judged on the logit scale; default 0.1)")
    p.add_argument("--min-effect-rel", type=bounded_float(0), default=0.1,
                   help="smallest relative rise of a loss headline that counts (default 0.1 = 10%%)")
    p.add_argument("--max-slowdown", type=bounded_float(0, closed_low=False), default=1.25,
                   help="largest allowed candidate/baseline ratio of seconds per epoch (default 1.25)")
    p.add_argument("--accept-changed", action="append", metavar="NAME",
                   help="a recipe whose fingerprint changed on purpose: not compared, not a failure")
    p.add_argument("--readings", action="append", metavar="NAME[,NAME...]",
                   help="the readings the night was meant to run (recipe or recipe:variant); the others are not "
                        "compared (default: every reading either folder holds)")
    p.add_argument("--json", default="compare.json", help="where to write the summary (default compare.json)")
    p.set_defaults(command_module="compare")

    p = sub.add_parser("export", help="every usable run (or curve point) as one tidy table: csv, jsonl, parquet")
    p.add_argument("--results", default="results", help="results folder (default results/)")
    p.add_argument("--out", help="output file (default: standard output, csv or jsonl)")
    p.add_argument("--format", choices=("csv", "jsonl", "parquet"), help="default: from --out's suffix, else csv")
    p.add_argument("--curves", action="store_true", help="the long table of curve points instead of one row per run")
    p.add_argument("--recipe", help="only this recipe (all its readings), or NAME:VARIANT for one reading")
    p.add_argument("--canonical-only", action="store_true", help="leave out smoke runs")
    p.set_defaults(command_module="export")

    p = sub.add_parser("data", help="fetch or verify datasets")
    dsub = p.add_subparsers(dest="action", required=True)
    f = dsub.add_parser("fetch", help="find or fetch a dataset, verified against its checksums")
    f.add_argument("dataset", choices=sorted(DATASETS))
    f.add_argument("--data-dir")
    v = dsub.add_parser("verify", help="check every dataset file present (MNIST, its CSV, CIFAR-10)")
    v.add_argument("--data-dir")
    p.set_defaults(command_module="data")

    p = sub.add_parser("freeze", help="pin every reading's fingerprint and numerics in recipes/FROZEN.json")
    p.add_argument("--accept-moved", action="store_true",
                   help="numbers beyond the tolerance of other machines' pins, on a machine without a pin of its "
                        "own, are a change you made on purpose: raise those readings' revisions")
    p.set_defaults(command_module="freeze")

    p = sub.add_parser("check-determinism", help="train one seed twice and compare the final weights bitwise")
    _add_run_args(p, seeds=False)
    p.set_defaults(command_module="check_determinism")

    p = sub.add_parser("speed", help="seconds per epoch of the fast and faithful pipelines, side by side")
    p.add_argument("--recipe", required=True, help="recipe name (python -m bench list)")
    p.add_argument("--variant", help="one of the recipe's named readings")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--epochs", type=positive_int, default=1, help="epochs timed per pipeline (default 1)")
    p.add_argument("--train-limit", type=positive_int, help="time on the first K training images only")
    p.add_argument("--data-dir", help="dataset folder (default $BENCH_DATA_DIR or ./data)")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch and NumPy's BLAS")
    p.set_defaults(command_module="speed")
    return parser
