"""`python -m bench speed`: the fast and the faithful pipeline timed side by side, in one process.

Why: the documents' per-image PIL pipelines spend most of an epoch outside the model; the
fast pipeline claims to remove that without changing the science (the report's Welch test
checks the science, this checks the speed). Each repetition trains one epoch with each
pipeline, alternating which goes first, so drift in machine load hits both; the epoch time
is the engine's own (training + evaluation), and the batches alone (no model) are timed too.
The floor is the model's own training step on batches already prepared on the device (the
recipe without augmentation, unshuffled slices of the once-normalized split, the same
evaluation): the fast pipeline's overhead is its epoch over the floor's (target: within 1.15x).
On CUDA the fast pipeline runs the graph step (bench/training/step.py) and its eager step is timed too.
Nothing is recorded: a timing is only comparable with the other number printed beside it.
"""
from __future__ import annotations

import dataclasses
import statistics
import time

import torch

from bench.contract.registry import Recipe
from bench.records.format import machine_key
from bench.training import data as data_layer
from bench.training.determinism import seed_everything
from bench.training.engine import (
    RunContext,
    faithful_batches,
    faithful_loader,
    fast_batches,
    train,
)
from bench.training.environment import environment
from bench.training.splits import make_splits
from bench.training.step import resolve as resolve_step


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


class _Prepared:
    """The recipe without its augmentation: the engine then normalizes the split once and trains on
    slices of it, i.e. on batches already prepared on the device, with no loader in between."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        return getattr(self._module, name)

    def augmentations(self, hp):
        return []


def one_epoch(recipe: Recipe, hp, splits, pipeline: str, device: torch.device, step: str = "eager",
              floor: bool = False) -> float:
    """Seconds of one full engine epoch (train + evaluate) with this pipeline and step; the floor trains
    on prepared batches (no augmentation, unshuffled slices). A graph step's epoch is the second of
    two: the first also holds its one-off warm-up and capture."""
    gens = seed_everything(0, device)
    module = _Prepared(recipe.module) if floor else recipe.module
    epochs = 2 if step == "graph" else 1
    hp = dataclasses.replace(hp, epochs=epochs, **({"shuffle": False} if floor else {}))
    ctx = RunContext(f"speed {pipeline}", 0, device, gens, pipeline, progress=False, step=step)
    return train(module, hp, splits, ctx).curves["epoch_time_s"][-1]


def configurations(device: torch.device, graph: bool = True) -> list[tuple[str, str, str]]:
    """(label, pipeline, step) timed side by side: fast with its default step, faithful, the floor with
    the fast pipeline's step, and on CUDA the fast pipeline's eager step too."""
    fast_step = resolve_step(None if graph else "eager", device, "fast")[0]
    out = [("fast", "fast", fast_step), ("faithful", "faithful", "eager"), ("floor", "fast", fast_step)]
    if fast_step == "graph":
        out.append(("fast-eager", "fast", "eager"))
    return out


def measure(recipe: Recipe, device: torch.device, arrays, repeats: int = 1,
            train_limit: int | None = None, log=print, graph: bool = True) -> dict[str, dict]:
    """Median seconds per epoch (and per epoch of batches alone, where there are batches to make) for
    each configuration; {label: {"epoch", "batches" (None for the floor), "pipeline", "step"}}."""
    hp = dataclasses.replace(recipe.hparams, epochs=1, train_limit=train_limit or recipe.hparams.train_limit)
    splits = make_splits(arrays, hp, seed_everything(0, device)["split"], device)
    configs = configurations(device, graph)
    times = {label: {"epoch": [], "batches": []} for label, _, _ in configs}
    for rep in range(repeats):
        order = configs if rep % 2 == 0 else configs[::-1]
        for label, pipeline, step in order:
            t = times[label]
            own_batches = label in ("fast", "faithful")       # the floor has none; fast-eager has fast's
            if own_batches:
                t["batches"].append(batches_only(recipe, hp, splits, pipeline, device))
            t["epoch"].append(one_epoch(recipe, hp, splits, pipeline, device, step, floor=label == "floor"))
            alone = f", batches alone {t['batches'][-1]:.2f} s" if own_batches else ""
            log(f"  repetition {rep + 1}/{repeats} {label:10}: epoch {t['epoch'][-1]:.2f} s{alone}  (step {step})")
    return {label: {"epoch": statistics.median(times[label]["epoch"]),
                    "batches": statistics.median(times[label]["batches"]) if times[label]["batches"] else None,
                    "pipeline": pipeline, "step": step} for label, pipeline, step in configs}


def run_speed(recipe: Recipe, device: torch.device, data_dir, epochs: int = 1,
              train_limit: int | None = None, log=print) -> int:
    arrays = data_layer.load(recipe.hparams.dataset, data_dir, log=log)
    env = environment(device)
    images = min(train_limit or len(arrays["train_y"]), len(arrays["train_y"]))
    fast_step = configurations(device)[0][2]
    log(f"{recipe.name}: {epochs} epoch(s) per pipeline on {device} ({machine_key(env)}), "
        f"{images} training images, batch {recipe.hparams.batch_size}; fast pipeline step {fast_step}"
        + (" (a graph step's epoch is the second of two: the first holds its warm-up and capture)"
           if fast_step == "graph" else ""))
    try:
        t = measure(recipe, device, arrays, repeats=epochs, train_limit=train_limit, log=log)
    except Exception as exc:            # the graph step failed on this machine: say so, time eager alone
        if fast_step != "graph":
            raise
        log(f"GRAPH STEP FAILED: {exc.__class__.__name__}: {str(exc)[:500]}")
        log("timing the eager step only (runs here need --step eager)")
        t = measure(recipe, device, arrays, repeats=epochs, train_limit=train_limit, log=log, graph=False)
    for label, m in t.items():
        alone = (f"{m['batches']:8.2f} s batches alone" if m["batches"] is not None else
                 "       - no batches to make: prepared on the device (no augmentation, no loader)")
        log(f"{label:10} {m['epoch']:8.2f} s per epoch (train + eval)   {alone}   [step {m['step']}]")
    log(f"fast/floor: {t['fast']['epoch'] / t['floor']['epoch']:.2f}x: the fast pipeline's overhead over the "
        "model's own step (target: within 1.15x)")
    if "fast-eager" in t:
        log(f"per epoch, eager/graph step (fast pipeline): {t['fast-eager']['epoch'] / t['fast']['epoch']:.2f}x")
    log(f"batches alone, faithful/fast: {t['faithful']['batches'] / t['fast']['batches']:.2f}x")
    log(f"per epoch, faithful/fast: {t['faithful']['epoch'] / t['fast']['epoch']:.2f}x")
    return 0
