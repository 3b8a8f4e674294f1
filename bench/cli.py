"""python -m bench list | run | data | freeze | check-determinism | report | compare | speed.

Exit codes: 0 done, 1 a check failed (regression, nondeterminism, a failed child run),
2 bad input (one line on stderr, nothing on disk changed), 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from . import data as data_layer
from . import registry
from .data import DataError
from .determinism import set_threads
from .recipe import OverrideError
from .registry import RecipeError
from .store import StoreError, check_writable, read_records


class UsageError(Exception):
    """Bad input that argparse cannot see (device, values that depend on the recipe)."""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def nonnegative_int(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else None
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0 (got {text!r})")
    return value


def resolve_device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name}: not a device (use cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA GPU is visible to torch {torch.__version__} on this machine")
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {name}: only cpu and cuda are supported")
    return device


def _overrides(args) -> dict[str, str]:
    out = {}
    for item in args.set or []:
        if "=" not in item:
            raise UsageError(f"--set {item}: expected key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    for flag, key in (("epochs", "epochs"), ("train_limit", "train_limit"), ("eval_limit", "eval_limit")):
        if getattr(args, flag, None) is not None:
            out[key] = str(getattr(args, flag))
    return out


def _run_options(args, recipe):
    from .recipe import apply_overrides
    from .runner import RunOptions

    if args.threads:
        set_threads(args.threads)
    overrides = _overrides(args)
    hp, parsed = apply_overrides(recipe.hparams, overrides)  # fail now on a bad --set
    check = getattr(recipe.module, "check_hparams", None)   # optional: settings the recipe cannot honour
    if check is not None:
        check(hp)
    from .runner import preflight
    broken = [c for c in preflight(recipe, hp)[1] if not c["ok"]]
    if broken and not parsed:                                # a canonical run must be the document's model
        raise UsageError(f"{recipe.label}: the canonical model breaks its constraint "
                         f"{broken[0]['name']!r} ({broken[0]['detail']}); fix the recipe")
    device = resolve_device(args.device)
    if args.pipeline == "faithful" and not recipe.uses_engine:
        raise UsageError(f"{recipe.name} trains outside the torch engine; it has no torchvision pipeline")
    results = Path(args.results)
    check_writable(results)
    read_records(results, recipe.name)                      # fail now on a record we cannot read
    return RunOptions(results=results, data_dir=data_layer.default_data_dir(args.data_dir), device=device,
                      pipeline=args.pipeline, overrides=overrides, force=args.force,
                      progress=not args.no_progress, threads=args.threads,
                      stop_after=getattr(args, "stop_after", None))


# ---------------------------------------------------------------- commands

def cmd_list(args) -> int:
    rows = []
    for r in registry.all_recipes():
        h = r.headline
        rows.append({"recipe": r.name, "dataset": r.hparams.dataset, "params": r.params,
                     "declared_params": r.declared_params, "epochs": r.hparams.epochs,
                     "headline": {"metric": h.metric, "value": h.value, "quote": h.quote, "flags": h.flags},
                     "fingerprint": r.fingerprint, "source": r.source})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    from tabulate import tabulate
    print(tabulate([[r["recipe"], r["dataset"], f"{r['params']:,}", r["epochs"],
                     f"{r['headline']['metric']} {r['headline']['value']}", "; ".join(r["headline"]["flags"])]
                    for r in rows], headers=["recipe", "dataset", "params", "epochs", "headline claim", "flags"],
                   tablefmt="github"))
    return 0


def cmd_run(args) -> int:
    from .runner import code_version, effective_hparams, run_parallel, run_seeds

    code_version()                                          # the code as loaded, before any edit
    recipe = registry.load(args.recipe, args.variant)
    opts = _run_options(args, recipe)
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    hp, parsed = effective_hparams(recipe, opts)
    kind = "smoke (non-canonical)" if parsed else "canonical"
    cut = f", stopping after epoch {opts.stop_after} of {hp.epochs}" if opts.stop_after else ""
    print(f"{recipe.label} [{recipe.fingerprint}] seeds {seeds[0]}..{seeds[-1]} on {opts.device}, "
          f"pipeline {opts.pipeline}, {kind} run{cut}")
    for c in recipe.check_constraints(recipe.build_model(hp)):
        if not c["ok"]:
            print(f"note: this smoke run's model breaks {c['name']!r} ({c['detail']}); the records say so")
    if parsed:
        print("overrides: " + ", ".join(f"{k}={v!r}" for k, v in parsed.items()))
    if args.jobs > 1:
        return 1 if run_parallel(recipe, seeds, opts, args.jobs) else 0
    run_seeds(recipe, seeds, opts)
    return 0


def cmd_data(args) -> int:
    data_dir = data_layer.default_data_dir(args.data_dir)
    if args.action == "fetch":
        data_layer.load(args.dataset, data_dir)
        print(f"{args.dataset}: verified in {data_dir}")
        return 0
    bad = 0
    checks = {"mnist": data_layer.verify_mnist(data_dir), "cifar10": data_layer.verify_cifar10(data_dir)}
    for dataset, status in checks.items():
        for name, why in status.items():
            print(f"{dataset:8} {name:26} {why or 'ok'}")
            bad += bool(why and why != "missing")
    if bad:
        print(f"error: {bad} file(s) fail their checksums; delete them and run `python -m bench data fetch`",
              file=sys.stderr)
    return 2 if bad else 0


def cmd_freeze(args) -> int:
    changes = registry.freeze(log=print)
    for name, (old, new) in sorted(changes.items()):
        print(f"{name}: {old} -> {new}")
    print(f"{registry.FROZEN_PATH} holds {len(registry.frozen())} recipe fingerprint(s)")
    return 0


def cmd_check_determinism(args) -> int:
    from .determinism import seed_everything
    from .engine import RunContext, train
    from .runner import effective_hparams

    recipe = registry.load(args.recipe, args.variant)
    opts = _run_options(args, recipe)
    hp, _ = effective_hparams(recipe, opts)
    arrays = data_layer.load(hp.dataset, opts.data_dir)
    results = []
    for attempt in (1, 2):
        gens = seed_everything(args.seed, opts.device)
        splits = data_layer.make_splits(arrays, hp, gens["split"], opts.device)
        ctx = RunContext(f"{recipe.name} (run {attempt})", args.seed, opts.device, gens, opts.pipeline,
                         progress=opts.progress)
        run = train(recipe.module, hp, splits, ctx) if recipe.uses_engine else recipe.module.train(hp, splits, ctx)
        results.append(run)
    a, b = results
    if a.weights_sha256 == b.weights_sha256:
        print(f"deterministic: final weights match bitwise ({a.weights_sha256[:16]})")
        return 0
    diverged = next((a.curves["epoch"][i] for i in range(len(a.curves["epoch"]))
                     if any(a.curves[k][i] != b.curves[k][i] for k in a.curves if k != "epoch_time_s")), None)
    where = f"curves first differ at epoch {diverged}" if diverged else "curves are equal; only the weights differ"
    print(f"NOT deterministic: weights {a.weights_sha256[:16]} vs {b.weights_sha256[:16]}; {where}")
    return 1


def cmd_report(args) -> int:
    from .report import FIGURES_DIR, write_report

    out = write_report(Path(args.results), Path(args.out))
    print(f"wrote {out} (figures in {out.parent / FIGURES_DIR})")
    return 0


def cmd_compare(args) -> int:
    from .compare import run_gate

    return run_gate(Path(args.baseline), Path(args.candidate), Path(args.json), args.alpha, args.min_effect,
                    args.max_slowdown)


def cmd_speed(args) -> int:
    from .speed import run_speed

    recipe = registry.load(args.recipe)
    if not recipe.uses_engine:
        raise UsageError(f"{recipe.name} trains outside the torch engine: it has no faithful pipeline to compare")
    if args.threads:
        set_threads(args.threads)
    return run_speed(recipe, resolve_device(args.device), data_layer.default_data_dir(args.data_dir),
                     epochs=args.epochs, train_limit=args.train_limit)


# ---------------------------------------------------------------- parser

def bounded_float(low: float, high: float = math.inf, closed_low: bool = True):
    """argparse type: a float in [low, high) (or (low, high) when closed_low is False)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (low <= value if closed_low else low < value) or not value < high:
            raise argparse.ArgumentTypeError(f"{value} is outside {'[' if closed_low else '('}{low}, {high})")
        return value
    return parse


