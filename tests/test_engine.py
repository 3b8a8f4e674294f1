"""The training loop where every number is made, on synthetic data with tiny recipe-like modules.

Each scheduler kind the engine knows ("batch": OneCycleLR, "epoch": CosineAnnealingLR, "val_loss":
ReduceLROnPlateau) and each pipeline ("fast", "faithful"): the learning rates are compared with a
schedule computed here from its formula (never by asking torch or the engine), evaluation and
checkpoint epochs with the rule written out here, epoch times with a fake clock, and a run that is
cut (by a simulated kill or by stop_after) and resumed with one that is not, bit for bit.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from bench.contract.recipe import Hparams, OneOf, Positive, Schedule
from bench.training import checkpoint as checkpoint_file
from bench.training import engine
from bench.training.augment import RandomAffine
from bench.training.determinism import seed_everything
from bench.training.engine import RunContext, train
from bench.training.numerics import one_thread, synthetic_arrays
from bench.training.splits import make_splits

CPU = torch.device("cpu")
N_TRAIN, N_VAL, N_TEST, BATCH = 192, 64, 64, 32
STEPS = math.ceil(N_TRAIN / BATCH)            # 6 optimizer steps per epoch
KINDS = ("batch", "epoch", "val_loss")
PIPELINES = ("fast", "faithful")

# OneCycle, cosine and plateau settings, as the tiny recipe builds its schedulers from them
PCT_START, DIV, FINAL_DIV = 0.3, 10.0, 100.0
ETA_MIN_FACTOR = 0.01
FACTOR, PATIENCE, THRESHOLD = 0.5, 0, 0.05


@dataclass(frozen=True, kw_only=True)
class TinyHparams(Hparams):
    kind: str = "batch"               # which scheduler the tiny recipe builds
    max_lr: float = 0.2               # OneCycle peak
    augment: bool = True              # RandomAffine (draws on the augment stream / torch's global RNG)

    DOMAINS = {"kind": OneOf(*KINDS), "max_lr": Positive(), "augment": OneOf(True, False)}


def tiny_hparams(kind="batch", **kw) -> TinyHparams:
    split = {"split": "tail", "val_size": N_VAL} if kind == "val_loss" else {}
    base = dict(dataset="mnist", epochs=4, batch_size=BATCH, lr=0.05, eval_batch_size=1000, mean=(0.1,),
                std=(0.3,), kind=kind, **split)
    return TinyHparams(**{**base, **kw})


class LoggingSGD(torch.optim.SGD):
    """SGD that notes the learning rate each step actually used."""

    def __init__(self, params, used: list, **kw):
        super().__init__(params, **kw)
        self.used = used

    def step(self, closure=None):
        self.used.append(self.param_groups[0]["lr"])
        return super().step(closure)


class LoggingLoss(nn.CrossEntropyLoss):
    """Cross-entropy that notes (loss, correct, images) of every training batch (grad enabled)."""

    def __init__(self, batches: list):
        super().__init__()
        self.batches = batches

    def forward(self, out, y):
        loss = super().forward(out, y)
        if torch.is_grad_enabled():
            self.batches.append((float(loss.detach()), int((out.argmax(1) == y).sum()), len(y)))
        return loss


def tiny_recipe(clock=None):
    """A recipe module as the engine sees one: build_model, build_optimizer, build_scheduler, build_loss,
    augmentations. `used` collects the lr of every optimizer step, `batches` the loss and hits of every
    training batch; `clock` (a FakeClock) advances by 1 per training batch and 1/1024 per evaluation batch."""
    used: list = []
    batches: list = []

    def build_model(hp):
        model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 10))
        if clock is not None:
            model.register_forward_pre_hook(lambda m, _: clock.tick(1.0 if m.training else 1 / 1024))
        return model

    def build_optimizer(model, hp):
        return LoggingSGD(model.parameters(), used, lr=hp.lr, momentum=0.9)

    def build_scheduler(optimizer, hp, steps_per_epoch):
        if hp.kind == "batch":
            return Schedule(torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=hp.max_lr, total_steps=steps_per_epoch * hp.epochs, pct_start=PCT_START,
                div_factor=DIV, final_div_factor=FINAL_DIV), "batch")
        if hp.kind == "epoch":
            return Schedule(torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=hp.epochs, eta_min=hp.lr * ETA_MIN_FACTOR), "epoch")
        return Schedule(torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=FACTOR, patience=PATIENCE, threshold=THRESHOLD, threshold_mode="abs"), "val_loss")

    def augmentations(hp):
        return [RandomAffine(degrees=5.0, translate=(0.1, 0.0))] if hp.augment else []   # keeps the label (a row)

    return SimpleNamespace(build_model=build_model, build_optimizer=build_optimizer,
                           build_scheduler=build_scheduler, build_loss=lambda hp: LoggingLoss(batches),
                           augmentations=augmentations, used=used, batches=batches)


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def _arrays(val: bool) -> dict:
    """N_TRAIN training images (plus N_VAL held out for validation). With validation, the test labels are
    shuffled: test loss then rises while validation loss falls, so a scheduler fed the wrong one is seen."""
    arrays = synthetic_arrays(n_train=N_TRAIN + (N_VAL if val else 0), n_test=N_TEST)
    if val:
        arrays["test_y"] = np.random.default_rng(1).permutation(arrays["test_y"])
    return arrays


ARRAYS = {val: _arrays(val) for val in (False, True)}


def run(recipe, hp, *, pipeline="fast", checkpoint=None, stop_after=None, seed=0, disturb=False):
    """One run as a fresh process makes it: seed everything, split, train (resuming from checkpoint if there)."""
    gens = seed_everything(seed, CPU)
    splits = make_splits(ARRAYS[hp.split != "official"], hp, gens["split"], CPU)
    if disturb:      # a resumed process has drawn other numbers before training: the checkpoint must not care
        random.random(), np.random.rand(), torch.rand(5)
        for g in gens.values():
            torch.rand(5, generator=g)
    ctx = RunContext("tiny", seed, CPU, gens, pipeline, checkpoint, key="tiny-key", progress=False,
                     stop_after=stop_after)
    return train(recipe, hp, splits, ctx)


# ---------------------------------------------------------------- the schedules, written out

def one_cycle(step: int, hp) -> float:
    """OneCycleLR (two phases, cosine annealing) after `step` optimizer steps."""
    total = STEPS * hp.epochs
    initial = hp.max_lr / DIV
    low = initial / FINAL_DIV
    up_end, down_end = PCT_START * total - 1, total - 1

    def cos(start, end, pct):
        return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))
    if step <= up_end:
        return cos(initial, hp.max_lr, step / up_end)
    return cos(hp.max_lr, low, (step - up_end) / (down_end - up_end))


def cosine(epoch: int, hp) -> float:
    """CosineAnnealingLR(T_max=epochs) after `epoch` scheduler steps."""
    eta_min = hp.lr * ETA_MIN_FACTOR
    return eta_min + (hp.lr - eta_min) * (1 + math.cos(math.pi * epoch / hp.epochs)) / 2


def plateau(val_losses: list, hp) -> list:
    """ReduceLROnPlateau(mode min, absolute threshold, no cooldown): the lr after each step on these losses."""
    lr, best, bad, out = hp.lr, math.inf, 0, []
    for v in val_losses:
        if v < best - THRESHOLD:
            best, bad = v, 0
        else:
            bad += 1
        if bad > PATIENCE:
            if lr - lr * FACTOR > 1e-8:
                lr *= FACTOR
            bad = 0
        out.append(lr)
    return out


def evaluated_epochs(epochs: int, every: int, stop_after=None) -> list[int]:
    """1-based epochs that are evaluated and checkpointed: the first of every `every`, the last, the stop point."""
    last = epochs if stop_after is None else min(stop_after, epochs)
    return [e for e in range(1, last + 1) if (e - 1) % every == 0 or e == epochs or e == last]


def expected_lr_curve(hp, curves) -> list:
    """The recorded lr of each evaluated epoch: the lr in force after that epoch's scheduler steps. The plateau
    scheduler steps only on the schedule's own evaluations, not at a --stop-after point between them."""
    if hp.kind == "batch":
        return [one_cycle(e * STEPS, hp) for e in curves["epoch"]]
    if hp.kind == "epoch":
        return [cosine(e, hp) for e in curves["epoch"]]
    grid = [i for i, e in enumerate(curves["epoch"]) if engine.evaluated(e - 1, hp)]
    stepped = plateau([curves["val_loss"][i] for i in grid], hp)
    out, last = [], hp.lr
    for i in range(len(curves["epoch"])):
        if i in grid:
            last = stepped[grid.index(i)]
        out.append(last)
    return out


