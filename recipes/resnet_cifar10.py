"""ResNet-style CNN on CIFAR-10, SGD + ReduceLROnPlateau — source: recipes/seeds/002_84b04945752c13ec.txt, 2nd section.
One basic block per stage.
Claimed on: an RTX 4060, 68 epochs plus "several" resumed 5-epoch runs whose count is unstated.
"""
from dataclasses import dataclass

import torch
from torch import nn

from bench.contract.recipe import (
    Assumption,
    AtLeast,
    Between,
    Claim,
    ExactParams,
    Fraction,
    Hparams,
    OutputShape,
    Schedule,
)
from bench.training.augment import Cutout, RandomCrop, RandomHorizontalFlip
from bench.training.layers import GlobalAvgPool


@dataclass(frozen=True, kw_only=True)
class ResnetCifarHparams(Hparams):
    momentum: float = 0.0          # SGD momentum (unstated)
    plateau_patience: int = 1      # ReduceLROnPlateau patience: the lr is cut at the 2nd epoch without a lower val loss
    plateau_factor: float = 0.5    # lr multiplier on a plateau
    crop_padding: int = 4          # RandomCrop(32, padding) in pixels
    flip_p: float = 0.5            # RandomHorizontalFlip probability
    cutout: int = 3                # side of the one square Cutout hole, in pixels

    DOMAINS = {"momentum": Fraction(), "plateau_patience": AtLeast(0), "plateau_factor": Between(0, 1),
               "crop_padding": AtLeast(0), "flip_p": Fraction(high_open=False), "cutout": AtLeast(1)}


HPARAMS = ResnetCifarHparams(
    dataset="cifar10", split="random", val_size=10_000, epochs=68, batch_size=128, lr=0.05,
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), selection="best_val_loss",
)

CLAIMS = [
    Claim("test_acc_selected", 94.70, "测试集最终准确率 (Accuracy): 94.70%", selection="best_val_loss",
          headline=True, note="after 68 epochs and an unstated number of resumed 5-epoch runs"),
]

# No DOCUMENT_LOG: the page prints only the final test accuracy of the kept checkpoint, no per-epoch numbers.
DOCUMENT_LOG = []

ASSUMPTIONS = [
    Assumption("split", "50k training set split into 40k train / 10k validation (random, seeded per run)", "stated",
               "'50000 张图片抽 10000 张作验证集' (draw 10,000 of the 50,000); the seeding is ours"),
    Assumption("model", "stem conv 3->64 at 32x32; four layers, each Conv1+bn+relu + Conv2+bn, to (64, 32, 32), "
               "(128, 16, 16), (256, 8, 8), (512, 4, 4); average pool to (512, 1, 1); Linear(512, 10)", "stated",
               "the page's layer list with its shapes; it names no kernel size and no shortcut"),
    Assumption("stem", "3x3 conv pad 1 (no bias) -> BN -> ReLU", "assumed",
               "the page gives only the shapes; with the blocks below it gives the 4,903,242 parameters of RECIPES.md"),
    Assumption("blocks", "ResNet basic blocks: 3x3 convs (bias-free, stride 2 in the first conv of layers 2-4), "
               "identity shortcut, 1x1 conv + BN shortcut where the shape changes, ReLU after the sum", "assumed",
               "the page lists Conv1+bn+relu + Conv2+bn per layer (no ReLU after the second BN, as in a basic block) "
               "but names neither kernel sizes nor shortcuts"),
    Assumption("global pool", "x.mean((2, 3)) instead of AdaptiveAvgPool2d((1, 1))", "deviation",
               "identical for a 1x1 output, and deterministic on CUDA"),
    Assumption("optimizer", "SGD(lr=0.05), batch 128", "stated"),
    Assumption("momentum and weight decay", "0 and 0", "assumed", "unstated"),
    Assumption("scheduler", "ReduceLROnPlateau(mode min, patience=1, factor 0.5) on the validation loss", "stated",
               "the text halves the lr when the loss (computed on the validation split every epoch) has not fallen "
               "for 2 epochs in a row; PyTorch cuts when the epochs without improvement exceed patience, so that is "
               "patience=1 (patience=2 would wait 3)"),
    Assumption("selection", "keep the checkpoint with the lowest validation loss; report its test accuracy",
               "stated"),
    Assumption("epochs", "68", "stated", "初始训练 Epoch = 68 (the initial training run)"),
    Assumption("resumed runs", "none: the suite runs the 68-epoch protocol only", "deviation",
               "the page adds 'several' resumed 5-epoch runs (count not remembered), each resetting the lr and the "
               "best validation loss; their number is unknown, so they are dropped"),
    Assumption("augmentation", "RandomCrop(32, padding=4), RandomHorizontalFlip(0.5), Normalize(CIFAR-10 "
               "mean/std), then one 3x3 Cutout (zeros) centred on a uniform pixel", "assumed",
               "the text names crop, flip and a 3x3 cutout without the other magnitudes"),
    Assumption("loss", "CrossEntropyLoss", "assumed"),
    Assumption("shuffle", "training set reshuffled every epoch", "assumed"),
]


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


def build_model(hp: ResnetCifarHparams) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        BasicBlock(64, 64, 1), BasicBlock(64, 128, 2), BasicBlock(128, 256, 2), BasicBlock(256, 512, 2),
        GlobalAvgPool(), nn.Linear(512, 10),
    )


CONSTRAINTS = [ExactParams(4_903_242), OutputShape((1, 3, 32, 32), (1, 10))]


def build_optimizer(model, hp):
    return torch.optim.SGD(model.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)


def build_scheduler(optimizer, hp, steps_per_epoch):
    return Schedule(torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", patience=hp.plateau_patience, factor=hp.plateau_factor), "val_loss")


def build_loss(hp):
    return nn.CrossEntropyLoss()


def augmentations(hp):
    return [RandomCrop(32, hp.crop_padding), RandomHorizontalFlip(hp.flip_p), Cutout(hp.cutout)]
