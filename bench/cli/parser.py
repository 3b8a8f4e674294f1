"""python -m bench list | run | report | compare | export | data | freeze | check-determinism | speed.

Exit codes: 0 done; 1 a check failed (regression, broken night, nondeterminism, a failed child
run, --strict with rejected records); 2 bad input (one line on stderr, nothing on disk changed);
3 an internal error (a bug in bench: never mistaken for "worse"); 130 Ctrl-C; 143 SIGTERM.
"""
from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import traceback
from pathlib import Path

from bench.training import data as data_layer
from bench.contract import registry
from bench.cli.args import (Parser, UsageError, bounded_float, check_file_arg, check_folder_arg, duration, fraction,
                       nonnegative_int, positive_int, resolve_device, run_options)
from bench.training.data import DataError
from bench.training.determinism import set_threads
from bench.contract.recipe import OverrideError
from bench.contract.registry import RecipeError
from bench.cli.run import cmd_run
from bench.running.runner import Interrupted, RejectedRecord, Terminated
from bench.training.splits import make_splits
from bench.records.store import StoreError


# ---------------------------------------------------------------- commands

def cmd_list(args) -> int:
    rows = []
    for r in registry.all_readings():
        h = r.headline
        rows.append({"recipe": r.name, "variant": r.variant_name, "reading": r.label, "dataset": r.hparams.dataset,
                     "params": r.params, "declared_params": r.declared_params, "epochs": r.hparams.epochs,
                     "headline": {"metric": h.metric, "value": h.value, "quote": h.quote, "flags": h.flags},
                     "fingerprint": r.fingerprint, "source": r.source,
                     "variants": [v.name for v in r.variants] if r.variant is None else []})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    from bench.report.fmt import table
    print(table([[r["reading"], r["dataset"], f"{r['params']:,}", r["epochs"],
                  f"{r['headline']['metric']} {r['headline']['value']}", "; ".join(r["headline"]["flags"])]
                 for r in rows], ["reading", "dataset", "params", "epochs", "headline claim", "flags"]))
    print("\nrun a variant with `--variant NAME` (the part after the colon)")
    return 0



def cmd_data(args) -> int:
    data_dir = data_layer.default_data_dir(args.data_dir)
    check_folder_arg("--data-dir", data_dir)
    if args.action == "fetch":
        data_layer.load(args.dataset, data_dir)
        print(f"{args.dataset}: verified in {data_dir}")
        return 0
    bad = 0
    for dataset, status in data_layer.verify_all(data_dir).items():
        for name, why in status.items():
            print(f"{dataset:9} {name:26} {why or 'ok'}")
            bad += bool(why and why != "missing")
    if bad:
        print(f"error: {bad} file(s) fail their checks; delete them and run `python -m bench data fetch`",
              file=sys.stderr)
    return 2 if bad else 0


def cmd_freeze(args) -> int:
    try:
        changes = registry.freeze(log=print, accept_moved=args.accept_moved)
    except registry.FreezeRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, (old, new) in sorted(changes.items()):
        print(f"{name}: {old} -> {new}")
    print(f"{registry.FROZEN_PATH} holds {len(registry.frozen())} reading fingerprint(s)")
    return 0