def expected_used(hp, curves) -> list:
    """The lr of every optimizer step of an uninterrupted run with eval_every 1."""
    if hp.kind == "batch":
        return [one_cycle(k, hp) for k in range(STEPS * hp.epochs)]
    if hp.kind == "epoch":
        return [cosine(e, hp) for e in range(hp.epochs) for _ in range(STEPS)]
    per_epoch = [hp.lr] + plateau(curves["val_loss"], hp)[:-1]
    return [lr for lr in per_epoch for _ in range(STEPS)]


def without_time(curves: dict) -> dict:
    return {k: v for k, v in curves.items() if k != "epoch_time_s"}


# ---------------------------------------------------------------- schedules and learning

@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("kind", KINDS)
def test_lr_follows_the_schedule_and_training_learns(kind, pipeline):
    hp = tiny_hparams(kind)
    recipe = tiny_recipe()
    result = run(recipe, hp, pipeline=pipeline)
    c = result.curves
    assert c["epoch"] == [1, 2, 3, 4]
    assert c["lr"] == pytest.approx(expected_lr_curve(hp, c), rel=1e-12, abs=0)
    assert recipe.used == pytest.approx(expected_used(hp, c), rel=1e-12, abs=0)
    if kind == "val_loss":         # the plateau case must both keep and cut the lr, and not follow test loss
        lrs = [hp.lr] + c["lr"]
        assert any(a == b for a, b in zip(lrs, lrs[1:])) and any(b < a for a, b in zip(lrs, lrs[1:])), lrs
        assert plateau(c["test_loss"], hp) != c["lr"]
    # train loss and accuracy: the images-weighted mean over each epoch's batches, in train mode
    assert len(recipe.batches) == STEPS * hp.epochs and sum(n for *_, n in recipe.batches[:STEPS]) == N_TRAIN
    epochs = [recipe.batches[i * STEPS:(i + 1) * STEPS] for i in range(hp.epochs)]
    assert c["train_loss"] == pytest.approx([sum(loss * n for loss, _, n in b) / N_TRAIN for b in epochs], rel=1e-12)
    assert c["train_acc"] == [100.0 * sum(k for _, k, _ in b) / N_TRAIN for b in epochs]
    # test loss and accuracy of the final model, recomputed here in eval mode on the normalized test images
    model = recipe.build_model(hp)
    model.load_state_dict(result.state)
    model.eval()
    arrays = ARRAYS[hp.split != "official"]
    x = (torch.from_numpy(arrays["test_x"]).float() / 255 - hp.mean[0]) / hp.std[0]
    y = torch.from_numpy(arrays["test_y"])
    with torch.no_grad():
        out = model(x)
    assert c["test_loss"][-1] == pytest.approx(float(nn.functional.cross_entropy(out, y)), rel=1e-5)
    assert c["test_acc"][-1] == 100.0 * int((out.argmax(1) == y).sum()) / N_TEST
    # and it learns: chance is 10%
    assert c["train_loss"][-1] < c["train_loss"][0] and c["train_acc"][-1] > 50.0
    held_out = "val" if kind == "val_loss" else "test"
    assert c[f"{held_out}_loss"][-1] < c[f"{held_out}_loss"][0] and c[f"{held_out}_acc"][-1] > 50.0
    assert result.epochs_run == 4 and not result.truncated and result.resumed_from == 0


