"""Finds recipes by scanning recipes/*.py: the file name is the recipe name.

No decorators and no hand-kept list; a module missing part of the contract is an error
that names what is missing. A recipe may declare VARIANTS, other readings of its document,
each loaded as its own Recipe (`registry.load(name, variant)`).

A recipe's fingerprint says what ran: a hash of its code (parsed, so comments, docstrings,
imports and the metadata CLAIMS, ASSUMPTIONS, CONSTRAINTS, VARIANTS and DOCUMENT_LOG do not
count), its hyperparameters, its variant, and its numerics revision. recipes/FROZEN.json pins
each fingerprint with the numbers a few training steps give on fixed synthetic data
(bench/numerics.py); when those numbers move while the code did not (a harness change),
`bench freeze` raises the revision, so runs of the old numerics are kept but never mixed in.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Optional

import torch

from .fingerprint import code_hash
from .recipe import Claim, LogPoint, Variant, count_params, declared_params

REQUIRED = ("HPARAMS", "CLAIMS", "ASSUMPTIONS", "CONSTRAINTS", "build_model")
TORCH_HOOKS = ("build_optimizer", "build_scheduler", "build_loss", "augmentations")
RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
FROZEN_PATH = RECIPES_DIR / "FROZEN.json"
FROZEN_FORMAT = 3
READABLE_FROZEN = (2, 3)   # 2: one pin per reading, named by its CPU kernels only
HARNESS_FILES = ("engine.py", "step.py", "augment.py", "data.py", "splits.py", "determinism.py")


class RecipeError(Exception):
    """Unknown recipe or variant, or a recipe module that breaks the contract."""


@dataclass(frozen=True)
class Recipe:
    name: str
    module: ModuleType
    variant: Optional[Variant] = None

    @property
    def label(self) -> str:
        """`name` or `name:variant`: how FROZEN.json, the CLI and the report name this reading."""
        return self.name if self.variant is None else f"{self.name}:{self.variant.name}"

    @property
    def variant_name(self) -> Optional[str]:
        return None if self.variant is None else self.variant.name

    @cached_property
    def hparams(self):
        if self.variant is None:
            return self.module.HPARAMS
        return dataclasses.replace(self.module.HPARAMS, **self.variant.hparams)

    @property
    def claims(self) -> list[Claim]:
        return list(self.module.CLAIMS)

    @property
    def assumptions(self):
        """The canonical rows, each replaced by the variant's row of the same name (new names appended)."""
        rows = list(self.module.ASSUMPTIONS)
        if self.variant is not None:
            names = [a.name for a in rows]
            for a in self.variant.assumptions:
                if a.name in names:
                    rows[names.index(a.name)] = a
                else:
                    rows.append(a)
        return rows

    @property
    def changed_assumptions(self) -> list:
        return list(self.variant.assumptions) if self.variant else []

    @property
    def constraints(self):
        return list(self.module.CONSTRAINTS)

    @property
    def variants(self) -> list[Variant]:
        return list(getattr(self.module, "VARIANTS", []))

    @property
    def document_log(self) -> list[LogPoint]:
        return list(getattr(self.module, "DOCUMENT_LOG", []))

    @property
    def doc(self) -> str:
        return (self.module.__doc__ or "").strip()

    @property
    def source(self) -> str:
        """The seed document the recipe was read from (first line of its docstring names it)."""
        return self.doc.splitlines()[0] if self.doc else ""

    @property
    def headline(self) -> Claim:
        return next(c for c in self.claims if c.headline)

    @property
    def uses_engine(self) -> bool:
        return not hasattr(self.module, "train")

    @cached_property
    def code(self) -> str:
        return code_hash(Path(self.module.__file__))

    def fingerprint_for(self, revision: int) -> str:
        hp = json.dumps(dataclasses.asdict(self.hparams), sort_keys=True, default=str)
        text = "\n".join([self.code, hp, f"variant {self.variant_name}", f"numerics revision {revision}"])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def revision(self) -> int:
        return int(frozen_entry(self.label).get("revision", 0))

    @cached_property
    def fingerprint(self) -> str:
        return self.fingerprint_for(self.revision)

    def build_model(self, hp=None):
        """The model for these hyperparameters, built without disturbing anybody's RNG."""
        with torch.random.fork_rng(devices=[]):
            return self.module.build_model(hp if hp is not None else self.hparams)

    @cached_property
    def params(self) -> int:
        return count_params(self.build_model())

    @property
    def declared_params(self):
        return declared_params(self.constraints)

    def check_constraints(self, model) -> list[dict]:
        """Every constraint on a built model: [{"name", "ok", "detail"}]."""
        out = []
        for c in self.constraints:
            ok, detail = c(model)
            out.append({"name": c.name, "ok": ok, "detail": detail})
        return out


