"""`bench run`: one reading or --all, the seeds not yet recorded on this machine, estimate first,
the agreement block last, --budget stopping cleanly with the command that continues.

The door (`options`) checks every argument and builds one frozen Campaign; `main` and everything
below it take that object, never the argparse namespace.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from bench.cli.args import check_folder_arg, overrides_of, path_arg, resolve_device
from bench.contract import registry
from bench.contract.errors import UsageError
from bench.contract.recipe import apply_overrides
from bench.records import evidence
from bench.records.store import check_writable, partial_dir
from bench.report.agreement import agreement_lines
from bench.running import ray_backend, runner
from bench.running.budget import continue_command, plan_line
from bench.running.estimate import advice, estimate, human
from bench.running.jobs import run_parallel
from bench.running.options import Campaign, RayOptions, RunOptions
from bench.running.runner import code_version, done_here, effective_hparams, preflight, refuse_rejected, run_key
from bench.training import data as data_layer
from bench.training.data import DataError
from bench.training.determinism import set_threads
from bench.training.environment import host_identity
from bench.training.step import default_step
from bench.training.step import resolve as resolve_step

MAX_SEEDS = 100_000
MAX_SEED = 2 ** 63 - 1


def options(args) -> Campaign:
    """Every check of `bench run`'s arguments, before any download, training or write."""
    code_version()                                          # the code as loaded, before any edit
    ray = RayOptions(address=args.address, gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run,
                     checkpoint_dir=Path(args.checkpoint_dir) if args.checkpoint_dir else None)
    ray_backend.check_options(args.backend, ray, args.jobs, args.device)
    if args.threads:
        set_threads(args.threads)
    if args.all:
        if args.recipe or args.variant:
            raise UsageError("--all runs every recipe: drop --recipe/--variant, or drop --all")
        recipes = registry.all_recipes()
        for name, why in sorted(registry.broken().items()):
            print(f"skipped {name}: {why}")
    elif not args.recipe:
        raise UsageError("name a recipe with --recipe NAME (python -m bench list), or pass --all")
    else:
        recipes = [registry.load(args.recipe, args.variant)]
    device = resolve_device(args.device)
    host = host_identity(device)
    plans = tuple((r, run_options(args, r, device, host)) for r in recipes)
    if args.seeds > MAX_SEEDS:
        raise UsageError(f"--seeds {args.seeds}: at most {MAX_SEEDS:,} seeds in one command")
    if args.seed_start + args.seeds > MAX_SEED + 1:
        raise UsageError(f"--seed-start {args.seed_start} --seeds {args.seeds}: a seed must be at most 2**63 - 1 "
                         "(torch's generators take 64 bits)")
    return Campaign(plans=plans, seeds=tuple(range(args.seed_start, args.seed_start + args.seeds)), jobs=args.jobs,
                    budget=float(args.budget) if args.budget else None,
                    budget_text=args.budget.text if args.budget else None, run_all=args.all,
                    dry_run=args.dry_run, backend=args.backend, ray=ray)


