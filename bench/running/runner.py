"""Runs a recipe over seeds: skip what is done here, resume what was cut, record what finishes.

Each (recipe, variant, fingerprint, seed, overrides, pipeline, device type, CPU thread count,
host) is one run key: a run is only resumed or skipped on the machine and thread count that
made it, since those change the bits; a record from other hardware stays evidence and never
skips a seed here. A run holds a lock on its key while it trains, checkpoints every evaluated
epoch into results/<recipe>/partial/, and becomes a record when it finishes or reaches its
--stop-after point (a truncated record, resumable to the end). A --budget stops cleanly at a
checkpoint before it is spent and says how to continue.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import torch

from bench.contract.errors import BadInput, Interrupted, Terminated
from bench.contract.fingerprint import ROOT
from bench.contract.recipe import DATASETS, OverrideError, apply_overrides, count_params
from bench.contract.registry import Recipe
from bench.records import evidence
from bench.records.format import SCHEMA_VERSION, machine_key
from bench.records.selection import summarize
from bench.records.store import partial_dir, run_lock, write_record
from bench.running.budget import may_start
from bench.running.estimate import Estimate
from bench.running.options import RunOptions
from bench.training import data as data_layer
from bench.training.determinism import seed_everything
from bench.training.engine import RunContext, train
from bench.training.environment import environment, git_commit, software
from bench.training.harness import harness_hash
from bench.training.splits import make_splits


class RejectedRecord(BadInput):
    """A seed whose record is rejected is never retrained silently (exit 2: the user decides)."""


class BudgetReached(Exception):
    """The --budget is spent: the run stopped at a checkpoint and continues when rerun."""


@dataclass
class RunnerContext(RunContext):
    """The engine's context plus what the runner watches at every checkpoint: the budget and the
    progress lines a --jobs parent reads. The engine only calls save_checkpoint()."""
    deadline: Optional[float] = None
    planned: int = 0
    lines: bool = False
    saved_epoch: int = 0
    saved_at: float = field(default_factory=lambda: now())     # the budget's clock at the last checkpoint

    def save_checkpoint(self, state: dict) -> None:
        super().save_checkpoint(state)
        self.saved_epoch = state["epoch"]
        if self.lines:
            curves = state.get("curves") or {}
            test = (curves.get("test_acc") or [None])[-1]
            print(f"@progress {self.saved_epoch} {self.planned}" + (f" test {test:.2f}" if test is not None else ""),
                  flush=True)
        # stop before the budget is spent: when the next stretch, as long as the last one, would overrun it
        t = now()
        stretch, self.saved_at = t - self.saved_at, t
        if self.deadline is not None and t + stretch > self.deadline and self.saved_epoch < self.planned:
            raise BudgetReached(f"{self.name} seed {self.seed}: budget spent at epoch {self.saved_epoch} of "
                                f"{self.planned} (checkpointed)")


def now() -> float:
    """The clock budgets are measured on (one place, so tests can drive it)."""
    return time.monotonic()


def cpu_threads(opts: RunOptions) -> Optional[int]:
    """The thread count a CPU run's bits depend on (None on a GPU)."""
    return torch.get_num_threads() if opts.device.type == "cpu" else None


def run_key(recipe: Recipe, seed: int, opts: RunOptions, parsed: dict) -> str:
    """Everything the bits of a run depend on: a rerun with one of them changed is another run (after a
    torch upgrade a seed trains again instead of counting as already recorded)."""
    what = {"recipe": recipe.name, "variant": recipe.variant_name, "fingerprint": recipe.fingerprint, "seed": seed,
            "overrides": parsed, "pipeline": opts.pipeline, "device": opts.device.type, "threads": cpu_threads(opts),
            "host": opts.host, "step": opts.step, "precision": opts.precision, "software": software(opts.device),
            "uncommitted": uncommitted()}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:24]


def steps_per_epoch(hp) -> int:
    """Optimizer steps in one epoch of these hyperparameters (the split and --train-limit applied)."""
    n = DATASETS[hp.dataset][0] - (hp.val_size if hp.split != "official" else 0)
    return math.ceil(min(n, hp.train_limit or n) / hp.batch_size)


