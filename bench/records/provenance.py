"""What a record cannot fake: its hyperparameters must give the fingerprint it claims, and the commit it names
must have pinned that fingerprint.

Why: a record's digest catches an accident, not a lie; a record edited with care (its metrics recomputed
from its own curves, its digest redone) is self-consistent. Two things it cannot redo: the fingerprint is
a hash of the recipe's code, its hyperparameters, its variant and its numerics revision, so a smoke run
relabelled canonical (its hyperparameters cut to one epoch) gives another fingerprint than it claims; and
the repository's history is not in the record, so a record that names a commit whose recipes/FROZEN.json
never pinned its fingerprint (an old run relabelled with today's fingerprint) is caught there.
Stdlib only: git is asked through a subprocess, once per commit.
"""
from __future__ import annotations

import functools
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Optional

from bench.contract import frozen
from bench.contract.fingerprint import ROOT


def fingerprint_of(code: str, hparams: dict, variant: Optional[str], revision: int) -> str:
    """The fingerprint these hyperparameters give (bench.contract.registry.Recipe.fingerprint_for, on a record)."""
    hp = json.dumps(hparams, sort_keys=True, default=str)
    text = "\n".join([code, hp, f"variant {variant}", f"numerics revision {revision}"])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def label(recipe: str, variant: Optional[str]) -> str:
    return recipe if variant is None else f"{recipe}:{variant}"


class Provenance:
    """Today's FROZEN.json and the repository's history, read once and cached."""

    def __init__(self, root: Path = ROOT, entries: Optional[dict] = None):
        self.root = Path(root)
        self.entries = frozen.frozen_all() if entries is None else entries
        self.current = {lab: e.get("fingerprint") for lab, e in self.entries.items()}

    @functools.cached_property
    def has_git(self) -> bool:
        return self._git("rev-parse", "--git-dir") is not None

    def _git(self, *args: str) -> Optional[str]:
        try:
            proc = subprocess.run(["git", *args], cwd=self.root, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout if proc.returncode == 0 else None

    @functools.lru_cache(maxsize=None)
    def pinned_at(self, commit: str) -> Optional[dict[str, str]]:
        """label -> fingerprint as that commit's FROZEN.json pinned them ({} when it had none readable); None when
        the commit is not in this repository's history (nothing to check it against)."""
        if not self.has_git or self._git("cat-file", "-e", f"{commit}^{{commit}}") is None:
            return None
        text = self._git("show", f"{commit}:recipes/FROZEN.json")
        if text is None:
            return {}
        try:
            entries = frozen.entries_of(json.loads(text))
        except ValueError:
            return {}
        return {lab: e.get("fingerprint") for lab, e in entries.items()}

    def why_not(self, r: dict) -> Optional[str]:
        """What in the record its fingerprint or its commit contradicts (None when nothing)."""
        reading = label(r["recipe"], r.get("variant"))
        current = self.current.get(reading)
        commit = str(r.get("git_commit") or "")
        if commit.endswith("+dirty") and r.get("canonical"):
            return (f"it ran from a tree with uncommitted changes ({commit}), so it cannot be canonical: nothing says "
                    "which code made it")
        if r.get("canonical") and current is not None and r["fingerprint"] == current:
            entry = self.entries[reading]
            own = fingerprint_of(entry.get("code", ""), r.get("hparams") or {}, r.get("variant"),
                                 int(entry.get("revision", 0)))
            if own != current:
                return (f"its hyperparameters are not {reading}'s (they give fingerprint {own}, not the {current} it "
                        "claims): a smoke run or an edited record cannot be canonical")
        sha = commit.removesuffix("+dirty")
        if not sha:
            return None
        pinned = self.pinned_at(sha)
        if pinned is None:
            return None
        if pinned.get(reading) == r["fingerprint"]:
            return None
        if not pinned and r["fingerprint"] != current:
            return None                                 # an old run from before FROZEN.json, of an older fingerprint
        return (f"its commit {sha[:12]} never pinned fingerprint {r['fingerprint']} for {reading} "
                f"(recipes/FROZEN.json there says {pinned.get(reading) or 'nothing'}): not the code it names")
