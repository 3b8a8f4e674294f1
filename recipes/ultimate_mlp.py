"""UltimateMLP: Swish MLP, focal loss, OneCycleLR — source: seeds/000_ba29e86c1874ea82.txt (notebook).
Claimed on: an unnamed GPU, about 55 minutes per run, seed 42, 250 epochs.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.augment import RandomAffine
from bench.recipe import (AtLeast, Assumption, Between, Claim, Each, ExactParams, Fraction, Hparams, NonNegative,
                          OutputShape, Positive, Schedule)


@dataclass(frozen=True, kw_only=True)
class UltimateMlpHparams(Hparams):
    betas: tuple[float, ...] = (0.95, 0.99)   # AdamW betas (beta1 is then cycled by OneCycleLR)
    max_lr: float = 0.02                      # OneCycleLR peak learning rate
    pct_start: float = 0.25                   # share of steps spent warming up
    div_factor: float = 25.0                  # initial lr = max_lr / div_factor
    final_div_factor: float = 1e4             # final lr = initial lr / final_div_factor
    hidden: int = 2048                        # width of the first block; then /2 and /4
    dropouts: tuple[float, ...] = (0.4, 0.35, 0.3)
    focal_gamma: float = 1.5
    focal_alpha: float = 0.25
    degrees: float = 3.0                      # RandomAffine rotation range, +- degrees
    translate: float = 0.05                   # RandomAffine shift, fraction of width/height
    shear: float = 5.0                        # RandomAffine x-shear range, +- degrees

    DOMAINS = {"betas": Each(Fraction(), length=2), "max_lr": Positive(), "pct_start": Between(0, 1),
               "div_factor": Positive(), "final_div_factor": Positive(), "hidden": AtLeast(4),
               "dropouts": Each(Fraction(), length=3), "focal_gamma": NonNegative(), "focal_alpha": Positive(),
               "degrees": NonNegative(), "translate": Fraction(), "shear": NonNegative()}


HPARAMS = UltimateMlpHparams(
    dataset="mnist", split="tail", val_size=5000, shuffle=False, epochs=250, batch_size=64,
    eval_batch_size=1000, lr=0.005, weight_decay=5e-4, grad_clip=1.0, mean=(0.5,), std=(0.5,),
    selection="best_val_acc",
)

CLAIMS = [
    Claim("test_acc_selected", 99.24, "最终测试准确率: 99.24%", selection="best_val_acc", headline=True,
          note="test accuracy of the checkpoint with the best validation accuracy"),
    Claim("val_acc_best", 99.34, "#the highest could reach 99.34%!!Epoch 114: Val Acc: 99.34%",
          selection="best_val_acc", measured_on="val"),
    Claim("best_val_epoch", 114, "Epoch 114: Val Acc: 99.34%", selection="none", measured_on="val", unit="epochs",
          higher_is_better=None),
    Claim("test_acc_selected", 99.40, "The highest should be around 99.40-99.50%", selection="best_val_acc",
          aspiration=True, note="the lower end of the stated range"),
    Claim("wall_time_s", 3300, "takes about 55 minutes to run", selection="none", measured_on="time", unit="s",
          higher_is_better=False, note="on the author's unnamed GPU"),
]

ASSUMPTIONS = [
    Assumption("split", "train indices 0..54999 (augmented), validation 55000..59999, official 10k test", "stated"),
    Assumption("loader", "train batch 64 with shuffle=False, evaluation batch 1000", "stated"),
    Assumption("augmentation", "RandomAffine(degrees=3, translate=(0.05, 0.05), shear=5), Normalize(0.5, 0.5)",
               "stated"),
    Assumption("model", "3 x (Linear -> BatchNorm1d -> Swish(learnable beta) -> Dropout), Linear(512, 10); "
               "kaiming_normal_(fan_in, relu) weights, bias 0.01", "stated"),
    Assumption("loss", "focal loss, gamma 1.5, alpha 0.25, mean over the batch", "stated"),
    Assumption("optimizer", "AdamW(lr=0.005, weight_decay=5e-4, betas=(0.95, 0.99)), grad-norm clip 1.0", "stated"),
    Assumption("scheduler", "OneCycleLR(max_lr=0.02, pct_start=0.25, div_factor=25, final_div_factor=1e4, "
               "total_steps=860*250) stepped every batch, default momentum cycling", "stated"),
    Assumption("selection", "keep the state with the best validation accuracy (strictly greater), test it once",
               "stated", "test is evaluated every epoch here for the curves; it never affects the choice"),
    Assumption("flatten", "inside the model (nn.Flatten) instead of a Lambda transform", "deviation",
               "same numbers; keeps data as images for the batched pipeline"),
    Assumption("seeds", "seeds 0..N-1 instead of the notebook's single seed 42", "deviation",
               "the point of the suite is run-to-run variance"),
    Assumption("determinism", "use_deterministic_algorithms(True) without warn_only", "deviation",
               "the notebook allowed nondeterministic kernels with a warning"),
]


class Swish(nn.Module):
    """x * sigmoid(beta * x) with a learnable scalar beta, as the notebook defines it."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = nn.Parameter(torch.tensor(float(beta)))

    def forward(self, x):
        return x * torch.sigmoid(self.beta * x)


class FocalLoss(nn.Module):
    def __init__(self, gamma: float, alpha: float):
        super().__init__()
        self.gamma, self.alpha = gamma, alpha

    def forward(self, logits, targets):
        ce = F.cross_entropy(logits, targets, reduction="none")
        pt = torch.exp(-ce)
        return (self.alpha * (1 - pt) ** self.gamma * ce).mean()


def build_model(hp: UltimateMlpHparams) -> nn.Module:
    widths = [28 * 28, hp.hidden, hp.hidden // 2, hp.hidden // 4]
    layers = [nn.Flatten()]
    for cin, cout, p in zip(widths, widths[1:], hp.dropouts):
        layers += [nn.Linear(cin, cout), nn.BatchNorm1d(cout), Swish(), nn.Dropout(p)]
    model = nn.Sequential(*layers, nn.Linear(widths[-1], 10))
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.constant_(m.bias, 0.01)
    return model


CONSTRAINTS = [ExactParams(4_242_957), OutputShape((2, 1, 28, 28), (2, 10))]


def build_optimizer(model, hp):
    return torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay, betas=tuple(hp.betas))


def build_scheduler(optimizer, hp, steps_per_epoch):
    return Schedule(torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=hp.max_lr, pct_start=hp.pct_start, div_factor=hp.div_factor,
        final_div_factor=hp.final_div_factor, total_steps=steps_per_epoch * hp.epochs), "batch")


def build_loss(hp):
    return FocalLoss(hp.focal_gamma, hp.focal_alpha)


def augmentations(hp):
    return [RandomAffine(degrees=hp.degrees, translate=(hp.translate, hp.translate), shear=hp.shear)]