# ---------------------------------------------------------------- eval_every: epochs, times, checkpoints

class FakeClock:
    def __init__(self):
        self.t = 0.0

    def tick(self, dt):
        self.t += dt

    def perf_counter(self):
        return self.t


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("epochs,every,stop_after", [(7, 3, None), (6, 3, None), (7, 3, 5), (5, 2, 2), (4, 5, None)])
def test_eval_every_evaluates_times_and_checkpoints_as_specified(kind, epochs, every, stop_after, monkeypatch,
                                                                 tmp_path):
    clock = FakeClock()
    monkeypatch.setattr(engine, "time", SimpleNamespace(perf_counter=clock.perf_counter, sleep=None))
    saved = []
    original = RunContext.save_checkpoint

    def save(ctx, state):
        saved.append((state["epoch"], list(state["curves"]["epoch"])))
        original(ctx, state)
    monkeypatch.setattr(RunContext, "save_checkpoint", save)

    hp = tiny_hparams(kind, epochs=epochs, eval_every=every, augment=False)
    recipe = tiny_recipe(clock)
    result = run(recipe, hp, checkpoint=tmp_path / "ck.pt", stop_after=stop_after)
    want = evaluated_epochs(epochs, every, stop_after)
    c = result.curves
    assert c["epoch"] == want
    # train loss of an evaluated epoch is that epoch's own batches, not the skipped ones'
    batches = recipe.batches
    assert c["train_loss"] == pytest.approx(
        [sum(loss * n for loss, _, n in batches[(e - 1) * STEPS:e * STEPS]) / N_TRAIN for e in want], rel=1e-12)
    assert [e + 1 for e in range(want[-1]) if engine.evaluated(e, hp, want[-1])] == want
    assert all(len(c[k]) == len(want) for k in c)
    # an epoch's time is its own training, the skipped epochs' training before it, and its evaluation
    eval_batches = 2 if kind == "val_loss" else 1
    gaps = [b - a for a, b in zip([0] + want, want)]
    assert c["epoch_time_s"] == [STEPS * g + eval_batches / 1024 for g in gaps]
    assert sum(c["epoch_time_s"]) == clock.t
    # a checkpoint after each evaluated epoch, holding the schedule's own evaluations up to it (a --stop-after
    # point between two of them is reported in the result but kept out of the checkpoint's curves)
    on_grid = [e for e in want if engine.evaluated(e - 1, hp)]
    assert saved == [(e, [g for g in on_grid if g <= e]) for e in want]
    assert checkpoint_file.read(tmp_path / "ck.pt")["epoch"] == want[-1]
    assert c["lr"] == pytest.approx(expected_lr_curve(hp, c), rel=1e-12, abs=0)
    assert result.epochs_run == want[-1] and result.truncated == (stop_after is not None and stop_after < epochs)


