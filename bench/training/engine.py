"""One deterministic training loop for torch recipes.

Per epoch: train (optimizer, scheduler, clipping as the recipe builds them), evaluate on
validation and test, append to the curves, checkpoint everything needed to resume to the
same bits. Test accuracy is measured every evaluated epoch but never feeds back into
training; the selection rules (bench.records.selection) only pick which epoch's numbers a claim refers to.
"""
from __future__ import annotations

import math
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from bench.training import checkpoint
from bench.training.augment import augment_batch, normalize, torchvision_pipeline
from bench.training.determinism import rng_state, set_rng_state, weights_sha256
from bench.training.splits import Split, Splits
from bench.training.step import current as current_step
from bench.training.step import make_step

PIPELINES = ("fast", "faithful")


def new_lineage() -> str:
    """The id of one chain of checkpoints that began at epoch 0 (os.urandom: no training RNG is touched)."""
    return uuid.uuid4().hex[:16]


@dataclass
class RunContext:
    """What one run needs besides the recipe: where, which streams, where to checkpoint."""
    name: str
    seed: int
    device: torch.device
    gens: dict
    pipeline: str = "fast"
    checkpoint: Optional[Path] = None
    key: str = ""
    progress: bool = True
    stop_after: Optional[int] = None   # train the first K epochs of the unchanged schedule, then stop
    step: Optional[str] = None         # "eager" | "graph" (bench/training/step.py); None: step.default_step's
    # which from-scratch start this run's epochs descend from: kept in every checkpoint and taken over on resume,
    # so two records of one key with different lineages computed every epoch they share independently;
    # None after resuming a checkpoint written before lineages were kept
    lineage: Optional[str] = field(default_factory=new_lineage)

    def last_epoch(self, hp) -> int:
        """How many epochs this call trains to: the schedule's end, or the --stop-after point before it."""
        return hp.epochs if self.stop_after is None else min(self.stop_after, hp.epochs)

    def save_checkpoint(self, state: dict) -> None:
        if self.checkpoint is None:
            return
        checkpoint.write(self.checkpoint, {"key": self.key, **state, "rng": rng_state(self.gens),
                                           "lineage": self.lineage})

    def load_checkpoint(self, restore_rng: bool = True) -> Optional[dict]:
        """The last epoch's state of this exact run (its digest, key and fields checked; an unusable file is set
        aside and the run starts over), with every RNG restored unless restore_rng is False."""
        if self.checkpoint is None or not (self.checkpoint.exists() or self.checkpoint.is_symlink()):
            return None
        state, why = checkpoint.problem_with(self.checkpoint, self.key, self.gens)
        if why:
            self.reject_checkpoint(why)
            return None
        if restore_rng:
            set_rng_state(state["rng"], self.gens)
        self.lineage = state.get("lineage")
        return state

    def reject_checkpoint(self, why: str) -> None:
        """Set the checkpoint aside; the run starts over, a new lineage."""
        checkpoint.set_aside(self.checkpoint, why, log=tqdm.write if self.progress else print)
        self.lineage = new_lineage()

    def bar(self, start: int, total: int):
        return tqdm(range(start, total), initial=start, total=total, unit="epoch", dynamic_ncols=True,
                    desc=f"{self.name} seed {self.seed}", disable=not self.progress, mininterval=0.5)

    def batch_bar(self, batches, total: int):
        """Batches of one epoch, with a bar that appears only when the epoch takes more than a few seconds."""
        return tqdm(batches, total=total, unit="batch", dynamic_ncols=True, leave=False, delay=3,
                    desc="  epoch", disable=not self.progress, mininterval=0.5)


@dataclass
class TrainResult:
    curves: dict
    weights_sha256: str
    epochs_run: int
    resumed_from: int = 0
    extra: dict = field(default_factory=dict)
    truncated: bool = False                 # stopped by --stop-after before the schedule's end
    state: Optional[dict] = field(default=None, repr=False)   # the final weights (not recorded)


# ---------------------------------------------------------------- batches

