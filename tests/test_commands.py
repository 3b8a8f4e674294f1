"""The commands' failure branches and machine-readable output: check-determinism when two runs differ,
a failing `--jobs` child, `list --json`. In-process through bench.cli.main where that is enough."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench.cli.main import main
from bench.contract import registry
from bench.training import engine
from bench.training.numerics import one_thread

TINY = ["--epochs", "3", "--train-limit", "128", "--eval-limit", "64", "--device", "cpu", "--no-progress",
        "--data-dir", "unused"]


@pytest.fixture(autouse=True)
def _one_thread():
    """In-process runs on one thread (fast beside a busy CPU); the thread count is restored afterwards."""
    with one_thread():
        yield


# ---------------------------------------------------------------- check-determinism

@pytest.fixture
def count_epochs(monkeypatch):
    """Numbers every epoch's batches across the process (run 1's epochs 1..3 are calls 1..3, run 2's are 4..6);
    `perturb` names the calls whose first batch gets one pixel changed."""
    calls = {"n": 0, "perturb": set()}
    original = engine.fast_batches

    def batches(*args, **kw):
        calls["n"] += 1
        for i, (x, y) in enumerate(original(*args, **kw)):
            if i == 0 and calls["n"] in calls["perturb"]:
                x = x.clone()
                x.view(-1)[0] += 1.0
            yield x, y
    monkeypatch.setattr(engine, "fast_batches", batches)
    return calls


def test_check_determinism_passes_on_two_equal_runs(fake_data, count_epochs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["check-determinism", "--recipe", "mnist_99_4", *TINY]) == 0
    assert count_epochs["n"] == 6
    assert "deterministic: final weights match bitwise" in capsys.readouterr().out


def test_check_determinism_exits_1_and_names_the_first_differing_epoch(fake_data, count_epochs, tmp_path,
                                                                       monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    count_epochs["perturb"] = {5}                       # run 2, epoch 2
    assert main(["check-determinism", "--recipe", "mnist_99_4", *TINY]) == 1
    out = capsys.readouterr().out
    assert "NOT deterministic" in out and "curves first differ at epoch 2" in out, out


def test_check_determinism_says_when_only_the_weights_differ(fake_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    original, runs = engine.train, []

    def train(*args, **kw):
        result = original(*args, **kw)
        runs.append(result)
        if len(runs) == 2:
            result.weights_sha256 = "0" * 64
        return result
    monkeypatch.setattr(engine, "train", train)
    assert main(["check-determinism", "--recipe", "mnist_99_4", *TINY]) == 1
    out = capsys.readouterr().out
    assert "NOT deterministic" in out and "curves are equal; only the weights differ" in out


# ---------------------------------------------------------------- --jobs

def test_a_failing_jobs_child_makes_the_run_exit_1_and_keeps_its_log(tmp_path, real_data_dir, monkeypatch, capsys):
    from bench.running import jobs
    real = jobs.child_command

    def child(recipe, seed, opts, threads):          # seed 1's child gets a --set its recipe rejects: it exits 2
        return real(recipe, seed, opts, threads) + (["--set", "no_such_field=1"] if seed == 1 else [])
    monkeypatch.setattr(jobs, "child_command", child)
    results = tmp_path / "results"
    code = main(["run", "--recipe", "mnist_99_4", "--seeds", "2", "--jobs", "2", "--epochs", "1", "--train-limit",
                 "256", "--eval-limit", "128", "--device", "cpu", "--results", str(results), "--data-dir",
                 str(real_data_dir), "--no-progress", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 1, out
    kept = re.search(r"mnist_99_4 seed 1: child exited 2\b.*log kept at (\S+)", out)
    assert kept, out
    log = Path(kept.group(1))
    assert log.exists() and "no field 'no_such_field'" in log.read_text()
    assert not list(log.parent.glob("seed0-*.log")), "a child that succeeded leaves no log"
    (record,) = [json.loads(p.read_text()) for p in (results / "mnist_99_4").glob("*.json")]
    assert record["seed"] == 0 and record["status"] == "complete"


# ---------------------------------------------------------------- list --json

def test_list_json_has_every_recipe_with_its_numbers(capsys):
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list) and sorted({row["recipe"] for row in rows}) == registry.names()
    for row in rows:
        assert {"recipe", "dataset", "params", "epochs", "headline", "fingerprint"} <= set(row)
        assert {"metric", "value", "quote", "flags"} <= set(row["headline"])
        r = registry.load(row["recipe"], row.get("variant"))
        assert (row["dataset"], row["params"], row["epochs"], row["fingerprint"]) == (
            r.hparams.dataset, r.params, r.hparams.epochs, r.fingerprint)
        h = r.headline
        assert (row["headline"]["metric"], row["headline"]["value"], row["headline"]["quote"]) == (
            h.metric, h.value, h.quote)
        assert row["headline"]["flags"] == h.flags and isinstance(row["headline"]["flags"], list)
    canonical = {row["recipe"]: row for row in rows if row.get("variant") is None}
    assert sorted(canonical) == registry.names()
    assert canonical["mnist_99_4"]["params"] == 15_578
    assert "selected on test" in canonical["mnist_99_4"]["headline"]["flags"]
