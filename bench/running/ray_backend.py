"""`run --backend ray`: every seed is one Ray task, on this machine or across a Ray cluster.

The driver (this process) owns the results folder: it reads what is recorded, puts each dataset
into Ray's object store once, submits one task per (reading, seed), and writes each record that a
task returns with bench.records.store.write_record, as a local run does. A worker needs no shared
filesystem: it gets the recipe's name, the seed, the run options and the arrays, sets its thread
count before anything else, computes the run key with its own host identity (so "already recorded
on this machine" still means the machine that trains), skips a key the driver reports recorded,
and trains with bench.running.runner.train_and_record. A worker lost mid-run is retried by Ray
(MAX_RETRIES), resuming from its checkpoint when the checkpoint folder is shared (--checkpoint-dir,
or the results folder on a local instance), else from scratch; only a task that finishes returns a
record and the driver writes each task's record once. The worker side is bench/running/ray_worker.py.

Progress: the engine's per-epoch "@progress EPOCH TOTAL ..." lines (RunnerContext, lines=True)
are read from the task's stdout and sent to a small ProgressBoard actor that the driver polls for
its bars; a retried task simply reports again from its checkpoint.

Ray is imported only inside these functions: `import bench.cli` (and this module) never imports it.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Optional

import torch

from bench.contract.errors import Interrupted, Terminated, UsageError
from bench.records import evidence
from bench.records.store import write_record
from bench.running.options import Campaign, RayOptions
from bench.running.ray_worker import ProgressBoard, train_task
from bench.running.runner import (
    code_version,
    done_here,
    effective_hparams,
    now,
    refuse_rejected,
)
from bench.training import data as data_layer
from bench.training.data import DataError

INSTALL = 'pip install -e ".[ray]"'
CONNECT_TIMEOUT_S = 5.0     # an --address that does not accept a connection in this time is an error (exit 2)
MAX_RETRIES = 3             # a task whose worker process or node dies is run again this many times
POLL_S = 0.5                # how often the driver refreshes its bars
MAX_BARS = 8                # per-seed bars shown at once (the rest are counted on the main bar)
STOP_WAIT_S = 120           # after Ctrl-C: how long to wait for the running seeds to stop
# TEST-ONLY (tests/test_ray.py): the driver passes these to every task; the task's process exits
# (os._exit) right after checkpointing epoch N, once per marker file, so Ray retries it.
TEST_EXIT_AFTER = "BENCH_TEST_RAY_EXIT_AFTER_EPOCH"
TEST_EXIT_MARKER = "BENCH_TEST_RAY_EXIT_MARKER"


# ---------------------------------------------------------------- checks (no Ray needed)

def ray_installed() -> bool:
    import importlib.util
    return importlib.util.find_spec("ray") is not None


def check_options(backend: str, ray: RayOptions, jobs: int, device: Optional[str]) -> None:
    """Bad --backend ray input, before anything is read, trained or written (exit 2, one line)."""
    given = [flag for flag, value in (("--address", ray.address), ("--gpus-per-run", ray.gpus_per_run),
                                      ("--cpus-per-run", ray.cpus_per_run), ("--checkpoint-dir", ray.checkpoint_dir))
             if value is not None]
    if backend != "ray":
        if given:
            raise UsageError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only with --backend ray")
        return
    if not ray_installed():
        raise UsageError(f"--backend ray needs Ray, which is not installed here: {INSTALL}")
    if jobs > 1:
        raise UsageError("--jobs is for --backend local; with Ray as many seeds run at once as "
                         "--cpus-per-run / --gpus-per-run fit on the cluster")
    if device is not None and device.startswith("cpu") and ray.gpus_per_run is not None:
        raise UsageError("--gpus-per-run needs --device cuda (a CPU run reserves no GPU)")
    if ray.checkpoint_dir is not None and ray.checkpoint_dir.exists() and not ray.checkpoint_dir.is_dir():
        raise UsageError(f"--checkpoint-dir {ray.checkpoint_dir} is a file, not a folder")


def _probe(address: str) -> None:
    """Fail fast when nothing listens at HOST:PORT (ray.init itself retries for minutes)."""
    where = address.split("://", 1)[-1]
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address {address}: expected HOST:PORT (as printed by `ray start --head`), "
                         "ray://HOST:PORT, or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise UsageError(f"--address {address}: no Ray cluster answers there within {CONNECT_TIMEOUT_S:.0f} s "
                         f"({exc.strerror or exc}); start one with `ray start --head` on that node") from None


def connect(address: Optional[str]) -> bool:
    """Join the cluster at `address`, or start a local instance; True when this call started the
    connection (and so must shut it down). A Ray connection this process already has is reused."""
    import ray

    if address not in (None, "auto"):
        _probe(address)
    if ray.is_initialized():
        return False
    keep = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    try:
        if address is None:
            ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, TimeoutError) as exc:
        raise UsageError(f"--address {address}: no Ray cluster answers there ({str(exc).splitlines()[0]}); start one "
                         "with `ray start --head`, or, if it uses token authentication, set RAY_AUTH_MODE=token and "
                         "its token (RAY_AUTH_TOKEN or ~/.ray/auth_token) here too") from None
    finally:
        if keep is not None:                   # ray.init installs its own SIGTERM handler: keep bench's
            signal.signal(signal.SIGTERM, keep)
    return True


@functools.lru_cache(maxsize=None)
def _remote():
    """(the CPU task, the GPU task, the progress board) as Ray remotes. A GPU task runs in a fresh worker
    process each time (max_calls=1): a reused one would keep its first task's CUDA context, and Ray sets
    max_calls=1 by itself only for num_gpus given to ray.remote, not to .options()."""
    import ray
    return ray.remote(train_task), ray.remote(max_calls=1)(train_task), ray.remote(num_cpus=0)(ProgressBoard)


def _board():
    import ray
    *_, board_cls = _remote()
    try:                                        # on the driver's node when it is part of the cluster
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        here = ray.get_runtime_context().get_node_id()
        return board_cls.options(scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True)).remote()
    except Exception:                           # a Ray Client driver has no node of its own
        return board_cls.remote()


# ---------------------------------------------------------------- the driver side

@dataclasses.dataclass
class Job:
    recipe: object
    opts: object
    seed: int
    tag: str


def _why(exc) -> str:
    import ray
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and cause is not None:
        return f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _resources(ray_opts: RayOptions, threads: Optional[int], device) -> tuple[float, float, int]:
    """(CPUs, GPUs, threads) of one seed's task."""
    cpus = ray_opts.cpus_per_run or threads or 1
    threads = threads or cpus
    gpus = (ray_opts.gpus_per_run or 1.0) if device.type == "cuda" else 0.0
    return cpus, gpus, threads