def fast_batches(split: Split, hp, transforms, gens, cached: Optional[torch.Tensor] = None):
    """Index batches of the device-resident split; augment each batch on the device."""
    n = len(split)
    order = torch.randperm(n, generator=gens["shuffle"]).to(split.x.device) if hp.shuffle else None
    for start in range(0, n, hp.batch_size):
        # unshuffled batches are views, so a full-batch recipe never copies its data
        idx = order[start:start + hp.batch_size] if hp.shuffle else slice(start, start + hp.batch_size)
        if cached is not None:
            yield cached[idx], split.y[idx]
        else:
            yield augment_batch(split.x[idx], transforms, hp.mean, hp.std, gens["augment"]), split.y[idx]


class ImageDataset(Dataset):
    """PIL images from the uint8 tensors, as torchvision's MNIST / CIFAR10 hand them out."""

    def __init__(self, split: Split, transform):
        self.x = split.x.cpu().numpy()
        self.y = split.y.cpu().tolist()
        self.transform = transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image
        img = self.x[i]
        img = Image.fromarray(img[0], mode="L") if img.shape[0] == 1 else Image.fromarray(img.transpose(1, 2, 0))
        return self.transform(img), self.y[i]


def faithful_loader(split: Split, hp, transforms, gens) -> DataLoader:
    """The documents' pipeline: PIL images through torchvision transforms, shuffled by our generator."""
    return DataLoader(ImageDataset(split, torchvision_pipeline(transforms, hp.mean, hp.std)),
                      batch_size=hp.batch_size, shuffle=hp.shuffle, generator=gens["shuffle"], num_workers=0)


def faithful_batches(loader: DataLoader, device):
    for x, y in loader:
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


