"""Nothing lost under kills, Ctrl-C, concurrent writers and bad input (CPU, small real MNIST runs)."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.store import read_records, write_record
from tests.conftest import ROOT

SMALL = ["--train-limit", "1024", "--eval-limit", "500"]


def bench(*args, timeout=600, **kw):
    return subprocess.run([sys.executable, "-m", "bench", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, **kw)


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "bench", *map(str, args)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run_args(results, data_dir, *extra):
    return ["run", "--recipe", "mnist_99_4", "--results", results, "--data-dir", data_dir, "--no-progress",
            *SMALL, *extra]


def wait_for_checkpoint(results: Path, proc, timeout=300) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list((results / "mnist_99_4" / "partial").glob("*.pt"))
        if found:
            return found[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


def records(results):
    recs, problems = read_records(results)
    assert not problems
    return recs


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- kills, Ctrl-C, resume

def test_sigkill_mid_epoch_then_resume_is_bitwise_identical(tmp_path, real_data_dir):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = start(*run_args(killed, real_data_dir, "--epochs", "6"))
    wait_for_checkpoint(killed, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not list((killed / "mnist_99_4").glob("*.json")), "a killed run must not be recorded"

    resumed = bench(*run_args(killed, real_data_dir, "--epochs", "6"))
    assert resumed.returncode == 0, resumed.stderr
    assert bench(*run_args(clean, real_data_dir, "--epochs", "6")).returncode == 0
    (a,), (b,) = records(killed), records(clean)
    assert a["resumed_from_epoch"] >= 1 and b["resumed_from_epoch"] == 0
    assert a["weights_sha256"] == b["weights_sha256"]
    assert a["curves"]["test_acc"] == b["curves"]["test_acc"]
    assert not list((killed / "mnist_99_4" / "partial").glob("*.pt"))


def test_ctrl_c_checkpoints_and_records_nothing(tmp_path, real_data_dir):
    results = tmp_path / "results"
    proc = start(*run_args(results, real_data_dir, "--epochs", "6"))
    checkpoint = wait_for_checkpoint(results, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err
    assert checkpoint.exists() and not list((results / "mnist_99_4").glob("*.json"))
    again = bench(*run_args(results, real_data_dir, "--epochs", "6"))
    assert again.returncode == 0
    (record,) = records(results)
    assert record["resumed_from_epoch"] >= 1 and record["status"] == "complete"


def test_completed_runs_are_skipped_and_force_adds_a_new_record(tmp_path, real_data_dir):
    results = tmp_path / "results"
    first = bench(*run_args(results, real_data_dir, "--epochs", "1"))
    assert first.returncode == 0, first.stderr
    before = snapshot(results / "mnist_99_4")
    second = bench(*run_args(results, real_data_dir, "--epochs", "1"))
    assert "already recorded" in second.stdout and snapshot(results / "mnist_99_4") == before
    forced = bench(*run_args(results, real_data_dir, "--epochs", "1", "--force"))
    assert forced.returncode == 0
    recs = records(results)
    assert len(recs) == 2 and recs[0]["weights_sha256"] == recs[1]["weights_sha256"]
    assert all(before[name] == (results / "mnist_99_4" / name).read_bytes() for name in before)


# ---------------------------------------------------------------- concurrent writers

def test_two_processes_on_one_results_folder_lose_nothing(tmp_path, real_data_dir):
    results = tmp_path / "results"
    args = run_args(results, real_data_dir, "--epochs", "1", "--seeds", "3")
    procs = [start(*args), start(*args)]
    for p in procs:
        p.communicate(timeout=600)
        assert p.returncode == 0
    recs = records(results)
    assert sorted(r["seed"] for r in recs) == [0, 1, 2]


def test_concurrent_record_writes_all_land(results):
    from concurrent.futures import ThreadPoolExecutor
    from tests.test_harness import _record

    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(lambda s: write_record(results, _record(seed=s)), range(40)))
    assert len(set(paths)) == 40 and len(records(results)) == 40


def test_jobs_give_the_same_weights_as_one_by_one(tmp_path, real_data_dir):
    one, many = tmp_path / "one", tmp_path / "many"
    assert bench(*run_args(one, real_data_dir, "--epochs", "1", "--seeds", "2")).returncode == 0
    par = bench(*run_args(many, real_data_dir, "--epochs", "1", "--seeds", "2", "--jobs", "2"))
    assert par.returncode == 0, par.stdout + par.stderr
    by_seed = lambda rs: {r["seed"]: r["weights_sha256"] for r in rs}  # noqa: E731
    assert by_seed(records(one)) == by_seed(records(many))


def test_check_determinism_command(real_data_dir):
    out = bench("check-determinism", "--recipe", "mnist_99_4", "--epochs", "1", *SMALL, "--data-dir",
                real_data_dir, "--no-progress")
    assert out.returncode == 0 and "deterministic: final weights match bitwise" in out.stdout


# ---------------------------------------------------------------- bad input: exit 2, one line, nothing changed

@pytest.fixture(scope="module")
def one_record(tmp_path_factory, real_data_dir):
    results = tmp_path_factory.mktemp("template") / "results"
    assert bench(*run_args(results, real_data_dir, "--epochs", "1")).returncode == 0
    return results


@pytest.fixture
def populated(one_record, tmp_path):
    """A results folder holding one real record, to show bad input never touches it."""
    return Path(shutil.copytree(one_record, tmp_path / "results"))


def bad_input(results, args, expect, capsys):
    """In-process: exit code 2, a one-line message naming the problem, nothing on disk changed."""
    from bench.cli import main

    before = snapshot(results)
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:          # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert expect in err.strip().splitlines()[-1], err
    assert snapshot(results) == before
    return err


def test_bad_inputs(populated, real_data_dir, tmp_path, capsys):
    r, d = populated, real_data_dir

    def check(args, expect):
        bad_input(r, args, expect, capsys)
    check(["run", "--recipe", "mnist_99", "--results", r], "did you mean mnist_99_4")
    check(["run", "--recipe", "mnist_99_4", "--seeds", "0", "--results", r], "must be at least 1")
    check(["run", "--recipe", "mnist_99_4", "--seeds", "-2", "--results", r], "--seeds")
    check(["run", "--recipe", "mnist_99_4", "--set", "epoch=3", "--results", r], "no field 'epoch'")
    check(["run", "--recipe", "mnist_99_4", "--set", "lr=fast", "--results", r], "lr is float")
    check(["run", "--recipe", "mnist_99_4", "--set", "lr", "--results", r], "expected key=value")
    afile = tmp_path / "afile"
    afile.write_text("")
    check(["run", "--recipe", "mnist_99_4", "--results", afile / "sub", "--data-dir", d], "is a file")
    if not torch.cuda.is_available():
        check(["run", "--recipe", "mnist_99_4", "--device", "cuda", "--results", r], "no CUDA GPU")


def test_corrupt_data_file_is_named_with_the_fix(populated, tmp_path, capsys):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x00" * 100)
    out = bad_input(populated, ["run", "--recipe", "mnist_99_4", "--results", populated,
                                "--data-dir", tmp_path / "data"], "train-images-idx3-ubyte", capsys)
    assert "truncated" in out and "bench data fetch mnist" in out
    assert (raw / "train-images-idx3-ubyte").read_bytes() == b"\x00" * 100


def test_record_of_unknown_schema_version_stops_the_run(populated, real_data_dir, capsys):
    (populated / "mnist_99_4" / "from-the-future.json").write_text(json.dumps({"schema_version": 99}))
    bad_input(populated, run_args(populated, real_data_dir, "--epochs", "1"), "schema_version 99", capsys)


def test_corrupt_record_is_reported_and_skipped(populated):
    (populated / "mnist_99_4" / "cut.json").write_text('{"schema_version": 1, "recipe": "mnis')
    recs, problems = read_records(populated)
    assert len(recs) == 1 and [p.path.name for p in problems] == ["cut.json"]
