"""The one reader of results/: every record validated, cross-checked and counted once.

Run's skip logic, the report, the regression gate, check-determinism and the export all read
records through `read()`, so a record that one of them trusts, all of them trust. A record is
usable only if it parses, has the schema's fields with the right types and ranges, lives in the
folder of the recipe it names, carries an intact digest, its metrics are what its own curves give,
its status what its epochs give, and its fingerprint what its hyperparameters and its commit's
FROZEN.json give (bench.records.provenance). Anything else is rejected with a reason (and said
aloud by every command), never silently dropped and never silently used. A JSON file without a
schema_version is not a record at all. Copies (one reading, fingerprint and final weights, whatever
their keys say) count once.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from bench.contract.fingerprint import readings
from bench.records.format import READABLE_VERSIONS, Invalid, is_int, normalize, validate
from bench.records.provenance import Provenance


@dataclass(frozen=True)
class Rejected:
    path: Path
    reason: str
    recipe: Optional[str] = None
    seed: Optional[int] = None


@dataclass
class Evidence:
    """What a results folder holds: usable records, rejected files, non-records and copies."""
    root: Path
    records: list[dict] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    not_records: list[Path] = field(default_factory=list)
    # kept record's path -> copies counted once; a copy of another seed is a seeding fault, and the kept record
    # lists those seeds under "_same_weights_seeds"
    copies: dict[str, list[str]] = field(default_factory=dict)

    def of(self, recipe: str, variant: Optional[str] = None, *, any_variant: bool = False) -> list[dict]:
        return [r for r in self.records
                if r["recipe"] == recipe and (any_variant or r.get("variant") == variant)]

    def rejected_for(self, recipe: str, seed: Optional[int] = None) -> list[Rejected]:
        """Rejected files of a recipe folder that may be this seed's (an unknown seed may be any)."""
        return [x for x in self.rejected if x.recipe == recipe and (seed is None or x.seed in (None, seed))]

    def warnings(self) -> list[str]:
        out = [f"rejected {rel(x.path, self.root)}: {x.reason}" for x in self.rejected]
        out += [f"not a record (no schema_version), skipped: {rel(p, self.root)}" for p in self.not_records]
        return out


def rel(path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- reading

def _seed_of(data) -> Optional[int]:
    seed = data.get("seed") if isinstance(data, dict) else None
    return seed if is_int(seed) else None


def known_readings() -> dict[str, set]:
    """recipe -> its variant names, read from the recipe modules' source (no recipe is imported)."""
    out: dict[str, set] = {}
    for label, _ in readings():
        name, _, variant = label.partition(":")
        out.setdefault(name, set()).update([variant] if variant else [])
    return out


def names_of(seed: int, key: str) -> str:
    """The file names of one run key's records (bench.records.store names them so)."""
    return f"*_seed{seed}_{key[:8]}_*.json"


def one_run(record: dict) -> tuple:
    """What makes two records one run: the same reading, fingerprint and final weights at the same point
    (whatever their keys or hosts say: a copy given a new key is still the same bits)."""
    return (record["recipe"], record["variant"], record["fingerprint"], record["weights_sha256"], record["status"],
            record["epochs_run"])


def is_record_data(data) -> bool:
    """What makes a JSON value a run record for this reader (valid or not): an object with a schema_version."""
    return isinstance(data, dict) and "schema_version" in data


def is_record_file(path: Path) -> bool:
    """A regular file this reader would take for a run record (what no other command may overwrite)."""
    try:
        return Path(path).is_file() and is_record_data(json.loads(Path(path).read_text()))
    except (OSError, UnicodeDecodeError, ValueError):
        return False


def read(results: Path, recipe: Optional[str] = None, known: Optional[dict] = None, names: str = "*.json",
         provenance: Optional[Provenance] = None) -> Evidence:
    """Every record of results/<recipe>/*.json (all recipes when None), sorted into usable and rejected;
    `names` narrows the files read (one run key's records, see names_of). Only regular files are read (a FIFO
    or a device would block)."""
    root = Path(results)
    ev = Evidence(root)
    if not root.is_dir():
        return ev
    if known is None:
        known = known_readings()
    provenance = provenance or Provenance()
    folders = [root / recipe] if recipe else sorted(p for p in root.iterdir() if p.is_dir())
    seen: dict[tuple, dict] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob(names)):
            if not path.is_file():
                if not path.is_dir():
                    ev.not_records.append(path)
                continue
            try:
                data = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                ev.rejected.append(Rejected(path, f"unreadable ({exc.__class__.__name__}: {str(exc)[:100]})",
                                            folder.name))
                continue
            if not is_record_data(data):
                ev.not_records.append(path)
                continue
            if data["schema_version"] not in READABLE_VERSIONS:
                ev.rejected.append(Rejected(path, f"schema_version {data['schema_version']!r} is not one this bench "
                                                  f"reads ({', '.join(map(str, READABLE_VERSIONS))}): written by "
                                                  "another version of bench", folder.name, _seed_of(data)))
                continue
            record = normalize(data)
            try:
                validate(record, folder.name, known, raw=data)
                why = provenance.why_not(record)
                if why:
                    raise Invalid(why)
            except Invalid as exc:
                ev.rejected.append(Rejected(path, str(exc), folder.name, _seed_of(data)))
                continue
            record["_path"] = str(path)
            same = one_run(record)
            if same in seen:
                ev.copies.setdefault(seen[same]["_path"], []).append(str(path))
                if record["seed"] != seen[same]["seed"]:      # other seeds, the same bits: the seed reached nothing
                    seen[same].setdefault("_same_weights_seeds", []).append(record["seed"])
                continue
            seen[same] = record
            ev.records.append(record)
    ev.records.sort(key=lambda r: (r["recipe"], r["started_at"], r["_path"]))
    # a copy that sorts before its original keeps the earliest record as the one counted
    return ev


