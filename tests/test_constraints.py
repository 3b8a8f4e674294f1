"""Constraints: each factory in bench/contract/recipe.py must fail where its property is broken, a check that
returns anything but a bool is an error, and they are judged on the model a run actually trains."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench.contract import registry
from bench.contract.recipe import (
    Constraint,
    ConvLayers,
    DropoutRate,
    ExactParams,
    MaxParams,
    OutputShape,
    count_params,
    declared_params,
)


def linear(n_in=3, n_out=2, bias=True) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, n_out, bias=bias))   # n_in*n_out (+ n_out) parameters


def passes(constraint, model) -> bool:
    ok, detail = constraint(model)
    assert isinstance(ok, bool) and isinstance(detail, str) and detail
    return ok


# ---------------------------------------------------------------- parameter counts

def test_max_params_is_strictly_fewer():
    model = linear()                          # 8 parameters
    assert count_params(model) == 8
    assert passes(MaxParams(9), model)
    assert not passes(MaxParams(8), model)    # "fewer than 8": 8 is not
    assert not passes(MaxParams(5), model)
    assert "8 parameters" in MaxParams(5)(model)[1]


def test_max_params_counts_only_trainable_parameters():
    model = linear()
    model[1].bias.requires_grad_(False)       # 6 trainable
    assert passes(MaxParams(7), model) and not passes(MaxParams(6), model)


def test_exact_params_fails_on_either_side():
    model = linear()
    assert passes(ExactParams(8), model)
    assert not passes(ExactParams(7), model) and not passes(ExactParams(9), model)
    assert ExactParams(8).expected == 8 and declared_params([MaxParams(9), ExactParams(8)]) == 8
    assert declared_params([MaxParams(9)]) is None


# ---------------------------------------------------------------- output shape

def test_output_shape_fails_on_a_wrong_shape_and_leaves_the_rng_alone():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 10), nn.Dropout(0.5))
    state = torch.get_rng_state()
    assert passes(OutputShape((2, 1, 2, 2), (2, 10)), model)
    assert not passes(OutputShape((2, 1, 2, 2), (2, 9)), model)
    assert not passes(OutputShape((2, 1, 2, 2), (1, 10)), model)
    assert not passes(OutputShape((2, 1, 2, 2), (2, 10, 1)), model)
    assert torch.equal(torch.get_rng_state(), state)


# ---------------------------------------------------------------- dropout

@pytest.mark.parametrize("layer", [nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                                   nn.FeatureAlphaDropout])
def test_dropout_rate_sees_every_kind_of_dropout(layer):
    right = nn.Sequential(nn.Dropout(0.4), layer(0.4))
    wrong = nn.Sequential(nn.Dropout(0.4), layer(0.3))
    assert passes(DropoutRate(0.4), right)
    assert not passes(DropoutRate(0.4), wrong)
    assert "0.3" in DropoutRate(0.4)(wrong)[1]


def test_dropout_rate_fails_without_any_dropout_and_on_a_nested_wrong_rate():
    assert not passes(DropoutRate(0.4), linear())
    nested = nn.Sequential(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Dropout2d(0.25)), nn.Dropout(0.4))
    assert not passes(DropoutRate(0.4), nested)


# ---------------------------------------------------------------- conv layers

SPEC = [(1, 4, 3, 1), (4, 8, 3, 1)]


def convs(*layers) -> nn.Module:
    return nn.Sequential(*layers)


def test_conv_layers_pass_on_the_declared_stack():
    assert passes(ConvLayers(SPEC), convs(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1)))


@pytest.mark.parametrize("second", [
    nn.Conv2d(4, 8, 3, padding=1, stride=2),
    nn.Conv2d(4, 8, 3, padding=1, dilation=2),
    nn.Conv2d(4, 8, 3, padding=1, groups=2),
    nn.Conv2d(4, 8, (3, 5), padding=1),
    nn.Conv2d(4, 8, 3, padding=(1, 0)),
    nn.Conv2d(4, 8, 3, padding=0),
    nn.Conv2d(4, 16, 3, padding=1),
], ids=["stride", "dilation", "groups", "non-square kernel", "non-square padding", "padding", "channels"])
def test_conv_layers_catch_every_difference(second):
    model = convs(nn.Conv2d(1, 4, 3, padding=1), second)
    assert not passes(ConvLayers(SPEC), model)


def test_conv_layers_catch_order_and_count_and_accept_explicit_extras():
    a, b = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 8, 3, padding=1)
    assert not passes(ConvLayers(SPEC), convs(b, a))
    assert not passes(ConvLayers(SPEC), convs(a))
    assert not passes(ConvLayers(SPEC), convs(a, b, nn.Conv2d(8, 8, 3, padding=1)))
    strided = convs(a, nn.Conv2d(4, 8, (3, 5), padding=(1, 2), stride=2, dilation=1, groups=2))
    assert passes(ConvLayers([SPEC[0], (4, 8, (3, 5), (1, 2), 2, 1, 2)]), strided)


# ---------------------------------------------------------------- a check must return a bool

@pytest.mark.parametrize("value", ["ok", 1, None, torch.tensor(True), [True]])
def test_a_check_that_returns_no_bool_is_an_error(value):
    with pytest.raises(TypeError, match="must return a bool"):
        Constraint("sloppy", lambda model: (value, "detail"))(linear())


def test_a_numpy_bool_is_a_bool():
    assert Constraint("numpy", lambda model: (np.bool_(False), "detail"))(linear()) == (False, "detail")


def test_registry_reports_each_constraint(monkeypatch):
    recipe = registry.load("mnist_99_4")
    model = recipe.build_model()
    monkeypatch.setattr(recipe.module, "CONSTRAINTS", [ExactParams(15_578), ExactParams(1), DropoutRate(0.4)])
    assert [c["ok"] for c in recipe.check_constraints(model)] == [True, False, True]
    monkeypatch.setattr(recipe.module, "CONSTRAINTS", [Constraint("sloppy", lambda m: ("ok", ""))])
    with pytest.raises(TypeError):
        recipe.check_constraints(model)


# ---------------------------------------------------------------- judged on the model that is trained

def only_record(results: Path, recipe: str) -> dict:
    (path,) = (Path(results) / recipe).glob("*.json")
    return json.loads(path.read_text())


def test_a_smoke_run_records_its_own_model_and_the_broken_constraint(tmp_path, real_data_dir, capsys):
    """--set hidden=512 trains a 569,229-parameter model: the record says so, not the canonical 4,242,957."""
    from bench.cli.main import main
    from bench.training.numerics import one_thread

    results = tmp_path / "results"
    with one_thread():
        code = main(["run", "--recipe", "ultimate_mlp", "--set", "hidden=512", "--stop-after", "1", "--train-limit",
                     "256", "--eval-limit", "256", "--device", "cpu", "--results", str(results), "--data-dir",
                     str(real_data_dir), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "note: this smoke run's model breaks 'exactly 4,242,957 parameters' (569,229 parameters" in out
    record = only_record(results, "ultimate_mlp")
    assert record["params"] == 569_229 and record["metrics"]["params"] == 569_229
    by_name = {c["name"]: c for c in record["constraints"]}
    assert by_name["exactly 4,242,957 parameters"]["ok"] is False
    assert "569,229" in by_name["exactly 4,242,957 parameters"]["detail"]
    assert by_name["output shape (2, 10) for input (2, 1, 28, 28)"]["ok"] is True
    assert record["canonical"] is False and record["epochs_run"] == 1


def test_a_canonical_run_of_a_model_that_breaks_a_constraint_exits_2_and_writes_nothing(tmp_path, monkeypatch,
                                                                                        fake_data, capsys):
    from bench.cli.main import main

    recipe = registry.load("mnist_99_4")
    monkeypatch.setattr(recipe.module, "CONSTRAINTS", [MaxParams(20_000), ExactParams(15_579)])
    results = tmp_path / "results"
    code = main(["run", "--recipe", "mnist_99_4", "--device", "cpu", "--results", str(results), "--no-progress",
                 "--data-dir", str(tmp_path / "no-data")])
    err = capsys.readouterr().err
    assert code == 2
    assert "canonical model breaks its constraint 'exactly 15,579 parameters'" in err.strip().splitlines()[-1]
    assert not results.exists() and not (tmp_path / "no-data").exists()
