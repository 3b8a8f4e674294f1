"""The newcomer's path: an estimate before training, --budget, --all, and the agreement block."""
from __future__ import annotations

import json

import pytest
import torch

from bench.cli.main import main
from bench.contract import registry
from bench.records import evidence
from bench.running.budget import parse_duration
from bench.running.estimate import Estimate, advice, estimate, human
from bench.training import data as data_layer
from tests.conftest import synthetic_arrays

SMALL = ["--device", "cpu", "--no-progress", "--threads", "1"]


@pytest.mark.parametrize("text, seconds", [("90m", 5400), ("2h", 7200), ("1h30m", 5400), ("45s", 45), ("120", 120)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5m", "2 hours", "h", "nan", "1d"])
def test_bad_durations_exit_2(text, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--recipe", "lenet_sgd", "--budget", text, "--results", str(tmp_path)])
    assert exc.value.code == 2 and "--budget" in capsys.readouterr().err


def test_the_estimate_scales_two_short_epochs_and_says_when_to_use_a_gpu():
    recipe = registry.load("lenet_sgd")
    est = estimate(recipe, recipe.hparams, synthetic_arrays(n_train=512, n_test=128), torch.device("cpu"))
    assert est.train_per_image > 0 and est.eval_per_image >= 0 and est.epochs == 15
    assert est.seed == pytest.approx(15 * 60_000 * est.train_per_image + 15 * 10_000 * est.eval_per_image)
    assert "per epoch" in est.line(5) and "for 5 seed(s)" in est.line(5)
    slow = Estimate(0.1, 0.01, 7200.0, 10 * 3600.0, 250, False)
    note = advice(slow, torch.device("cpu"), "ultimate_mlp")
    assert "--device cuda" in note and "--budget" in note and "--epochs" in note and "10.0 h" in note
    assert advice(slow, torch.device("cuda"), "x") is None
    assert human(30) == "30 s" and human(600) == "10 min"


def test_main_command_prints_the_estimate_first_and_the_agreement_last(tmp_path, fake_data, capsys):
    results = tmp_path / "results"
    assert main(["run", "--recipe", "lenet_sgd", "--seeds", "2", "--results", str(results), *SMALL]) == 0
    out = capsys.readouterr().out.splitlines()
    first = next(i for i, line in enumerate(out) if line.startswith("estimate on this machine:"))
    agreement = next(i for i, line in enumerate(out) if "your runs against the evidence" in line)
    assert first < agreement and "the claim with your runs included (n=2)" in "\n".join(out[agreement:])


def test_a_tiny_budget_runs_what_fits_and_says_how_to_continue(tmp_path, fake_data, capsys, monkeypatch):
    from bench.running import runner
    results = tmp_path / "results"
    clock = [0.0]
    real_run_seed = runner.run_seed

    def run_seed(*a, **k):                      # every seed takes 3 s of the budget's clock
        out = real_run_seed(*a, **k)
        clock[0] += 3.0
        return out

    monkeypatch.setattr(runner, "now", lambda: clock[0])
    monkeypatch.setattr(runner, "run_seed", run_seed)
    monkeypatch.setattr("bench.cli.run.estimate", lambda *a, **k: Estimate(1e-6, 1e-6, 0.3, 4.0, 15, False))
    code = main(["run", "--recipe", "lenet_sgd", "--seeds", "4", "--budget", "10s", "--results", str(results),
                 *SMALL])
    out = capsys.readouterr().out
    assert code == 0 and "budget spent: 1 seed(s) of lenet_sgd left (3..3)" in out     # 0, 1, 2 fit; 3 would not
    assert "python -m bench run --recipe lenet_sgd --seeds 1 --seed-start 3" in out and "--budget 10s" in out
    assert "--data-dir" not in out                                  # the default data folder goes unsaid
    clock[0] = 0.0
    code = main(["run", "--recipe", "lenet_sgd", "--seeds", "4", "--budget", "10s", "--results", str(tmp_path / "r2"),
                 "--data-dir", str(tmp_path / "mnist"), *SMALL])
    assert code == 0 and f"--data-dir {tmp_path / 'mnist'}" in capsys.readouterr().out     # ... another is named
    assert {r["seed"] for r in evidence.read(results).records} == {0, 1, 2}


def test_a_budget_spent_mid_seed_stops_at_a_checkpoint_and_resumes(tmp_path, fake_data, capsys, monkeypatch):
    from bench.running import runner
    results = tmp_path / "results"
    ticks = iter(range(0, 10_000, 4))
    monkeypatch.setattr(runner, "now", lambda: float(next(ticks)))     # 4 s per look at the clock
    monkeypatch.setattr("bench.cli.run.estimate", lambda *a, **k: Estimate(1e-6, 1e-6, 0.3, 1.0, 15, False))
    args = ["run", "--recipe", "lenet_sgd", "--seeds", "1", "--budget", "10s", "--results", str(results), *SMALL]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "budget spent at epoch" in out and "continue with:" in out
    assert not evidence.read(results).records and list((results / "lenet_sgd" / "partial").glob("*.pt"))
    monkeypatch.setattr(runner, "now", lambda: 0.0)
    assert main(args) == 0
    (record,) = evidence.read(results).records
    assert record["resumed_from_epoch"] >= 1 and record["status"] == "complete"


def test_a_seed_longer_than_the_whole_budget_is_trained_in_stretches(tmp_path, fake_data, capsys, monkeypatch):
    """`--budget 2h` on a 2.4 h seed (the advice the estimate prints for ultimate_mlp): each call trains until
    the next epoch would overrun, stops at a checkpoint, and the same command resumes it."""
    from bench.running import runner
    results = tmp_path / "results"
    clock = [0.0]
    monkeypatch.setattr(runner, "now", lambda: clock[0])
    real_save = runner.RunnerContext.save_checkpoint

    def save(self, state):                      # every epoch takes 3 s of the budget's clock
        clock[0] += 3.0
        real_save(self, state)

    monkeypatch.setattr(runner.RunnerContext, "save_checkpoint", save)
    monkeypatch.setattr("bench.cli.run.estimate", lambda *a, **k: Estimate(1e-6, 1e-6, 3.0, 45.0, 15, False))
    args = ["run", "--recipe", "lenet_sgd", "--seeds", "2", "--budget", "10s", "--results", str(results), *SMALL]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "budget spent at epoch 3 of 15" in out, out     # epochs 1-3 end at 9 s; a 4th would end past 10 s
    assert "--budget 10s" in out and not evidence.read(results).records
    stretches = 1
    while not evidence.read(results).records:
        clock[0] = 0.0
        assert main(args) == 0 and stretches < 10
        stretches += 1
    (record,) = evidence.read(results).records
    assert record["seed"] == 0 and record["status"] == "complete" and record["resumed_from_epoch"] == 12
    assert stretches == 5 and "budget spent" in capsys.readouterr().out     # seed 1 is the next stretch's


def test_a_dry_run_says_what_the_budget_will_do(tmp_path, fake_data, capsys, monkeypatch):
    from bench.running.budget import plan_line
    short, long_ = Estimate(1e-6, 1e-6, 0.3, 4.0, 15, False), Estimate(1e-6, 1e-6, 3.0, 45.0, 15, False)
    assert plan_line(short, 10, "10s", [0, 1, 2, 3]) == \
        "--budget 10s: seeds 0..1 fit; the rest wait for the next call of the same command"
    assert plan_line(short, 10, "10s", [0, 1, 2, 3], jobs=2).startswith("--budget 10s: all 4 seed(s) fit")
    assert "seed(s) 0 train in stretches, about 5 calls" in plan_line(long_, 10, "10s", [0, 1])
    monkeypatch.setattr("bench.cli.run.estimate", lambda *a, **k: long_)
    results = tmp_path / "results"
    assert main(["run", "--recipe", "lenet_sgd", "--seeds", "2", "--budget", "10s", "--dry-run",
                 "--results", str(results), *SMALL]) == 0
    assert "longer than the budget" in capsys.readouterr().out and not results.exists()


def test_a_budget_shorter_than_one_epoch_is_refused_instead_of_looping(tmp_path, fake_data, capsys, monkeypatch):
    monkeypatch.setattr("bench.cli.run.estimate", lambda *a, **k: Estimate(1e-6, 1e-6, 30.0, 450.0, 15, False))
    results = tmp_path / "results"
    for extra in ([], ["--dry-run"]):
        assert main(["run", "--recipe", "lenet_sgd", "--budget", "10s", "--results", str(results), *SMALL,
                     *extra]) == 2
        assert "shorter than one epoch of lenet_sgd" in capsys.readouterr().err
    assert not (results / "lenet_sgd" / "partial").exists() or not any((results / "lenet_sgd" / "partial").iterdir())


def test_all_runs_every_recipe_with_data_and_skips_the_rest(tmp_path, monkeypatch, capsys):
    ran = []

    def load(dataset, data_dir, log=print):
        if dataset == "cifar10":
            raise data_layer.DataError("CIFAR-10 is not available: put the batches in data/cifar-10-batches-py")
        return synthetic_arrays(n_train=64, n_test=32)

    import bench.cli.run as run_command

    def fake_run(campaign, recipe, opts):
        data_layer.load(recipe.hparams.dataset, opts.data_dir)
        ran.append(recipe.name)
        return 0, []

    monkeypatch.setattr(data_layer, "load", load)
    monkeypatch.setattr(run_command, "run_one_recipe", fake_run)
    assert main(["run", "--all", "--seeds", "2", "--results", str(tmp_path / "r"), *SMALL]) == 0
    out = capsys.readouterr().out
    assert ran == [n for n in registry.names() if registry.load(n).hparams.dataset != "cifar10"]
    assert "alphabetical order" in out and out.count("skipped") == 2 and "cifar-10-batches-py" in out
    assert main(["run", "--all", "--recipe", "lenet_sgd", "--results", str(tmp_path / "r")]) == 2
    assert main(["run", "--results", str(tmp_path / "r")]) == 2


def test_already_recorded_seeds_skip_the_estimate(tmp_path, fake_data, capsys):
    results = tmp_path / "results"
    args = ["run", "--recipe", "lenet_sgd", "--epochs", "1", "--results", str(results), *SMALL]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "already recorded on this machine" in out and "estimate" not in out
    record = json.loads(next((results / "lenet_sgd").glob("*.json")).read_text())
    assert record["canonical"] is False and record["digest"]


def test_the_agreement_block_never_averages_a_diverged_run(tmp_path):
    from bench.records import evidence
    from bench.report.agreement import agreement_lines
    from tests.records import make_record, runs, write

    results = tmp_path / "results"
    write(results, *runs("numpy_cnn", [98.3, 98.4, 11.0], host="here"),
          *(make_record("numpy_cnn", seed, value, host="there") for seed, value in [(0, 98.35), (1, 98.25)]))
    text = "\n".join(agreement_lines(registry.load("numpy_cnn"), evidence.read(results), "fast", "cpu", "here"))
    assert "this machine (Test CPU / 2 threads): n=3, 98.35 ± 0.071% (2 converged; 1 diverged)" in text, text
    assert "1 host(s)): n=2, 98.30 ± 0.071%\n" in text + "\n", text
    assert "1 run(s) diverged" in text