def preflight(recipe: Recipe, hp) -> tuple[int, list[dict]]:
    """Build what a run builds before any data or record is touched: the model (its parameter count
    and constraints) and, for engine recipes, its optimizer and scheduler at the run's steps per
    epoch (a OneCycle schedule too short for its warm-up fails here, not mid-run)."""
    model = recipe.build_model(hp)
    constraints = recipe.check_constraints(model)
    if recipe.uses_engine:
        with torch.random.fork_rng(devices=[]):
            try:
                optimizer = recipe.module.build_optimizer(model, hp)
                recipe.module.build_scheduler(optimizer, hp, steps_per_epoch(hp))
            except (ArithmeticError, ValueError) as exc:
                raise OverrideError(f"{recipe.label}: these settings give an optimizer or schedule torch rejects "
                                    f"({exc.__class__.__name__}: {exc}); use more epochs or training images") from None
    return count_params(model), constraints


def done_here(records: list[dict], key: str, stop_after: Optional[int]) -> list[dict]:
    """Records that make this run unnecessary: a finished one, or (for --stop-after K) one truncated at K or later."""
    same = [r for r in records if r.get("key") == key]
    finished = [r for r in same if r.get("status") == "complete"]
    if finished or stop_after is None:
        return finished
    return [r for r in same if r.get("status") == "truncated" and (r.get("epochs_run") or 0) >= stop_after]


def effective_hparams(recipe: Recipe, opts: RunOptions):
    return apply_overrides(recipe.hparams, opts.overrides)


@functools.lru_cache(maxsize=None)
def code_version() -> tuple:
    """(git commit, harness hash) of the code this process loaded, read once at start."""
    return git_commit(ROOT), harness_hash()


def uncommitted() -> bool:
    """The code that runs has edits no commit holds: its runs say so (+dirty) and are never canonical."""
    return str(code_version()[0] or "").endswith("+dirty")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def train_and_record(recipe: Recipe, seed: int, arrays: dict, opts: RunOptions, key: str,
                     checkpoint: Optional[Path]) -> dict:
    """Train one seed (resuming from its checkpoint) and return its record, unwritten: what a local
    run and a Ray worker both do; whoever owns the results folder writes it."""
    hp, parsed = effective_hparams(recipe, opts)
    params, constraints = preflight(recipe, hp)
    gens = seed_everything(seed, opts.device, opts.precision)
    splits = make_splits(arrays, hp, gens["split"], opts.device)
    ctx = RunnerContext(recipe.label, seed, opts.device, gens, opts.pipeline, checkpoint, key, opts.progress,
                        stop_after=opts.stop_after, deadline=opts.deadline,
                        planned=hp.epochs if opts.stop_after is None else min(opts.stop_after, hp.epochs),
                        lines=opts.progress_lines, step=opts.step)
    started = _now()
    try:
        result = train(recipe.module, hp, splits, ctx) if recipe.uses_engine else recipe.module.train(hp, splits, ctx)
    except KeyboardInterrupt as exc:
        saved = (f"epoch {ctx.saved_epoch} of {ctx.planned} is checkpointed; rerun the same command to resume"
                 if ctx.saved_epoch else "it had not finished an epoch: nothing was saved for it")
        raise Interrupted(f"{recipe.label} seed {seed} interrupted: {saved}",
                          143 if isinstance(exc, Terminated) else 130) from exc
    metrics = summarize(result.curves, hp.selection)
    env = environment(opts.device)
    metrics.update(params=params, wall_time_s=sum(result.curves["epoch_time_s"]))
    return {
        "schema_version": SCHEMA_VERSION, "recipe": recipe.name, "variant": recipe.variant_name,
        "fingerprint": recipe.fingerprint, "harness": code_version()[1], "key": key, "seed": seed,
        "canonical": not parsed and not uncommitted(), "overrides": parsed,
        "pipeline": opts.pipeline, "step": opts.step,
        "hparams": dataclasses.asdict(hp), "metrics": metrics, "curves": result.curves, "params": params,
        "constraints": constraints, "wall_time_s": metrics["wall_time_s"], "epochs_run": result.epochs_run,
        "epochs_planned": hp.epochs, "stop_after": opts.stop_after, "truncated": result.truncated,
        "resumed_from_epoch": result.resumed_from, "lineage": ctx.lineage, "device": str(opts.device), "env": env,
        "machine": machine_key(env), "host": opts.host, "threads": cpu_threads(opts), "precision": opts.precision,
        "git_commit": code_version()[0], "started_at": started, "finished_at": _now(),
        "weights_sha256": result.weights_sha256, "status": "truncated" if result.truncated else "complete",
        "assumptions": [dataclasses.asdict(a) for a in recipe.assumptions], "extra": result.extra,
    }


