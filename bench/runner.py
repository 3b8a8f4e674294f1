"""Runs a recipe over seeds: skip what is done, resume what was cut, record what finishes.

Each (recipe, fingerprint, seed, overrides, pipeline, device type) is one run key. A run
holds a lock on its key while it trains, checkpoints every evaluated epoch into
results/<recipe>/partial/, and becomes a record only when complete. `--jobs K` starts K
child `bench run` processes, one seed each, so concurrent seeds never share a process.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
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
from .determinism import environment, git_commit, machine_key, seed_everything
from .engine import RunContext, summarize, train
from .recipe import apply_overrides
from .registry import Recipe, harness_hash
from .store import SCHEMA_VERSION, completed, partial_dir, read_records, run_lock, write_record

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


def run_key(recipe: Recipe, seed: int, opts: RunOptions, parsed: dict) -> str:
    what = {"recipe": recipe.name, "fingerprint": recipe.fingerprint, "seed": seed, "overrides": parsed,
            "pipeline": opts.pipeline, "device": opts.device.type}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:24]


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
    key = run_key(recipe, seed, opts, parsed)
    with run_lock(opts.results, recipe.name, key) as mine:
        if not mine:
            log(f"{recipe.name} seed {seed}: another process is running it; skipped")
            return None
        records, _ = read_records(opts.results, recipe.name)
        done = completed(records, key)
        if done and not opts.force:
            log(f"{recipe.name} seed {seed}: already recorded ({Path(done[0]['_path']).name}); "
                "skipped (--force reruns into a new record)")
            return None
        gens = seed_everything(seed, opts.device)
        splits = data_layer.make_splits(arrays, hp, gens["split"], opts.device)
        checkpoint = partial_dir(opts.results, recipe.name) / f"{key}.pt"
        ctx = RunContext(recipe.name, seed, opts.device, gens, opts.pipeline, checkpoint, key, opts.progress)
        started = _now()
        result = train(recipe.module, hp, splits, ctx) if recipe.uses_engine else recipe.module.train(hp, splits, ctx)
        metrics = summarize(result.curves, hp.selection)
        env = environment(opts.device)
        metrics.update(params=recipe.params, wall_time_s=sum(result.curves["epoch_time_s"]))
        record = {
            "schema_version": SCHEMA_VERSION, "recipe": recipe.name, "fingerprint": recipe.fingerprint,
            "harness": code_version()[1], "key": key, "seed": seed, "canonical": not parsed,
            "overrides": parsed, "pipeline": opts.pipeline, "hparams": dataclasses.asdict(hp),
            "metrics": metrics, "curves": result.curves, "params": recipe.params,
            "wall_time_s": metrics["wall_time_s"], "epochs_run": result.epochs_run,
            "resumed_from_epoch": result.resumed_from, "device": str(opts.device), "env": env,
            "machine": machine_key(env), "git_commit": code_version()[0], "started_at": started,
            "finished_at": _now(), "weights_sha256": result.weights_sha256, "status": "complete",
            "assumptions": [dataclasses.asdict(a) for a in recipe.assumptions], "extra": result.extra,
        }
        path = write_record(opts.results, record)
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
            log(f"{recipe.name} seed {seed}: test acc {m['test_acc_selected']:.2f}% ({hp.selection}), "
                f"honest {m['test_acc_honest']:.2f}%, {record['wall_time_s']:.0f} s -> {record['_path']}")
    return out


def child_command(recipe: Recipe, seed: int, opts: RunOptions, threads: int) -> list[str]:
    cmd = [sys.executable, "-m", "bench", "run", "--recipe", recipe.name, "--seeds", "1",
           "--seed-start", str(seed), "--device", str(opts.device), "--pipeline", opts.pipeline,
           "--results", str(opts.results), "--data-dir", str(opts.data_dir), "--no-progress",
           "--threads", str(threads)]
    for k, v in opts.overrides.items():
        cmd += ["--set", f"{k}={v}"]
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
                           desc=f"{recipe.name} x{jobs}", disable=not opts.progress):
            seed, rc, tail, log_path = future.result()
            if rc == 0:
                log(tail)
                log_path.unlink(missing_ok=True)
            else:
                failures += 1
                log(f"{recipe.name} seed {seed}: child exited {rc}; log kept at {log_path}")
    log(f"{len(seeds)} seed(s) with {jobs} jobs in {time.perf_counter() - t0:.1f} s")
    return failures
