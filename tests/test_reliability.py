"""Nothing lost under kills, Ctrl-C, concurrent writers and bad input (CPU, small real MNIST runs)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.contract import registry
from bench.records.store import run_lock, write_record
from bench.training import checkpoint as checkpoint_file
from tests.conftest import ROOT

SMALL = ["--train-limit", "1024", "--eval-limit", "500"]
THREADS = ["--threads", "1"]   # subprocess runs: one thread is fast even beside a busy CPU (bits differ, not behaviour)


def bench(*args, timeout=600, **kw):
    return subprocess.run([sys.executable, "-m", "bench", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, **kw)


def start(*args, env=None):
    """A `bench` process that takes Ctrl-C as a terminal gives it, however pytest was started: a shell without job
    control starts `cmd &` with SIGINT ignored, every child inherits that, and the SIGINT tests then wait for a
    process that never hears them."""
    return subprocess.Popen([sys.executable, "-m", "bench", *map(str, args)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def start_paused(pause_file: Path, after: int, *args):
    """A `bench run` that stops (sleeping) right after epoch `after`'s checkpoint is saved: the engine's
    test-only hook creates pause_file there, so a kill lands at a known point."""
    env = {**os.environ, "BENCH_TEST_PAUSE_AFTER_EPOCH": str(after), "BENCH_TEST_PAUSE_FILE": str(pause_file)}
    proc = start(*args, env=env)
    deadline = time.monotonic() + 300
    while not pause_file.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before pausing: {proc.communicate()}")
        assert time.monotonic() < deadline, "the run never paused"
        time.sleep(0.05)
    return proc


def run_args(results, data_dir, *extra):
    return ["run", "--recipe", "mnist_99_4", "--results", results, "--data-dir", data_dir, "--no-progress",
            *SMALL, *extra]


def records(results):
    """Every record under results/, read as plain JSON."""
    return [json.loads(p.read_text()) for p in sorted(Path(results).glob("*/*.json"))]


def checkpoints(results: Path) -> list[Path]:
    return list((results / "mnist_99_4" / "partial").glob("*.pt"))


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- kills, Ctrl-C, resume

EPOCHS = ["--epochs", "3", *THREADS]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, real_data_dir) -> dict:
    """The record of the 3-epoch run the cut runs below must reproduce."""
    results = tmp_path_factory.mktemp("uninterrupted") / "results"
    out = bench(*run_args(results, real_data_dir, *EPOCHS))
    assert out.returncode == 0, out.stderr
    (record,) = records(results)
    assert record["resumed_from_epoch"] == 0
    return record


def same_run(a: dict, b: dict) -> None:
    assert a["weights_sha256"] == b["weights_sha256"]
    drop = lambda c: {k: v for k, v in c.items() if k != "epoch_time_s"}  # noqa: E731
    assert drop(a["curves"]) == drop(b["curves"])
    assert a["metrics"] == {**b["metrics"], "wall_time_s": a["metrics"]["wall_time_s"]}


def test_sigkill_after_a_checkpoint_then_resume_is_bitwise_identical(tmp_path, real_data_dir, uninterrupted):
    results = tmp_path / "results"
    proc = start_paused(tmp_path / "paused", 2, *run_args(results, real_data_dir, *EPOCHS))
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not records(results), "a killed run must not be recorded"
    (checkpoint,) = checkpoints(results)
    state = checkpoint_file.read(checkpoint)
    assert state["epoch"] == 2

    resumed = bench(*run_args(results, real_data_dir, *EPOCHS))
    assert resumed.returncode == 0, resumed.stderr
    (record,) = records(results)
    assert record["resumed_from_epoch"] == 2 and record["epochs_run"] == 3 and record["status"] == "complete"
    same_run(record, uninterrupted)
    # the resumed run carries on its checkpoint's lineage; the uninterrupted run was a from-scratch start of its own
    assert record["lineage"] == state["lineage"] and record["lineage"] != uninterrupted["lineage"]
    assert not checkpoints(results), "a finished run leaves no checkpoint"


def test_ctrl_c_checkpoints_records_nothing_and_the_rerun_resumes(tmp_path, real_data_dir, uninterrupted):
    results = tmp_path / "results"
    proc = start_paused(tmp_path / "paused", 1, *run_args(results, real_data_dir, *EPOCHS))
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err, err
    assert not records(results)
    (checkpoint,) = checkpoints(results)
    assert checkpoint_file.read(checkpoint)["epoch"] == 1
    assert not list((results / "mnist_99_4" / "partial").glob("*.lock")), "Ctrl-C releases and removes the lock"

    again = bench(*run_args(results, real_data_dir, *EPOCHS))
    assert again.returncode == 0, again.stderr
    (record,) = records(results)
    assert record["resumed_from_epoch"] == 1 and record["status"] == "complete"
    same_run(record, uninterrupted)


def test_completed_runs_are_skipped_and_force_adds_a_new_record(tmp_path, real_data_dir):
    results = tmp_path / "results"
    first = bench(*run_args(results, real_data_dir, "--epochs", "1", *THREADS))
    assert first.returncode == 0, first.stderr
    before = snapshot(results / "mnist_99_4")
    second = bench(*run_args(results, real_data_dir, "--epochs", "1", *THREADS))
    assert "already recorded" in second.stdout and snapshot(results / "mnist_99_4") == before
    forced = bench(*run_args(results, real_data_dir, "--epochs", "1", "--force", *THREADS))
    assert forced.returncode == 0
    recs = records(results)
    assert len(recs) == 2 and recs[0]["weights_sha256"] == recs[1]["weights_sha256"]
    assert all(before[name] == (results / "mnist_99_4" / name).read_bytes() for name in before)


# ---------------------------------------------------------------- concurrent writers

def test_a_seed_whose_lock_is_held_is_skipped_and_runs_once_released(tmp_path, real_data_dir):
    """Another process training this run holds its lock: `bench run` must skip the seed, write nothing, and
    train it once the lock is free. The key is computed as bench.runner computes it (one thread, this host)."""
    from bench.contract.recipe import apply_overrides
    from bench.running.options import RunOptions
    from bench.running.runner import run_key
    from bench.training.environment import host_identity
    from bench.training.numerics import one_thread

    results = tmp_path / "results"
    args = run_args(results, real_data_dir, "--epochs", "1", *THREADS)
    recipe = registry.load("mnist_99_4")
    _, parsed = apply_overrides(recipe.hparams, {"epochs": "1", "train_limit": SMALL[1], "eval_limit": SMALL[3]})
    with one_thread():
        cpu = torch.device("cpu")
        key = run_key(recipe, 0, RunOptions(results=results, data_dir=real_data_dir, device=cpu,
                                            host=host_identity(cpu)), parsed)
    with run_lock(results, "mnist_99_4", key) as mine:
        assert mine
        skipped = bench(*args)
        assert skipped.returncode == 0, skipped.stderr
        assert "mnist_99_4 seed 0: another process is running it; skipped" in skipped.stdout
        assert not records(results) and not checkpoints(results)
    ran = bench(*args)
    assert ran.returncode == 0, ran.stderr
    assert "another process" not in ran.stdout
    (record,) = records(results)
    assert record["key"] == key and record["status"] == "complete"


def test_concurrent_record_writes_all_land(results):
    from concurrent.futures import ThreadPoolExecutor

    from tests.records import make_record

    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(lambda s: write_record(results, make_record("mnist_99_4", s, 99.0)), range(40)))
    assert len(set(paths)) == 40 and len(records(results)) == 40


def test_jobs_give_the_same_weights_as_one_by_one(tmp_path, real_data_dir):
    one, many = tmp_path / "one", tmp_path / "many"
    assert bench(*run_args(one, real_data_dir, "--epochs", "1", "--seeds", "2", *THREADS)).returncode == 0
    par = bench(*run_args(many, real_data_dir, "--epochs", "1", "--seeds", "2", "--jobs", "2", *THREADS))
    assert par.returncode == 0, par.stdout + par.stderr
    by_seed = lambda rs: {r["seed"]: r["weights_sha256"] for r in rs}  # noqa: E731
    assert by_seed(records(one)) == by_seed(records(many))


def test_check_determinism_command(real_data_dir):
    out = bench("check-determinism", "--recipe", "mnist_99_4", "--epochs", "1", *SMALL, "--data-dir",
                real_data_dir, "--no-progress", *THREADS)
    assert out.returncode == 0 and "deterministic: final weights match bitwise" in out.stdout


# ---------------------------------------------------------------- bad input: exit 2, one line, nothing changed

@pytest.fixture(scope="module")
def one_record(tmp_path_factory, real_data_dir):
    results = tmp_path_factory.mktemp("template") / "results"
    assert bench(*run_args(results, real_data_dir, "--epochs", "1", *THREADS)).returncode == 0
    return results


@pytest.fixture
def populated(one_record, tmp_path):
    """A results folder holding one real record, to show bad input never touches it."""
    return Path(shutil.copytree(one_record, tmp_path / "results"))


def bad_input(results, args, expect, capsys):
    """In-process: exit code 2, a one-line message naming the problem, nothing on disk changed."""
    from bench.cli.main import main

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


def test_record_of_unknown_schema_version_stops_a_seed_it_may_hold(populated, real_data_dir, capsys):
    """It is rejected (not fatal for readers), and since it names no seed it may be any seed's: a seed not yet
    recorded here is not trained over it silently."""
    (populated / "mnist_99_4" / "from-the-future.json").write_text(json.dumps({"schema_version": 99}))
    bad_input(populated, run_args(populated, real_data_dir, "--epochs", "1", "--seed-start", "1"), "schema_version 99",
              capsys)


def test_corrupt_record_is_reported_and_skipped(populated):
    from bench.records import evidence
    (populated / "mnist_99_4" / "cut.json").write_text('{"schema_version": 1, "recipe": "mnis')
    ev = evidence.read(populated)
    assert len(ev.records) == 1 and [x.path.name for x in ev.rejected] == ["cut.json"]


# ---------------------------------------------------------------- --jobs: the parent stays in charge

def child_pids(results: Path) -> list[int]:
    """Live `bench run` processes working on this results folder (the --jobs children)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"bench" in cmd and str(results).encode() in cmd and b"--progress-lines" in cmd:
            pids.append(int(proc.name))
    return pids


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_the_jobs_parent_stops_every_child_at_its_checkpoint(tmp_path, real_data_dir, signum, code):
    results = tmp_path / "results"
    env = {**os.environ, "BENCH_TEST_PAUSE_AFTER_EPOCH": "1", "BENCH_TEST_PAUSE_FILE": str(tmp_path / "paused")}
    parent = start(*run_args(results, real_data_dir, "--epochs", "3", "--seeds", "2", "--jobs", "2", *THREADS),
                   env=env)
    deadline = time.monotonic() + 300
    while len(checkpoints(results)) < 2:                 # both children paused after epoch 1's checkpoint
        assert parent.poll() is None, parent.communicate()
        assert time.monotonic() < deadline, "the children never paused"
        time.sleep(0.1)
    assert len(child_pids(results)) == 2
    parent.send_signal(signum)                           # to the parent only, as `kill` or a scheduler sends it
    _, err = parent.communicate(timeout=300)
    assert parent.returncode == code, err
    assert "stopped at its last checkpoint" in err
    assert not child_pids(results), "no child outlives the parent"
    assert not records(results) and len(checkpoints(results)) == 2
    assert not list((results / "mnist_99_4" / "partial").glob("*.lock"))