def run_seed(recipe: Recipe, seed: int, arrays: dict, opts: RunOptions,
             log: Callable[[str], None] = print) -> Optional[dict]:
    """Train one seed unless it is done here or running elsewhere; returns the new record or None."""
    _, parsed = effective_hparams(recipe, opts)
    key = run_key(recipe, seed, opts, parsed)
    with run_lock(opts.results, recipe.name, key) as mine:
        if not mine:
            log(f"{recipe.label} seed {seed}: another process is running it; skipped")
            return None
        # under the lock, the records another process may have written since the command read the folder
        ev = evidence.read(opts.results, recipe.name, names=evidence.names_of(seed, key))
        done = done_here(ev.records, key, opts.stop_after)
        if done and not opts.force:
            log(f"{recipe.label} seed {seed}: already recorded on this machine ({Path(done[0]['_path']).name}); "
                "skipped (--force reruns into a new record)")
            return None
        checkpoint = partial_dir(opts.results, recipe.name) / f"{key}.pt"
        record = train_and_record(recipe, seed, arrays, opts, key, checkpoint)
        path = write_record(opts.results, record)
        if not record["truncated"]:    # a truncated run keeps its checkpoint: a later call continues it
            checkpoint.unlink(missing_ok=True)
        record["_path"] = str(path)
        return record


def refuse_rejected(ev: evidence.Evidence, recipe: Recipe, seeds, force: bool) -> None:
    """A seed whose record may be a rejected file is never retrained silently (exit 2: the user decides)."""
    if force:
        return
    for seed in seeds:
        blocked = ev.rejected_for(recipe.name, seed)
        if blocked:
            raise RejectedRecord(f"{recipe.label} seed {seed}: {evidence.rel(blocked[0].path, ev.root)} is "
                                 f"rejected ({blocked[0].reason}); it may be this seed's record, so it is not "
                                 "retrained silently: move the file out of the results folder, or pass --force")


def run_seeds(recipe: Recipe, seeds: list[int], opts: RunOptions, arrays=None, est: Optional[Estimate] = None,
              log=print) -> tuple[list[dict], list[int]]:
    """Train the seeds in order; returns (new records, seeds left when the budget ran out).

    With a budget, a seed starts by bench.running.budget.may_start (one that fits, or one longer than
    the whole budget, trained in stretches); a started seed stops at the checkpoint after which the next
    stretch would overrun, and resumes on the next call."""
    hp, _ = effective_hparams(recipe, opts)
    arrays = arrays if arrays is not None else data_layer.load(hp.dataset, opts.data_dir, log=log)
    out = []
    start_left = None if opts.deadline is None else opts.deadline - now()
    for i, seed in enumerate(seeds):
        if start_left is not None and not may_start(opts.deadline - now(), start_left, est):
            return out, seeds[i:]
        try:
            record = run_seed(recipe, seed, arrays, opts, log)
        except BudgetReached as exc:
            log(str(exc))
            return out, seeds[i:]
        if record is not None:
            out.append(record)
            m = record["metrics"]
            cut = f" (truncated at epoch {record['epochs_run']} of {hp.epochs})" if record["truncated"] else ""
            log(f"{recipe.label} seed {seed}: test acc {m['test_acc_selected']:.2f}% ({hp.selection}), "
                f"honest {m['test_acc_honest']:.2f}%, {record['wall_time_s']:.0f} s{cut} -> {record['_path']}")
    return out, []
