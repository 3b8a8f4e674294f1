"""VGG-style CNN on CIFAR-10, AdamW + cosine — source: recipes/seeds/001_6e0d6cd5968aa22c.txt, third section (blog).
Claimed on: unstated hardware, 200 epochs; its results table is the MNIST section's, number for number.
The model is restated here rather than imported: a recipe never imports another recipe.
"""
from dataclasses import dataclass

import torch
from torch import nn

from bench.contract.recipe import (
    Assumption,
    AtLeast,
    Claim,
    ExactParams,
    Fraction,
    Hparams,
    OneOf,
    OutputShape,
    Schedule,
    Variant,
)
from bench.training.augment import RandomCrop, RandomErasing, RandomHorizontalFlip
from bench.training.layers import GlobalAvgPool


@dataclass(frozen=True, kw_only=True)
class VggCifarHparams(Hparams):
    in_channels: int = 3
    crop_padding: int = 4      # RandomCrop(32, padding) in pixels
    flip_p: float = 0.5        # RandomHorizontalFlip probability
    erasing_p: float = 0.5     # RandomErasing probability (torchvision default box sizes)
    init: str = "author"       # "author": kaiming_normal_(fan_out, relu) convs, N(0, 0.01) linear, zero biases;
                               # "torch": PyTorch's default initialisation

    DOMAINS = {"in_channels": OneOf(3), "crop_padding": AtLeast(0), "flip_p": Fraction(high_open=False), "erasing_p": Fraction(),
               "init": OneOf("author", "torch")}


HPARAMS = VggCifarHparams(
    dataset="cifar10", split="random", val_size=10_000, epochs=200, batch_size=128, lr=1e-3, weight_decay=1e-3,
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), selection="final_epoch",
)

_COPIED = "the same table as the MNIST section: far above what this architecture reaches on CIFAR-10"
CLAIMS = [
    Claim("val_acc_final", 99.30, "验证集准确率 | 99.30%", selection="final_epoch", measured_on="val",
          headline=True, copied_from="vgg_mnist", note=_COPIED),
    Claim("train_loss_final", 3.87e-07, "训练集误差   | 3.87e-07", selection="final_epoch", measured_on="train",
          unit="", higher_is_better=False, copied_from="vgg_mnist",
          not_comparable="the author's printed loss is the sum of per-batch mean losses divided by the number of "
                         "samples (about the mean cross-entropy / 128), not the mean cross-entropy our runs record"),
    Claim("val_loss_final", 4.24e-04, "验证集误差   | 4.24e-04", selection="final_epoch", measured_on="val",
          unit="", higher_is_better=False, copied_from="vgg_mnist",
          not_comparable="the author's printed loss is the sum of per-batch mean losses divided by the number of "
                         "samples (about the mean cross-entropy / 128), not the mean cross-entropy our runs record"),
]

# No DOCUMENT_LOG: the page prints a final results table only (the MNIST section's), no per-epoch numbers.
DOCUMENT_LOG = []

ASSUMPTIONS = [
    Assumption("split", "random 4:1 split of the 50k training set (40k/10k), seeded per run", "stated",
               "随机分割训练集与验证集 (4:1); the seeding is ours"),
    Assumption("model", "as vgg_mnist with 3 input channels", "stated"),
    Assumption("global pool", "x.mean((2, 3)) instead of AdaptiveAvgPool2d((1, 1))", "deviation",
               "identical for a 1x1 output, and deterministic on CUDA (AdaptiveAvgPool2d's backward is not)"),
    Assumption("optimizer", "AdamW(lr=1e-3), batch 128, 200 epochs", "stated",
               "the table's 最大迭代数 (maximum iterations) 200 is read as epochs"),
    Assumption("weight decay", "1e-3", "author_code", "the page names none; the author's script used 1e-3 "
               "(PyTorch's default 0.01 is the variant page_defaults)"),
    Assumption("initialization", "kaiming_normal_(fan_out, relu) conv weights, N(0, 0.01) linear weights, zero "
               "biases; BatchNorm weight 1, bias 0", "author_code", "the page is silent; the author's script"),
    Assumption("scheduler", "CosineAnnealingLR(T_max=200) stepped once per epoch", "assumed",
               "CosineAnnealingLR is stated; its period and stepping are not"),
    Assumption("augmentation", "RandomCrop(32, padding=4), RandomHorizontalFlip(0.5), Normalize(CIFAR-10 "
               "mean/std), then RandomErasing(p=0.5, torchvision defaults, value 0)", "assumed",
               "the text names random crop, flip, occlusion and normalization without magnitudes"),
    Assumption("normalization", "mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616)", "assumed"),
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


def _init(model: nn.Module) -> None:
    """The author's script: kaiming normal (fan_out) conv weights, N(0, 0.01) linear weights, zero biases."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


VARIANTS = [
    Variant("page_defaults", {"weight_decay": 0.01, "init": "torch"},
            assumptions=(Assumption("weight decay", "0.01 (AdamW's default)", "assumed",
                                    "the page names no weight decay; a reader without the script takes the default"),
                         Assumption("initialization", "PyTorch defaults", "assumed", "the page does not say")),
            why="the page alone: PyTorch's defaults where it is silent, instead of the author's script"),
]


def build_model(hp: VggCifarHparams) -> nn.Module:
    model = nn.Sequential(
        nn.Conv2d(hp.in_channels, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        _layer(64, 128), _layer(128, 256), _layer(256, 512),
        GlobalAvgPool(), nn.Linear(512, 10),
    )
    if hp.init == "author":
        _init(model)
    return model


CONSTRAINTS = [ExactParams(4_657_226), OutputShape((1, 3, 32, 32), (1, 10))]


def build_optimizer(model, hp):
    return torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)


def build_scheduler(optimizer, hp, steps_per_epoch):
    return Schedule(torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=hp.epochs), "epoch")


def build_loss(hp):
    return nn.CrossEntropyLoss()


def augmentations(hp):
    return [RandomCrop(32, hp.crop_padding), RandomHorizontalFlip(hp.flip_p), RandomErasing(p=hp.erasing_p)]
