"""Sigmoid MLP + BatchNorm1d, full-batch GD on MNIST CSV — source: recipes/seeds/004_dde257d3e968d607.txt (blog).
The post's "improved version".
Claimed on: a CUDA GPU ("a CPU may need half a day"); "the results are instantly much better" with BatchNorm.
"""
from dataclasses import dataclass

import torch
from torch import nn

from bench.contract.recipe import (
    Assumption,
    Claim,
    ExactParams,
    Finite,
    Hparams,
    OutputShape,
    Positive,
)


@dataclass(frozen=True, kw_only=True)
class FcSigmoidBnHparams(Hparams):
    init_mean: float = 0.01    # weights ~ normal(init_mean, init_std)
    init_std: float = 0.1

    DOMAINS = {"init_mean": Finite(), "init_std": Positive()}


HPARAMS = FcSigmoidBnHparams(
    dataset="mnist_csv", split="official", epochs=50_000, batch_size=60_000, eval_batch_size=10_000, lr=0.1,
    shuffle=False, eval_every=300, mean=(0.5,), std=(1.0,), selection="final_epoch",
)

CLAIMS = [
    Claim("train_acc_final", 99.0, "结果展示,最终结果也可以达到99%以上吧", selection="final_epoch",
          measured_on="train", headline=True,
          note="'above 99%', printed from the training batch's own forward pass; test accuracy is never shown"),
]

# No DOCUMENT_LOG: the post's printed output is only shown as images (在这里插入图片描述), never as numbers in the text.
DOCUMENT_LOG = []

ASSUMPTIONS = [
    Assumption("data", "mnist_train.csv / mnist_test.csv (label, 784 pixels), input (x - 255/2) / 255", "stated"),
    Assumption("model", "Linear 784->100, Sigmoid, Linear 100->30, Sigmoid, Linear 30->10", "stated"),
    Assumption("BatchNorm", "BatchNorm1d after each hidden Linear, before its Sigmoid (default init)", "assumed",
               "the post says only that the improved version adds BatchNorm1d"),
    Assumption("BatchNorm statistics", "the training accuracy is printed in train mode (batch statistics of "
               "all 60k images); evaluation uses running statistics", "assumed"),
    Assumption("init", "weights normal(mean 0.01, std 0.1), biases 0", "stated",
               "the post's code for the plain model; the improved version is described as that model plus "
               "BatchNorm1d (its own code is a download, not shown)"),
    Assumption("training", "full-batch SGD(lr=0.1), no momentum, 50,000 iterations, CrossEntropyLoss", "stated",
               "the post's code for the plain model, which the improved version extends"),
    Assumption("epochs", "one epoch here is one full-batch iteration", "stated",
               "the post's loop is `epoch = 50000 ... for i in range(epoch)`, one full-batch step each"),
    Assumption("print interval", "metrics every 300 iterations", "stated", "the post prints when i % 300 == 0"),
    Assumption("evaluation", "also after the last iteration, and on the test set too", "assumed",
               "the post prints the training batch's loss and accuracy only"),
    Assumption("input scaling", "x / 255 - 0.5 (the same map as (x - 127.5) / 255; float rounding may differ "
               "in the last bit)", "deviation"),
]


def build_model(hp: FcSigmoidBnHparams) -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.BatchNorm1d(100), nn.Sigmoid(),
                          nn.Linear(100, 30), nn.BatchNorm1d(30), nn.Sigmoid(), nn.Linear(30, 10))
    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.weight.data.normal_(hp.init_mean, hp.init_std)
            nn.init.constant_(m.bias.data, 0.0)
    return model


CONSTRAINTS = [ExactParams(82_100), OutputShape((1, 1, 28, 28), (1, 10))]


def build_optimizer(model, hp):
    return torch.optim.SGD(model.parameters(), lr=hp.lr)


def build_scheduler(optimizer, hp, steps_per_epoch):
    return None


def build_loss(hp):
    return nn.CrossEntropyLoss()


def augmentations(hp):
    return []
