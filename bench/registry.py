"""Finds recipes by scanning recipes/*.py: the file name is the recipe name.

No decorators and no hand-kept list; a module missing part of the contract is an error
that names what is missing. Each recipe's fingerprint (hash of its source and its
hyperparameters) is stored with every run and pinned in recipes/FROZEN.json.
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

import torch

from .recipe import Claim, count_params, declared_params

REQUIRED = ("HPARAMS", "CLAIMS", "ASSUMPTIONS", "CONSTRAINTS", "build_model")
TORCH_HOOKS = ("build_optimizer", "build_scheduler", "build_loss", "augmentations")
RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
FROZEN_PATH = RECIPES_DIR / "FROZEN.json"
HARNESS_FILES = ("engine.py", "augment.py", "data.py", "determinism.py")


class RecipeError(Exception):
    """Unknown recipe, or a recipe module that breaks the contract."""


@dataclass(frozen=True)
class Recipe:
    name: str
    module: ModuleType

    @property
    def hparams(self):
        return self.module.HPARAMS

    @property
    def claims(self) -> list[Claim]:
        return list(self.module.CLAIMS)

    @property
    def assumptions(self):
        return list(self.module.ASSUMPTIONS)

    @property
    def constraints(self):
        return list(self.module.CONSTRAINTS)

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
    def fingerprint(self) -> str:
        text = Path(self.module.__file__).read_text().replace("\r\n", "\n")
        hp = json.dumps(dataclasses.asdict(self.hparams), sort_keys=True, default=str)
        return hashlib.sha256((text + "\n" + hp).encode()).hexdigest()[:16]

    @cached_property
    def params(self) -> int:
        """Measured on a freshly built model, without disturbing anybody's RNG."""
        with torch.random.fork_rng(devices=[]):
            return count_params(self.module.build_model(self.hparams))

    @property
    def declared_params(self):
        return declared_params(self.constraints)


def recipes_dir() -> Path:
    return RECIPES_DIR


def names() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.py") if not p.stem.startswith("_"))


def load(name: str) -> Recipe:
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
    return Recipe(name, module)


def all_recipes() -> list[Recipe]:
    return [load(n) for n in names()]


def harness_hash() -> str:
    """Hash of the code every torch run goes through, stored beside the recipe fingerprint."""
    h = hashlib.sha256()
    for name in HARNESS_FILES:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def frozen() -> dict[str, str]:
    return json.loads(FROZEN_PATH.read_text()) if FROZEN_PATH.exists() else {}


def freeze() -> dict[str, tuple]:
    """Write every recipe's current fingerprint to FROZEN.json; returns what changed."""
    old = frozen()
    new = {r.name: r.fingerprint for r in all_recipes()}
    changes = {n: (old.get(n), fp) for n, fp in new.items() if old.get(n) != fp}
    changes.update({n: (fp, None) for n, fp in old.items() if n not in new})
    FROZEN_PATH.write_text(json.dumps(new, indent=1, sort_keys=True) + "\n")
    return changes
