"""`python -m bench speed`: the fast and the faithful pipeline timed side by side, in one process.

Why: the documents' per-image PIL pipelines spend most of an epoch outside the model; the
fast pipeline claims to remove that without changing the science (the report's Welch test
checks the science, this checks the speed). Each repetition trains one epoch with each
pipeline, alternating which goes first, so drift in machine load hits both; the epoch time
is the engine's own (training + evaluation), and the batches alone (no model) are timed too.
Nothing is recorded: a timing is only comparable with the other number printed beside it.
"""
from __future__ import annotations

import dataclasses
import statistics
import time

import torch

from . import data as data_layer
from .determinism import environment, machine_key, seed_everything
from .engine import PIPELINES, RunContext, faithful_batches, faithful_loader, fast_batches, train
from .registry import Recipe


def batches_only(recipe: Recipe, hp, splits, pipeline: str, device: torch.device) -> float:
    """Seconds to produce one epoch of training batches on the device, without the model."""
    gens = seed_everything(0, device)
    transforms = recipe.module.augmentations(hp)
    t0 = time.perf_counter()
    batches = (faithful_batches(faithful_loader(splits.train, hp, transforms, gens), device)
               if pipeline == "faithful" else fast_batches(splits.train, hp, transforms, gens))
    last = None
    for x, _ in batches:
        last = x
    if last is not None:
        last.sum().item()              # wait for the device before stopping the clock
    return time.perf_counter() - t0


def one_epoch(recipe: Recipe, hp, splits, pipeline: str, device: torch.device) -> float:
    """Seconds of one full engine epoch (train + evaluate) with this pipeline."""
    gens = seed_everything(0, device)
    ctx = RunContext(f"speed {pipeline}", 0, device, gens, pipeline, progress=False)
    return train(recipe.module, hp, splits, ctx).curves["epoch_time_s"][0]


def measure(recipe: Recipe, device: torch.device, arrays, repeats: int = 1,
            train_limit: int | None = None, log=print) -> dict[str, dict[str, float]]:
    """Median seconds per epoch and per epoch of batches alone, for each pipeline."""
    hp = dataclasses.replace(recipe.hparams, epochs=1, train_limit=train_limit or recipe.hparams.train_limit)
    splits = data_layer.make_splits(arrays, hp, seed_everything(0, device)["split"], device)
    times = {p: {"epoch": [], "batches": []} for p in PIPELINES}
    for rep in range(repeats):
        order = PIPELINES if rep % 2 == 0 else PIPELINES[::-1]
        for pipeline in order:
            times[pipeline]["batches"].append(batches_only(recipe, hp, splits, pipeline, device))
            times[pipeline]["epoch"].append(one_epoch(recipe, hp, splits, pipeline, device))
            log(f"  repetition {rep + 1}/{repeats} {pipeline:8}: epoch {times[pipeline]['epoch'][-1]:.2f} s, "
                f"batches alone {times[pipeline]['batches'][-1]:.2f} s")
    return {p: {k: statistics.median(v) for k, v in t.items()} for p, t in times.items()}


def run_speed(recipe: Recipe, device: torch.device, data_dir, epochs: int = 1,
              train_limit: int | None = None, log=print) -> int:
    arrays = data_layer.load(recipe.hparams.dataset, data_dir, log=log)
    env = environment(device)
    images = min(train_limit or len(arrays["train_y"]), len(arrays["train_y"]))
    log(f"{recipe.name}: {epochs} epoch(s) per pipeline on {device} ({machine_key(env)}), "
        f"{images} training images, batch {recipe.hparams.batch_size}")
    t = measure(recipe, device, arrays, repeats=epochs, train_limit=train_limit, log=log)
    for p in PIPELINES:
        log(f"{p:8} {t[p]['epoch']:8.2f} s per epoch (train + eval)   {t[p]['batches']:8.2f} s batches alone")
    log(f"batches alone, faithful/fast: {t['faithful']['batches'] / t['fast']['batches']:.2f}x")
    log(f"per epoch, faithful/fast: {t['faithful']['epoch'] / t['fast']['epoch']:.2f}x")
    return 0
