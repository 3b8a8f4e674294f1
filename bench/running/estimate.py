"""How long a run will take on this machine, measured before it starts.

Why: a seed of some recipes takes minutes, others hours on a CPU; the user should know before
the wait, not after. For a torch recipe the estimate times the run's own training step (the
recipe's model, optimizer and schedule, the chosen pipeline, step and precision) on real batches:
after warm-up (which holds a CUDA graph's capture and the first calls' set-up), in several blocks
of many steps each, whose median is the seconds per step; evaluation is timed the same way per
image. Building the model and capturing a graph happen once per run and are never scaled up with
the epoch. The run's epochs, evaluation schedule and split sizes then scale the two figures up.
A recipe that trains outside the engine (the NumPy one) is timed through its own train() on two
slices of the data, from their difference. Nothing is recorded and no RNG the run uses is touched.
A CPU estimate warns when the machine is busy: on 2 cores one other busy process makes a
2-thread step 3-4x slower.
"""
from __future__ import annotations

import dataclasses
import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Optional

import torch

from bench.contract.recipe import DATASETS, TEST_IMAGES
from bench.training.augment import normalize
from bench.training.determinism import seed_everything
from bench.training.engine import (
    RunContext,
    evaluate,
    evaluated,
    faithful_batches,
    faithful_loader,
    fast_batches,
    train,
)
from bench.training.splits import make_splits
from bench.training.step import current as current_step
from bench.training.step import make_step

HOUR = 3600.0
WARMUP_STEPS = 3            # a graph step captures at its first batch; the first calls allocate
REPEATS = 3                 # blocks of steps timed; their median is the figure
BLOCK_S = 0.25              # a block lasts about this long
MAX_BLOCK_STEPS = 200


