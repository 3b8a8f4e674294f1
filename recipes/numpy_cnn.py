"""NumPy CNN at lr 10 — source: seeds/001_6e0d6cd5968aa22c.txt, first section (MNIST任务-numpy手写实现).
Claimed on: unstated hardware, NumPy forward and backward written by hand; best validation accuracy at
epoch 70 on a 4:1 random split. The model and its loop are NumPy here too (float32), so this recipe has
its own train() instead of the torch engine; torch only draws the batch order and augments. On CPU the
bits also depend on NumPy's BLAS thread count (OpenBLAS follows OMP_NUM_THREADS), not only on torch's.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from bench.augment import RandomAffine, RandomCrop, augment_batch, normalize
from bench.determinism import stream_seed, weights_sha256
from bench.engine import TrainResult
from bench.recipe import Assumption, Claim, Constraint, ExactParams, Hparams, OverrideError

SIZE, KERNEL, CHANNELS, HIDDEN, CLASSES = 28, 5, 2, 256, 10
OUT = SIZE - KERNEL + 1                       # 24: no padding
FLAT = CHANNELS * OUT * OUT                   # 1152
# Training images augmented per torch call: a few large calls instead of one per batch, because
# small torch ops next to NumPy's BLAS threads on a busy CPU wait for cores far longer than they compute.
AUGMENT_CHUNK = 4096


@dataclass(frozen=True, kw_only=True)
class NumpyCnnHparams(Hparams):
    dropout: float = 0.3              # drop probability after FC1's GELU
    plateau_patience: int = 5         # epochs without a better val acc tolerated before the lr is cut
    plateau_factor: float = 0.5       # lr multiplier at each plateau
    early_stop_patience: int = 20     # epochs without a better val acc that end the run
    degrees: float = 10.0             # random rotation range, +- degrees
    crop_padding: int = 2             # zero padding before the random 28x28 crop, pixels


HPARAMS = NumpyCnnHparams(
    dataset="mnist", split="random", val_size=12000, epochs=300, batch_size=512, lr=10.0,
    mean=(0.0,), std=(1.0,), selection="best_val_acc",
)

CLAIMS = [
    Claim("val_acc_best", 98.7, "最佳验证集准确率 | 98.7%", selection="best_val_acc", measured_on="val",
          headline=True, note="the validation split also drives the lr plateau and early stopping"),
    Claim("best_val_epoch", 70, "最佳迭代次数 | 70", selection="none", measured_on="val", unit="epochs",
          higher_is_better=None),
]

ASSUMPTIONS = [
    Assumption("implementation", "NumPy forward and backward, float32, hand-written like the document's", "stated"),
    Assumption("architecture", "Conv2d(1->2, k5, no padding, bias) -> GELU -> Flatten(1152) -> Linear(1152->256) "
               "-> GELU -> Dropout(0.3) -> Linear(256->10) -> Softmax", "stated"),
    Assumption("loss", "cross-entropy of the softmax, mean over the batch (softmax folded into the loss)",
               "assumed", "the document names Softmax as the last layer; a sum over the batch would make lr 10 "
               "512 times larger still. Measured: with this loss lr 10 blows up within the first few steps "
               "(conv weights reach ~2e3, every conv unit sits in GELU's flat negative tail) and the run stays "
               "at chance; kept because lr 10 is what the document states"),
    Assumption("GELU", "tanh approximation 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))", "assumed",
               "the usual form in hand-written NumPy code; the document does not say"),
    Assumption("dropout", "inverted dropout (kept units scaled by 1/0.7 in training, identity in evaluation)",
               "assumed"),
    Assumption("optimizer", "plain SGD, no momentum, no weight decay, lr 10, batch 512", "assumed",
               "lr 10 and batch 512 are stated; the optimizer is not named"),
    Assumption("lr plateau", "halve the lr after more than 5 epochs without a strictly better validation "
               "accuracy (ReduceLROnPlateau mode max, threshold 0, no cooldown)", "assumed",
               "patience 5 and factor 0.5 are stated; the watched metric and tie rule are not"),
    Assumption("early stopping", "stop after 20 consecutive epochs without a strictly better validation accuracy",
               "assumed", "the tolerance 20 is stated; the watched metric is not"),
    Assumption("epoch cap", "300 epochs; early stopping decides when the run ends", "assumed",
               "the document gives no maximum"),
    Assumption("split", "random 4:1 split of the 60k training set (48k train / 12k validation), seeded per run",
               "stated"),
    Assumption("augmentation", "random rotation +-10 degrees (nearest, fill 0), then random crop 28 with zero "
               "padding 2, per training batch", "assumed", "rotation and crop are stated, their magnitudes not"),
    Assumption("input", "pixels / 255, no normalization", "assumed"),
    Assumption("initialization", "PyTorch-like: weights and biases uniform in +-1/sqrt(fan_in), from a NumPy "
               "generator seeded per run", "assumed"),
    Assumption("shuffle", "training split reshuffled every epoch; last partial batch kept", "assumed"),
    Assumption("evaluation", "validation and official test set after every epoch, dropout off; test never "
               "feeds back", "assumed"),
]


# ---------------------------------------------------------------- the model

def gelu(x):
    """tanh-approximate GELU, and the tanh its backward needs (in place where possible: this is hot)."""
    f = x.dtype.type
    t = x * x
    t *= f(0.044715)
    t += 1
    t *= x
    t *= f(math.sqrt(2 / math.pi))
    np.tanh(t, out=t)
    y = t + 1
    y *= x
    y *= f(0.5)
    return y, t


def gelu_backward(dy, x, t):
    """dy * GELU'(x) = dy * 0.5 (1 + t + x sqrt(2/pi) (1 + 3 0.044715 x^2) (1 - t^2))."""
    f = x.dtype.type
    g = x * x
    g *= f(3 * 0.044715)
    g += 1
    g *= x
    g *= f(math.sqrt(2 / math.pi))
    g *= 1 - t * t
    g += t
    g += 1
    g *= f(0.5)
    g *= dy
    return g


