"""A recipe's numerics fingerprint: the numbers a few training steps give on fixed synthetic data.

Why: a harness change (augmentation, data order, evaluation, the loop) can change every
recipe's results while no recipe's code changes. FROZEN.json pins these numbers beside each
fingerprint; a test fails when they move, until `bench freeze` gives the recipe a new
fingerprint, so runs of the old numerics are never mixed with the new ones.

The probe runs the real training path (the engine or the recipe's own train()) for three
epochs on 96 synthetic images, on the CPU, one thread. A pin names the machine that made it
(bench.training.environment.cpu_identity: the processor, torch's kernels for it, torch's and NumPy's
libraries). On that very kind of machine the final weights must match bitwise; on any other the
bits of float sums legitimately differ (an Intel and an AMD AVX512 machine differ in every value),
so the curves and the weights' size must match within a tolerance that rounding stays far inside
(measured: < 1e-3 between thread counts) and a changed formula does not. Several machines' pins
may sit side by side.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from bench.contract import frozen, registry
from bench.contract.recipe import DATASETS
from bench.training.determinism import seed_everything, set_threads
from bench.training.engine import RunContext, train
from bench.training.environment import cpu_identity
from bench.training.splits import make_splits

EPOCHS = 3
TRAIN, EVAL = 96, 16
RTOL, ATOL = 5e-3, 1e-9


def synthetic_arrays(n_train=256, n_test=128, channels=1, size=28, seed=0) -> dict[str, np.ndarray]:
    """Random uint8 images whose label is readable from the image (so a few steps can learn)."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 60, (n, channels, size, size), dtype=np.uint8)
        for i, label in enumerate(y):
            x[i, :, 2 + 2 * label: 4 + 2 * label, 4:size - 4] = 255
        out[f"{split}_x"], out[f"{split}_y"] = x, y.astype(np.int64)
    return out


@contextlib.contextmanager
def one_thread():
    threads = torch.get_num_threads()
    set_threads(1)
    try:
        yield
    finally:
        set_threads(threads)


def probe_hparams(recipe):
    """The recipe's own hyperparameters, cut to a few epochs on the probe's data."""
    hp = recipe.hparams
    cut = {"epochs": EPOCHS, "train_limit": None, "eval_limit": None}
    if hp.split != "official":
        cut["val_size"] = EVAL
    return dataclasses.replace(hp, **cut)


def probe(recipe) -> dict:
    """{"machine": the CPU identity that produced the numbers, "curves": every curve but time,
    "weights": name -> [sum, sum of |w|], "sha256" of the final weights}."""
    hp = probe_hparams(recipe)
    channels = DATASETS[hp.dataset][1]
    size = 32 if channels == 3 else 28
    n_train = TRAIN + (EVAL if hp.split != "official" else 0)
    arrays = synthetic_arrays(n_train=n_train, n_test=EVAL, channels=channels, size=size)
    with one_thread(), torch.random.fork_rng(devices=[]):
        cpu = torch.device("cpu")
        gens = seed_everything(0, cpu)
        splits = make_splits(arrays, hp, gens["split"], cpu)
        ctx = RunContext(f"numerics {recipe.label}", 0, cpu, gens, progress=False)
        result = train(recipe.module, hp, splits, ctx) if recipe.uses_engine else recipe.module.train(hp, splits, ctx)
    curves = {k: [float(v) for v in vals] for k, vals in sorted(result.curves.items()) if k != "epoch_time_s"}
    weights = {}
    for name, value in sorted(result.state.items()):
        w = np.asarray(value.detach().cpu().double() if isinstance(value, torch.Tensor) else value, dtype=np.float64)
        weights[name] = [float(w.sum()), float(np.abs(w).sum())]
    return {"machine": cpu_identity(), "curves": curves, "weights": weights, "sha256": result.weights_sha256}


def _close(a: float, b: float, atol: float) -> bool:
    if not (math.isfinite(a) and math.isfinite(b)):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return abs(a - b) <= atol + RTOL * max(abs(a), abs(b))


def same_machine(pin: dict, now: dict) -> bool:
    """The pin was made on this kind of machine: the same processor, kernels and libraries."""
    return bool(pin.get("machine")) and pin.get("machine") == now.get("machine")


def beyond_tolerance(pinned: dict, now: dict) -> list[str]:
    """What moved by more than rounding between two probes ([] when they agree within the tolerance).

    Every curve within RTOL (an accuracy may move by one image) and the whole model's sum of |w|
    within RTOL; a single tensor's sum is not compared, since a bias in front of BatchNorm has no
    gradient but rounding."""
    out = []
    a, b = pinned.get("curves", {}), now.get("curves", {})
    if set(a) != set(b):
        out.append(f"curves {sorted(set(a) ^ set(b))} appear on one side only")
    for key in sorted(set(a) & set(b)):
        atol = 100.0 / EVAL + 1e-9 if key.endswith("_acc") else ATOL
        if len(a[key]) != len(b[key]) or not all(_close(float(u), float(v), atol) for u, v in zip(a[key], b[key])):
            out.append(f"curve {key}: {a[key]} -> {b[key]}")
    wa, wb = pinned.get("weights", {}), now.get("weights", {})
    if set(wa) != set(wb):
        out.append(f"weights {sorted(set(wa) ^ set(wb))} appear on one side only")
    elif not _close(sum(v[1] for v in wa.values()), sum(v[1] for v in wb.values()), ATOL):
        out.append(f"sum of |weights|: {sum(v[1] for v in wa.values())} -> {sum(v[1] for v in wb.values())}")
    return out


