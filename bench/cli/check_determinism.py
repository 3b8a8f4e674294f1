"""`bench check-determinism`: one seed trained twice; do the final weights match bitwise, and where do the
curves first differ if not."""
from __future__ import annotations

import math
from dataclasses import dataclass

from bench.cli.args import resolve_device
from bench.cli.run import run_options
from bench.contract import registry
from bench.contract.errors import UsageError
from bench.contract.registry import Recipe
from bench.running.options import RunOptions
from bench.running.runner import effective_hparams
from bench.training import data as data_layer
from bench.training import engine
from bench.training.determinism import seed_everything, set_threads
from bench.training.engine import RunContext
from bench.training.environment import host_identity
from bench.training.splits import make_splits

MAX_SEED = 2 ** 63 - 1


@dataclass(frozen=True)
class DeterminismOptions:
    recipe: Recipe
    run: RunOptions
    seed: int


def options(args) -> DeterminismOptions:
    if args.seed > MAX_SEED:
        raise UsageError(f"--seed {args.seed}: a seed must be at most 2**63 - 1 (torch's generators take 64 bits)")
    if args.threads:
        set_threads(args.threads)
    recipe = registry.load(args.recipe, args.variant)
    device = resolve_device(args.device)
    return DeterminismOptions(recipe, run_options(args, recipe, device, host_identity(device)), args.seed)


def _same(u, v) -> bool:
    return u == v or (isinstance(u, float) and isinstance(v, float) and math.isnan(u) and math.isnan(v))


def first_difference(a: dict, b: dict):
    """The first epoch at which two runs' curves differ (None when they agree where both have epochs)."""
    keys = [k for k in a if k != "epoch_time_s" and k in b]
    rows = min(len(a["epoch"]), len(b["epoch"]))
    diverged = next((a["epoch"][i] for i in range(rows) if any(not _same(a[k][i], b[k][i]) for k in keys)), None)
    if diverged is None and len(a["epoch"]) != len(b["epoch"]):
        diverged = a["epoch"][rows] if rows < len(a["epoch"]) else b["epoch"][rows]
    return diverged


def main(opts: DeterminismOptions) -> int:
    recipe, run, seed = opts.recipe, opts.run, opts.seed
    hp, _ = effective_hparams(recipe, run)
    arrays = data_layer.load(hp.dataset, run.data_dir)
    results = []
    for attempt in (1, 2):
        gens = seed_everything(seed, run.device, run.precision)
        splits = make_splits(arrays, hp, gens["split"], run.device)
        ctx = RunContext(f"{recipe.label} (run {attempt})", seed, run.device, gens, run.pipeline,
                         progress=run.progress, step=run.step)
        results.append(engine.train(recipe.module, hp, splits, ctx) if recipe.uses_engine
                       else recipe.module.train(hp, splits, ctx))
    a, b = results
    if a.weights_sha256 == b.weights_sha256:
        print(f"deterministic: final weights match bitwise ({a.weights_sha256[:16]}; step {run.step})")
        return 0
    diverged = first_difference(a.curves, b.curves)
    where = f"curves first differ at epoch {diverged}" if diverged else "curves are equal; only the weights differ"
    print(f"NOT deterministic: weights {a.weights_sha256[:16]} vs {b.weights_sha256[:16]}; {where} (step {run.step})")
    return 1
