"""`bench speed`: the fast and faithful pipelines, the floor and (on CUDA) the eager step, side by side."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from bench.cli.args import check_folder_arg, resolve_device
from bench.contract import registry
from bench.contract.errors import UsageError
from bench.contract.registry import Recipe
from bench.running.speed import run_speed
from bench.training import data as data_layer
from bench.training.determinism import set_threads


@dataclass(frozen=True)
class SpeedOptions:
    recipe: Recipe
    device: torch.device
    data_dir: Path
    epochs: int = 1
    train_limit: Optional[int] = None


def options(args) -> SpeedOptions:
    recipe = registry.load(args.recipe, args.variant)
    if not recipe.uses_engine:
        raise UsageError(f"{recipe.name} trains outside the torch engine: it has no faithful pipeline to compare")
    if args.threads:
        set_threads(args.threads)
    data_dir = data_layer.default_data_dir(args.data_dir)
    check_folder_arg("--data-dir", data_dir)
    return SpeedOptions(recipe, resolve_device(args.device), data_dir, args.epochs, args.train_limit)


def main(opts: SpeedOptions) -> int:
    return run_speed(opts.recipe, opts.device, opts.data_dir, epochs=opts.epochs, train_limit=opts.train_limit)
