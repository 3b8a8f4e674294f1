"""The recipe contract: what a frozen recipe module declares, as plain data.

A recipe module (recipes/<name>.py) holds HPARAMS, CLAIMS, ASSUMPTIONS, CONSTRAINTS and
build_model(hp); torch recipes add build_optimizer, build_scheduler, build_loss and
augmentations, a recipe that cannot use the engine (the NumPy one) provides train().
Everything here is data so that the report and the schema tests can read it. The contract imports
no torch: the constraint checks that inspect a torch model import it when they run (a deliberately
lazy import; a NumPy recipe's checks never need it).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal, Optional

import numpy as np

from bench.contract.errors import BadInput

# The document's selection protocol behind a number: which epoch's model it comes from.
SELECTIONS = ("final_epoch", "best_test_epoch", "best_val_acc", "best_val_loss")
# Claims about the model or the run itself (parameters, wall time) have no epoch to select.
CLAIM_SELECTIONS = SELECTIONS + ("none",)
# Where a claimed number was measured.
MEASURED_ON = ("test", "val", "train", "model", "time")
# stated: the document says it; author_code: the author's own code, where the page is silent or says
# otherwise (../shared/RECIPES.md); assumed: our choice where both are silent; deviation: we knowingly differ.
ASSUMPTION_SOURCES = ("stated", "author_code", "assumed", "deviation")


# ---------------------------------------------------------------- hyperparameter domains

@dataclass(frozen=True)
class Domain:
    """The values a hyperparameter accepts, checked before anything is written or downloaded."""
    text: str                                   # e.g. "> 0", "one of fast, faithful"
    ok: Callable[[Any], bool] = field(repr=False, compare=False)
    optional: bool = False                      # None is accepted too

    def why_not(self, name: str, value) -> Optional[str]:
        if value is None:
            return None if self.optional else f"{name} must be {self.text} (got None)"
        try:
            good = bool(self.ok(value))
        except (TypeError, ValueError):
            good = False
        return None if good else f"{name} must be {self.text} (got {value!r})"

    def or_none(self) -> "Domain":
        return Domain(f"{self.text} or none", self.ok, optional=True)


def _real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def Positive() -> Domain:
    return Domain("a finite number > 0", lambda v: _real(v) and v > 0)


def NonNegative() -> Domain:
    return Domain("a finite number >= 0", lambda v: _real(v) and v >= 0)


def Finite() -> Domain:
    return Domain("a finite number", _real)


def AtLeast(low: int) -> Domain:
    return Domain(f"an integer >= {low}", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low)


def Fraction(high_open: bool = True) -> Domain:
    """A probability: [0, 1) for dropout-like rates (a rate of 1 zeroes everything), else [0, 1]."""
    return Domain("in [0, 1)" if high_open else "in [0, 1]",
                  lambda v: _real(v) and 0 <= v and (v < 1 if high_open else v <= 1))


def Between(low: float, high: float) -> Domain:
    """An open interval, e.g. a multiplicative decay factor in (0, 1)."""
    return Domain(f"in ({low:g}, {high:g})", lambda v: _real(v) and low < v < high)


def OneOf(*choices) -> Domain:
    return Domain("one of " + ", ".join(map(str, choices)), lambda v: v in choices)


def Flag() -> Domain:
    return Domain("true or false", lambda v: isinstance(v, bool))


def Each(inner: Domain, length: Optional[int] = None) -> Domain:
    """A tuple whose every element is in `inner` (and, if given, of exactly `length` elements)."""
    def ok(v):
        return (isinstance(v, tuple) and len(v) > 0 and (length is None or len(v) == length)
                and all(inner.why_not("x", x) is None for x in v))
    size = f"{length} " if length else "one or more "
    return Domain(f"{size}value(s), each {inner.text}", ok)


# Images in each dataset's training set, and channels per image: the bounds of splits and Normalize.
DATASETS = {"mnist": (60_000, 1), "mnist_csv": (60_000, 1), "cifar10": (50_000, 3)}
TEST_IMAGES = {"mnist": 10_000, "mnist_csv": 10_000, "cifar10": 10_000}


@dataclass(frozen=True, kw_only=True)
class Hparams:
    """Fields the engine and the data layer read; a recipe subclasses it once to add its own.

    Every field can be overridden with `--set key=value`, which marks a run non-canonical. Every
    field declares its domain in DOMAINS (a subclass adds its own fields' domains): a value outside
    it is rejected when the hyperparameters are built, so a bad `--set` never starts a run.
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

    DOMAINS: ClassVar[dict] = {
        "dataset": OneOf(*DATASETS), "epochs": AtLeast(1), "batch_size": AtLeast(1), "lr": Positive(),
        "eval_batch_size": AtLeast(1), "weight_decay": NonNegative(), "grad_clip": Positive().or_none(),
        "shuffle": Flag(), "split": OneOf("official", "tail", "random"), "val_size": AtLeast(0),
        "selection": OneOf(*SELECTIONS), "mean": Each(Finite()), "std": Each(Positive()),
        "eval_every": AtLeast(1), "train_limit": AtLeast(1).or_none(), "eval_limit": AtLeast(1).or_none(),
    }

    @classmethod
    def domains(cls) -> dict[str, Domain]:
        """Every field's domain, the subclass's over the base's."""
        out: dict[str, Domain] = {}
        for klass in reversed(cls.__mro__):
            out.update(vars(klass).get("DOMAINS", {}))
        return out

    def __post_init__(self):
        domains = self.domains()
        for f in dataclasses.fields(self):
            if f.name not in domains:
                raise TypeError(f"{type(self).__name__}.{f.name} declares no domain (add it to DOMAINS)")
            why = domains[f.name].why_not(f.name, getattr(self, f.name))
            if why:
                raise ValueError(why)
        n_train, channels = DATASETS[self.dataset]
        for name in ("mean", "std"):
            if len(getattr(self, name)) != channels:
                raise ValueError(f"{name} needs {channels} value(s), one per channel of {self.dataset} "
                                 f"(got {getattr(self, name)!r})")
        if self.split == "official" and self.val_size:
            raise ValueError(f"val_size {self.val_size} needs a validation split (split is official)")
        if self.split != "official" and not 1 <= self.val_size <= n_train - 1:
            raise ValueError(f"split {self.split!r} needs 1 <= val_size <= {n_train - 1} "
                             f"({self.dataset} has {n_train:,} training images; got {self.val_size})")
        if self.selection.startswith("best_val") and self.split == "official":
            raise ValueError(f"selection {self.selection!r} needs a validation split")


@dataclass(frozen=True)
class Claim:
    """One number the document states, with the sentence it comes from."""
    metric: str          # key in a run record's metrics, e.g. "test_acc_best"
    value: float
    quote: str           # the document's own words, a verbatim substring of the document
    selection: str       # one of CLAIM_SELECTIONS
    measured_on: str = "test"       # one of MEASURED_ON
    unit: str = "%"
    higher_is_better: Optional[bool] = True  # None: no better side (e.g. the epoch a best came at)
    headline: bool = False          # exactly one claim per recipe is the headline
    aspiration: bool = False        # "should be around ..." is not a measurement
    copied_from: Optional[str] = None  # recipe whose claim this repeats verbatim
    not_comparable: str = ""        # why our runs cannot measure this number the way the document did
    runs_behind: Optional[int] = None  # the document says its number is the best of this many runs (1: its only run)
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
        if self.not_comparable:
            out.append("not comparable")
        return out


@dataclass(frozen=True)
class Assumption:
    """A choice the document leaves open (or states), recorded with every run."""
    name: str
    value: str
    source: str = "assumed"   # one of ASSUMPTION_SOURCES
    why: str = ""


@dataclass(frozen=True)
class Variant:
    """Another reading of the document, run under its own name: hyperparameters (which select code
    paths in the recipe) that differ from the canonical reading, and the assumption rows it changes."""
    name: str
    hparams: dict                   # field -> value, applied over the recipe's HPARAMS
    assumptions: tuple = ()         # Assumption rows replacing the canonical ones of the same name (or added)
    why: str = ""


@dataclass(frozen=True)
class LogPoint:
    """One per-epoch number the document prints (its training log), quoted like a claim."""
    epoch: int
    metric: str          # curve name in a run record, e.g. "val_acc"
    value: float
    where: str           # where in the document, and the printed text


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
        ok, detail = self.check(model)
        if not isinstance(ok, (bool, np.bool_)):   # a check returning "ok" or 1 would pass by accident
            raise TypeError(f"constraint {self.name!r} returned {ok!r}; a check must return a bool")
        return bool(ok), str(detail)


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
    """Every dropout layer of any kind (Dropout, Dropout1d/2d/3d, AlphaDropout...) drops with rate p."""
    def check(model):
        from torch.nn.modules.dropout import _DropoutNd
        rates = [m.p for m in model.modules() if isinstance(m, _DropoutNd)]
        return bool(rates) and all(r == p for r in rates), f"dropout rates {rates}"
    return Constraint(f"dropout rate {p}", check)


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def ConvLayers(spec: list[tuple]) -> Constraint:
    """Every Conv2d in order as (in, out, kernel, padding[, stride[, dilation[, groups]]]);
    kernel, padding, stride and dilation may be an int (square) or a pair. Unlisted: stride 1,
    dilation 1, groups 1, so a strided, dilated or grouped conv never passes for a plain one."""
    def full(entry):
        cin, cout, kernel, padding, *rest = entry
        stride, dilation, groups = (list(rest) + [1, 1, 1][len(rest):])[:3]
        return (cin, cout, _pair(kernel), _pair(padding), _pair(stride), _pair(dilation), groups)

    want = [full(e) for e in spec]

    def check(model):
        import torch
        got = [(m.in_channels, m.out_channels, _pair(m.kernel_size), _pair(m.padding), _pair(m.stride),
                _pair(m.dilation), m.groups) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        return got == want, f"conv layers (in, out, kernel, padding, stride, dilation, groups) {got}"
    return Constraint(f"conv layers {list(spec)}", check)


def declared_params(constraints) -> Optional[int]:
    """The parameter count a recipe declares through its ExactParams constraint."""
    for c in constraints:
        if hasattr(c, "expected"):
            return c.expected
    return None


def hparam_fields(hp: Hparams) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(hp)}


class OverrideError(BadInput, ValueError):
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
    fields = hparam_fields(hp)
    hints = {k: v for k, v in typing.get_type_hints(type(hp)).items() if k in fields}
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