def recipes_dir() -> Path:
    return RECIPES_DIR


def names() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.py") if not p.stem.startswith("_"))


def _module(name: str) -> ModuleType:
    known = names()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
        raise RecipeError(f"unknown recipe {name!r}{hint}")
    module = importlib.import_module(f"recipes.{name}")
    missing = [a for a in REQUIRED if not hasattr(module, a)]
    if not hasattr(module, "train"):
        missing += [a for a in TORCH_HOOKS if not hasattr(module, a)]
    if missing:
        raise RecipeError(f"recipes/{name}.py lacks {', '.join(missing)} (see bench/recipe.py for the contract)")
    if sum(c.headline for c in module.CLAIMS) != 1:
        raise RecipeError(f"recipes/{name}.py must mark exactly one claim as headline=True")
    return module


def load(name: str, variant: Optional[str] = None) -> Recipe:
    """A recipe by file name, or `name:variant` / variant= for one of its named readings."""
    if variant is None and ":" in name:
        name, variant = name.split(":", 1)
    module = _module(name)
    if variant is None:
        return Recipe(name, module)
    found = {v.name: v for v in getattr(module, "VARIANTS", [])}
    if variant not in found:
        known = ", ".join(found) or "none"
        raise RecipeError(f"{name} has no variant {variant!r} (its variants: {known}; `python -m bench list`)")
    try:
        recipe = Recipe(name, module, found[variant])
        recipe.hparams                                   # a variant naming no field fails here, not mid-run
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"recipes/{name}.py variant {variant!r}: {exc}") from None
    return recipe


def all_recipes() -> list[Recipe]:
    """Every recipe's canonical reading."""
    return [load(n) for n in names()]


def all_readings() -> list[Recipe]:
    """Every recipe's canonical reading followed by its variants."""
    out = []
    for r in all_recipes():
        out += [r] + [load(r.name, v.name) for v in r.variants]
    return out


def harness_hash() -> str:
    """Hash of the code every torch run goes through, stored beside the recipe fingerprint."""
    h = hashlib.sha256()
    for name in HARNESS_FILES:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- FROZEN.json

def entries_of(data: dict) -> dict[str, dict]:
    """label -> {"fingerprint", "code", "revision", "pins"} from a FROZEN.json of any format this bench
    has written (format 2 held one pin, "numerics", named by its CPU kernels only)."""
    if not isinstance(data, dict) or data.get("format") not in READABLE_FROZEN or not isinstance(
            data.get("recipes"), dict):
        return {}
    out = {}
    for label, entry in data["recipes"].items():
        entry = dict(entry)
        if "pins" not in entry:
            old = entry.pop("numerics", None)
            entry["pins"] = [] if old is None else [
                {"machine": {"capability": old.get("capability")},
                 **{k: v for k, v in old.items() if k != "capability"}}]
        out[label] = entry
    return out


def frozen_all() -> dict[str, dict]:
    """label -> {"fingerprint", "code", "revision", "pins"} as pinned in FROZEN.json."""
    if not FROZEN_PATH.exists():
        return {}
    return entries_of(json.loads(FROZEN_PATH.read_text()))


def frozen_entry(label: str) -> dict:
    return frozen_all().get(label, {})


def frozen() -> dict[str, str]:
    """label -> pinned fingerprint."""
    return {k: v["fingerprint"] for k, v in frozen_all().items()}


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
    from .numerics import check, probe

    old = frozen_all()
    entries, changes, refused = {}, {}, []
    for r in all_readings():
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
    FROZEN_PATH.write_text(json.dumps({"format": FROZEN_FORMAT, "recipes": entries}, indent=1, sort_keys=True)
                           + "\n")
    if refused:
        raise FreezeRefused(f"{len(refused)} reading(s) not refrozen ({', '.join(refused)}): their numbers are beyond "
                            "the tolerance of the pins made on other machines. Freeze on a machine that has a pin, "
                            "or pass --accept-moved if you changed what they compute on purpose")
    return changes
