"""Evidence that travels: a record names its precision and software, a copied tree without .git names
its commit, TF32 runs are a cell of their own (compared, never pooled), and the estimate measures the
real step."""
from __future__ import annotations

import json
import os

import pytest
import torch

from bench.cli.main import main
from bench.contract import registry
from bench.records import evidence
from bench.records.groups import primary, split_runs
from bench.running.estimate import Estimate, busy_warning, engine_seconds
from bench.training import determinism, environment
from tests.conftest import synthetic_arrays
from tests.records import runs, write

SMALL = ["--device", "cpu", "--no-progress", "--threads", "1", "--epochs", "1"]


def test_a_record_names_its_precision_and_software(tmp_path, fake_data):
    results = tmp_path / "results"
    assert main(["run", "--recipe", "lenet_sgd", "--results", str(results), *SMALL]) == 0
    record = json.loads(next((results / "lenet_sgd").glob("*.json")).read_text())
    env = record["env"]
    assert record["precision"] == "fp32" and env["fp32_precision"] == {"matmul": "ieee", "conv": "ieee"}
    assert env["torch"] == torch.__version__ and env["cpu_software"]["torch"] == torch.__version__
    assert env["variables"]["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" and "OMP_WAIT_POLICY" in env["variables"]
    assert env["cpu_id"] and env["driver"] is None and env["cublas"] is None      # no GPU here: nothing to name
    (kept,) = evidence.read(results).records
    assert kept["precision"] == "fp32"


def test_tf32_is_refused_on_a_cpu_and_nothing_is_written(tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", "--recipe", "lenet_sgd", "--precision", "tf32", "--results", str(results), *SMALL]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TF32" in err[0] and not results.exists()


def test_set_precision_goes_through_one_api_and_reads_back():
    try:
        determinism.set_precision("tf32")
        assert determinism.precision_in_force() == {"matmul": "tf32", "conv": "tf32"}
        determinism.set_precision("fp32")
        assert determinism.precision_in_force() == {"matmul": "ieee", "conv": "ieee"}
        with pytest.raises(ValueError, match="precision"):
            determinism.set_precision("bf16")
    finally:
        determinism.set_precision("fp32")


def test_a_copied_tree_without_git_names_the_commit_its_sender_gave(tmp_path, monkeypatch):
    monkeypatch.setenv(environment.COMMIT_VARIABLE, "abc1234")
    assert environment.git_commit(tmp_path) == "abc1234"
    monkeypatch.delenv(environment.COMMIT_VARIABLE)
    assert environment.git_commit(tmp_path) is None


def test_tf32_runs_are_their_own_cell_never_pooled_with_fp32(tmp_path):
    results = tmp_path / "results"
    write(results, *runs("lenet_sgd", [99.0, 99.1, 98.9], device="cuda", threads=None),
          *runs("lenet_sgd", [98.0, 98.1, 98.2, 98.3], device="cuda", threads=None, precision="tf32", started=9))
    recipe = registry.load("lenet_sgd")
    rr = split_runs(evidence.read(results).of("lenet_sgd"), recipe.fingerprint)
    assert sorted(g.label for g in rr.groups) == ["fast / cuda", "fast / cuda / tf32"]
    assert primary(rr.groups).label == "fast / cuda"                   # the canonical precision, not the larger n
    assert all(len({r["precision"] for r in g.runs}) == 1 for g in rr.groups)


def test_a_tf32_record_from_a_cpu_is_rejected(tmp_path):
    results = tmp_path / "results"
    write(results, *runs("lenet_sgd", [99.0], precision="tf32"))
    (bad,) = evidence.read(results).rejected
    assert "tf32 on a CPU" in bad.reason


def test_the_estimate_times_the_real_step_and_a_full_schedule_never_runs_out():
    """Two steps of a OneCycle recipe would break its schedule if the estimate stepped the run's own one
    past its end; the estimate's figures are per step and per image, and positive."""
    recipe = registry.load("ultimate_mlp")
    hp = recipe.hparams.__class__(**{**recipe.hparams.__dict__, "epochs": 1, "train_limit": 128})
    per_step, per_eval = engine_seconds(recipe, hp, synthetic_arrays(n_train=5256, n_test=64), torch.device("cpu"),
                                        "fast")
    assert per_step > 0 and per_eval > 0


def test_a_busy_machine_is_said_aloud(monkeypatch):
    import os
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 3.0, 3.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert "busy" in busy_warning(torch.device("cpu"), 2) and "--threads 1" in busy_warning(torch.device("cpu"), 2)
    assert "--threads 1" not in busy_warning(torch.device("cpu"), 1)     # never advice to do what it does
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    assert busy_warning(torch.device("cpu"), 2) is None
    assert busy_warning(torch.device("cuda"), 2) is None


def test_jobs_report_a_seed_the_budget_cut_and_one_never_started(tmp_path, monkeypatch):
    """A child whose budget ran out exits 0 and says "@left SEED": the parent must count it as left, not done."""
    import sys

    from bench.running import jobs
    from bench.running.options import RunOptions

    def child(recipe, seed, opts, threads):
        return [sys.executable, "-c", f"print('@progress 1 15'); print('@left {seed}'); print('budget spent')"]
    monkeypatch.setattr(jobs, "child_command", child)
    opts = RunOptions(results=tmp_path, data_dir=tmp_path, device=torch.device("cpu"), host="h", progress=False)
    logs = []
    failures, left = jobs.run_parallel(registry.load("lenet_sgd"), [0, 1], opts, 2, log=logs.append)
    assert failures == 0 and left == [0, 1]
    assert sum("budget ran out" in line for line in logs) == 2
    late = RunOptions(results=tmp_path, data_dir=tmp_path, device=torch.device("cpu"), host="h", progress=False,
                      deadline=jobs.now() + 5)
    est = Estimate(1e-6, 1e-6, epoch=10.0, seed=60.0, epochs=6, early_stop=False)   # not even one epoch fits
    failures, left = jobs.run_parallel(registry.load("lenet_sgd"), [3], late, 1, est=est, log=logs.append)
    assert left == [3] and "not started" in logs[-2]


def test_each_jobs_child_gets_one_gpu_of_several_and_the_passive_openmp_policy(monkeypatch):
    from bench.running import jobs
    from bench.running.options import RunOptions
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    cuda = RunOptions(results=None, data_dir=None, device=torch.device("cuda"), host="h")
    envs = [jobs.child_env(slot, cuda, ["0", "1", "2"]) for slot in range(4)]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1", "2", "0"]
    assert all(e["OMP_WAIT_POLICY"] == "PASSIVE" for e in envs)
    cpu = RunOptions(results=None, data_dir=None, device=torch.device("cpu"), host="h")
    inherited = "CUDA_VISIBLE_DEVICES" in os.environ
    assert "CUDA_VISIBLE_DEVICES" not in jobs.child_env(0, cpu, []) or inherited
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert jobs.child_env(0, cpu, [])["OMP_WAIT_POLICY"] == "ACTIVE"        # the user's choice stands
