"""pytest-benchmark timings: the augmentation step each way and one training step per recipe.

Skipped in the normal test run (`--benchmark-skip` in pyproject); run them with
`python -m pytest tests/benchmarks --benchmark-only` and compare runs with `--benchmark-compare`.
They measure, they assert nothing about time.
"""
from __future__ import annotations

import math

import pytest
import torch

from bench.contract import registry
from bench.training.augment import augment_batch, torchvision_pipeline
from bench.training.determinism import seed_everything
from bench.training.engine import ImageDataset
from bench.training.splits import Split
from tests.conftest import synthetic_arrays

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
TORCH_RECIPES = [r.name for r in registry.all_recipes() if r.uses_engine]
AUGMENTED = [r.name for r in registry.all_recipes() if r.uses_engine and r.module.augmentations(r.hparams)]


def _batch(hp, n):
    channels, size = (3, 32) if hp.dataset == "cifar10" else (1, 28)
    a = synthetic_arrays(n_train=n, n_test=1, channels=channels, size=size)
    return torch.from_numpy(a["train_x"]).to(DEVICE), torch.from_numpy(a["train_y"]).to(DEVICE)


@pytest.mark.parametrize("name", AUGMENTED)
def test_augment_batch_fast(benchmark, name):
    r = registry.load(name)
    hp = r.hparams
    x, _ = _batch(hp, hp.batch_size)
    transforms, gen = r.module.augmentations(hp), seed_everything(0, DEVICE)["augment"]
    out = benchmark(lambda: augment_batch(x, transforms, hp.mean, hp.std, gen).sum().item())
    assert math.isfinite(out)


@pytest.mark.parametrize("name", AUGMENTED)
def test_augment_batch_faithful(benchmark, name):
    """The same batch through the documents' per-image PIL pipeline (what a DataLoader does)."""
    r = registry.load(name)
    hp = r.hparams
    x, y = _batch(hp, hp.batch_size)
    data = ImageDataset(Split(x.cpu(), y.cpu()), torchvision_pipeline(r.module.augmentations(hp), hp.mean, hp.std))
    torch.manual_seed(0)
    out = benchmark(lambda: torch.stack([data[i][0] for i in range(len(data))]).to(DEVICE).sum().item())
    assert math.isfinite(out)


@pytest.mark.parametrize("name", TORCH_RECIPES)
def test_training_step(benchmark, name):
    """One optimizer step on one batch of the recipe's size (full-batch recipes: 1,000 images)."""
    r = registry.load(name)
    hp = r.hparams
    seed_everything(0, DEVICE)
    model = r.module.build_model(hp).to(DEVICE)
    optimizer = r.module.build_optimizer(model, hp)
    loss_fn = r.module.build_loss(hp)
    x, y = _batch(hp, min(hp.batch_size, 1000))
    x = x.float() / 255

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    model.train()
    assert math.isfinite(benchmark(step))
