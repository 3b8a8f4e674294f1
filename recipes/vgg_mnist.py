"""VGG-style CNN on MNIST, AdamW + cosine — source: seeds/001_6e0d6cd5968aa22c.txt, second section (blog).
Claimed on: unstated hardware, 100 epochs, random 4:1 train/validation split.
"""
from dataclasses import dataclass

import torch
from torch import nn

from bench.augment import RandomCrop, RandomHorizontalFlip
from bench.layers import GlobalAvgPool
from bench.recipe import Assumption, Claim, ExactParams, Hparams, OutputShape, Schedule


@dataclass(frozen=True, kw_only=True)
class VggMnistHparams(Hparams):
    in_channels: int = 1
    crop_padding: int = 2      # RandomCrop(28, padding) in pixels
    flip_p: float = 0.5        # RandomHorizontalFlip probability


HPARAMS = VggMnistHparams(
    dataset="mnist", split="random", val_size=12_000, epochs=100, batch_size=128, lr=1e-3, weight_decay=0.01,
    mean=(0.1307,), std=(0.3081,), selection="final_epoch",
)

CLAIMS = [
    Claim("val_acc_final", 99.30, "验证集准确率 | 99.30%", selection="final_epoch", measured_on="val",
          headline=True),
    Claim("train_loss_final", 3.87e-07, "训练集误差 | 3.87e-07", selection="final_epoch", measured_on="train",
          unit="", higher_is_better=False),
    Claim("val_loss_final", 4.24e-04, "验证集误差 | 4.24e-04", selection="final_epoch", measured_on="val",
          unit="", higher_is_better=False,
          note="a mean cross-entropy of 4e-4 is hard to square with 0.7% validation errors"),
]

ASSUMPTIONS = [
    Assumption("split", "random 4:1 split of the 60k training set (48k/12k), seeded per run", "stated"),
    Assumption("model", "conv1 1->64 (no bias), BN, ReLU; three layers of conv-BN-ReLU-conv-BN-ReLU-MaxPool2d(2) "
               "(64->128->256->512); global average pool; Linear(512, 10)", "stated"),
    Assumption("global pool", "x.mean((2, 3)) instead of AdaptiveAvgPool2d((1, 1))", "deviation",
               "identical for a 1x1 output, and deterministic on CUDA (AdaptiveAvgPool2d's backward is not)"),
    Assumption("optimizer", "AdamW(lr=1e-3), default weight decay 0.01, batch 128, 100 epochs", "stated"),
    Assumption("scheduler", "CosineAnnealingLR(T_max=100) stepped once per epoch", "assumed"),
    Assumption("augmentation", "RandomCrop(28, padding=2), RandomHorizontalFlip(0.5), Normalize(0.1307, 0.3081)",
               "assumed", "the text names random crop, random flip and normalization without magnitudes"),
    Assumption("selection", "the claimed numbers are the final epoch's", "assumed"),
    Assumption("loss", "CrossEntropyLoss", "assumed"),
    Assumption("shuffle", "training set reshuffled every epoch", "assumed"),
]


def _layer(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
        nn.MaxPool2d(2),
    )


def build_model(hp: VggMnistHparams) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(hp.in_channels, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        _layer(64, 128), _layer(128, 256), _layer(256, 512),
        GlobalAvgPool(), nn.Linear(512, 10),
    )


CONSTRAINTS = [ExactParams(4_656_074), OutputShape((1, 1, 28, 28), (1, 10))]


def build_optimizer(model, hp):
    return torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)


def build_scheduler(optimizer, hp, steps_per_epoch):
    return Schedule(torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=hp.epochs), "epoch")


def build_loss(hp):
    return nn.CrossEntropyLoss()


def augmentations(hp):
    return [RandomCrop(28, hp.crop_padding), RandomHorizontalFlip(hp.flip_p)]