def run_campaign(campaign: Campaign, plans, deadline: Optional[float], log=print) -> tuple[int, dict[str, list[int]]]:
    """Every (reading, seed) of `plans` as Ray tasks; returns (seeds that failed, label -> seeds the budget left)
    for every reading that was submitted."""
    import ray

    if any(o.device.type == "cpu" for _, o in plans) and campaign.ray.gpus_per_run is not None:
        raise UsageError("--gpus-per-run needs --device cuda (a CPU run reserves no GPU)")
    owned = connect(campaign.ray.address)
    try:
        return _campaign(campaign, plans, deadline, log)
    finally:
        if owned:
            ray.shutdown()


def _campaign(campaign: Campaign, plans, deadline, log) -> tuple[int, dict[str, list[int]]]:
    import ray
    from tqdm import tqdm

    seeds = list(campaign.seeds)
    cpu_task, gpu_task, _ = _remote()
    local_instance = campaign.ray.address is None
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    total = ray.cluster_resources()
    log(f"Ray: {len(nodes)} node(s), {total.get('CPU', 0):g} CPU(s), {total.get('GPU', 0):g} GPU(s)"
        + (" (a local instance)" if local_instance else f" at {campaign.ray.address}"))
    test_exit = None
    if os.environ.get(TEST_EXIT_AFTER) and os.environ.get(TEST_EXIT_MARKER):
        test_exit = (int(os.environ[TEST_EXIT_AFTER]), os.environ[TEST_EXIT_MARKER])
    wall_deadline = None if deadline is None else time.time() + (deadline - now())

    done: dict[str, frozenset] = {}             # every reading's recorded keys, read before any task starts
    for recipe, opts in plans:
        ev = evidence.read(opts.results, recipe.name)
        refuse_rejected(ev, recipe, seeds, opts.force)
        done[recipe.label] = frozenset(r["key"] for r in ev.records if done_here([r], r.get("key"), opts.stop_after))

    board = _board()
    put: dict[str, object] = {}
    pending: dict = {}
    records: dict[str, list] = {}
    left: dict[str, list[int]] = {}
    skipped_recipes = []
    for recipe, opts in plans:
        hp, parsed = effective_hparams(recipe, opts)
        cpus, gpus, threads = _resources(campaign.ray, opts.threads, opts.device)
        kind = "smoke (non-canonical)" if parsed else "canonical"
        cut = f", stopping after epoch {opts.stop_after} of {hp.epochs}" if opts.stop_after else ""
        log(f"{recipe.label} [{recipe.fingerprint}] seeds {seeds[0]}..{seeds[-1]} on {opts.device.type}, pipeline "
            f"{opts.pipeline}, {kind} run{cut}; each seed a Ray task with {cpus:g} CPU(s), {gpus:g} GPU(s), "
            f"{threads} thread(s)")
        if parsed:
            log("overrides: " + ", ".join(f"{k}={v!r}" for k, v in parsed.items()))
        if put.get(hp.dataset, ...) is None:          # --all: this dataset already failed to load
            log(f"skipped {recipe.label}: {hp.dataset} is not available (see above)")
            skipped_recipes.append(recipe.label)
            continue
        if hp.dataset not in put:
            try:
                put[hp.dataset] = ray.put(data_layer.load(hp.dataset, opts.data_dir))
            except DataError as exc:
                if not campaign.run_all:
                    raise
                log(f"skipped {recipe.label}: {exc}")
                put[hp.dataset] = None
                skipped_recipes.append(recipe.label)
                continue
        if campaign.ray.checkpoint_dir is not None:
            root = str(Path(campaign.ray.checkpoint_dir).absolute())
        else:                                   # a local instance shares this machine's results folder
            root = str(Path(opts.results).absolute()) if local_instance else None
        wopts = dataclasses.replace(opts, device=torch.device(opts.device.type), progress=False,
                                    progress_lines=True, deadline=None, threads=threads)
        records[recipe.label], left[recipe.label] = [], []
        for seed in seeds:
            spec = {"name": recipe.name, "variant": recipe.variant_name, "fingerprint": recipe.fingerprint,
                    "harness": code_version()[1], "seed": seed, "opts": wopts, "threads": threads,
                    "checkpoint_root": root, "deadline": wall_deadline, "tag": f"{recipe.label}#{seed}",
                    "test_exit": test_exit}
            task = gpu_task if gpus else cpu_task
            ref = task.options(num_cpus=cpus, num_gpus=gpus, max_retries=MAX_RETRIES,
                               name=f"bench {recipe.label} seed {seed}").remote(spec, put[hp.dataset],
                                                                                done[recipe.label], board)
            pending[ref] = Job(recipe, opts, seed, spec["tag"])
    if not pending:
        return 0, {}

    show = any(o.progress for _, o in plans)
    if show:                                    # lines above the bars, not through them
        log = tqdm.write
    overall = tqdm(total=len(pending), unit="seed", desc=f"Ray x{len(pending)}", disable=not show, position=0,
                   dynamic_ncols=True)
    bars: dict[str, tqdm] = {}
    slots: dict[str, int] = {}
    failures = 0
    t0 = time.perf_counter()

    def close_bar(tag):
        if tag in bars:
            bars.pop(tag).close()
            slots.pop(tag)

    def finish(ref, quiet=False) -> None:
        nonlocal failures
        job = pending.pop(ref)
        close_bar(job.tag)
        overall.update(1)
        label, seed = job.recipe.label, job.seed
        try:
            out = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            return
        except ray.exceptions.RayError as exc:
            if quiet and isinstance(exc, ray.exceptions.RayTaskError) and isinstance(exc.cause, KeyboardInterrupt):
                return
            failures += 1
            log(f"{label} seed {seed}: failed on Ray ({_why(exc)})")
            return
        status = out["status"]
        if status == "record":
            record = out["record"]
            path = write_record(job.opts.results, record)
            records[label].append(record)
            m, hp = record["metrics"], effective_hparams(job.recipe, job.opts)[0]
            cut = f" (truncated at epoch {record['epochs_run']} of {hp.epochs})" if record["truncated"] else ""
            log(f"{label} seed {seed}: test acc {m['test_acc_selected']:.2f}% ({hp.selection}), honest "
                f"{m['test_acc_honest']:.2f}%, {record['wall_time_s']:.0f} s on {out['node']}{cut} -> {path}")
        elif status == "done":
            log(f"{label} seed {seed}: already recorded on this machine ({out['node']}); skipped "
                "(--force reruns into a new record)")
        elif status == "busy":
            log(f"{label} seed {seed}: another process is running it on {out['node']}; skipped")
        elif status == "budget":
            left[label].append(seed)
            log(out["message"])

    def refresh_bars() -> None:
        try:
            state = ray.get(board.read.remote(), timeout=10)
        except Exception:                       # the board is gone (its node died): no bars, no harm
            return
        running = {j.tag for j in pending.values()}
        for tag, (epoch, epochs, note) in state.items():
            if tag not in running:
                continue
            if tag not in bars:
                if len(bars) >= MAX_BARS:
                    continue
                slots[tag] = next(i for i in range(1, MAX_BARS + 1) if i not in slots.values())
                bars[tag] = tqdm(total=epochs, position=slots[tag], leave=False, desc=f"  {tag.replace('#', ' seed ')}",
                                 unit="epoch", dynamic_ncols=True)
            bars[tag].n = epoch
            bars[tag].set_postfix_str(note, refresh=True)

    # Ray turns any exception raised by a signal handler inside ray.wait into a plain KeyboardInterrupt,
    # so SIGTERM is remembered here to exit 143 (not 130) as a local run does.
    terminated = []
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main_thread else None

    def on_term(signum, frame):
        terminated.append(signum)
        raise Terminated()

    if main_thread:
        signal.signal(signal.SIGTERM, on_term)
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            for ref in ready:
                finish(ref)
            if show:
                refresh_bars()
    except KeyboardInterrupt as exc:
        code = 143 if terminated or isinstance(exc, Terminated) else 130
        log("stopping: cancelling the queued seeds and interrupting the running ones at their last checkpoint")
        for ref in list(pending):
            ray.cancel(ref)
        stop = time.monotonic() + STOP_WAIT_S
        while pending and time.monotonic() < stop:  # a seed that finishes meanwhile is still written
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                finish(ref, quiet=True)
        raise Interrupted("interrupted: the running seeds stopped at their last checkpoint (rerun the same command "
                          "to resume); seeds not started were not run", code)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        for tag in list(bars):
            close_bar(tag)
        overall.close()
    n = sum(len(v) for v in records.values())
    log(f"{n} new record(s) from Ray in {time.perf_counter() - t0:.1f} s")

    return failures, {label: sorted(seeds) for label, seeds in left.items() if label not in skipped_recipes}
