"""Tests generated from the registry: every recipe imports, declares a valid schema, builds
the model it declares, runs a forward pass and a training step on small synthetic data."""
from __future__ import annotations

import math
import re

import pytest
import torch

from bench.contract import frozen, registry
from bench.contract.recipe import (
    ASSUMPTION_SOURCES,
    CLAIM_SELECTIONS,
    MEASURED_ON,
    SELECTIONS,
    Assumption,
    Claim,
    apply_overrides,
)
from bench.records.selection import summarize
from bench.training.data import LOADERS
from bench.training.determinism import seed_everything
from bench.training.engine import RunContext, train
from bench.training.splits import make_splits
from tests.conftest import synthetic_arrays

NAMES = registry.names()
RECORD_METRICS = {"params", "wall_time_s"}


def test_every_source_document_has_its_recipes():
    expected = {"ultimate_mlp", "numpy_cnn", "vgg_mnist", "vgg_cifar10", "lenet_sgd", "resnet_cifar10",
                "mnist_99_4", "fc_sigmoid", "fc_sigmoid_bn"}
    assert expected <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_schema(name):
    r = registry.load(name)
    assert re.search(r"seeds/\d{3}_[0-9a-f]{16}\.txt", r.source), "the docstring's first line names its source"
    hp = r.hparams
    assert hp.dataset in LOADERS and hp.selection in SELECTIONS
    assert r.claims and sum(c.headline for c in r.claims) == 1
    for c in r.claims:
        assert isinstance(c, Claim) and c.quote.strip() and isinstance(c.value, (int, float))
        assert c.selection in CLAIM_SELECTIONS and c.measured_on in MEASURED_ON
        if c.copied_from:
            assert c.copied_from in NAMES and c.copied_from != name
    assert r.headline.selection != "none"
    for a in r.assumptions:
        assert isinstance(a, Assumption) and a.name and a.value and a.source in ASSUMPTION_SOURCES
    assert len({a.name for a in r.assumptions}) == len(r.assumptions), "assumption names must be unique"
    assert r.declared_params is not None, "every recipe declares its parameter count with ExactParams"


@pytest.mark.parametrize("name", NAMES)
def test_claims_name_metrics_a_run_records(name, results):
    r = registry.load(name)
    has_val = r.hparams.split != "official"
    n = 3
    curves = {"epoch": [1, 2, 3], "train_loss": [1.0] * n, "train_acc": [50.0] * n, "test_loss": [1.0] * n,
              "test_acc": [50.0] * n, "lr": [0.1] * n, "epoch_time_s": [1.0] * n}
    if has_val:
        curves.update(val_loss=[1.0] * n, val_acc=[50.0] * n)
    known = set(summarize(curves, r.hparams.selection)) | RECORD_METRICS
    assert {c.metric for c in r.claims} <= known


@pytest.mark.parametrize("name", NAMES)
def test_constraints_hold_and_params_match_declared(name):
    r = registry.load(name)
    model = r.module.build_model(r.hparams)
    for constraint in r.constraints:
        ok, detail = constraint(model)
        assert ok, f"{constraint.name}: {detail}"
    assert r.params == r.declared_params


READINGS = [r.label for r in registry.all_readings()]


@pytest.mark.parametrize("label", READINGS)
def test_frozen_lock_matches(label):
    """A recipe that changes must update recipes/FROZEN.json in the same commit (`python -m bench freeze`)."""
    assert frozen.frozen().get(label) == registry.load(label).fingerprint, \
        f"{label} changed since it was frozen: review the change, then run `python -m bench freeze`"


@pytest.mark.parametrize("label", READINGS)
def test_numerics_match_frozen(label):
    """A change anywhere (recipe or harness) that moves a reading's numbers fails until `bench freeze`,
    which gives the reading a new fingerprint: bitwise on the kind of machine that pinned them, within the
    tolerance on any other CPU (whose rounding legitimately differs)."""
    from bench.training import numerics
    pins = frozen.frozen_entry(label).get("pins")
    assert pins, f"{label} has no pinned numerics: run `python -m bench freeze`"
    result = numerics.check(pins, numerics.probe(registry.load(label)))
    if result.own_pin:
        hint = ("this machine pinned them: a change to the recipe or the harness moved them; if that is intended, "
                "run `python -m bench freeze` (a new fingerprint: older runs stay, unmixed)")
    else:
        hint = ("beyond the rounding of another CPU: a change to what the recipe computes. Do not freeze on this "
                "machine to make this pass (it has no pin of its own); find the change, or freeze where a pin was made")
    assert result.ok, f"{label}: the numbers moved ({'; '.join(result.details)[:300]}); {hint}"


def _tiny(r):
    """The recipe's own hyperparameters with a tiny validation split and one epoch."""
    over = {"epochs": "1"}
    if r.hparams.split != "official":
        over["val_size"] = "64"
    return apply_overrides(r.hparams, over)[0]


@pytest.mark.parametrize("name", NAMES)
def test_forward_pass(name):
    r = registry.load(name)
    hp = r.hparams
    channels, size = (3, 32) if hp.dataset == "cifar10" else (1, 28)
    model = r.module.build_model(hp)
    x = torch.randn(4, channels, size, size)
    if hasattr(model, "eval"):
        model.eval()
    out = model(x) if isinstance(model, torch.nn.Module) else model.forward(x.numpy())
    out = torch.as_tensor(out)
    assert tuple(out.shape) == (4, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_one_training_epoch_stays_finite(name, results):
    r = registry.load(name)
    hp = _tiny(r)
    channels, size = (3, 32) if hp.dataset == "cifar10" else (1, 28)
    arrays = synthetic_arrays(n_train=192, n_test=64, channels=channels, size=size)
    gens = seed_everything(0, torch.device("cpu"))
    splits = make_splits(arrays, hp, gens["split"], torch.device("cpu"))
    ctx = RunContext(name, 0, torch.device("cpu"), gens, progress=False)
    result = train(r.module, hp, splits, ctx) if r.uses_engine else r.module.train(hp, splits, ctx)
    for key, values in result.curves.items():
        assert values and all(math.isfinite(v) for v in values), f"{key}: {values}"
    metrics = summarize(result.curves, hp.selection)
    assert 0 <= metrics["test_acc_honest"] <= 100