def cmd_check_determinism(args) -> int:
    from bench.training.determinism import seed_everything
    from bench.training.engine import RunContext, train
    from bench.running.runner import effective_hparams

    if args.threads:
        set_threads(args.threads)
    recipe = registry.load(args.recipe, args.variant)
    opts = run_options(args, recipe)
    hp, _ = effective_hparams(recipe, opts)
    arrays = data_layer.load(hp.dataset, opts.data_dir)
    results = []
    for attempt in (1, 2):
        gens = seed_everything(args.seed, opts.device)
        splits = make_splits(arrays, hp, gens["split"], opts.device)
        ctx = RunContext(f"{recipe.label} (run {attempt})", args.seed, opts.device, gens, opts.pipeline,
                         progress=opts.progress, step=opts.step)
        run = train(recipe.module, hp, splits, ctx) if recipe.uses_engine else recipe.module.train(hp, splits, ctx)
        results.append(run)
    a, b = results
    if a.weights_sha256 == b.weights_sha256:
        print(f"deterministic: final weights match bitwise ({a.weights_sha256[:16]}; step {opts.step})")
        return 0
    def same(u, v):
        return u == v or (isinstance(u, float) and isinstance(v, float) and math.isnan(u) and math.isnan(v))

    keys = [k for k in a.curves if k != "epoch_time_s" and k in b.curves]
    rows = min(len(a.curves["epoch"]), len(b.curves["epoch"]))
    diverged = next((a.curves["epoch"][i] for i in range(rows)
                     if any(not same(a.curves[k][i], b.curves[k][i]) for k in keys)), None)
    if diverged is None and len(a.curves["epoch"]) != len(b.curves["epoch"]):
        diverged = a.curves["epoch"][rows] if rows < len(a.curves["epoch"]) else b.curves["epoch"][rows]
    where = f"curves first differ at epoch {diverged}" if diverged else "curves are equal; only the weights differ"
    print(f"NOT deterministic: weights {a.weights_sha256[:16]} vs {b.weights_sha256[:16]}; {where} (step {opts.step})")
    return 1


def cmd_report(args) -> int:
    from bench.report.markdown import FIGURES_DIR, write_report

    check_file_arg("--out", Path(args.out))
    try:
        out, ev = write_report(Path(args.results), Path(args.out))
    except OSError as exc:                   # the disk or a special folder refused: no record is touched
        raise StoreError(f"cannot write the report to {args.out}: {exc.strerror or exc}") from exc
    for w in ev.warnings():
        print(f"warning: {w}", file=sys.stderr)
    print(f"wrote {out} (figures in {out.parent / FIGURES_DIR})")
    if ev.rejected and args.strict:
        print(f"error: {len(ev.rejected)} rejected record(s) (--strict)", file=sys.stderr)
        return 1
    return 0


def cmd_compare(args) -> int:
    from bench.judging.compare import run_gate

    check_file_arg("--json", Path(args.json))
    return run_gate(Path(args.baseline), Path(args.candidate), Path(args.json), args.alpha, args.min_effect,
                    args.min_effect_rel, args.max_slowdown, args.accept_changed or [])


def cmd_export(args) -> int:
    from bench.records.export import export

    return export(Path(args.results), Path(args.out) if args.out else None, args.format, curves=args.curves,
                  recipe=args.recipe, canonical_only=args.canonical_only)


def cmd_speed(args) -> int:
    from bench.running.speed import run_speed

    recipe = registry.load(args.recipe, args.variant)
    if not recipe.uses_engine:
        raise UsageError(f"{recipe.name} trains outside the torch engine: it has no faithful pipeline to compare")
    if args.threads:
        set_threads(args.threads)
    data_dir = data_layer.default_data_dir(args.data_dir)
    check_folder_arg("--data-dir", data_dir)
    return run_speed(recipe, resolve_device(args.device), data_dir, epochs=args.epochs, train_limit=args.train_limit)


