"""MNIST 99.4% under 20k parameters — source: recipes/seeds/003_aee73f9bf4752610.txt (README of MNIST_99.4).
Claimed on: unstated hardware, PyTorch, Python 3.8, 19 epochs; train.py itself is not shown.
"""
from dataclasses import dataclass

import torch
from torch import nn

from bench.contract.recipe import (
    Assumption,
    Between,
    Claim,
    ConvLayers,
    DropoutRate,
    ExactParams,
    Fraction,
    Hparams,
    MaxParams,
    NonNegative,
    OneOf,
    OutputShape,
    Positive,
    Schedule,
    Variant,
)
from bench.training.augment import RandomAffine, RandomRotation


@dataclass(frozen=True, kw_only=True)
class Mnist994Hparams(Hparams):
    max_lr: float = 0.003           # OneCycleLR peak learning rate
    pct_start: float = 0.2          # share of steps spent warming up
    div_factor: float = 10.0        # initial lr = max_lr / div_factor
    final_div_factor: float = 100.0  # final lr = initial lr / final_div_factor
    dropout: float = 0.4            # after conv3 and after FC1
    degrees: float = 10.0           # random rotation range, +- degrees
    translate: float = 0.1          # random translation, fraction of width/height
    augmentation: str = "one_affine"  # "one_affine": RandomAffine(degrees, translate);
                                      # "rotation_then_translation": RandomRotation, then RandomAffine(0, translate)

    DOMAINS = {"max_lr": Positive(), "pct_start": Between(0, 1), "div_factor": Positive(),
               "final_div_factor": Positive(), "dropout": Fraction(), "degrees": NonNegative(),
               "translate": Fraction(), "augmentation": OneOf("one_affine", "rotation_then_translation")}


HPARAMS = Mnist994Hparams(
    dataset="mnist", split="official", epochs=19, batch_size=128, lr=1e-3, weight_decay=1e-4,
    mean=(0.1307,), std=(0.3081,), selection="best_test_epoch",
)

CLAIMS = [
    Claim("test_acc_best", 99.43, "Best Test Accuracy: 99.43%", selection="best_test_epoch", headline=True),
    Claim("test_acc_final", 99.43, "• Test Accuracy: 99.43%", selection="final_epoch",
          note="the last bullet under 'Training Results (Final Epoch):' (the bullet mark keeps the quote apart "
               "from 'Best Test Accuracy: 99.43%')"),
    Claim("train_acc_final", 99.67, "Training Accuracy: 99.67%", selection="final_epoch", measured_on="train",
          note="under 'Training Results (Final Epoch):'",
          not_comparable="the README does not say how its training accuracy was measured (train.py is not shown); "
                         "ours is the running accuracy over the epoch's augmented batches in train mode with dropout "
                         "0.4 on, which no clean pass over the training set gives: another quantity"),
    Claim("train_loss_final", 0.0124, "Training Loss: 0.0124", selection="final_epoch", measured_on="train",
          unit="", higher_is_better=False, note="under 'Training Results (Final Epoch):'",
          not_comparable="the README does not say how its training loss was measured (train.py is not shown); ours "
                         "is the running mean over the epoch's augmented batches in train mode with dropout 0.4 on, "
                         "about 10x a clean pass's loss by definition: another quantity, not another result"),
    Claim("test_loss_final", 0.0198, "Test Loss: 0.0198", selection="final_epoch", unit="", higher_is_better=False,
          note="under 'Training Results (Final Epoch):'"),
    Claim("params", 15578, "Total Parameters: 15,578", selection="none", measured_on="model", unit="",
          higher_is_better=False),
]

# No DOCUMENT_LOG: the README prints the final epoch's numbers only, no per-epoch log.
DOCUMENT_LOG = []