def human(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class Estimate:
    train_per_image: float      # seconds per training image
    eval_per_image: float       # seconds per evaluated image (validation + test)
    epoch: float                # one epoch with its evaluation
    seed: float                 # a whole run (up to an early stop)
    epochs: int
    early_stop: bool            # the recipe may stop earlier: the per-seed figure is an upper bound
    warning: Optional[str] = None   # the machine was busy while it measured

    def line(self, seeds: int, jobs: int = 1) -> str:
        upto = "up to " if self.early_stop else ""
        total = self.seed * math.ceil(seeds / max(1, jobs))
        return (f"estimate on this machine: {human(self.epoch)} per epoch, {upto}{human(self.seed)} per seed "
                f"({self.epochs} epochs), {upto}{human(total)} for {seeds} seed(s)"
                + (f" with {jobs} jobs" if jobs > 1 else ""))


def busy_warning(device: torch.device, threads: int) -> Optional[str]:
    """A line when other processes already keep the CPU busy (load average against cores)."""
    if device.type != "cpu" or not hasattr(os, "getloadavg"):
        return None
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load + threads <= cores + 0.5:
        return None
    fewer = (", or pass --threads 1 (another run key: the bits depend on the thread count, never on the load)"
             if threads > 1 else "")
    return (f"warning: this machine is busy (load {load:.1f} on {cores} cores, and this run adds {threads} "
            f"thread(s)): the estimate and the run are slower than on an idle machine, a 2-thread step 3-4x on "
            f"2 cores. Stop the other jobs{fewer}; the times depend on the load, the bits do not")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batches(recipe, hp, split, transforms, gens, pipeline: str, device):
    """The run's own training batches, epoch after epoch, without end."""
    cached = normalize(split.x, hp.mean, hp.std) if pipeline == "fast" and not transforms else None
    while True:
        if pipeline == "faithful":
            yield from faithful_batches(faithful_loader(split, hp, transforms, gens), device)
        else:
            yield from fast_batches(split, hp, transforms, gens, cached)


def _blocks(work, device: torch.device) -> float:
    """Median seconds of one call of `work` over REPEATS blocks sized to last about BLOCK_S each."""
    _sync(device)
    t0 = time.perf_counter()
    work()
    _sync(device)
    once = max(time.perf_counter() - t0, 1e-6)
    size = max(1, min(MAX_BLOCK_STEPS, int(BLOCK_S / once)))
    times = []
    for _ in range(REPEATS):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(size):
            work()
        _sync(device)
        times.append((time.perf_counter() - t0) / size)
    return statistics.median(times)


def engine_seconds(recipe, hp, arrays, device, pipeline: str, precision: str = "fp32") -> tuple[float, float]:
    """(seconds per training step, seconds per evaluated image) of a torch recipe's real step."""
    n_train = DATASETS[hp.dataset][0] - (hp.val_size if hp.split != "official" else 0)
    n_train = min(n_train, hp.train_limit or n_train)
    steps_per_epoch = math.ceil(n_train / hp.batch_size)
    images = min(n_train, hp.batch_size * 4)           # a full-batch recipe times its whole batch
    cut = dataclasses.replace(hp, train_limit=images, eval_limit=min(hp.eval_limit or 2000, 2000))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        gens = seed_everything(0, device, precision)
        splits = make_splits(arrays, cut, gens["split"], device)
        model = recipe.build_model(hp).to(device)
        optimizer = recipe.module.build_optimizer(model, hp)
        # the run's own schedule, made long enough that the timed steps never run past its end
        timed = WARMUP_STEPS + 1 + REPEATS * MAX_BLOCK_STEPS
        longer = dataclasses.replace(hp, epochs=hp.epochs + math.ceil(timed / steps_per_epoch))
        schedule = recipe.module.build_scheduler(optimizer, longer, steps_per_epoch)
        loss_fn = recipe.module.build_loss(hp)
        step = make_step(current_step(None), model, optimizer, schedule, loss_fn, hp, device, pipeline)
        batches = _batches(recipe, hp, splits.train, recipe.module.augmentations(hp), gens, pipeline, device)
        model.train()
        step.begin_epoch()
        for _ in range(WARMUP_STEPS):
            step(*next(batches))
        per_step = _blocks(lambda: step(*next(batches)), device)
        evaluate(model, splits.test, cut, loss_fn)         # warm-up
        per_eval = _blocks(lambda: evaluate(model, splits.test, cut, loss_fn), device) / len(splits.test)
    return per_step, per_eval


def _timed_epoch(recipe, hp, arrays, device, pipeline: str, train_images: int, eval_images: int) -> float:
    cut = dataclasses.replace(hp, epochs=1, train_limit=train_images, eval_limit=eval_images)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        gens = seed_everything(0, device)
        splits = make_splits(arrays, cut, gens["split"], device)
        ctx = RunContext("estimate", 0, device, gens, pipeline, progress=False)
        t0 = time.perf_counter()
        if recipe.uses_engine:
            train(recipe.module, cut, splits, ctx)
        else:
            recipe.module.train(cut, splits, ctx)
        _sync(device)
        return time.perf_counter() - t0


def own_train_seconds(recipe, hp, arrays, device, pipeline: str, n_train: int) -> tuple[float, float]:
    """(seconds per training image, per evaluated image) of a recipe with its own train(), from the
    differences of short timed epochs (a fixed cost cancels out)."""
    small = max(1, min(2 * hp.batch_size, n_train // 8))
    large = max(small + 1, min(6 * hp.batch_size, n_train // 2))
    few, many = (100, 600) if not hp.eval_limit else (max(1, hp.eval_limit // 6), hp.eval_limit)
    _timed_epoch(recipe, hp, arrays, device, pipeline, small, few)            # warm-up: allocations, kernels
    t_base = _timed_epoch(recipe, hp, arrays, device, pipeline, small, few)
    t_train = _timed_epoch(recipe, hp, arrays, device, pipeline, large, few)
    t_eval = _timed_epoch(recipe, hp, arrays, device, pipeline, small, many)
    has_val = hp.split != "official"
    per_train = max(t_train - t_base, 1e-9) / (large - small)
    per_eval = max(t_eval - t_base, 0.0) / ((many - few) * (2 if has_val else 1)) if many > few else 0.0
    return per_train, per_eval


def estimate(recipe, hp, arrays, device: torch.device, pipeline: str = "fast", stop_after=None,
             precision: str = "fp32") -> Estimate:
    """Seconds per epoch and per seed for these hyperparameters on this machine (see the module docstring)."""
    warning = busy_warning(device, torch.get_num_threads())
    n_train = DATASETS[hp.dataset][0] - (hp.val_size if hp.split != "official" else 0)
    n_train = min(n_train, hp.train_limit or n_train)
    if recipe.uses_engine:
        per_step, per_eval = engine_seconds(recipe, hp, arrays, device, pipeline, precision)
        per_train = per_step * math.ceil(n_train / hp.batch_size) / n_train
    else:
        per_train, per_eval = own_train_seconds(recipe, hp, arrays, device, pipeline, n_train)
    has_val = hp.split != "official"
    n_eval = (hp.val_size if has_val else 0) + TEST_IMAGES[hp.dataset]
    if hp.eval_limit:
        n_eval = min(hp.eval_limit, hp.val_size) * has_val + min(hp.eval_limit, TEST_IMAGES[hp.dataset])
    last = hp.epochs if stop_after is None else min(stop_after, hp.epochs)
    n_evaluated = sum(evaluated(e, hp, last) for e in range(last))
    epoch = n_train * per_train + n_eval * per_eval
    seed = last * n_train * per_train + n_evaluated * n_eval * per_eval
    return Estimate(per_train, per_eval, epoch, seed, last, early_stop=hasattr(hp, "early_stop_patience"),
                    warning=warning)


def advice(est: Estimate, device: torch.device, recipe_label: str) -> str | None:
    """What to do instead when a seed would take more than an hour on a CPU."""
    if device.type != "cpu" or est.seed <= HOUR:
        return None
    return (f"note: one seed of {recipe_label} takes about {human(est.seed)} on this CPU. Alternatives: "
            "`--device cuda` on a machine with a GPU; `--budget 2h` to run the seeds that fit and continue later; "
            "`--stop-after 10` for the first epochs of the real schedule (early-curve evidence); or a smoke run "
            "with `--epochs 3` (a shorter schedule, never mixed with the claim's statistics)")
