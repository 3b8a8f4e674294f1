"""Finds recipes by scanning recipes/*.py: the file name is the recipe name.

No decorators and no hand-kept list; a module missing part of the contract, or one that fails
to import, is an error that names what is wrong (all_recipes() leaves it out and names it in
broken(), so every other recipe works). A recipe may declare VARIANTS, other readings of its
document, each loaded as its own Recipe (`registry.load(name, variant)`).

A recipe's fingerprint says what ran: a hash of its code (bench.contract.fingerprint: parsed, so
comments, docstrings, imports and the metadata CLAIMS, ASSUMPTIONS, CONSTRAINTS, VARIANTS and
DOCUMENT_LOG do not count), its hyperparameters, its variant, and its numerics revision, which
recipes/FROZEN.json pins (bench.contract.frozen; `bench freeze` in bench.training.numerics).
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

from bench.contract.errors import BadInput
from bench.contract.fingerprint import RECIPES_DIR, code_hash
from bench.contract.frozen import frozen_entry
from bench.contract.recipe import (
    Claim,
    LogPoint,
    Variant,
    count_params,
    declared_params,
)

REQUIRED = ("HPARAMS", "CLAIMS", "ASSUMPTIONS", "CONSTRAINTS", "build_model")
TORCH_HOOKS = ("build_optimizer", "build_scheduler", "build_loss", "augmentations")


class RecipeError(BadInput):
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
    try:
        module = importlib.import_module(f"recipes.{name}")
    except Exception as exc:                     # a recipe that cannot even be imported: named, never fatal to others
        raise RecipeError(f"recipes/{name}.py fails to import ({exc.__class__.__name__}: {str(exc)[:200]}); fix it "
                          "(every other recipe works without it)") from None
    missing = [a for a in REQUIRED if not hasattr(module, a)]
    if not hasattr(module, "train"):
        missing += [a for a in TORCH_HOOKS if not hasattr(module, a)]
    if missing:
        raise RecipeError(f"recipes/{name}.py lacks {', '.join(missing)} "
                          "(see bench/contract/recipe.py for the contract)")
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


_BROKEN: dict[str, str] = {}


def broken() -> dict[str, str]:
    """name -> why, for the recipe modules that fail to load (found by the last all_recipes())."""
    return dict(_BROKEN)


def all_recipes() -> list[Recipe]:
    """Every recipe's canonical reading; a module that fails to load is left out and named in broken()."""
    out = []
    _BROKEN.clear()
    for n in names():
        try:
            out.append(load(n))
        except RecipeError as exc:
            _BROKEN[n] = str(exc)
    return out


def all_readings() -> list[Recipe]:
    """Every recipe's canonical reading followed by its variants (a variant that fails is named in broken())."""
    out = []
    for r in all_recipes():
        out.append(r)
        for v in r.variants:
            try:
                out.append(load(r.name, v.name))
            except RecipeError as exc:
                _BROKEN[f"{r.name}:{v.name}"] = str(exc)
    return out
