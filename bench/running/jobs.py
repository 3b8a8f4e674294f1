"""`--jobs K`: K seeds at once, one child `bench run` process each, and a parent that stays in charge.

Children keep the parent's thread count (so `--jobs K` gives the same bits as K seeds one by
one) and report one progress line per epoch, which the parent shows as one bar per child. A
Ctrl-C or SIGTERM to the parent is forwarded to every child, the parent waits for them to stop
at their last checkpoint, starts no new child, and exits 130 / 143: no child outlives it.
A child's log is kept only when it fails.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

import torch
from tqdm import tqdm

from bench.contract.errors import Interrupted, Terminated
from bench.records.store import partial_dir
from bench.running.budget import may_start
from bench.running.estimate import Estimate
from bench.running.options import RunOptions
from bench.running.runner import now

STOP_WAIT_S = 300          # how long the parent waits for interrupted children before killing them


def child_command(recipe, seed: int, opts: RunOptions, threads: int) -> list[str]:
    cmd = [sys.executable, "-m", "bench", "run", "--recipe", recipe.name, "--seeds", "1",
           "--seed-start", str(seed), "--device", opts.device.type, "--pipeline", opts.pipeline,
           "--results", str(opts.results), "--data-dir", str(opts.data_dir), "--no-progress",
           "--threads", str(threads), "--progress-lines", "--step", opts.step, "--precision", opts.precision]
    if recipe.variant is not None:
        cmd += ["--variant", recipe.variant_name]
    for k, v in opts.overrides.items():
        cmd += ["--set", f"{k}={v}"]
    if opts.stop_after is not None:
        cmd += ["--stop-after", str(opts.stop_after)]
    if opts.deadline is not None:
        cmd += ["--budget", f"{max(1.0, opts.deadline - now()):.0f}s"]
    return cmd + (["--force"] if opts.force else [])


class Children:
    """The running child processes, so that a signal can reach every one of them."""

    def __init__(self):
        self.procs: dict[int, subprocess.Popen] = {}
        self.lock = threading.Lock()
        self.stopping = False

    def start(self, seed: int, cmd: list[str], env: dict) -> subprocess.Popen | None:
        with self.lock:
            if self.stopping:
                return None
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                    # a session of its own: our signals reach it, not the terminal's
                                    cwd=os.getcwd(), env=env, start_new_session=True)
            self.procs[seed] = proc
            return proc

    def stop(self, signum: int) -> None:
        with self.lock:
            self.stopping = True
            live = [p for p in self.procs.values() if p.poll() is None]
        for p in live:
            p.send_signal(signum)
        deadline = time.monotonic() + STOP_WAIT_S
        for p in live:
            try:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def visible_gpus() -> list[str]:
    """The GPUs a child may be given, as CUDA_VISIBLE_DEVICES names them (the parent's own list, if set)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip()]
    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def child_env(slot: int, opts: RunOptions, gpus: list[str]) -> dict:
    """A child's environment: on a machine with several GPUs one GPU per child (round robin by slot), so
    that `--device cuda` does not put every child on the first; OpenMP threads that sleep when idle
    (OMP_WAIT_POLICY=PASSIVE: K processes share the cores; the bits are the same) unless the user chose."""
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if opts.device.type == "cuda" and len(gpus) > 1:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    return env


def run_parallel(recipe, seeds: list[int], opts: RunOptions, jobs: int, est: Estimate | None = None,
                 log=print) -> tuple[int, list[int]]:
    """K seeds at once as child processes; returns (children that failed, seeds the budget left)."""
    threads = opts.threads or torch.get_num_threads()
    if opts.device.type == "cpu" and threads * jobs > (os.cpu_count() or 1):
        log(f"note: {jobs} jobs x {threads} threads on {os.cpu_count()} cores; pass --threads "
            f"{max(1, (os.cpu_count() or 1) // jobs)} to share them (results then match runs with that --threads)")
    logs = partial_dir(opts.results, recipe.name)
    logs.mkdir(parents=True, exist_ok=True)
    children = Children()
    bars: dict[int, tqdm] = {}
    gpus = visible_gpus() if opts.device.type == "cuda" else []
    start_left = None if opts.deadline is None else opts.deadline - now()

    def one(slot_seed):
        slot, seed = slot_seed
        log_path = logs / f"seed{seed}-{os.getpid()}.log"
        if start_left is not None and not may_start(opts.deadline - now(), start_left, est):
            return seed, "unstarted", "", log_path
        proc = children.start(seed, child_command(recipe, seed, opts, threads), child_env(slot, opts, gpus))
        if proc is None:
            return seed, None, "", log_path
        last, stopped = "", False
        with open(log_path, "w") as f:
            for line in proc.stdout:
                f.write(line)
                if line.startswith("@left "):
                    stopped = True               # the child's budget ran out before its seed finished
                elif line.startswith("@progress "):
                    epoch, total, *rest = line.split()[1:]
                    if opts.progress:
                        bar = bars.setdefault(seed, tqdm(total=int(total), position=slot % jobs + 1, leave=False,
                                                         desc=f"  seed {seed}", unit="epoch", dynamic_ncols=True))
                        bar.n = int(epoch)
                        bar.set_postfix_str(" ".join(rest), refresh=True)
                elif line.strip():
                    last = line.strip()
        rc = proc.wait()
        if seed in bars:
            bars.pop(seed).close()
        return seed, "budget" if rc == 0 and stopped else rc, last, log_path

    failures, left = 0, []
    t0 = time.perf_counter()
    pool = ThreadPoolExecutor(jobs)
    try:
        futures = [pool.submit(one, (i, seed)) for i, seed in enumerate(seeds)]
        for future in tqdm(as_completed(futures), total=len(seeds), unit="seed", desc=f"{recipe.label} x{jobs}",
                           disable=not opts.progress, position=0):
            seed, rc, last, log_path = future.result()
            if rc == "unstarted":
                left.append(seed)
                log(f"{recipe.label} seed {seed}: not started, its estimate does not fit in the budget left")
            elif rc == "budget":
                left.append(seed)
                log(f"{recipe.label} seed {seed}: the budget ran out before it finished; its checkpoint is kept"
                    + (f" ({last})" if last else ""))
            elif rc == 0:
                log(last)
                log_path.unlink(missing_ok=True)
            elif rc is not None:
                failures += 1
                log(f"{recipe.label} seed {seed}: child exited {rc} ({last}); log kept at {log_path}")
    except KeyboardInterrupt as exc:
        signum = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
        log(f"stopping: forwarding {signal.Signals(signum).name} to the running seeds and waiting for them")
        children.stop(signum)
        pool.shutdown(wait=True, cancel_futures=True)
        raise Interrupted("interrupted: every running seed stopped at its last checkpoint (rerun the same command "
                          "to resume); seeds not started were not run", 143 if signum == signal.SIGTERM else 130)
    finally:
        pool.shutdown(wait=True)
    log(f"{len(seeds) - len(left)} seed(s) with {jobs} jobs in {time.perf_counter() - t0:.1f} s")
    return failures, sorted(left)