def run_options(args, recipe, device: torch.device, host: str) -> RunOptions:
    """Everything about one reading's run checked before anything is downloaded, trained or written."""
    overrides = overrides_of(args)
    hp, parsed = apply_overrides(recipe.hparams, overrides)  # a bad --set fails here: its domain, its type
    check = getattr(recipe.module, "check_hparams", None)   # optional: settings the recipe cannot honour
    if check is not None:
        check(hp)
    broken = [c for c in preflight(recipe, hp)[1] if not c["ok"]]
    if broken and not parsed:                                # a canonical run must be the document's model
        raise UsageError(f"{recipe.label}: the canonical model breaks its constraint "
                         f"{broken[0]['name']!r} ({broken[0]['detail']}); fix the recipe")
    if args.pipeline == "faithful" and not recipe.uses_engine:
        raise UsageError(f"{recipe.name} trains outside the torch engine; it has no torchvision pipeline")
    step, step_note = resolve_step(getattr(args, "step", None), device, args.pipeline, recipe.uses_engine)
    if step_note:
        print(f"{recipe.label}: {step_note}")
    precision = getattr(args, "precision", None) or "fp32"
    if precision != "fp32" and device.type != "cuda":
        raise UsageError(f"--precision {precision}: TF32 is a mode of NVIDIA tensor cores; a {device.type} run is fp32")
    results = path_arg("--results", args.results)
    check_folder_arg("--results", results)
    check_writable(results)
    for folder in (results / recipe.name, partial_dir(results, recipe.name)):   # where its records and checkpoints go
        check_folder_arg("--results", folder)
        if folder.exists():
            check_writable(folder, f"{recipe.label}'s folder")
    data_dir = data_layer.default_data_dir(args.data_dir)
    check_folder_arg("--data-dir", data_dir)
    return RunOptions(results=results, data_dir=data_dir, device=device, host=host, pipeline=args.pipeline,
                      overrides=overrides, force=args.force, progress=not args.no_progress, threads=args.threads,
                      stop_after=getattr(args, "stop_after", None),
                      progress_lines=getattr(args, "progress_lines", False), step=step, precision=precision)


def seeds_to_run(recipe, seeds, opts: RunOptions, ev: evidence.Evidence) -> list[int]:
    """The seeds not already recorded on this machine (what a run will actually train)."""
    if opts.force:
        return list(seeds)
    _, parsed = effective_hparams(recipe, opts)
    return [s for s in seeds if not done_here(ev.records, run_key(recipe, s, opts, parsed), opts.stop_after)]


def agreement(recipe, opts: RunOptions) -> None:
    """The block that answers "does it reproduce on my machine?", from the folder as it is now."""
    ev = evidence.read(opts.results, recipe.name)           # again: this command just wrote records
    print("\n".join(agreement_lines(recipe, ev, opts.pipeline, opts.device.type, opts.host, opts.precision)))


def run_one_recipe(campaign: Campaign, recipe, opts: RunOptions) -> tuple[int, list[int]]:
    """Train one reading's seeds (estimate first, agreement last); returns (failed children, seeds left)."""
    hp, parsed = effective_hparams(recipe, opts)
    seeds = list(campaign.seeds)
    kind = "smoke (non-canonical)" if parsed else "canonical"
    cut = f", stopping after epoch {opts.stop_after} of {hp.epochs}" if opts.stop_after else ""
    precision = f", precision {opts.precision}" if opts.precision != "fp32" else ""
    print(f"{recipe.label} [{recipe.fingerprint}] seeds {seeds[0]}..{seeds[-1]} on {opts.device}, "
          f"pipeline {opts.pipeline}, step {opts.step}{precision}, {kind} run{cut}")
    if parsed:
        print("overrides: " + ", ".join(f"{k}={v!r}" for k, v in parsed.items()))
    for c in recipe.check_constraints(recipe.build_model(hp)):
        if not c["ok"]:
            print(f"note: this smoke run's model breaks {c['name']!r} ({c['detail']}); its records say so")
    ev = evidence.read(opts.results, recipe.name)
    todo = seeds_to_run(recipe, seeds, opts, ev)
    if not todo:
        print(f"all {len(seeds)} seed(s) are already recorded on this machine; --force trains them again")
        if not parsed:
            agreement(recipe, opts)                         # the question the user came with still has an answer
        return 0, []
    refuse_rejected(ev, recipe, todo, opts.force)
    if len(todo) < len(seeds):
        print(f"{len(seeds) - len(todo)} seed(s) already recorded on this machine; training {len(todo)}")
    csv_missing = hp.dataset == "mnist_csv" and not all(
        (data_layer.mnist_csv_dir(opts.data_dir) / f).exists() for f in data_layer.CSV_FILES.values())
    # a dry run writes nothing, not even the CSV copy of MNIST: it times the same images from the IDX files
    arrays = data_layer.load("mnist" if campaign.dry_run and csv_missing else hp.dataset, opts.data_dir)
    est = None
    if not opts.progress_lines:                             # a --jobs child: its parent estimated already
        with default_step(opts.step):                       # the estimate times the run's own step
            est = estimate(recipe, hp, arrays, opts.device, opts.pipeline, opts.stop_after, opts.precision)
        print(est.line(len(todo), campaign.jobs))
        for note in filter(None, (est.warning, advice(est, opts.device, recipe.label))):
            print(note)
        if campaign.budget and est.epoch > campaign.budget:     # no call of this budget could ever checkpoint
            why = (f"--budget {campaign.budget_text} is shorter than one epoch of {recipe.label} here "
                   f"(about {human(est.epoch)}): no call could train or checkpoint anything; give a longer budget")
            if not campaign.run_all:
                raise UsageError(why)
            print(f"skipped {recipe.label}: {why}")
            return 0, []
    if campaign.dry_run:
        if est and campaign.budget:
            print(plan_line(est, campaign.budget, campaign.budget_text, todo, campaign.jobs))
        print(f"dry run: would train seed(s) {', '.join(map(str, todo))} of {recipe.label} "
              f"({campaign.jobs} at a time); nothing trained or written")
        return 0, []
    if campaign.jobs > 1:
        failures, left = run_parallel(recipe, todo, opts, campaign.jobs, est=est)
    else:
        failures = 0
        _, left = runner.run_seeds(recipe, todo, opts, arrays, est=est)
    if not parsed and not left:
        agreement(recipe, opts)
    return failures, left


