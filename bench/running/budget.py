"""Time budgets: `--budget 90m` parsed, and the command that continues what a budget, a --jobs child or
a Ray task left (the runs stop at a checkpoint; the same command resumes them bitwise)."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Optional

from bench.running.estimate import Estimate, human
from bench.running.options import Campaign, RunOptions
from bench.training.data import default_data_dir
from bench.training.step import resolve as resolve_step

DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")
SMOKE_FLAGS = ("epochs", "train_limit", "eval_limit")      # overrides with a flag of their own


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


def may_start(left: float, start_left: float, est: Optional[Estimate]) -> bool:
    """Whether a seed starts with `left` seconds of the budget (`start_left` when this call began), by its
    estimate (none: a --jobs child, whose parent decided).

    A seed that fits starts. One that does not waits for the next call, unless no call of this budget
    could hold it (a seed longer than the whole budget, e.g. `--budget 2h` for a 2.4 h seed): it starts
    while one epoch fits, trains until the next epoch would overrun, and the same command resumes it
    bitwise from its checkpoint."""
    if left <= 0:
        return False
    if est is None or est.seed <= left:
        return True
    return est.seed > start_left and est.epoch <= left


def plan_line(est: Estimate, budget: float, text: str, seeds: list[int], jobs: int = 1) -> str:
    """What a budget will do with these seeds, for --dry-run: which fit, and how a seed longer than the
    whole budget is split into calls of the same command."""
    fit = math.floor(budget / est.seed) * jobs if est.seed > 0 else len(seeds)
    if fit >= len(seeds):
        return f"--budget {text}: all {len(seeds)} seed(s) fit"
    if fit:
        return (f"--budget {text}: seeds {seeds[0]}..{seeds[fit - 1]} fit; the rest wait for the next call of the "
                "same command")
    calls = math.ceil(est.seed / budget)
    first = ", ".join(map(str, seeds[:jobs]))
    return (f"--budget {text}: one seed ({human(est.seed)}) is longer than the budget; seed(s) {first} train in "
            f"stretches, about {calls} calls of the same command each, resuming from the checkpoint")


def continue_command(campaign: Campaign, recipe, opts: RunOptions, left: list[int]) -> str:
    """The `bench run` line that trains the seeds `left` of this reading with the same settings."""
    parts = ["python -m bench run", f"--recipe {recipe.name}"]
    if recipe.variant is not None:
        parts.append(f"--variant {recipe.variant_name}")
    parts.append(f"--seeds {max(left) - min(left) + 1}")
    if min(left):
        parts.append(f"--seed-start {min(left)}")
    parts.append(f"--device {opts.device}")
    if opts.pipeline != "fast":
        parts.append(f"--pipeline {opts.pipeline}")
    if opts.step != resolve_step(None, opts.device, opts.pipeline, recipe.uses_engine)[0]:
        parts.append(f"--step {opts.step}")
    if opts.precision != "fp32":
        parts.append(f"--precision {opts.precision}")
    if opts.threads:
        parts.append(f"--threads {opts.threads}")
    if opts.stop_after is not None:
        parts.append(f"--stop-after {opts.stop_after}")
    for key, value in opts.overrides.items():
        parts.append(f"--{key.replace('_', '-')} {value}" if key in SMOKE_FLAGS else f"--set {key}={value}")
    if campaign.jobs > 1:
        parts.append(f"--jobs {campaign.jobs}")
    if str(opts.results) != "results":
        parts.append(f"--results {opts.results}")
    if Path(opts.data_dir) != default_data_dir():          # the same data (the default follows BENCH_DATA_DIR)
        parts.append(f"--data-dir {opts.data_dir}")
    if campaign.budget_text:
        parts.append(f"--budget {campaign.budget_text}")
    if campaign.backend == "ray":
        parts.append("--backend ray" + campaign.ray.flags())
    return " ".join(parts)
