"""Shared fixtures: small synthetic datasets in the real formats, and a results folder."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bench.training import data as data_layer
from bench.training.numerics import synthetic_arrays  # noqa: F401  (the tests' synthetic data)

ROOT = Path(__file__).resolve().parent.parent

# The tests' runs name HEAD, so that they are canonical while a developer has uncommitted edits (a run of
# uncommitted code is never canonical: tests/test_hostile.py checks that with this unset); subprocesses inherit it.
_HEAD = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
if _HEAD:
    os.environ.setdefault("BENCH_GIT_COMMIT", _HEAD)


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
