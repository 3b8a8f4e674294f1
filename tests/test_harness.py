"""The backbone: mnist_99_4's asserted constraints, determinism, selection rules, overrides,
the store, and a smoke run on real MNIST fetched the way a user's first run fetches it."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from bench.contract import registry
from bench.contract.recipe import OverrideError, apply_overrides, count_params
from bench.records.selection import honest_selection, summarize
from bench.records.store import write_record
from bench.training import data as data_layer
from bench.training.determinism import seed_everything, weights_sha256
from bench.training.engine import RunContext, train
from bench.training.splits import make_splits
from tests.conftest import ROOT

MNIST_99_4 = registry.load("mnist_99_4")


# ---------------------------------------------------------------- the document's own tests

@pytest.fixture
def model():
    return MNIST_99_4.module.build_model(MNIST_99_4.hparams)


def test_fewer_than_20k_parameters(model):
    assert count_params(model) < 20_000


def test_exactly_15578_parameters(model):
    assert count_params(model) == 15_578


def test_output_shape_for_one_image(model):
    model.eval()
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_dropout_rate(model):
    rates = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert rates == [0.4, 0.4]


def test_conv_layers(model):
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 8, (3, 3), (1, 1)), (8, 16, (3, 3), (1, 1)), (16, 32, (3, 3), (1, 1))]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 3
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3


# ---------------------------------------------------------------- determinism on real MNIST

@pytest.fixture(scope="session")
def mnist(real_data_dir):
    return data_layer.load("mnist", real_data_dir, log=lambda s: None)


def _weights_after_one_epoch(arrays, seed):
    hp, _ = apply_overrides(MNIST_99_4.hparams, {"epochs": "1", "train_limit": "512", "eval_limit": "256"})
    gens = seed_everything(seed, torch.device("cpu"))
    splits = make_splits(arrays, hp, gens["split"], torch.device("cpu"))
    ctx = RunContext("mnist_99_4", seed, torch.device("cpu"), gens, progress=False)
    return train(MNIST_99_4.module, hp, splits, ctx)


def test_same_seed_gives_identical_weights_and_other_seeds_do_not(mnist):
    a, b, c = (_weights_after_one_epoch(mnist, s) for s in (3, 3, 4))
    assert a.weights_sha256 == b.weights_sha256
    assert a.curves == {**b.curves, "epoch_time_s": a.curves["epoch_time_s"]}
    assert c.weights_sha256 != a.weights_sha256


def test_weights_hash_sees_every_bit():
    state = {"w": torch.zeros(3), "n": torch.tensor(5)}
    flipped = {"w": torch.tensor([0.0, -0.0, 0.0]), "n": torch.tensor(5)}
    assert weights_sha256(state) != weights_sha256(flipped)
    assert weights_sha256(state) != weights_sha256({"w": torch.zeros(1, 3), "n": torch.tensor(5)})


# ---------------------------------------------------------------- selection rules

CURVES = {"epoch": [1, 2, 3, 4], "train_loss": [0.9, 0.5, 0.4, 0.3], "train_acc": [80, 90, 95, 97],
          "val_loss": [0.5, 0.3, 0.3, 0.4], "val_acc": [90.0, 95.0, 95.0, 94.0],
          "test_loss": [0.5, 0.2, 0.1, 0.3], "test_acc": [89.0, 94.0, 96.0, 93.0],
          "lr": [0.1] * 4, "epoch_time_s": [1.0] * 4}


def test_best_test_epoch_is_picked_on_test_and_the_honest_metric_is_not():
    m = summarize(CURVES, "best_test_epoch")
    assert (m["test_acc_selected"], m["selected_epoch"]) == (96.0, 3)
    assert (m["test_acc_honest"], m["honest_epoch"]) == (94.0, 2)   # best val, first of the tie
    assert m["test_acc_final"] == 93.0 and m["train_loss_final"] == 0.3


def test_best_val_rules_keep_the_earliest_of_ties():
    assert summarize(CURVES, "best_val_acc")["selected_epoch"] == 2
    assert summarize(CURVES, "best_val_loss")["selected_epoch"] == 2
    assert summarize(CURVES, "final_epoch")["selected_epoch"] == 4


def test_without_validation_the_honest_metric_is_the_last_epoch():
    curves = {k: v for k, v in CURVES.items() if not k.startswith("val")}
    assert honest_selection("best_test_epoch", has_val=False) == "final_epoch"
    assert summarize(curves, "best_test_epoch")["test_acc_honest"] == 93.0


# ---------------------------------------------------------------- overrides

def test_overrides_are_typed_and_only_for_existing_fields():
    hp, parsed = apply_overrides(MNIST_99_4.hparams, {"epochs": "3", "max_lr": "0.01", "shuffle": "false",
                                                      "mean": "0.5", "train_limit": "none"})
    assert (hp.epochs, hp.max_lr, hp.shuffle, hp.mean, hp.train_limit) == (3, 0.01, False, (0.5,), None)
    assert parsed["epochs"] == 3
    with pytest.raises(OverrideError, match="no field 'epoch'.*epochs"):
        apply_overrides(MNIST_99_4.hparams, {"epoch": "3"})
    with pytest.raises(OverrideError, match="epochs is int"):
        apply_overrides(MNIST_99_4.hparams, {"epochs": "3.5"})
    with pytest.raises(OverrideError, match="epochs must be an integer >= 1"):
        apply_overrides(MNIST_99_4.hparams, {"epochs": "0"})


# ---------------------------------------------------------------- store

def test_records_are_never_overwritten_and_nan_is_stored_as_null(results):
    from tests.records import make_record
    record = make_record("mnist_99_4", 0, 99.0)
    record["metrics"]["test_loss_final"] = float("nan")
    paths = {write_record(results, record) for _ in range(5)}
    assert len(paths) == 5
    for path in paths:
        data = json.loads(path.read_text())             # strict JSON: NaN is stored as null, never as NaN
        assert data["metrics"]["test_loss_final"] is None and data["digest"]
    assert not list((results / "mnist_99_4").glob("*.tmp"))


# ---------------------------------------------------------------- the CI smoke run, as a user runs it

def test_smoke_run_on_real_mnist(tmp_path, real_data_dir):
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench", "run", "--recipe", "mnist_99_4", "--seeds", "1", "--epochs", "1",
           "--train-limit", "2000", "--results", str(out), "--data-dir", str(real_data_dir), "--no-progress"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "overrides: epochs=1, train_limit=2000" in proc.stdout
    (path,) = (out / "mnist_99_4").glob("*.json")
    record = json.loads(path.read_text())
    assert record["canonical"] is False and record["overrides"] == {"epochs": 1, "train_limit": 2000}
    assert record["fingerprint"] == MNIST_99_4.fingerprint and record["params"] == 15_578
    assert record["epochs_run"] == 1 and len(record["curves"]["test_acc"]) == 1
    assert record["metrics"]["test_acc_final"] > 20.0    # one epoch on 2000 images is well above chance
    assert record["env"]["torch"] == torch.__version__ and record["weights_sha256"]
    assert not list((out / "mnist_99_4" / "partial").glob("*.pt")), "a finished run leaves no checkpoint"


def test_speed_prints_both_pipelines_and_the_ratio_last(fake_data, capsys):
    from bench.cli.main import main
    assert main(["speed", "--recipe", "mnist_99_4", "--device", "cpu", "--data-dir", "unused"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("fast ") for line in lines) and any(line.startswith("faithful ") for line in lines)
    last = lines[-1]
    assert last.startswith("per epoch, faithful/fast: ") and float(last.split(": ")[1].rstrip("x")) > 0


def test_speed_refuses_a_recipe_without_the_torch_engine(capsys):
    from bench.cli.main import main
    assert main(["speed", "--recipe", "numpy_cnn", "--device", "cpu"]) == 2
    assert "outside the torch engine" in capsys.readouterr().err