# ---------------------------------------------------------------- parser

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
    parser = Parser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="every recipe and variant with dataset, parameters and headline claim")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="train a recipe over seeds and record each run")
    _add_run_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="the statistical report (REPORT.md and figures) from a results folder")
    p.add_argument("--results", default="results", help="results folder (default results/)")
    p.add_argument("--out", default="REPORT.md", help="report path; figures go to report_figures/ beside it")
    p.add_argument("--strict", action="store_true", help="exit 1 when any record is rejected (the nightly)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="regression gate: exit 1 when a recipe got worse, slower or did not run")
    p.add_argument("--baseline", required=True, help="results folder to compare against (e.g. results/)")
    p.add_argument("--candidate", required=True, help="results folder of the new runs")
    p.add_argument("--alpha", type=bounded_float(0, 1, closed_low=False), default=0.05,
                   help="significance level of the one-sided shifted-null test (default 0.05)")
    p.add_argument("--min-effect", type=bounded_float(0), default=0.1,
                   help="smallest drop of an accuracy headline that counts, in points (default 0.1)")
    p.add_argument("--min-effect-rel", type=bounded_float(0), default=0.1,
                   help="smallest relative rise of a loss headline that counts (default 0.1 = 10%%)")
    p.add_argument("--max-slowdown", type=bounded_float(0, closed_low=False), default=1.25,
                   help="largest allowed candidate/baseline ratio of seconds per epoch (default 1.25)")
    p.add_argument("--accept-changed", action="append", metavar="NAME",
                   help="a recipe whose fingerprint changed on purpose: not compared, not a failure")
    p.add_argument("--json", default="compare.json", help="where to write the summary (default compare.json)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("export", help="every usable run (or curve point) as one tidy table: csv, jsonl, parquet")
    p.add_argument("--results", default="results", help="results folder (default results/)")
    p.add_argument("--out", help="output file (default: standard output, csv or jsonl)")
    p.add_argument("--format", choices=("csv", "jsonl", "parquet"), help="default: from --out's suffix, else csv")
    p.add_argument("--curves", action="store_true", help="the long table of curve points instead of one row per run")
    p.add_argument("--recipe", help="only this recipe (all its readings)")
    p.add_argument("--canonical-only", action="store_true", help="leave out smoke runs")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("data", help="fetch or verify datasets")
    dsub = p.add_subparsers(dest="action", required=True)
    f = dsub.add_parser("fetch", help="find or fetch a dataset, verified against its checksums")
    f.add_argument("dataset", choices=sorted(data_layer.LOADERS))
    f.add_argument("--data-dir")
    v = dsub.add_parser("verify", help="check every dataset file present (MNIST, its CSV, CIFAR-10)")
    v.add_argument("--data-dir")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("freeze", help="pin every reading's fingerprint and numerics in recipes/FROZEN.json")
    p.add_argument("--accept-moved", action="store_true",
                   help="numbers beyond the tolerance of other machines' pins, on a machine without a pin of its "
                        "own, are a change you made on purpose: raise those readings' revisions")
    p.set_defaults(func=cmd_freeze)

    p = sub.add_parser("check-determinism", help="train one seed twice and compare the final weights bitwise")
    _add_run_args(p, seeds=False)
    p.set_defaults(func=cmd_check_determinism)

    p = sub.add_parser("speed", help="seconds per epoch of the fast and faithful pipelines, side by side")
    p.add_argument("--recipe", required=True, help="recipe name (python -m bench list)")
    p.add_argument("--variant", help="one of the recipe's named readings")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--epochs", type=positive_int, default=1, help="epochs timed per pipeline (default 1)")
    p.add_argument("--train-limit", type=positive_int, help="time on the first K training images only")
    p.add_argument("--data-dir", help="dataset folder (default $BENCH_DATA_DIR or ./data)")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch and NumPy's BLAS")
    p.set_defaults(func=cmd_speed)
    return parser


def _terminate(signum, frame):
    raise Terminated()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if threading_main():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except (UsageError, RecipeError, OverrideError, DataError, StoreError, RejectedRecord) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"\n{exc}", file=sys.stderr)
        return exc.code
    except Terminated:
        print("\nterminated before any run started: nothing was saved", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("\ninterrupted before any run started: nothing was saved", file=sys.stderr)
        return 130
    except Exception:                                   # a bug in bench, never a "regression" (exit 1)
        traceback.print_exc()
        print("internal error: this is a bug in bench (exit 3); the traceback above says where", file=sys.stderr)
        return 3


def threading_main() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()