def after_ray(campaign: Campaign, plans, failures: int, left: dict[str, list[int]]) -> int:
    """What a Ray campaign left, with the command that continues it; the agreement block on a local instance."""
    for recipe, opts in plans:
        if recipe.label not in left:
            continue
        if left[recipe.label]:
            seeds = left[recipe.label]
            print(f"budget spent: {len(seeds)} seed(s) of {recipe.label} left ({', '.join(map(str, seeds))}); "
                  f"continue with:\n  {continue_command(campaign, recipe, opts, seeds)}")
        elif campaign.ray.address is None and not effective_hparams(recipe, opts)[1]:
            agreement(recipe, opts)
    return 1 if failures else 0


def main(campaign: Campaign) -> int:
    deadline = runner.now() + campaign.budget if campaign.budget else None
    plans = [(r, dataclasses.replace(o, deadline=deadline)) for r, o in campaign.plans]
    if runner.uncommitted():
        print(f"note: bench/ or recipes/ have uncommitted changes ({runner.code_version()[0]}): these runs say so and "
              "are not canonical (no commit holds their code); commit first to make evidence")
    if campaign.run_all:
        print(f"--all: {len(plans)} recipes in alphabetical order ({', '.join(r.name for r, _ in plans)}); "
              "canonical readings only")
    if campaign.backend == "ray" and not campaign.dry_run:     # a dry run estimates here, trains nowhere
        return after_ray(campaign, plans, *ray_backend.run_campaign(campaign, plans, deadline))
    failures = 0
    for i, (recipe, opts) in enumerate(plans):
        try:
            f, left = run_one_recipe(campaign, recipe, opts)
        except DataError as exc:
            if not campaign.run_all:
                raise
            print(f"skipped {recipe.label}: {exc}")
            continue
        failures += f
        if left and opts.progress_lines:                    # a --jobs child: the parent continues these
            print(f"@left {' '.join(map(str, left))}", flush=True)
        if left:
            print(f"budget spent: {len(left)} seed(s) of {recipe.label} left ({left[0]}..{left[-1]}); continue with:\n"
                  f"  {continue_command(campaign, recipe, opts, left)}")
            rest = [r.label for r, _ in plans[i + 1:]]
            if rest:
                print(f"not started: {', '.join(rest)} (rerun the same --all command to continue)")
            break
    return 1 if failures else 0