def _add_run_args(p, seeds: bool = True):
    p.add_argument("--recipe", required=True, help="recipe name (python -m bench list)")
    p.add_argument("--variant", help="one of the recipe's named readings (python -m bench list); canonical runs")
    if seeds:
        p.add_argument("--seeds", type=positive_int, default=1, help="number of seeds (default 1)")
        p.add_argument("--seed-start", type=nonnegative_int, default=0, help="first seed (default 0)")
        p.add_argument("--jobs", type=positive_int, default=1, help="seeds trained at once, one process each")
        p.add_argument("--force", action="store_true", help="rerun seeds already recorded, into new records")
    else:
        p.add_argument("--seed", type=nonnegative_int, default=0)
        p.add_argument("--force", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--pipeline", choices=("fast", "faithful"), default="fast",
                   help="fast: batched augmentation on the device; faithful: the documents' torchvision pipeline")
    p.add_argument("--epochs", type=positive_int, help="smoke run: fewer epochs (non-canonical)")
    if seeds:
        p.add_argument("--stop-after", type=positive_int, metavar="K",
                       help="train the first K epochs of the unchanged schedule and stop (a truncated record; "
                            "rerun with a larger K, or without, to continue it)")
    p.add_argument("--train-limit", type=positive_int, help="smoke run: first K training images (non-canonical)")
    p.add_argument("--eval-limit", type=positive_int, help="smoke run: first K val/test images (non-canonical)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a hyperparameter (non-canonical)")
    p.add_argument("--results", default="results", help="results folder (default results/)")
    p.add_argument("--data-dir", help="dataset folder (default $BENCH_DATA_DIR or ./data)")
    p.add_argument("--threads", type=positive_int,
                   help="CPU threads for torch and NumPy's BLAS (recorded with the run)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="every recipe with dataset, parameters and headline claim")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="train a recipe over seeds and record each run")
    _add_run_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("data", help="fetch or verify datasets")
    dsub = p.add_subparsers(dest="action", required=True)
    f = dsub.add_parser("fetch", help="find or fetch a dataset, verified against its checksums")
    f.add_argument("dataset", choices=sorted(data_layer.LOADERS))
    f.add_argument("--data-dir")
    v = dsub.add_parser("verify", help="check every dataset file present against its checksum")
    v.add_argument("--data-dir")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("freeze", help="pin every recipe's fingerprint in recipes/FROZEN.json")
    p.set_defaults(func=cmd_freeze)

    p = sub.add_parser("check-determinism", help="train one seed twice and compare the final weights bitwise")
    _add_run_args(p, seeds=False)
    p.set_defaults(func=cmd_check_determinism)

    p = sub.add_parser("report", help="the statistical report (REPORT.md and figures) from a results folder")
    p.add_argument("--results", default="results", help="results folder (default results/)")
    p.add_argument("--out", default="REPORT.md", help="report path; figures go to report_figures/ beside it")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="regression gate: exit 1 when a recipe got worse or slower")
    p.add_argument("--baseline", required=True, help="results folder to compare against (e.g. results/)")
    p.add_argument("--candidate", required=True, help="results folder of the new runs")
    p.add_argument("--alpha", type=bounded_float(0, 1, closed_low=False), default=0.05,
                   help="significance level of the one-sided tests (default 0.05)")
    p.add_argument("--min-effect", type=bounded_float(0), default=0.1,
                   help="smallest drop of the headline mean that counts, in the metric's unit (default 0.1)")
    p.add_argument("--max-slowdown", type=bounded_float(0, closed_low=False), default=1.25,
                   help="largest allowed candidate/baseline ratio of median seconds per epoch (default 1.25)")
    p.add_argument("--json", default="compare.json", help="where to write the summary (default compare.json)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("speed", help="seconds per epoch of the fast and faithful pipelines, side by side")
    p.add_argument("--recipe", required=True, help="recipe name (python -m bench list)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--epochs", type=positive_int, default=1, help="epochs timed per pipeline (default 1)")
    p.add_argument("--train-limit", type=positive_int, help="time on the first K training images only")
    p.add_argument("--data-dir", help="dataset folder (default $BENCH_DATA_DIR or ./data)")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch and NumPy's BLAS")
    p.set_defaults(func=cmd_speed)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, RecipeError, OverrideError, DataError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the last finished epoch is checkpointed; rerun the same command to resume",
              file=sys.stderr)
        return 130
