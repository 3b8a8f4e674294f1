"""The recipe contract: what a frozen recipe module declares, as plain data.

A recipe module (recipes/<name>.py) holds HPARAMS, CLAIMS, ASSUMPTIONS, CONSTRAINTS and
build_model(hp); torch recipes add build_optimizer, build_scheduler, build_loss and
augmentations, a recipe that cannot use the engine (the NumPy one) provides train().
Everything here is data so that the report and the schema tests can read it.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional

# The document's selection protocol behind a number: which epoch's model it comes from.
SELECTIONS = ("final_epoch", "best_test_epoch", "best_val_acc", "best_val_loss")
# Claims about the model or the run itself (parameters, wall time) have no epoch to select.
CLAIM_SELECTIONS = SELECTIONS + ("none",)
# Where a claimed number was measured.
MEASURED_ON = ("test", "val", "train", "model", "time")
ASSUMPTION_SOURCES = ("stated", "assumed", "deviation")


@dataclass(frozen=True, kw_only=True)
class Hparams:
    """Fields the engine and the data layer read; a recipe subclasses it once to add its own.

    Every field can be overridden with `--set key=value`, which marks a run non-canonical.
    """
    dataset: str                      # "mnist" | "mnist_csv" | "cifar10"
    epochs: int                       # passes over the training split (fc_sigmoid: full-batch steps)
    batch_size: int                   # training images per optimizer step
    lr: float                         # initial learning rate given to the optimizer
    eval_batch_size: int = 1000       # images per evaluation forward pass
    weight_decay: float = 0.0         # optimizer weight decay (L2 for SGD/Adam, decoupled for AdamW)
    grad_clip: Optional[float] = None  # max global grad norm; None = no clipping
    shuffle: bool = True              # reshuffle the training split every epoch
    split: str = "official"           # "official" (no val) | "tail" (last val_size) | "random" (seeded)
    val_size: int = 0                 # images held out of the training set as validation
    selection: str = "final_epoch"    # the document's protocol, one of SELECTIONS
    mean: tuple[float, ...] = (0.0,)  # Normalize mean per channel, on the [0, 1] scale
    std: tuple[float, ...] = (1.0,)   # Normalize std per channel
    eval_every: int = 1               # evaluate every k epochs (and always after the last)
    train_limit: Optional[int] = None  # smoke runs only: first K training images
    eval_limit: Optional[int] = None   # smoke runs only: first K validation and test images

    def __post_init__(self):
        positive = ("epochs", "batch_size", "eval_batch_size", "eval_every", "train_limit", "eval_limit")
        for name in positive:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (got {value})")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {', '.join(SELECTIONS)} (got {self.selection!r})")
        if self.split not in ("official", "tail", "random"):
            raise ValueError(f"split must be official, tail or random (got {self.split!r})")
        if self.split != "official" and self.val_size < 1:
            raise ValueError(f"split {self.split!r} needs val_size >= 1")
        if self.selection.startswith("best_val") and self.split == "official":
            raise ValueError(f"selection {self.selection!r} needs a validation split")


@dataclass(frozen=True)
class Claim:
    """One number the document states, with the sentence it comes from."""
    metric: str          # key in a run record's metrics, e.g. "test_acc_best"
    value: float
    quote: str           # the document's own words
    selection: str       # one of CLAIM_SELECTIONS
    measured_on: str = "test"       # one of MEASURED_ON
    unit: str = "%"
    higher_is_better: Optional[bool] = True  # None: no better side (e.g. the epoch a best came at)
    headline: bool = False          # exactly one claim per recipe is the headline
    aspiration: bool = False        # "should be around ..." is not a measurement
    copied_from: Optional[str] = None  # recipe whose claim this repeats verbatim
    note: str = ""

    @property
    def flags(self) -> list[str]:
        """Protocol problems that make the number weaker than it reads."""
        out = []
        if self.selection == "best_test_epoch":
            out.append("selected on test")
        if self.measured_on == "train":
            out.append("measured on training data")
        if self.copied_from:
            out.append(f"identical to {self.copied_from}'s claim")
        if self.aspiration:
            out.append("aspiration, not a measurement")
        return out


@dataclass(frozen=True)
class Assumption:
    """A choice the document leaves open (or states), recorded with every run."""
    name: str
    value: str
    source: str = "assumed"   # one of ASSUMPTION_SOURCES
    why: str = ""


@dataclass(frozen=True)
class Schedule:
    """A learning-rate scheduler and when the engine steps it."""
    scheduler: Any
    step_on: Literal["batch", "epoch", "val_loss"]


@dataclass(frozen=True)
class Constraint:
    """A property the document asserts about its model; check() returns (ok, detail)."""
    name: str
    check: Callable[[Any], tuple[bool, str]] = field(repr=False, compare=False)

    def __call__(self, model) -> tuple[bool, str]:
        return self.check(model)


def count_params(model) -> int:
    """Trainable parameters; a model without .parameters() must define num_params()."""
    if hasattr(model, "num_params"):
        return int(model.num_params())
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def MaxParams(limit: int) -> Constraint:
    def check(model):
        n = count_params(model)
        return n < limit, f"{n:,} parameters (limit < {limit:,})"
    return Constraint(f"fewer than {limit:,} parameters", check)


def ExactParams(expected: int) -> Constraint:
    def check(model):
        n = count_params(model)
        return n == expected, f"{n:,} parameters (declared {expected:,})"
    constraint = Constraint(f"exactly {expected:,} parameters", check)
    object.__setattr__(constraint, "expected", expected)
    return constraint


def OutputShape(input_shape: tuple, output_shape: tuple) -> Constraint:
    def check(model):
        import torch
        model.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            out = model(torch.zeros(input_shape))
        return tuple(out.shape) == tuple(output_shape), f"output shape {tuple(out.shape)} for input {input_shape}"
    return Constraint(f"output shape {tuple(output_shape)} for input {tuple(input_shape)}", check)


def DropoutRate(p: float) -> Constraint:
    def check(model):
        import torch
        rates = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
        return bool(rates) and all(r == p for r in rates), f"dropout rates {rates}"
    return Constraint(f"dropout rate {p}", check)


def ConvLayers(spec: list[tuple[int, int, int, int]]) -> Constraint:
    """Every Conv2d in order as (in_channels, out_channels, kernel, padding)."""
    def check(model):
        import torch
        got = [(m.in_channels, m.out_channels, m.kernel_size[0], m.padding[0])
               for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        return got == list(spec), f"conv layers (in, out, kernel, padding) {got}"
    return Constraint(f"conv layers {list(spec)}", check)


def declared_params(constraints) -> Optional[int]:
    """The parameter count a recipe declares through its ExactParams constraint."""
    for c in constraints:
        if hasattr(c, "expected"):
            return c.expected
    return None


def hparam_fields(hp: Hparams) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(hp)}


class OverrideError(ValueError):
    """A --set that names no field, or whose value does not parse as the field's type."""


def _parse(text: str, typ, name: str):
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if text.lower() in ("none", "null"):
            return None
        inner = [a for a in args if a is not type(None)]
        return _parse(text, inner[0], name)
    if origin is tuple:
        return tuple(_parse(part.strip(), args[0], name) for part in text.split(",") if part.strip())
    if typ is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise OverrideError(f"--set {name}={text}: {name} is a bool (true/false)")
    try:
        return typ(text)
    except (TypeError, ValueError):
        raise OverrideError(f"--set {name}={text}: {name} is {getattr(typ, '__name__', typ)}") from None


def apply_overrides(hp: Hparams, assignments: dict[str, str]) -> tuple[Hparams, dict]:
    """Replace existing fields only, each parsed to its declared type; returns (hp, parsed)."""
    hints = typing.get_type_hints(type(hp))
    parsed = {}
    for name, text in assignments.items():
        if name not in hints:
            close = difflib.get_close_matches(name, list(hints), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise OverrideError(f"--set {name}={text}: {type(hp).__name__} has no field {name!r}{hint}")
        parsed[name] = _parse(str(text), hints[name], name)
    try:
        return dataclasses.replace(hp, **parsed), parsed
    except ValueError as exc:
        raise OverrideError(f"--set: {exc}") from None
