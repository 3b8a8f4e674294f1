"""The document's train/validation/test protocol on the run's device: which images train, which
validate, which test, and the smoke-run limits. The same for every recipe and pipeline."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from bench.training.data import DataError


@dataclass
class Split:
    x: torch.Tensor     # uint8 (N, C, H, W) on the run's device
    y: torch.Tensor     # int64 (N,)

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Splits:
    train: Split
    val: Optional[Split]
    test: Split


def make_splits(arrays: dict[str, np.ndarray], hp, split_gen, device) -> Splits:
    """The document's train/validation/test protocol, then the smoke-run limits.

    "official": no validation; "tail": the last val_size training images (fixed);
    "random": a seeded permutation, first part train, last val_size validation
    (as torch.utils.data.random_split orders it).
    """
    x, y = torch.from_numpy(arrays["train_x"]), torch.from_numpy(arrays["train_y"])
    n = len(y)
    if hp.split != "official" and not 0 < hp.val_size < n:
        raise DataError(f"the data holds {n:,} training images: too few for a validation split of {hp.val_size:,}")
    if hp.split == "official":
        train_idx, val_idx = torch.arange(n), None
    elif hp.split == "tail":
        train_idx, val_idx = torch.arange(n - hp.val_size), torch.arange(n - hp.val_size, n)
    elif hp.split == "random":
        perm = torch.randperm(n, generator=split_gen)
        train_idx, val_idx = perm[: n - hp.val_size], perm[n - hp.val_size:]
    else:
        raise DataError(f"unknown split {hp.split!r}: use official, tail or random")
    if hp.train_limit is not None:
        train_idx = train_idx[: hp.train_limit]

    def part(xs, ys, idx=None):
        if idx is not None:
            xs, ys = xs[idx], ys[idx]
        if hp.eval_limit is not None and idx is not train_idx:
            xs, ys = xs[: hp.eval_limit], ys[: hp.eval_limit]
        return Split(xs.contiguous().to(device), ys.contiguous().to(device))

    test = part(torch.from_numpy(arrays["test_x"]), torch.from_numpy(arrays["test_y"]))
    return Splits(part(x, y, train_idx), None if val_idx is None else part(x, y, val_idx), test)
