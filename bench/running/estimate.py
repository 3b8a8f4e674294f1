"""How long a run will take on this machine, measured before it starts, and time budgets.

Why: a seed of some recipes takes minutes, others hours on a CPU; the user should know before
the wait, not after. Two short epochs of the recipe's real training path (the engine or its own
train(), the chosen pipeline and device) on a slice of the data give the seconds per training
image (from their difference) and per evaluated image; the run's epochs, evaluation schedule and
split sizes scale them up. Nothing is recorded and no RNG the run uses is touched.
"""
from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass

import torch

from .engine import RunContext, evaluated, train
from .recipe import DATASETS, TEST_IMAGES
from .splits import make_splits

HOUR = 3600.0
DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(text: str) -> float:
    """'90m', '2h', '1h30m', '45s' or plain seconds -> seconds; ValueError otherwise."""
    t = text.strip().lower()
    try:
        seconds = float(t)
    except ValueError:
        m = DURATION.match(t)
        if not t or not m or not any(m.groups()):
            raise ValueError(f"{text!r} is not a duration (e.g. 90m, 2h, 1h30m, 45s)") from None
        h, mi, s = (float(g) if g else 0.0 for g in m.groups())
        seconds = h * 3600 + mi * 60 + s
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{text!r}: a budget must be a positive duration")
    return seconds


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

    def line(self, seeds: int, jobs: int = 1) -> str:
        upto = "up to " if self.early_stop else ""
        total = self.seed * math.ceil(seeds / max(1, jobs))
        return (f"estimate on this machine: {human(self.epoch)} per epoch, {upto}{human(self.seed)} per seed "
                f"({self.epochs} epochs), {upto}{human(total)} for {seeds} seed(s)"
                + (f" with {jobs} jobs" if jobs > 1 else ""))


def _timed_epoch(recipe, hp, arrays, device, pipeline: str, train_images: int, eval_images: int) -> float:
    from .determinism import seed_everything
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
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0


def estimate(recipe, hp, arrays, device: torch.device, pipeline: str = "fast", stop_after=None) -> Estimate:
    """Seconds per epoch and per seed for these hyperparameters, from three short timed epochs.

    t(a, e) = overhead + a * (per training image) + e * (per evaluated image): two runs differing in
    training images give the first slope, two differing in evaluated images the second, so a fixed
    cost (building the model, capturing a CUDA graph) is never scaled up with the epoch's size."""
    n_train = min(hp.train_limit or math.inf, DATASETS[hp.dataset][0] - (hp.val_size if hp.split != "official"
                                                                           else 0))
    small = max(1, min(2 * hp.batch_size, n_train // 8))
    large = max(small + 1, min(6 * hp.batch_size, n_train // 2))
    few, many = (100, 600) if not hp.eval_limit else (max(1, hp.eval_limit // 6), hp.eval_limit)
    _timed_epoch(recipe, hp, arrays, device, pipeline, small, few)            # warm-up: allocations, kernels
    t_base = _timed_epoch(recipe, hp, arrays, device, pipeline, small, few)
    t_train = _timed_epoch(recipe, hp, arrays, device, pipeline, large, few)
    t_eval = _timed_epoch(recipe, hp, arrays, device, pipeline, small, many)
    has_val = hp.split != "official"
    per_train = max(t_train - t_base, 1e-9) / (large - small)
    per_eval = max(t_eval - t_base, 0.0) / ((many - few) * (2 if has_val else 1))
    n_eval = (hp.val_size if has_val else 0) + TEST_IMAGES[hp.dataset]
    if hp.eval_limit:
        n_eval = min(hp.eval_limit, hp.val_size) * has_val + min(hp.eval_limit, TEST_IMAGES[hp.dataset])
    last = hp.epochs if stop_after is None else min(stop_after, hp.epochs)
    n_evaluated = sum(evaluated(e, hp, last) for e in range(last))
    epoch = n_train * per_train + n_eval * per_eval
    seed = last * n_train * per_train + n_evaluated * n_eval * per_eval
    return Estimate(per_train, per_eval, epoch, seed, last, early_stop=hasattr(hp, "early_stop_patience"))


def advice(est: Estimate, device: torch.device, recipe_label: str) -> str | None:
    """What to do instead when a seed would take more than an hour on a CPU."""
    if device.type != "cpu" or est.seed <= HOUR:
        return None
    return (f"note: one seed of {recipe_label} takes about {human(est.seed)} on this CPU. Alternatives: "
            "`--device cuda` on a machine with a GPU; `--budget 2h` to run the seeds that fit and continue later; "
            "`--stop-after 10` for the first epochs of the real schedule (early-curve evidence); or a smoke run "
            "with `--epochs 3` (a shorter schedule, never mixed with the claim's statistics)")
