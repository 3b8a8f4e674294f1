"""`bench run`: one reading or --all, the seeds not yet recorded on this machine, estimate first,
the agreement block last, --budget stopping cleanly with the command that continues."""
from __future__ import annotations

from . import data as data_layer
from . import registry
from .cli_args import UsageError, run_options
from .data import DataError
from .determinism import host_identity, set_threads


def seeds_to_run(recipe, seeds, opts) -> list[int]:
    """The seeds not already recorded on this machine (what a run will actually train)."""
    from . import evidence
    from .runner import done_here, effective_hparams, run_key

    if opts.force:
        return list(seeds)
    _, parsed = effective_hparams(recipe, opts)
    host = host_identity(opts.device)
    records = evidence.read(opts.results, recipe.name).records
    return [s for s in seeds if not done_here(records, run_key(recipe, s, opts, parsed, host), opts.stop_after)]


def continue_command(args, recipe, left: list[int]) -> str:
    parts = ["python -m bench run", f"--recipe {recipe.name}"]
    if recipe.variant is not None:
        parts.append(f"--variant {recipe.variant_name}")
    parts += [f"--seeds {len(left)}", f"--seed-start {left[0]}" if left[0] else ""]
    for flag in ("device", "pipeline", "step", "threads", "stop_after", "epochs", "train_limit", "eval_limit", "jobs"):
        value = getattr(args, flag, None)
        if value not in (None, 1, "fast") or (flag == "threads" and value):
            parts.append(f"--{flag.replace('_', '-')} {value}")
    parts += [f"--set {s}" for s in args.set or []]
    if args.results != "results":
        parts.append(f"--results {args.results}")
    if args.budget:
        parts.append(f"--budget {args.budget.text}")
    return " ".join(p for p in parts if p)


def run_one_recipe(args, recipe, opts, seeds: list[int], deadline) -> tuple[int, list[int]]:
    """Train one reading's seeds (estimate first, agreement last); returns (failed children, seeds left)."""
    from .agreement import agreement_lines
    from .estimate import advice, estimate
    from .jobs import run_parallel
    from .runner import effective_hparams, run_seeds

    hp, parsed = effective_hparams(recipe, opts)
    kind = "smoke (non-canonical)" if parsed else "canonical"
    cut = f", stopping after epoch {opts.stop_after} of {hp.epochs}" if opts.stop_after else ""
    print(f"{recipe.label} [{recipe.fingerprint}] seeds {seeds[0]}..{seeds[-1]} on {opts.device}, "
          f"pipeline {opts.pipeline}, step {opts.step}, {kind} run{cut}")
    if parsed:
        print("overrides: " + ", ".join(f"{k}={v!r}" for k, v in parsed.items()))
    for c in recipe.check_constraints(recipe.build_model(hp)):
        if not c["ok"]:
            print(f"note: this smoke run's model breaks {c['name']!r} ({c['detail']}); its records say so")
    todo = seeds_to_run(recipe, seeds, opts)
    def agreement():
        print("\n".join(agreement_lines(recipe, opts.results, opts.pipeline, opts.device.type,
                                        host_identity(opts.device))))

    if not todo:
        print(f"all {len(seeds)} seed(s) are already recorded on this machine; --force trains them again")
        if not parsed:
            agreement()                                     # the question the user came with still has an answer
        return 0, []
    if len(todo) < len(seeds):
        print(f"{len(seeds) - len(todo)} seed(s) already recorded on this machine; training {len(todo)}")
    dry = getattr(args, "dry_run", False)
    csv_missing = hp.dataset == "mnist_csv" and not all(
        (data_layer.mnist_csv_dir(opts.data_dir) / f).exists() for f in data_layer.CSV_FILES.values())
    # a dry run writes nothing, not even the CSV copy of MNIST: it times the same images from the IDX files
    arrays = data_layer.load("mnist" if dry and csv_missing else hp.dataset, opts.data_dir)
    from .step import default_step
    with default_step(opts.step):                           # the estimate times the run's own step
        est = estimate(recipe, hp, arrays, opts.device, opts.pipeline, opts.stop_after)
    print(est.line(len(todo), args.jobs))
    note = advice(est, opts.device, recipe.label)
    if note:
        print(note)
    if dry:
        print(f"dry run: would train seed(s) {', '.join(map(str, todo))} of {recipe.label} "
              f"({args.jobs} at a time); nothing trained or written")
        return 0, []
    opts.deadline = deadline
    if args.jobs > 1:
        failures, left = run_parallel(recipe, todo, opts, args.jobs, seed_seconds=est.seed)
    else:
        failures = 0
        _, left = run_seeds(recipe, todo, opts, arrays, seed_seconds=est.seed)
    if not parsed and not left:
        agreement()
    return failures, left


def cmd_run(args) -> int:
    from .runner import code_version

    code_version()                                          # the code as loaded, before any edit
    from . import ray_backend                               # imports no Ray: that happens only for --backend ray
    ray_backend.check_args(args)
    if args.threads:
        set_threads(args.threads)
    if args.all:
        if args.recipe or args.variant:
            raise UsageError("--all runs every recipe: drop --recipe/--variant, or drop --all")
        recipes = registry.all_recipes()
        print(f"--all: {len(recipes)} recipes in alphabetical order ({', '.join(r.name for r in recipes)}); "
              "canonical readings only")
    elif not args.recipe:
        raise UsageError("name a recipe with --recipe NAME (python -m bench list), or pass --all")
    else:
        recipes = [registry.load(args.recipe, args.variant)]
    plans = [(r, run_options(args, r)) for r in recipes]         # every check before the first download
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    from .runner import now
    deadline = now() + args.budget if args.budget else None
    if args.backend == "ray" and not getattr(args, "dry_run", False):   # a dry run estimates here, trains nowhere
        return ray_backend.run_campaign(args, plans, seeds, deadline)
    failures = 0
    for i, (recipe, opts) in enumerate(plans):
        try:
            f, left = run_one_recipe(args, recipe, opts, seeds, deadline)
        except DataError as exc:
            if not args.all:
                raise
            print(f"skipped {recipe.label}: {exc}")
            continue
        failures += f
        if left:
            print(f"budget spent: {len(left)} seed(s) of {recipe.label} left ({left[0]}..{left[-1]}); continue with:\n"
                  f"  {continue_command(args, recipe, left)}")
            rest = [r.label for r, _ in plans[i + 1:]]
            if rest:
                print(f"not started: {', '.join(rest)} (rerun the same --all command to continue)")
            break
    return 1 if failures else 0
