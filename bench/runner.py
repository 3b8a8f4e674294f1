"""Runs a recipe over seeds: skip what is done, resume what was cut, record what finishes.

Each (recipe, variant, fingerprint, seed, overrides, pipeline, device type, CPU thread count,
host) is one run key: a run is only resumed or skipped on the machine and thread count that
made it, since those change the bits. A run holds a lock on its key while it trains,
checkpoints every evaluated epoch into results/<recipe>/partial/, and becomes a record when it
finishes or reaches its --stop-after point (a truncated record, resumable to the end).
`--jobs K` starts K child `bench run` processes, one seed each.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import torch
from tqdm import tqdm

from . import data as data_layer
from .determinism import environment, git_commit, host_identity, machine_key, seed_everything
from .engine import RunContext, summarize, train
from .recipe import DATASETS, OverrideError, apply_overrides, count_params
from .registry import Recipe, harness_hash
from .store import SCHEMA_VERSION, partial_dir, read_records, run_lock, write_record

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RunOptions:
    results: Path
    data_dir: Path
    device: torch.device
    pipeline: str = "fast"
    overrides: dict = field(default_factory=dict)   # field -> text, as given on the command line
    force: bool = False
    progress: bool = True
    threads: Optional[int] = None
    stop_after: Optional[int] = None


def cpu_threads(opts: RunOptions) -> Optional[int]:
    """The thread count a CPU run's bits depend on (None on a GPU)."""
    return torch.get_num_threads() if opts.device.type == "cpu" else None


def run_key(recipe: Recipe, seed: int, opts: RunOptions, parsed: dict, host: Optional[str] = None) -> str:
    what = {"recipe": recipe.name, "variant": recipe.variant_name, "fingerprint": recipe.fingerprint, "seed": seed,
            "overrides": parsed, "pipeline": opts.pipeline, "device": opts.device.type, "threads": cpu_threads(opts),
            "host": host or host_identity(opts.device), "step": "eager"}
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


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_seed(recipe: Recipe, seed: int, arrays: dict, opts: RunOptions,
             log: Callable[[str], None] = print) -> Optional[dict]:
    """Train one seed unless it is done or running elsewhere; returns the new record or None."""
    hp, parsed = effective_hparams(recipe, opts)
    host = host_identity(opts.device)
    key = run_key(recipe, seed, opts, parsed, host)
    with run_lock(opts.results, recipe.name, key) as mine:
        if not mine:
            log(f"{recipe.label} seed {seed}: another process is running it; skipped")
            return None
        records, _ = read_records(opts.results, recipe.name)
        done = done_here(records, key, opts.stop_after)
        if done and not opts.force:
            log(f"{recipe.label} seed {seed}: already recorded on this machine ({Path(done[0]['_path']).name}); "
                "skipped (--force reruns into a new record)")
            return None
        params, constraints = preflight(recipe, hp)
        gens = seed_everything(seed, opts.device)
        splits = data_layer.make_splits(arrays, hp, gens["split"], opts.device)
        checkpoint = partial_dir(opts.results, recipe.name) / f"{key}.pt"
        ctx = RunContext(recipe.label, seed, opts.device, gens, opts.pipeline, checkpoint, key, opts.progress,
                         stop_after=opts.stop_after)
        started = _now()
        result = train(recipe.module, hp, splits, ctx) if recipe.uses_engine else recipe.module.train(hp, splits, ctx)
        metrics = summarize(result.curves, hp.selection)
        env = environment(opts.device)
        metrics.update(params=params, wall_time_s=sum(result.curves["epoch_time_s"]))
        record = {
            "schema_version": SCHEMA_VERSION, "recipe": recipe.name, "variant": recipe.variant_name,
            "fingerprint": recipe.fingerprint, "harness": code_version()[1], "key": key, "seed": seed,
            "canonical": not parsed, "overrides": parsed, "pipeline": opts.pipeline, "step": "eager",
            "hparams": dataclasses.asdict(hp), "metrics": metrics, "curves": result.curves, "params": params,
            "constraints": constraints, "wall_time_s": metrics["wall_time_s"], "epochs_run": result.epochs_run,
            "epochs_planned": hp.epochs, "stop_after": opts.stop_after, "truncated": result.truncated,
            "resumed_from_epoch": result.resumed_from, "device": str(opts.device), "env": env,
            "machine": machine_key(env), "host": host, "threads": cpu_threads(opts),
            "git_commit": code_version()[0], "started_at": started, "finished_at": _now(),
            "weights_sha256": result.weights_sha256, "status": "truncated" if result.truncated else "complete",
            "assumptions": [dataclasses.asdict(a) for a in recipe.assumptions], "extra": result.extra,
        }
        path = write_record(opts.results, record)
        if not result.truncated:       # a truncated run keeps its checkpoint: a later call continues it
            checkpoint.unlink(missing_ok=True)
        record["_path"] = str(path)
        return record


