"""The worker side of `run --backend ray`: one seed in a Ray worker process, and the small actor its
progress lines go to. Imports no Ray: bench.ray_backend wraps these with ray.remote on the driver."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import platform
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from bench.contract import registry
from bench.records.store import partial_dir, run_lock
from bench.running.runner import (
    BudgetReached,
    code_version,
    effective_hparams,
    now,
    run_key,
    train_and_record,
)
from bench.training.determinism import set_threads
from bench.training.environment import host_identity


class CodeMismatch(RuntimeError):
    """A worker node runs other bench or recipe code than the driver: its records would not be comparable."""


class _ProgressOut(io.TextIOBase):
    """The task's stdout while it trains: @progress lines go to the board, the rest to the real stdout."""

    def __init__(self, board, tag: str, real, test_exit: Optional[tuple[int, str]]):
        self.board, self.tag, self.real, self.test_exit = board, tag, real, test_exit
        self.buf = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.buf += text
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            self._line(line)
        return len(text)

    def _line(self, line: str) -> None:
        if not line.startswith("@progress "):
            if line.strip():
                print(line, file=self.real, flush=True)
            return
        epoch, total, *rest = line.split()[1:]
        if self.board is not None:
            self.board.report.remote(self.tag, int(epoch), int(total), " ".join(rest))
        if self.test_exit is not None and int(epoch) == self.test_exit[0]:
            marker = Path(self.test_exit[1])
            if not marker.exists():            # first attempt only: the retry must get through
                marker.write_text(str(os.getpid()))
                os._exit(1)


def train_task(spec: dict, arrays: dict, done_keys: frozenset, board) -> dict:
    """One seed in a Ray worker: {"status": "record" | "done" | "busy" | "budget", ...}."""
    set_threads(spec["threads"])                # before anything else: a CPU run's bits depend on it
    node = platform.node()
    recipe = registry.load(spec["name"], spec["variant"])
    if recipe.fingerprint != spec["fingerprint"] or code_version()[1] != spec["harness"]:
        raise CodeMismatch(f"node {node} runs other code ({recipe.label} fingerprint {recipe.fingerprint}, harness "
                           f"{code_version()[1]}; the driver has {spec['fingerprint']}, {spec['harness']}): install "
                           "the same checkout on every node")
    opts, seed = spec["opts"], spec["seed"]
    if spec["deadline"] is not None:            # wall-clock: the driver's monotonic clock means nothing here
        left = spec["deadline"] - time.time()
        if left <= 0:
            return {"status": "budget", "message": f"{recipe.label} seed {seed}: budget spent before it started",
                    "node": node}
        opts = dataclasses.replace(opts, deadline=now() + left)
    opts = dataclasses.replace(opts, host=host_identity(opts.device))   # the machine that trains, not the driver's
    _, parsed = effective_hparams(recipe, opts)
    key = run_key(recipe, seed, opts, parsed)
    if key in done_keys and not opts.force:
        return {"status": "done", "key": key, "node": node}
    root = Path(spec["checkpoint_root"]) if spec["checkpoint_root"] else None
    with (run_lock(root, recipe.name, key) if root else contextlib.nullcontext(True)) as mine:
        if not mine:
            return {"status": "busy", "key": key, "node": node}
        checkpoint = partial_dir(root, recipe.name) / f"{key}.pt" if root else None
        arrays = {k: np.array(v) for k, v in arrays.items()}     # writable copies of the shared read-only arrays
        out = _ProgressOut(board, spec["tag"], sys.stdout, spec.get("test_exit"))
        try:
            with contextlib.redirect_stdout(out):
                record = train_and_record(recipe, seed, arrays, opts, key, checkpoint)
        except BudgetReached as exc:
            return {"status": "budget", "message": str(exc), "node": node}
        if checkpoint is not None and not record["truncated"]:   # a truncated run keeps it: a later call continues
            checkpoint.unlink(missing_ok=True)
        return {"status": "record", "record": record, "node": node}


class ProgressBoard:
    """Latest (epoch, total, note) of each running seed; tasks report, the driver reads."""

    def __init__(self):
        self.state: dict[str, tuple[int, int, str]] = {}

    def report(self, tag: str, epoch: int, total: int, note: str) -> None:
        self.state[tag] = (epoch, total, note)

    def read(self) -> dict:
        return dict(self.state)