# ---------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate(model, split: Split, hp, loss_fn) -> tuple[float, float]:
    """Mean loss and accuracy (%) of the model in eval mode on a whole split."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=split.x.device)
    correct = torch.zeros((), dtype=torch.int64, device=split.x.device)
    for start in range(0, len(split), hp.eval_batch_size):
        x = normalize(split.x[start:start + hp.eval_batch_size], hp.mean, hp.std)
        y = split.y[start:start + hp.eval_batch_size]
        out = model(x)
        loss_sum += loss_fn(out, y).double() * len(y)
        correct += (out.argmax(1) == y).sum()
    n = len(split)
    return loss_sum.item() / n, 100.0 * correct.item() / n


def evaluated(epoch: int, hp, last: Optional[int] = None) -> bool:
    """Evaluate (and checkpoint) every eval_every epochs, after the last, and where --stop-after stops."""
    return epoch % hp.eval_every == 0 or epoch == hp.epochs - 1 or (last is not None and epoch == last - 1)


# ---------------------------------------------------------------- the loop

def _test_pause(ctx: RunContext, epoch: int) -> None:
    """TEST-ONLY hook (tests/test_reliability.py); changes no number. With BENCH_TEST_PAUSE_AFTER_EPOCH=N,
    after epoch N's checkpoint is saved (runs without a checkpoint file never pause): create the file
    BENCH_TEST_PAUSE_FILE (if set) and sleep, so a test can SIGKILL or SIGINT the run at a known point."""
    if ctx.checkpoint is None or os.environ.get("BENCH_TEST_PAUSE_AFTER_EPOCH") != str(epoch):
        return
    if os.environ.get("BENCH_TEST_PAUSE_FILE"):
        Path(os.environ["BENCH_TEST_PAUSE_FILE"]).touch()
    time.sleep(600)


def train(recipe, hp, data: Splits, ctx: RunContext) -> TrainResult:
    """Train a torch recipe as its document does; resume from ctx.checkpoint when present."""
    device = ctx.device
    steps_per_epoch = math.ceil(len(data.train) / hp.batch_size)

    def build():
        model = recipe.build_model(hp).to(device)
        optimizer = recipe.build_optimizer(model, hp)
        return model, optimizer, recipe.build_scheduler(optimizer, hp, steps_per_epoch)

    before = rng_state(ctx.gens)              # a checkpoint that does not fit rebuilds from here, as a fresh run
    model, optimizer, schedule = build()
    loss_fn = recipe.build_loss(hp)
    transforms = recipe.augmentations(hp)

    curves = {k: [] for k in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "epoch_time_s")}
    if data.val is not None:
        curves.update(val_loss=[], val_acc=[])
    start = 0
    state = ctx.load_checkpoint(restore_rng=False)
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if schedule is not None:
                schedule.scheduler.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"], ctx.gens)
            curves, start = state["curves"], state["epoch"]
        except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:   # another model's state
            ctx.reject_checkpoint(f"it does not fit this run ({exc.__class__.__name__}: {str(exc)[:120]})")
            set_rng_state(before, ctx.gens)
            model, optimizer, schedule = build()
            state = None

    reported = curves
    cached = None
    if ctx.pipeline == "faithful":
        loader = faithful_loader(data.train, hp, transforms, ctx.gens)
    elif not transforms:
        cached = normalize(data.train.x, hp.mean, hp.std)  # nothing random: normalize once

    pending_time = state.get("pending_time", 0.0) if state is not None else 0.0
    step = make_step(current_step(ctx.step), model, optimizer, schedule, loss_fn, hp, device, ctx.pipeline)
    last = ctx.last_epoch(hp)
    bar = ctx.bar(start, last)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        step.begin_epoch()
        batches = (faithful_batches(loader, device) if ctx.pipeline == "faithful"
                   else fast_batches(data.train, hp, transforms, ctx.gens, cached))
        for x, y in ctx.batch_bar(batches, steps_per_epoch):
            step(x, y)    # zero_grad, forward, loss, backward, clip, optimizer and batch-schedule step, sums
        loss_sum, correct = step.loss_sum, step.correct

        if not evaluated(epoch, hp, last):
            if schedule is not None and schedule.step_on == "epoch":
                schedule.scheduler.step()
            pending_time += time.perf_counter() - t0
            continue
        # the schedule's own evaluations; a --stop-after point between two of them is evaluated for the
        # truncated record only, so that resuming ends exactly like an uninterrupted run
        on_grid = evaluated(epoch, hp)
        n = len(data.train)
        row = {"epoch": epoch + 1, "train_loss": loss_sum.item() / n, "train_acc": 100.0 * correct.item() / n}
        if data.val is not None:
            row["val_loss"], row["val_acc"] = evaluate(model, data.val, hp, loss_fn)
        row["test_loss"], row["test_acc"] = evaluate(model, data.test, hp, loss_fn)
        if schedule is not None and schedule.step_on == "epoch":
            schedule.scheduler.step()
        elif schedule is not None and schedule.step_on == "val_loss" and on_grid:
            schedule.scheduler.step(row["val_loss"])
        row["lr"] = optimizer.param_groups[0]["lr"]
        row["epoch_time_s"] = pending_time + time.perf_counter() - t0
        if on_grid:
            pending_time = 0.0
            for k, v in row.items():
                curves[k].append(v)
            reported = curves
        else:
            pending_time = row["epoch_time_s"]
            reported = {k: v + [row[k]] for k, v in curves.items()}
        bar.set_postfix(loss=f"{row['train_loss']:.4f}", acc=f"{row['train_acc']:.2f}",
                        test=f"{row['test_acc']:.2f}", refresh=False)
        ctx.save_checkpoint({"epoch": epoch + 1, "model": model.state_dict(),
                             "optimizer": optimizer.state_dict(),
                             "scheduler": None if schedule is None else schedule.scheduler.state_dict(),
                             "curves": curves, "pending_time": pending_time})
        _test_pause(ctx, epoch + 1)
    bar.close()
    return TrainResult(curves=reported, weights_sha256=weights_sha256(model.state_dict()),
                       epochs_run=max(last, start), resumed_from=start, truncated=last < hp.epochs,
                       state=model.state_dict())
