"""LeNet-style CNN with plain SGD at lr 0.14 — source: recipes/seeds/002_84b04945752c13ec.txt, first section (blog).
Claimed on: the author's first training run, hardware unstated; test accuracy printed every epoch.
"""
from dataclasses import dataclass

import torch
from torch import nn

from bench.contract.recipe import (
    Assumption,
    Claim,
    ExactParams,
    Flag,
    Hparams,
    LogPoint,
    OutputShape,
    Variant,
)


@dataclass(frozen=True, kw_only=True)
class LenetHparams(Hparams):
    fc_relu: bool = False      # ReLU after each hidden FC layer (the text puts ReLU only around conv+pool)

    DOMAINS = {"fc_relu": Flag()}


HPARAMS = LenetHparams(
    dataset="mnist", split="official", epochs=15, batch_size=64, lr=0.14,
    mean=(0.0,), std=(1.0,), selection="best_test_epoch",
)

CLAIMS = [
    Claim("test_acc_best", 99.15, "首次训练，第 13 轮达到最高，99.15%", selection="best_test_epoch", headline=True,
          runs_behind=1,
          note="the author's first training run (首次训练); the best epoch is picked by looking at the test set itself"),
    Claim("best_test_epoch", 13, "第 13 轮达到最高", selection="none", unit="epochs", higher_is_better=None),
    Claim("test_acc_final", 97.04, "到第 15 轮已经过拟合了，降到 97.04%", selection="final_epoch",
          note="the author's explanation is overfitting; a drop of 2 points at lr 0.14 looks like instability"),
]

# The first run's printed test accuracy (printed as a fraction, recorded in percent). Left out: the later
# "————第1轮测试开始————" (0.987400) and "————第2轮测试开始————" (0.990300) logs are a continued session
# ("后面又训了两轮，勉强到 99": two more rounds trained afterwards), not epochs 1 and 2 of the first run, and
# the 0.990000 under "补充 1" is a retraining that reloads the optimizer state.
DOCUMENT_LOG = [
    LogPoint(13, "test_acc", 99.15, "first run, last line of the \"-----第13轮测试开始-----\" block: "
             "`测试准确率为: 0.991500`"),
    LogPoint(15, "test_acc", 97.04, "first run, last line of the \"-----第15轮测试开始-----\" block: "
             "`测试准确率为: 0.970400`"),
]

ASSUMPTIONS = [
    Assumption("optimizer", "torch.optim.SGD(lr=0.14)", "stated"),
    Assumption("momentum and weight decay", "none (0 and 0)", "assumed",
               "the text names SGD and lr=0.14 only, i.e. PyTorch's defaults"),
    Assumption("loss", "CrossEntropyLoss", "stated"),
    Assumption("batch", "64 on the full 60k training set", "assumed",
               "inferred from the logs' step counts: steps 0..900 printed every 100 means 901..1000 steps per "
               "epoch, a batch of 60..66 on 60k images; the text names no batch size"),
    Assumption("architecture", "LeNet-5 shapes: conv 1->6 k5 pad 2, maxpool 2, ReLU; conv 6->16 k5, maxpool 2, "
               "ReLU; FC 400->120->84->10", "assumed", "the text gives two conv+pool blocks and three FC layers"),
    Assumption("FC activations", "none between the FC layers", "assumed",
               "the text puts ReLU only around each conv+pool block"),
    Assumption("epochs", "15", "assumed", "the logs show epoch 15 (overfit by then); the run length is not stated"),
    Assumption("shuffle", "training set reshuffled every epoch", "assumed"),
    Assumption("input", "ToTensor only (pixels / 255), no normalization, no augmentation", "assumed"),
    Assumption("initialization", "PyTorch defaults", "assumed"),
]


VARIANTS = [
    Variant("relu_between_fc", {"fc_relu": True},
            assumptions=(Assumption("FC activations", "ReLU after FC 400->120 and after FC 120->84", "assumed",
                                    "without it the three FC layers collapse to one linear map; LeNet-5 has them"),),
            why="the text names ReLU only around the conv+pool blocks, but three linear layers in a row are one "
                "linear map: the usual LeNet reading puts ReLU between them"),
]


def build_model(hp: LenetHparams) -> nn.Module:
    act = nn.ReLU if hp.fc_relu else nn.Identity
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.MaxPool2d(2), nn.ReLU(),     # 28 -> 14
        nn.Conv2d(6, 16, 5), nn.MaxPool2d(2), nn.ReLU(),               # 14 -> 10 -> 5
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), act(), nn.Linear(120, 84), act(), nn.Linear(84, 10),
    )


CONSTRAINTS = [ExactParams(61_706), OutputShape((1, 1, 28, 28), (1, 10))]


def build_optimizer(model, hp):
    return torch.optim.SGD(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)


def build_scheduler(optimizer, hp, steps_per_epoch):
    return None


def build_loss(hp):
    return nn.CrossEntropyLoss()


def augmentations(hp):
    return []
