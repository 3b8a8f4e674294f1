"""Shared fixtures: small synthetic datasets in the real formats, and a results folder."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from bench import data as data_layer

ROOT = Path(__file__).resolve().parent.parent


def synthetic_arrays(n_train=256, n_test=128, channels=1, size=28, seed=0) -> dict[str, np.ndarray]:
    """Random uint8 images whose label is readable from the image (so a step can learn)."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 60, (n, channels, size, size), dtype=np.uint8)
        for i, label in enumerate(y):
            x[i, :, 2 + 2 * label: 4 + 2 * label, 4:size - 4] = 255
        out[f"{split}_x"], out[f"{split}_y"] = x, y.astype(np.int64)
    return out


@pytest.fixture
def fake_data(monkeypatch):
    """Make every dataset load return small synthetic arrays of the right shape."""
    def load(dataset, data_dir, log=print):
        if dataset == "cifar10":
            return synthetic_arrays(channels=3, size=32)
        return synthetic_arrays()
    monkeypatch.setattr(data_layer, "load", load)
    return load


@pytest.fixture
def results(tmp_path) -> Path:
    path = tmp_path / "results"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """Where real MNIST lives (or will be fetched to, as a user's first run would)."""
    return Path(os.environ.get("BENCH_DATA_DIR", ROOT / "data"))