# ---------------------------------------------------------------- resume: bitwise the same run

class Killed(Exception):
    pass


RESUME_CASES = [("batch", "fast", "official"), ("epoch", "fast", "official"), ("val_loss", "fast", "tail"),
                ("epoch", "fast", "random"), ("batch", "faithful", "official"), ("val_loss", "faithful", "random")]


@pytest.mark.parametrize("kind,pipeline,split", RESUME_CASES)
def test_resume_after_a_kill_is_bitwise_identical(kind, pipeline, split, monkeypatch, tmp_path):
    hp = tiny_hparams(kind, epochs=4, **({} if split == "official" else {"split": split, "val_size": N_VAL}))
    clean = run(tiny_recipe(), hp, pipeline=pipeline)

    original = RunContext.save_checkpoint

    def save_then_die(ctx, state):
        original(ctx, state)
        if state["epoch"] == 2:
            raise Killed
    checkpoint = tmp_path / "ck.pt"
    with monkeypatch.context() as m:
        m.setattr(RunContext, "save_checkpoint", save_then_die)
        with pytest.raises(Killed):
            run(tiny_recipe(), hp, pipeline=pipeline, checkpoint=checkpoint)
    assert checkpoint_file.read(checkpoint)["epoch"] == 2
    resumed = run(tiny_recipe(), hp, pipeline=pipeline, checkpoint=checkpoint, disturb=True)
    assert resumed.resumed_from == 2 and resumed.epochs_run == 4 and not resumed.truncated
    assert resumed.weights_sha256 == clean.weights_sha256
    assert without_time(resumed.curves) == without_time(clean.curves)


STOP_CASES = [(kind, "fast", stop) for kind in KINDS for stop in (2, 4)] + [("batch", "faithful", 2)]


# The val_loss case at 2 guards a fixed bug: the extra evaluation at a stop point between two eval_every
# epochs stepped ReduceLROnPlateau once more than an uninterrupted run, so the weights differed.
@pytest.mark.parametrize("kind,pipeline,stop", STOP_CASES)
def test_stop_after_then_resume_ends_with_the_uninterrupted_weights(kind, pipeline, stop, tmp_path):
    hp = tiny_hparams(kind, epochs=7, eval_every=3)       # evaluated: 1, 4, 7; a stop at 2 adds an evaluation
    whole = run(tiny_recipe(), hp, pipeline=pipeline)
    checkpoint = tmp_path / "ck.pt"
    cut = run(tiny_recipe(), hp, pipeline=pipeline, checkpoint=checkpoint, stop_after=stop)
    assert cut.epochs_run == stop and cut.truncated and cut.curves["epoch"][-1] == stop
    rest = run(tiny_recipe(), hp, pipeline=pipeline, checkpoint=checkpoint, disturb=True)
    assert rest.resumed_from == stop and rest.epochs_run == 7 and not rest.truncated
    assert rest.curves["epoch"] == [1, 4, 7]                 # the stop point was for the truncated record only
    assert {k: v for k, v in rest.curves.items() if k != "epoch_time_s"} == \
        {k: v for k, v in whole.curves.items() if k != "epoch_time_s"}
    assert rest.weights_sha256 == whole.weights_sha256
    assert rest.curves["lr"][-1] == whole.curves["lr"][-1]
