"""`run --backend ray`: the same bits as a local run, one record per seed, a lost worker retried, a
cluster joined by address, and bad input refused in one line (exit 2).

One local Ray instance (2 CPUs, no dashboard) serves the whole module; the tests that need it skip
when Ray is not installed (pip install -e ".[ray]"). Real MNIST, lenet_sgd at smoke settings, CPU.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli.main import main
from bench.running import ray_backend
from tests.conftest import ROOT

SMOKE = ["--recipe", "lenet_sgd", "--train-limit", "512", "--eval-limit", "256", "--device", "cpu", "--threads", "1",
         "--no-progress"]


def run(results: Path, data_dir: Path, *extra) -> int:
    return main(["run", *SMOKE, "--results", str(results), "--data-dir", str(data_dir), *map(str, extra)])


def records(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(results).glob("*/*.json"))]


def by_seed(results: Path) -> dict[int, dict]:
    out = {}
    for r in records(results):
        assert r["seed"] not in out, f"two records of seed {r['seed']}"
        out[r["seed"]] = r
    return out


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for the module (starting Ray takes seconds): 2 CPUs, no dashboard."""
    ray = pytest.importorskip("ray")
    keep = signal.getsignal(signal.SIGTERM)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=256 * 1024 ** 2)
    signal.signal(signal.SIGTERM, keep)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory, real_data_dir) -> dict:
    """The local backend's records: seeds 0 and 1 at one epoch, seed 0 at two epochs."""
    root = tmp_path_factory.mktemp("local")
    assert run(root / "one", real_data_dir, "--epochs", 1, "--seeds", 2) == 0
    assert run(root / "two", real_data_dir, "--epochs", 2, "--seeds", 1) == 0
    return {"one": by_seed(root / "one"), "two": by_seed(root / "two")}


# ---------------------------------------------------------------- no Ray needed

def test_import_bench_cli_does_not_import_ray():
    code = ("import sys, bench.cli.main, bench.cli.run, bench.running.ray_backend; "
            "bench.cli.parser.build_parser().parse_args(['run', '--backend', "
            "'ray', '--recipe', 'lenet_sgd']); assert 'ray' not in sys.modules, 'ray was imported'")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("extra, message", [
    (["--backend", "ray", "--gpus-per-run", "0"], "outside (0, 1]"),
    (["--backend", "ray", "--gpus-per-run", "1.5"], "outside (0, 1]"),
    (["--backend", "ray", "--cpus-per-run", "0"], "at least 1"),
    (["--address", "127.0.0.1:6379"], "--address applies only with --backend ray"),
    (["--gpus-per-run", "0.5", "--checkpoint-dir", "x"], "only with --backend ray"),
])
def test_bad_ray_options_exit_2_in_one_line(tmp_path, capsys, extra, message):
    try:
        code = main(["run", "--recipe", "lenet_sgd", "--results", str(tmp_path / "r"), *extra])
    except SystemExit as exc:                   # argparse's own check of a value
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


def test_ray_not_installed_names_the_install_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ray_backend, "ray_installed", lambda: False)
    assert main(["run", "--recipe", "lenet_sgd", "--backend", "ray", "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert 'pip install -e ".[ray]"' in err and len(err.strip().splitlines()) == 1, err


def test_an_address_that_does_not_answer_exits_2_quickly(tmp_path, capsys, real_data_dir):
    pytest.importorskip("ray")
    with socket.socket() as s:                  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = run(tmp_path / "r", real_data_dir, "--epochs", 1, "--backend", "ray", "--address", f"127.0.0.1:{port}")
    err = capsys.readouterr().err
    assert code == 2 and "no Ray cluster answers there" in err and len(err.strip().splitlines()) == 1, err
    assert not records(tmp_path / "r")


# ---------------------------------------------------------------- through Ray

def test_two_seeds_through_ray_match_the_local_backend_bitwise(ray_instance, local_runs, tmp_path, real_data_dir,
                                                                capsys):
    results = tmp_path / "results"
    assert run(results, real_data_dir, "--epochs", 1, "--seeds", 2, "--backend", "ray") == 0
    mine, local = by_seed(results), local_runs["one"]
    assert sorted(mine) == [0, 1]
    for seed in (0, 1):
        assert mine[seed]["weights_sha256"] == local[seed]["weights_sha256"], seed
        assert mine[seed]["key"] == local[seed]["key"]               # same host, same threads: the same run
        assert mine[seed]["threads"] == 1 and mine[seed]["status"] == "complete"
    assert not list((results / "lenet_sgd" / "partial").glob("*.pt")), "a finished seed leaves no checkpoint"
    capsys.readouterr()
    # "already recorded on this machine" keeps its meaning: a rerun trains nothing and writes nothing
    assert run(results, real_data_dir, "--epochs", 1, "--seeds", 2, "--backend", "ray") == 0
    out = capsys.readouterr().out
    assert out.count("already recorded on this machine") == 2, out
    assert len(records(results)) == 2


def test_a_worker_killed_mid_run_is_retried_and_leaves_one_record(ray_instance, local_runs, tmp_path,
                                                                   real_data_dir, monkeypatch):
    """The task's process exits (os._exit) right after its first epoch's checkpoint, on its first attempt
    only: Ray runs it again, it resumes from the checkpoint, and the seed has exactly one record, with the
    weights of an uninterrupted run."""
    marker = tmp_path / "exited"
    monkeypatch.setenv(ray_backend.TEST_EXIT_AFTER, "1")
    monkeypatch.setenv(ray_backend.TEST_EXIT_MARKER, str(marker))
    results = tmp_path / "results"
    assert run(results, real_data_dir, "--epochs", 2, "--seeds", 1, "--backend", "ray") == 0
    assert marker.exists(), "the first attempt did not exit"
    assert int(marker.read_text()) != os.getpid()                     # a worker process died, not the driver
    (record,) = records(results)
    assert record["resumed_from_epoch"] == 1, "the retry did not resume from the checkpoint"
    assert record["weights_sha256"] == local_runs["two"][0]["weights_sha256"]


def test_a_spent_budget_starts_nothing_and_says_how_to_continue(ray_instance, tmp_path, real_data_dir, capsys):
    results = tmp_path / "results"
    assert run(results, real_data_dir, "--epochs", 1, "--seeds", 2, "--backend", "ray", "--budget", "0.001") == 0
    out = capsys.readouterr().out
    assert "budget spent: 2 seed(s) of lenet_sgd left" in out and "--backend ray" in out, out
    assert not records(results)


def test_a_second_process_joins_the_instance_by_address(ray_instance, local_runs, tmp_path, real_data_dir):
    """What `ray start --head` + `bench run --address` does: another driver process joins a running
    instance; with --checkpoint-dir the workers checkpoint there."""
    address = ray_instance.get_runtime_context().gcs_address
    results = tmp_path / "results"
    out = subprocess.run([sys.executable, "-m", "bench", "run", *SMOKE, "--epochs", "1", "--seeds", "1",
                          "--results", str(results), "--data-dir", str(real_data_dir), "--backend", "ray",
                          "--address", address, "--checkpoint-dir", str(tmp_path / "ckpt")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"at {address}" in out.stdout
    (record,) = records(results)
    assert record["weights_sha256"] == local_runs["one"][0]["weights_sha256"]
    assert (tmp_path / "ckpt" / "lenet_sgd" / "partial").is_dir()