ASSUMPTIONS = [
    Assumption("split", "official 60k train / 10k test, no validation", "assumed",
               "the README reports test numbers and names no split or validation set"),
    Assumption("architecture", "3 x (conv3x3 pad 1 -> BN -> ReLU -> MaxPool2d(2)), Dropout(0.4) after conv3, "
               "FC1 288->32, Dropout(0.4) after FC1, FC2 32->10", "stated",
               "the README's bullets; pool size 2 follows from FC1's 32 * 3 * 3 inputs"),
    Assumption("FC1 activation", "ReLU after FC1, before its dropout", "assumed",
               "the README lists ReLU only inside the conv blocks; train.py and model.py are not shown"),
    Assumption("optimizer", "Adam(lr=1e-3, weight_decay=1e-4), CrossEntropyLoss, batch 128, 19 epochs", "stated"),
    Assumption("scheduler", "OneCycleLR(max_lr=0.003, pct_start=0.2, div_factor=10, final_div_factor=100)",
               "stated"),
    Assumption("scheduler stepping", "every batch, total_steps = 19 x 469", "assumed",
               "the README gives no train.py; per-batch stepping is OneCycleLR's intended use"),
    Assumption("momentum cycling", "OneCycleLR default cycle_momentum=True (Adam beta1 0.85 <-> 0.95)", "assumed",
               "library default"),
    Assumption("augmentation", "RandomAffine(degrees=10, translate=(0.1, 0.1)), nearest, fill 0, "
               "then Normalize(0.1307, 0.3081)", "assumed",
               "the README lists rotation +-10 and translation +-10%; one affine transform assumed"),
    Assumption("shuffle", "training set reshuffled every epoch; last partial batch kept", "assumed"),
    Assumption("initialization", "PyTorch defaults", "assumed"),
    Assumption("evaluation", "test set after every epoch; best epoch picked on test", "stated",
               "'Best Test Accuracy' is the maximum over epochs of the test accuracy"),
    Assumption("evaluation batch", "1000 test images per forward pass", "assumed", "the README does not say"),
]


VARIANTS = [
    Variant("rotation_then_translation", {"augmentation": "rotation_then_translation"},
            assumptions=(Assumption("augmentation", "RandomRotation(10), then RandomAffine(0, translate=(0.1, 0.1)), "
                                    "each nearest with fill 0, then Normalize(0.1307, 0.3081)", "assumed",
                                    "the README lists rotation and translation as two items: two transforms, "
                                    "two resamplings"),),
            why="the README's two augmentation bullets read as two torchvision transforms applied in turn"),
]


def build_model(hp: Mnist994Hparams) -> nn.Module:
    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(
        block(1, 8), block(8, 16), block(16, 32),          # 28 -> 14 -> 7 -> 3
        nn.Dropout(hp.dropout), nn.Flatten(),
        nn.Linear(32 * 3 * 3, 32), nn.ReLU(), nn.Dropout(hp.dropout),
        nn.Linear(32, 10),
    )


CONSTRAINTS = [
    MaxParams(20_000),
    ExactParams(15_578),
    OutputShape((1, 1, 28, 28), (1, 10)),
    DropoutRate(0.4),
    ConvLayers([(1, 8, 3, 1), (8, 16, 3, 1), (16, 32, 3, 1)]),
]


def build_optimizer(model, hp):
    return torch.optim.Adam(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)


def build_scheduler(optimizer, hp, steps_per_epoch):
    return Schedule(torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=hp.max_lr, epochs=hp.epochs, steps_per_epoch=steps_per_epoch,
        pct_start=hp.pct_start, div_factor=hp.div_factor, final_div_factor=hp.final_div_factor), "batch")


def build_loss(hp):
    return nn.CrossEntropyLoss()


def augmentations(hp):
    if hp.augmentation == "rotation_then_translation":
        return [RandomRotation(hp.degrees), RandomAffine(0.0, translate=(hp.translate, hp.translate))]
    return [RandomAffine(degrees=hp.degrees, translate=(hp.translate, hp.translate))]