def run_seeds(recipe: Recipe, seeds: list[int], opts: RunOptions, log=print) -> list[dict]:
    hp, _ = effective_hparams(recipe, opts)
    arrays = data_layer.load(hp.dataset, opts.data_dir, log=log)
    out = []
    for seed in seeds:
        record = run_seed(recipe, seed, arrays, opts, log)
        if record is not None:
            out.append(record)
            m = record["metrics"]
            cut = f" (truncated at epoch {record['epochs_run']} of {hp.epochs})" if record["truncated"] else ""
            log(f"{recipe.label} seed {seed}: test acc {m['test_acc_selected']:.2f}% ({hp.selection}), "
                f"honest {m['test_acc_honest']:.2f}%, {record['wall_time_s']:.0f} s{cut} -> {record['_path']}")
    return out


def child_command(recipe: Recipe, seed: int, opts: RunOptions, threads: int) -> list[str]:
    cmd = [sys.executable, "-m", "bench", "run", "--recipe", recipe.label, "--seeds", "1",
           "--seed-start", str(seed), "--device", str(opts.device), "--pipeline", opts.pipeline,
           "--results", str(opts.results), "--data-dir", str(opts.data_dir), "--no-progress",
           "--threads", str(threads)]
    for k, v in opts.overrides.items():
        cmd += ["--set", f"{k}={v}"]
    if opts.stop_after is not None:
        cmd += ["--stop-after", str(opts.stop_after)]
    return cmd + (["--force"] if opts.force else [])


def run_parallel(recipe: Recipe, seeds: list[int], opts: RunOptions, jobs: int, log=print) -> int:
    """K seeds at once as child processes; returns how many children failed."""
    hp, _ = effective_hparams(recipe, opts)
    data_layer.load(hp.dataset, opts.data_dir, log=log)   # fetch once, before the children start
    # CPU results depend on the thread count, so children keep the parent's unless told otherwise:
    # then `--jobs K` gives the same bits as K seeds run one by one.
    threads = opts.threads or torch.get_num_threads()
    if opts.device.type == "cpu" and threads * jobs > (os.cpu_count() or 1):
        log(f"note: {jobs} jobs x {threads} threads on {os.cpu_count()} cores; pass --threads "
            f"{max(1, (os.cpu_count() or 1) // jobs)} to share them (results then match runs with that --threads)")
    logs = partial_dir(opts.results, recipe.name)
    logs.mkdir(parents=True, exist_ok=True)

    def one(seed):
        log_path = logs / f"seed{seed}-{os.getpid()}.log"
        with open(log_path, "w") as f:
            rc = subprocess.run(child_command(recipe, seed, opts, threads), stdout=f, stderr=subprocess.STDOUT,
                                cwd=os.getcwd()).returncode
        tail = log_path.read_text().strip().splitlines()[-1:] or [""]
        return seed, rc, tail[0], log_path

    failures = 0
    t0 = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(one, seed) for seed in seeds]
        for future in tqdm(as_completed(futures), total=len(seeds), unit="seed",
                           desc=f"{recipe.label} x{jobs}", disable=not opts.progress):
            seed, rc, tail, log_path = future.result()
            if rc == 0:
                log(tail)
                log_path.unlink(missing_ok=True)
            else:
                failures += 1
                log(f"{recipe.label} seed {seed}: child exited {rc}; log kept at {log_path}")
    log(f"{len(seeds)} seed(s) with {jobs} jobs in {time.perf_counter() - t0:.1f} s")
    return failures