def softmax_cross_entropy(logits, y):
    """Mean cross-entropy of softmax(logits) (float64), its gradient wrt logits, and the correct count."""
    shifted = logits - logits.max(1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(1, keepdims=True)
    rows = np.arange(len(y))
    loss = float(np.mean(np.log(total[:, 0].astype(np.float64)) - shifted[rows, y]))
    grad = exp / total
    grad[rows, y] -= 1
    grad /= len(y)
    return loss, grad, int((logits.argmax(1) == y).sum())


def im2col(x):
    """(N, 1, 28, 28) -> (N, 25, 576): patch element k = 5i + j of every output pixel, one slice copy per k."""
    n = len(x)
    cols = np.empty((n, KERNEL * KERNEL, OUT, OUT), x.dtype)
    for i in range(KERNEL):
        for j in range(KERNEL):
            cols[:, KERNEL * i + j] = x[:, 0, i:i + OUT, j:j + OUT]
    return cols.reshape(n, KERNEL * KERNEL, OUT * OUT)


class NumpyCNN:
    """The document's Net, parameters in torch's layouts (conv (2,1,5,5), linear (out, in))."""

    NAMES = ("conv.weight", "conv.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")

    def __init__(self, params: dict, dropout: float):
        self.params = params
        self.dropout = dropout
        self.training = True
        self.cache = {}

    def num_params(self) -> int:
        return sum(p.size for p in self.params.values())

    def train(self):
        self.training = True
        return self

    def eval(self):
        self.training = False
        return self

    def forward(self, x, drop_rng=None):
        """Logits for a float (N, 1, 28, 28) batch; in training mode drop_rng draws the dropout mask."""
        p = self.params
        x = np.asarray(x, dtype=p["conv.weight"].dtype)
        n = len(x)
        patches = im2col(x)                                                                # (N, 25, 576)
        z1 = p["conv.weight"].reshape(CHANNELS, -1) @ patches                              # (N, 2, 576)
        z1 += p["conv.bias"][:, None]
        z1 = z1.reshape(n, FLAT)                                                           # channel-major flatten
        a1, t1 = gelu(z1)
        z2 = a1 @ p["fc1.weight"].T + p["fc1.bias"]
        a2, t2 = gelu(z2)
        mask = None
        if self.training and self.dropout > 0:
            keep = drop_rng.random(a2.shape, dtype=a2.dtype) >= self.dropout
            mask = keep * a2.dtype.type(1 / (1 - self.dropout))
            a2 = a2 * mask
        self.cache = {"patches": patches, "z1": z1, "t1": t1, "a1": a1, "z2": z2, "t2": t2, "a2": a2,
                      "mask": mask}
        return a2 @ p["fc2.weight"].T + p["fc2.bias"]

    def backward(self, dlogits) -> dict:
        """Gradients of every parameter, given d(loss)/d(logits) of the last forward()."""
        p, c = self.params, self.cache
        g = {"fc2.weight": dlogits.T @ c["a2"], "fc2.bias": dlogits.sum(0)}
        da2 = dlogits @ p["fc2.weight"]
        if c["mask"] is not None:
            da2 *= c["mask"]
        dz2 = gelu_backward(da2, c["z2"], c["t2"])
        g["fc1.weight"], g["fc1.bias"] = dz2.T @ c["a1"], dz2.sum(0)
        dz1 = gelu_backward(dz2 @ p["fc1.weight"], c["z1"], c["t1"])
        dz1 = dz1.reshape(len(dz1), CHANNELS, OUT * OUT)
        # einsum's own loop, not one (2, N*576) x (N*576, 25) matmul: that shape stalls OpenBLAS's threads
        g["conv.weight"] = np.einsum("ncp,nkp->ck", dz1, c["patches"]).reshape(p["conv.weight"].shape)
        g["conv.bias"] = dz1.sum((0, 2))
        return g

    __call__ = forward


def init_params(rng: np.random.Generator, dtype=np.float32) -> dict:
    """PyTorch's default bounds: weights and biases uniform in +-1/sqrt(fan_in)."""
    shapes = {"conv": ((CHANNELS, 1, KERNEL, KERNEL), KERNEL * KERNEL), "fc1": ((HIDDEN, FLAT), FLAT),
              "fc2": ((CLASSES, HIDDEN), HIDDEN)}
    params = {}
    for name, (shape, fan_in) in shapes.items():
        bound = 1 / math.sqrt(fan_in)
        params[f"{name}.weight"] = rng.uniform(-bound, bound, shape).astype(dtype)
        params[f"{name}.bias"] = rng.uniform(-bound, bound, shape[0]).astype(dtype)
    return params


def build_model(hp: NumpyCnnHparams, rng: np.random.Generator | None = None, dtype=np.float32) -> NumpyCNN:
    rng = rng if rng is not None else np.random.default_rng(stream_seed(0, "init"))
    return NumpyCNN(init_params(rng, dtype), hp.dropout)


def _architecture(model):
    shapes = {k: v.shape for k, v in model.params.items()}
    expected = {"conv.weight": (2, 1, 5, 5), "conv.bias": (2,), "fc1.weight": (256, 1152), "fc1.bias": (256,),
                "fc2.weight": (10, 256), "fc2.bias": (10,)}
    return shapes == expected and model.dropout == 0.3, f"parameter shapes {shapes}, dropout {model.dropout}"


CONSTRAINTS = [
    ExactParams(297_790),
    Constraint("conv 1->2 k5, FC 1152->256->10, dropout 0.3", _architecture),
]


# ---------------------------------------------------------------- training

def check_hparams(hp):
    """An override this NumPy loop cannot honour is bad input (exit 2), not a crash mid-run."""
    bad = {"weight_decay": hp.weight_decay != 0, "grad_clip": hp.grad_clip is not None,
           "eval_every": hp.eval_every != 1, "split=official": hp.split == "official"}
    if any(bad.values()):
        raise OverrideError(f"numpy_cnn does not implement {', '.join(k for k, v in bad.items() if v)} "
                            "(plain SGD, evaluated every epoch on a validation split)")


def _evaluate(model, x, y, batch):
    """Mean loss and accuracy (%) in evaluation mode, and the correct count."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for s in range(0, len(y), batch):
        loss, _, c = softmax_cross_entropy(model.forward(x[s:s + batch]), y[s:s + batch])
        loss_sum += loss * len(y[s:s + batch])
        correct += c
    return loss_sum / len(y), 100.0 * correct / len(y), correct


def train(hp: NumpyCnnHparams, splits, ctx) -> TrainResult:
    """SGD with the document's plateau and early stop; resumes from ctx's checkpoint to the same bits."""
    check_hparams(hp)
    rngs = {s: np.random.default_rng(stream_seed(ctx.seed, s)) for s in ("init", "dropout")}
    model = build_model(hp, rngs["init"])
    transforms = [RandomAffine(degrees=hp.degrees), RandomCrop(SIZE, hp.crop_padding)]
    evals = {}
    for name in ("val", "test"):
        split = getattr(splits, name)
        evals[name] = (normalize(split.x, hp.mean, hp.std).cpu().numpy(), split.y.cpu().numpy())

    curves = {k: [] for k in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "epoch_time_s",
                              "val_loss", "val_acc")}
    lr = hp.lr
    watch = {"best_correct": -1, "plateau_bad": 0, "stop_bad": 0, "stopped": False}
    start = 0
    state = ctx.load_checkpoint()
    if state is not None:
        model.params = {k: np.array(v) for k, v in state["params"].items()}
        for s, g in rngs.items():
            g.bit_generator.state = state["numpy_rngs"][s]
        lr, watch, curves, start = state["lr"], dict(state["watch"]), state["curves"], state["epoch"]

    train_split, n = splits.train, len(splits.train)
    bar = ctx.bar(start, hp.epochs)
    for epoch in bar:
        if watch["stopped"]:          # resumed from the checkpoint of the epoch that stopped the run
            break
        t0 = time.perf_counter()
        model.train()
        loss_sum, correct = 0.0, 0
        order = (torch.randperm(n, generator=ctx.gens["shuffle"]).to(train_split.x.device) if hp.shuffle
                 else torch.arange(n, device=train_split.x.device))
        chunk = hp.batch_size * max(1, AUGMENT_CHUNK // hp.batch_size)
        for c0 in range(0, n, chunk):
            idx = order[c0:c0 + chunk]
            xs = augment_batch(train_split.x[idx], transforms, hp.mean, hp.std, ctx.gens["augment"]).cpu().numpy()
            ys = train_split.y[idx].cpu().numpy()
            for s in range(0, len(ys), hp.batch_size):
                x, y = xs[s:s + hp.batch_size], ys[s:s + hp.batch_size]
                loss, dlogits, c = softmax_cross_entropy(model.forward(x, rngs["dropout"]), y)
                grads = model.backward(dlogits)
                for k, p in model.params.items():
                    p -= p.dtype.type(lr) * grads[k]
                loss_sum += loss * len(y)
                correct += c

        row = {"epoch": epoch + 1, "train_loss": loss_sum / n, "train_acc": 100.0 * correct / n}
        row["val_loss"], row["val_acc"], val_correct = _evaluate(model, *evals["val"], hp.eval_batch_size)
        row["test_loss"], row["test_acc"], _ = _evaluate(model, *evals["test"], hp.eval_batch_size)
        if val_correct > watch["best_correct"]:
            watch.update(best_correct=val_correct, plateau_bad=0, stop_bad=0)
        else:
            watch["plateau_bad"] += 1
            watch["stop_bad"] += 1
            if watch["plateau_bad"] > hp.plateau_patience:
                lr *= hp.plateau_factor
                watch["plateau_bad"] = 0
        watch["stopped"] = watch["stop_bad"] >= hp.early_stop_patience
        row["lr"] = lr
        row["epoch_time_s"] = time.perf_counter() - t0
        for k, v in row.items():
            curves[k].append(v)
        bar.set_postfix(loss=f"{row['train_loss']:.4f}", acc=f"{row['train_acc']:.2f}",
                        val=f"{row['val_acc']:.2f}", lr=f"{lr:g}", refresh=False)
        ctx.save_checkpoint({"epoch": epoch + 1, "params": model.params, "lr": lr, "watch": watch,
                             "numpy_rngs": {s: g.bit_generator.state for s, g in rngs.items()},
                             "curves": curves})
        if watch["stopped"]:
            break
    bar.close()
    return TrainResult(curves=curves, weights_sha256=weights_sha256(model.params),
                       epochs_run=len(curves["epoch"]), resumed_from=start,
                       extra={"early_stopped": watch["stopped"]})
