"""Ray's overhead per seed against `--backend local`: the same smoke seeds, side by side in one run.

    python -m pytest tests/benchmarks/test_ray_overhead.py --benchmark-only -s

Skipped in the normal test run (`--benchmark-skip` in pyproject) and without Ray
(pip install -e ".[ray]"); needs MNIST. It measures, it asserts nothing about time. Each row is the
wall time of one whole `bench run` call (what a user waits for) over SEEDS seeds of lenet_sgd at smoke
settings on the CPU, one thread per seed:

- local: `--backend local` (one process, seeds one after another, its time estimate included);
- ray, cold: `--backend ray` starting and stopping its own local instance, as the command does;
- ray, warm: `--backend ray` on an instance already running (a cluster), its workers already started.

The table prints the per-seed difference and the ratio to local; the training itself (the records'
wall_time_s) is printed beside it, so what Ray adds is the rest.
"""
from __future__ import annotations

import itertools
import json
import signal
import statistics
import time
from pathlib import Path

import pytest

from bench.cli.main import main

SEEDS = 4
ROUNDS = 3
SMOKE = ["--recipe", "lenet_sgd", "--epochs", "1", "--train-limit", "512", "--eval-limit", "256", "--device", "cpu",
         "--threads", "1", "--no-progress", "--seeds", str(SEEDS)]


def _run(results: Path, data_dir: Path, *extra) -> tuple[float, float]:
    """(wall seconds of the whole command, seconds of training in its records)."""
    t0 = time.perf_counter()
    assert main(["run", *SMOKE, "--results", str(results), "--data-dir", str(data_dir), *extra]) == 0
    wall = time.perf_counter() - t0
    train = sum(json.loads(p.read_text())["wall_time_s"] for p in results.glob("*/*.json"))
    assert len(list(results.glob("*/*.json"))) == SEEDS
    return wall, train


def test_ray_overhead_per_seed(benchmark, tmp_path, real_data_dir, capsys):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("needs to start its own Ray instances")
    fresh = (tmp_path / f"r{i}" for i in itertools.count())
    rows = {"local": [_run(next(fresh), real_data_dir) for _ in range(ROUNDS)],
            "ray, cold": [_run(next(fresh), real_data_dir, "--backend", "ray") for _ in range(ROUNDS)]}
    keep = signal.getsignal(signal.SIGTERM)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    signal.signal(signal.SIGTERM, keep)
    try:
        _run(next(fresh), real_data_dir, "--backend", "ray")            # starts the workers: not counted
        warm = []
        benchmark.pedantic(lambda: warm.append(_run(next(fresh), real_data_dir, "--backend", "ray")),
                           rounds=ROUNDS, iterations=1)
        rows["ray, warm"] = warm
    finally:
        ray.shutdown()
    base = statistics.median(w for w, _ in rows["local"])
    lines = [f"\nRay overhead, {SEEDS} seeds of lenet_sgd (1 epoch, 512/256 images, 1 thread) on this CPU, "
             f"median of {ROUNDS} runs",
             f"{'backend':<10} {'wall s':>7} {'s/seed':>7} {'train s/seed':>12} {'+s/seed vs local':>17} {'ratio':>6}"]
    for name, runs in rows.items():
        wall = statistics.median(w for w, _ in runs)
        train = statistics.median(t for _, t in runs) / SEEDS
        lines.append(f"{name:<10} {wall:7.2f} {wall / SEEDS:7.2f} {train:12.2f} {(wall - base) / SEEDS:+17.2f} "
                     f"{wall / base:6.2f}")
    benchmark.extra_info.update({name: statistics.median(w for w, _ in runs) for name, runs in rows.items()})
    with capsys.disabled():
        print("\n".join(lines))
