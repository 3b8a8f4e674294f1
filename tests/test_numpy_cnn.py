"""The NumPy recipe: its hand-written backward against torch autograd, and its own train() loop
(curves, determinism, resume) on small synthetic data."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.training.determinism import seed_everything, stream_seed
from bench.training.engine import RunContext
from bench.training.splits import make_splits
from recipes import numpy_cnn
from tests.conftest import synthetic_arrays

CURVE_KEYS = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr",
              "epoch_time_s"}


def torch_forward(params, x, mask):
    """The document's Net in torch, on the NumPy model's weights and dropout mask."""
    z1 = F.conv2d(x, params["conv.weight"], params["conv.bias"])
    a1 = F.gelu(z1, approximate="tanh").flatten(1)
    a2 = F.gelu(F.linear(a1, params["fc1.weight"], params["fc1.bias"]), approximate="tanh") * mask
    return F.linear(a2, params["fc2.weight"], params["fc2.bias"])


def test_gradients_match_torch_autograd():
    hp = numpy_cnn.HPARAMS
    model = numpy_cnn.build_model(hp, np.random.default_rng(1), dtype=np.float64)
    rng = np.random.default_rng(2)
    x = rng.random((8, 1, 28, 28))
    y = rng.integers(0, 10, 8)
    logits = model.forward(x, np.random.default_rng(3))
    loss, dlogits, _ = numpy_cnn.softmax_cross_entropy(logits, y)
    grads = model.backward(dlogits)
    assert model.cache["mask"] is not None and (model.cache["mask"] == 0).any()

    params = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    out = torch_forward(params, torch.tensor(x), torch.tensor(model.cache["mask"]))
    ref = F.cross_entropy(out, torch.tensor(y))
    ref.backward()
    np.testing.assert_allclose(logits, out.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    assert set(grads) == set(params)
    for k, p in params.items():
        assert grads[k].shape == p.shape and grads[k].dtype == np.float64
        np.testing.assert_allclose(grads[k], p.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=k)


def test_model_counts_the_declared_parameters_and_evaluates_without_dropout():
    model = numpy_cnn.build_model(numpy_cnn.HPARAMS).eval()
    assert model.num_params() == 297_790
    x = np.random.default_rng(0).random((3, 1, 28, 28))
    out = model.forward(x)
    assert out.shape == (3, 10) and out.dtype == np.float64 and model.cache["mask"] is None
    np.testing.assert_array_equal(out, model.forward(x))


def _run(seed, epochs, checkpoint=None, key="k"):
    hp = dataclasses.replace(numpy_cnn.HPARAMS, epochs=epochs, val_size=64, batch_size=64)
    arrays = synthetic_arrays(n_train=256, n_test=64)
    gens = seed_everything(seed, torch.device("cpu"))
    splits = make_splits(arrays, hp, gens["split"], torch.device("cpu"))
    ctx = RunContext("numpy_cnn", seed, torch.device("cpu"), gens, checkpoint=checkpoint, key=key, progress=False)
    return numpy_cnn.train(hp, splits, ctx)


def test_two_epochs_give_finite_curves_with_the_engine_keys():
    result = _run(0, 2)
    assert set(result.curves) == CURVE_KEYS
    assert result.curves["epoch"] == [1, 2] and result.epochs_run == 2
    for key, values in result.curves.items():
        assert len(values) == 2 and all(math.isfinite(v) for v in values), f"{key}: {values}"
    assert result.curves["lr"] == [10.0, 10.0]
    assert all(0 <= v <= 100 for k in ("train_acc", "val_acc", "test_acc") for v in result.curves[k])


def test_same_seed_same_weights_other_seed_differs():
    a, b, c = _run(0, 1), _run(0, 1), _run(1, 1)
    assert a.weights_sha256 == b.weights_sha256
    assert a.curves["train_loss"] == b.curves["train_loss"]
    assert c.weights_sha256 != a.weights_sha256


def test_resume_ends_bitwise_identical(tmp_path):
    checkpoint = tmp_path / "partial" / "run.pt"
    first = _run(3, 2, checkpoint)
    assert checkpoint.exists() and first.epochs_run == 2
    resumed = _run(3, 4, checkpoint)            # a fresh context: every RNG reseeded, then restored
    whole = _run(3, 4)
    assert resumed.resumed_from == 2
    assert resumed.weights_sha256 == whole.weights_sha256
    assert {k: v for k, v in resumed.curves.items() if k != "epoch_time_s"} == \
           {k: v for k, v in whole.curves.items() if k != "epoch_time_s"}


def test_a_checkpoint_of_another_run_is_ignored(tmp_path):
    checkpoint = tmp_path / "run.pt"
    _run(3, 1, checkpoint, key="other")
    assert _run(3, 1, checkpoint).resumed_from == 0


def test_plateau_halves_lr_and_early_stop_ends_the_run(monkeypatch):
    """With nothing to learn (constant validation accuracy) the schedule alone decides."""
    monkeypatch.setattr(numpy_cnn, "_evaluate", lambda model, x, y, batch, clip: (1.0, 50.0, 32))
    hp = dataclasses.replace(numpy_cnn.HPARAMS, epochs=50, val_size=64, batch_size=128, plateau_patience=2,
                             early_stop_patience=5)
    gens = seed_everything(0, torch.device("cpu"))
    splits = make_splits(synthetic_arrays(n_train=192, n_test=64), hp, gens["split"], torch.device("cpu"))
    result = numpy_cnn.train(hp, splits, RunContext("numpy_cnn", 0, torch.device("cpu"), gens, progress=False))
    # epoch 1 sets the best; epochs 2..6 are 5 without improvement: stop after epoch 6;
    # the 3rd epoch without improvement (epoch 4) halves the lr
    assert result.curves["epoch"] == [1, 2, 3, 4, 5, 6] and result.epochs_run == 6
    assert result.curves["lr"] == [10.0, 10.0, 10.0, 5.0, 5.0, 5.0]
    assert result.extra["early_stopped"] is True


def test_init_uses_its_own_stream_and_each_reading_its_law():
    torch_init = dataclasses.replace(numpy_cnn.HPARAMS, init="torch")
    a = numpy_cnn.build_model(torch_init, np.random.default_rng(stream_seed(5, "init")))
    b = numpy_cnn.build_model(torch_init, np.random.default_rng(stream_seed(5, "init")))
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
        bound = 1 / math.sqrt(a.params[k.replace("bias", "weight")][0].size)
        assert np.abs(a.params[k]).max() <= bound
    author = numpy_cnn.build_model(numpy_cnn.HPARAMS, np.random.default_rng(0))   # every tensor ~ N(0, 0.01^2)
    values = np.concatenate([p.ravel() for p in author.params.values()])
    assert abs(values.mean()) < 1e-3 and values.std() == pytest.approx(0.01, rel=0.01)


def test_unsupported_override_is_bad_input_exit_2(tmp_path, capsys):
    from bench.cli.main import main
    rc = main(["run", "--recipe", "numpy_cnn", "--set", "weight_decay=0.1", "--epochs", "1", "--train-limit", "64",
               "--results", str(tmp_path / "r"), "--data-dir", str(tmp_path / "d"), "--no-progress"])
    assert rc == 2
    assert "numpy_cnn does not implement weight_decay" in capsys.readouterr().err
    assert not list((tmp_path / "r").rglob("*.json"))


# ---------------------------------------------------------------- the author's arithmetic (the canonical reading)

def test_clipped_loss_matches_autograd_of_the_authors_backward():
    """-log(clip(p_y)) forward; backward through 1/clip(p_y) and the full softmax Jacobian (no clip mask)."""
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 4, (16, 10))               # confident rows: some p_y clipped at both ends
    y = rng.integers(0, 10, 16)
    loss, grad, _ = numpy_cnn.softmax_cross_entropy(logits, y, clip=0.01)
    z = torch.tensor(logits, requires_grad=True)
    p_true = torch.softmax(z, 1)[torch.arange(16), torch.tensor(y)]
    clipped = p_true + (p_true.clamp(0.01, 0.99) - p_true).detach()     # value clipped, gradient 1/clip(p)
    ref = (-torch.log(clipped)).mean()
    ref.backward()
    outside = ((p_true < 0.01) | (p_true > 0.99)).sum().item()
    assert outside >= 2, "the test must exercise the clip"
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(grad, z.grad.numpy(), rtol=1e-10, atol=1e-14)
    unclipped = numpy_cnn.softmax_cross_entropy(logits, y)[1]
    assert not np.allclose(grad, unclipped)


def test_author_step_is_lr_over_batch_times_the_mean_gradient():
    hp = dataclasses.replace(numpy_cnn.HPARAMS, epochs=1, val_size=64, batch_size=192, dropout=0.0)
    gens = seed_everything(7, torch.device("cpu"))
    splits = make_splits(synthetic_arrays(n_train=256, n_test=64), hp, gens["split"], torch.device("cpu"))
    x, y = splits.train.x.numpy().astype(np.float64), splits.train.y.numpy()     # raw 0..255 pixels
    model = numpy_cnn.build_model(hp, np.random.default_rng(stream_seed(7, "init")))
    before = {k: v.copy() for k, v in model.params.items()}
    _, dlogits, _ = numpy_cnn.softmax_cross_entropy(model.forward(x, np.random.default_rng(0)), y, 0.01)
    grads = model.backward(dlogits)
    result = numpy_cnn.train(hp, splits, RunContext("numpy_cnn", 7, torch.device("cpu"), gens, progress=False))
    for k, g in grads.items():      # one full batch: w - (10 / 192) * mean gradient, whatever the order
        np.testing.assert_allclose(result.state[k], before[k] - 10.0 / 192 * g, rtol=1e-9, atol=1e-12, err_msg=k)


def test_author_order_reapplies_one_permutation_and_repeats_dropout_masks(monkeypatch):
    orders, masks = [], []
    real_batches, real_forward = numpy_cnn._epoch_batches, numpy_cnn.NumpyCNN.forward

    def batches(train_split, order, hp, ctx):
        orders.append(order.copy())
        return real_batches(train_split, order, hp, ctx)

    def forward(self, x, drop_rng=None):
        out = real_forward(self, x, drop_rng)
        if self.training:
            masks.append(self.cache["mask"].copy())
        return out

    monkeypatch.setattr(numpy_cnn, "_epoch_batches", batches)
    monkeypatch.setattr(numpy_cnn.NumpyCNN, "forward", forward)
    hp = dataclasses.replace(numpy_cnn.HPARAMS, epochs=3, val_size=64, batch_size=96)
    gens = seed_everything(2, torch.device("cpu"))
    splits = make_splits(synthetic_arrays(n_train=256, n_test=64), hp, gens["split"], torch.device("cpu"))
    numpy_cnn.train(hp, splits, RunContext("numpy_cnn", 2, torch.device("cpu"), gens, progress=False))
    first, second, third = orders
    assert not np.array_equal(first, np.arange(len(first)))
    np.testing.assert_array_equal(second, first[first])          # order_e = order_{e-1}[P], P = order_1
    np.testing.assert_array_equal(third, second[first])
    per_epoch = len(masks) // 3
    for j in range(per_epoch):                                   # batch j: the same mask every epoch
        np.testing.assert_array_equal(masks[j], masks[per_epoch + j])
    assert not np.array_equal(masks[0], masks[1])