def describe_machine(pin: dict) -> str:
    m = pin.get("machine") or {}
    return ", ".join(str(m[k]) for k in ("cpu_id", "cpu", "capability", "torch") if m.get(k)) or "an unnamed machine"


@dataclass(frozen=True)
class Check:
    """A probe against a reading's pins. status: "same" (bits equal to this machine's pin), "agrees"
    (no pin of this machine; within the tolerance of every pin), "moved" (this machine's bits changed,
    or beyond the tolerance of another machine's pin), "unpinned" (no pin at all)."""
    status: str
    details: tuple = ()
    own_pin: bool = False          # a pin of this very kind of machine exists

    @property
    def ok(self) -> bool:
        return self.status in ("same", "agrees")


def check(pins: list[dict], now: dict) -> Check:
    """Bitwise against a pin of this kind of machine, within the tolerance against every other."""
    if not pins:
        return Check("unpinned")
    own = [p for p in pins if same_machine(p, now)]
    if own:
        if own[0].get("sha256") == now.get("sha256"):
            return Check("same", own_pin=True)
        return Check("moved", (f"final weights {str(own[0].get('sha256'))[:12]} -> {str(now.get('sha256'))[:12]} "
                               f"on the machine that pinned them ({describe_machine(own[0])})",), own_pin=True)
    moved = [f"against the pin of {describe_machine(p)}: {'; '.join(d)}"
             for p in pins if (d := beyond_tolerance(p, now))]
    return Check("moved", tuple(moved)) if moved else Check("agrees")


# ---------------------------------------------------------------- bench freeze

class FreezeRefused(Exception):
    """Numbers beyond the tolerance of other machines' pins, on a machine with no pin of its own."""


def freeze(log=print, accept_moved: bool = False) -> dict[str, tuple]:
    """Pin every reading's fingerprint and numerics; returns label -> (old, new) for what changed.

    The numbers of each reading are measured again on this machine. Its own pin's bits moved while
    the code and hyperparameters did not: the harness changed what the recipe computes, and the
    revision goes up (a new fingerprint). No pin of this machine yet: within the tolerance of the
    other pins its numbers are pinned beside them (nothing else changes); beyond it the reading is
    left as it was and FreezeRefused names it, since a machine without a pin cannot tell a changed
    formula from its own rounding (unless accept_moved says the change is on purpose). A pin that
    names only its CPU kernels (format 2) and whose bits this machine reproduces takes this machine's
    full identity. New code starts the reading's pins afresh.
    """
    old = frozen.frozen_all()
    entries, changes, refused = {}, {}, []
    for r in registry.all_readings():
        numbers = probe(r)
        before = old.get(r.label, {})
        revision = int(before.get("revision", 0))
        same_code = before.get("fingerprint") == r.fingerprint_for(revision)
        pins = list(before.get("pins", [])) if same_code else []
        legacy = [p for p in pins if set(p.get("machine") or {}) <= {"capability"}
                  and (p.get("machine") or {}).get("capability") == numbers["machine"]["capability"]
                  and p.get("sha256") == numbers["sha256"]]
        for p in legacy:
            pins[pins.index(p)] = {**p, "machine": numbers["machine"]}
            log(f"{r.label}: this machine reproduces the pin of {p['machine']['capability']} bitwise: it names "
                "this machine now")
        result = check(pins, numbers)
        if result.status == "moved" and (result.own_pin or accept_moved):
            revision += 1
            pins = [numbers]
            log(f"{r.label}: same code, other numbers ({result.details[0][:200]}): numerics revision {revision}")
        elif result.status == "moved":
            refused.append(r.label)
            log(f"{r.label}: REFUSED: {result.details[0][:300]}; this machine has no pin of its own, so it cannot tell "
                "a changed formula from its own rounding. Nothing was changed for it")
            entries[r.label] = before
            continue
        elif result.status == "agrees":
            pins.append(numbers)
            log(f"{r.label}: pinned this machine ({numbers['machine']['cpu_id']}) beside {len(pins) - 1} other "
                "pin(s): its numbers agree within the tolerance")
        elif result.status == "unpinned":
            pins = [numbers]
        fingerprint = r.fingerprint_for(revision)
        entries[r.label] = {"fingerprint": fingerprint, "code": r.code, "revision": revision, "pins": pins}
        if before.get("fingerprint") != fingerprint:
            changes[r.label] = (before.get("fingerprint"), fingerprint)
    changes.update({k: (v.get("fingerprint"), None) for k, v in old.items() if k not in entries})
    frozen.write_frozen(entries)
    if refused:
        raise FreezeRefused(f"{len(refused)} reading(s) not refrozen ({', '.join(refused)}): their numbers are beyond "
                            "the tolerance of the pins made on other machines. Freeze on a machine that has a pin, "
                            "or pass --accept-moved if you changed what they compute on purpose")
    return changes
