"""The one reader of results/: every record validated, cross-checked and counted once.

Run's skip logic, the report, the regression gate, check-determinism and the export all read
records through `read()`, so a record that one of them trusts, all of them trust. A record is
usable only if it parses, has the schema's fields with the right types and ranges, lives in the
folder of the recipe it names, carries an intact digest, and its metrics are what its own curves
give. Anything else is rejected with a reason (and said aloud by every command), never silently
dropped and never silently used. A JSON file without a schema_version is not a record at all.
Copies (same run key, same weights) count once.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, Optional

from .store import READABLE_VERSIONS

STATUSES = ("complete", "truncated")
PIPELINES = ("fast", "faithful")
HEX = re.compile(r"^[0-9a-f]+$")
# Metrics whose values are percentages, and losses: the ranges a valid record respects.
PERCENT = re.compile(r"(^|_)acc(_|$)")
LOSS = re.compile(r"(^|_)loss(_|$)")


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
    copies: dict[str, list[str]] = field(default_factory=dict)   # kept record's path -> copies counted once

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

    def frame(self):
        from .export import runs_frame
        return runs_frame(self)

    def curves_frame(self):
        from .export import curves_frame
        return curves_frame(self)


def rel(path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def digest(record: dict) -> str:
    """sha256 of a record's canonical JSON without its digest and the reader's own fields."""
    body = {k: v for k, v in record.items() if k != "digest" and not k.startswith("_")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=False).encode()).hexdigest()


# ---------------------------------------------------------------- validation

class Invalid(ValueError):
    """Why a record cannot be used."""


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _need(cond: bool, why: str) -> None:
    if not cond:
        raise Invalid(why)


def _check_value(name: str, v) -> None:
    """A metric or curve value: a number (None for a NaN/inf the run produced), within its range."""
    if v is None:
        return
    _need(_is_num(v) and math.isfinite(v), f"{name} is {v!r}, not a number")
    if PERCENT.search(name):
        _need(-1e-9 <= v <= 100 + 1e-9, f"{name} = {v} is outside 0..100%")
    if LOSS.search(name):
        _need(v >= 0, f"{name} = {v} is negative")


def normalize(record: dict) -> dict:
    """A schema 1 record in schema 2's shape (what it did not record is filled in as unknown)."""
    r = dict(record)
    env = r.get("env") if isinstance(r.get("env"), dict) else {}
    r.setdefault("variant", None)
    r.setdefault("pipeline", "fast")
    r.setdefault("step", "eager")
    r.setdefault("truncated", False)
    r.setdefault("stop_after", None)
    r.setdefault("epochs_planned", None)
    r.setdefault("constraints", [])
    r.setdefault("threads", env.get("threads") if str(r.get("device", "")).startswith("cpu") else None)
    r.setdefault("host", None)
    return r


def validate(r: dict, folder: str, known: Optional[dict] = None) -> None:
    """Raise Invalid naming the first thing wrong with a (normalized) record."""
    from .engine import summarize

    _need(isinstance(r.get("recipe"), str), "recipe is not a string")
    _need(r["recipe"] == folder, f"a record of {r['recipe']!r} in folder {folder!r} (copied or moved?)")
    if known is not None:
        _need(r["recipe"] in known, f"no recipe module recipes/{r['recipe']}.py")
        if r["variant"] is not None:
            _need(r["variant"] in known[r["recipe"]], f"{r['recipe']} has no variant {r['variant']!r}")
    _need(r["variant"] is None or isinstance(r["variant"], str), "variant is not a string")
    for name in ("fingerprint", "weights_sha256", "key"):
        _need(isinstance(r.get(name), str) and HEX.match(r[name] or "") is not None, f"{name} is not a hex string")
    _need(_is_int(r.get("seed")) and r["seed"] >= 0, f"seed is {r.get('seed')!r}, not an integer >= 0")
    _need(isinstance(r.get("canonical"), bool), "canonical is not true/false")
    _need(isinstance(r.get("overrides"), dict), "overrides is not an object")
    _need(r["canonical"] == (not r["overrides"]), "canonical contradicts its overrides")
    _need(r.get("status") in STATUSES, f"status is {r.get('status')!r}")
    _need(r["truncated"] is (r["status"] == "truncated"), "truncated contradicts status")
    _need(r["pipeline"] in PIPELINES, f"pipeline is {r['pipeline']!r}")
    _need(isinstance(r.get("device"), str) and r["device"].split(":")[0] in ("cpu", "cuda"),
          f"device is {r.get('device')!r}")
    _need(isinstance(r.get("env"), dict), "env is not an object")
    _need(r["threads"] is None or (_is_int(r["threads"]) and r["threads"] >= 1), "threads is not a count")
    _need(_is_int(r.get("params")) and r["params"] > 0, "params is not a positive integer")
    _need(_is_num(r.get("wall_time_s")) and r["wall_time_s"] >= 0, "wall_time_s is not a duration")
    _need(_is_int(r.get("epochs_run")) and r["epochs_run"] >= 1, "epochs_run is not a positive integer")
    _need(r.get("git_commit") is None or isinstance(r["git_commit"], str), "git_commit is not a string")
    try:
        datetime.strptime(str(r.get("started_at")), "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise Invalid(f"started_at is {r.get('started_at')!r}, not a UTC time") from None

    curves, metrics = r.get("curves"), r.get("metrics")
    _need(isinstance(curves, dict) and isinstance(curves.get("epoch"), list) and curves["epoch"],
          "curves has no epochs")
    _need(isinstance(metrics, dict), "metrics is not an object")
    n = len(curves["epoch"])
    for key, values in curves.items():
        _need(isinstance(values, list) and len(values) == n, f"curve {key} has {len(values or [])} points, not {n}")
        for v in values:
            _check_value(f"curve {key}", v)
    _need(all(_is_int(e) for e in curves["epoch"]) and curves["epoch"] == sorted(set(curves["epoch"])),
          "curve epoch is not increasing epoch numbers")
    _need(curves["epoch"][-1] <= r["epochs_run"], "curves go past epochs_run")
    for key, v in metrics.items():
        _check_value(key, v)

    selection = (r.get("hparams") or {}).get("selection")
    _need(isinstance(selection, str), "hparams.selection is missing")
    try:
        again = summarize(curves, selection)
    except (KeyError, ValueError, IndexError, TypeError) as exc:
        raise Invalid(f"its curves cannot be summarized ({exc})") from None
    wrong = [f"{k} {metrics[k]} (its curves give {again[k]})" for k in again
             if k in metrics and not _same(metrics[k], again[k])]
    _need(not wrong, "metrics disagree with its own curves: " + ", ".join(wrong[:3]))
    _need(metrics.get("params", r["params"]) == r["params"], "metrics.params differs from params")
    times = [t for t in curves.get("epoch_time_s", []) if t is not None]
    _need(_same(r["wall_time_s"], sum(times)) or not times, "wall_time_s is not the sum of its epoch times")
    if "digest" in r:
        _need(r["digest"] == digest(r), "its digest does not match its contents (edited after it was written)")


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


# ---------------------------------------------------------------- reading

def _seed_of(data) -> Optional[int]:
    seed = data.get("seed") if isinstance(data, dict) else None
    return seed if _is_int(seed) else None


def known_readings() -> dict[str, set]:
    """recipe -> its variant names, from the registry."""
    from . import registry
    return {r.name: {v.name for v in r.variants} for r in registry.all_recipes()}


def read(results: Path, recipe: Optional[str] = None, known: Optional[dict] = None) -> Evidence:
    """Every record of results/<recipe>/*.json (all recipes when None), sorted into usable and rejected."""
    root = Path(results)
    ev = Evidence(root)
    if not root.exists():
        return ev
    if known is None:
        known = known_readings()
    folders = [root / recipe] if recipe else sorted(p for p in root.iterdir() if p.is_dir())
    seen: dict[tuple, dict] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            try:
                data = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                ev.rejected.append(Rejected(path, f"unreadable ({exc.__class__.__name__}: {str(exc)[:100]})",
                                            folder.name))
                continue
            if not isinstance(data, dict) or "schema_version" not in data:
                ev.not_records.append(path)
                continue
            if data["schema_version"] not in READABLE_VERSIONS:
                ev.rejected.append(Rejected(path, f"schema_version {data['schema_version']!r} is not one this bench "
                                                  f"reads ({', '.join(map(str, READABLE_VERSIONS))}): written by "
                                                  "another version of bench", folder.name, _seed_of(data)))
                continue
            record = normalize(data)
            try:
                validate(record, folder.name, known)
            except Invalid as exc:
                ev.rejected.append(Rejected(path, str(exc), folder.name, _seed_of(data)))
                continue
            record["_path"] = str(path)
            same = (record["key"], record["weights_sha256"])
            if same in seen:
                ev.copies.setdefault(seen[same]["_path"], []).append(str(path))
                continue
            seen[same] = record
            ev.records.append(record)
    ev.records.sort(key=lambda r: (r["recipe"], r["started_at"], r["_path"]))
    # a copy that sorts before its original keeps the earliest record as the one counted
    return ev


# ---------------------------------------------------------------- which runs count

def device_type(record: dict) -> str:
    return str(record["device"]).split(":")[0]


def machine(record: dict) -> str:
    """The hardware label of a record (GPU, or CPU with its kernels, and threads)."""
    from .determinism import machine_key
    return record.get("machine") or machine_key(record.get("env") or {})


def host(record: dict) -> str:
    """A record's host identity; schema 1 records say only their platform string."""
    return record.get("host") or f"unknown ({(record.get('env') or {}).get('platform', '?')})"


@dataclass
class Group:
    """Canonical complete runs of one reading and fingerprint on one pipeline and one device type.

    Every distinct run counts: a seed rerun on another machine (or with other bits) is another draw;
    copies of one run were already counted once by read()."""
    pipeline: str
    device: str
    runs: list = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.pipeline} / {self.device}"

    @property
    def seeds(self) -> list[int]:
        return [r["seed"] for r in self.runs]

    @property
    def reruns(self) -> dict[int, list]:
        """seed -> its runs, oldest first, for seeds with more than one."""
        by_seed: dict[int, list] = {}
        for r in self.runs:
            by_seed.setdefault(r["seed"], []).append(r)
        return {s: v for s, v in sorted(by_seed.items()) if len(v) > 1}

    def values(self, metric: str) -> list[float]:
        return [math.nan if r["metrics"].get(metric) is None else r["metrics"][metric] for r in self.runs]

    @property
    def machines(self) -> list[str]:
        return sorted({machine(r) for r in self.runs})


def group_runs(records: Iterable[dict]) -> list[Group]:
    """Fast before faithful, cuda before cpu; runs sorted by seed, then time."""
    by: dict[tuple, list] = {}
    for r in sorted(records, key=lambda r: (r["seed"], r["started_at"], r.get("_path", ""))):
        by.setdefault((r["pipeline"], device_type(r)), []).append(r)
    groups = [Group(p, d, runs) for (p, d), runs in by.items()]
    return sorted(groups, key=lambda g: (g.pipeline != "fast", g.device != "cuda", g.pipeline, g.device))


def primary(groups: list[Group]) -> Optional[Group]:
    """The group a summary row stands on: the fast pipeline (what `bench run` records by default), then
    the device with most runs, then cuda. Not "most runs" first: one rejected fast record must not move
    the headline onto the other pipeline."""
    return max(groups, key=lambda g: (g.pipeline == "fast", len(g.runs), g.device == "cuda"), default=None)


@dataclass
class ReadingRuns:
    """One reading's records sorted into what counts (groups) and what is only listed."""
    groups: list[Group]
    primary: Optional[Group]
    smoke: list[dict]
    older: list[dict]
    truncated: list[dict]      # canonical --stop-after runs of the current fingerprint: early curves only
    continued: list[dict] = field(default_factory=list)   # truncated runs that a later record continued


def carries_further(later: dict, record: dict) -> bool:
    """`later` is the same run as `record` (same run key) taken further: a complete run, or a larger --stop-after."""
    return later is not record and later["key"] == record["key"] and (
        later["status"] == "complete" or later["epochs_run"] > record["epochs_run"])


def continued_later(record: dict, records: list[dict]) -> bool:
    """A truncated run that a later record of the same run key carried further: its epochs are in that
    record, so counting both would count one run twice."""
    return record["status"] == "truncated" and any(carries_further(o, record) for o in records)


RETRACED_CURVES = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr")


@dataclass
class Retrace:
    """Epochs of a truncated run that a later run of the same key computed again (not restored from a
    checkpoint): same key means same code, seed, machine and threads, so every value must match."""
    truncated: dict
    later: dict
    first: int
    last: int
    differs_at: Optional[int]     # the first epoch whose values differ; None: identical


def retraces(rr: ReadingRuns) -> list[Retrace]:
    out = []
    current = [r for g in rr.groups for r in g.runs] + rr.truncated + rr.continued
    for t in rr.continued:
        for o in current:
            if not carries_further(o, t):
                continue
            start = o.get("resumed_from_epoch") or 0
            theirs = {e: i for i, e in enumerate(o["curves"].get("epoch", []))}
            shared = [(i, theirs[e], e) for i, e in enumerate(t["curves"].get("epoch", [])) if e > start and e in theirs]
            if not shared:
                continue
            diff = next((e for i, j, e in shared
                         if any(_at(t["curves"], k, i) != _at(o["curves"], k, j) for k in RETRACED_CURVES)), None)
            out.append(Retrace(t, o, shared[0][2], shared[-1][2], diff))
    return out


def _at(curves: dict, name: str, i: int):
    values = curves.get(name) or []
    return values[i] if i < len(values) else None


def split_runs(records: list[dict], fingerprint: str) -> ReadingRuns:
    canonical = [r for r in records if r["canonical"] is True]
    current = [r for r in canonical if r["fingerprint"] == fingerprint]
    groups = group_runs(r for r in current if r["status"] == "complete")
    truncated, continued = [], []
    for r in current:
        if r["status"] == "truncated":
            (continued if continued_later(r, current) else truncated).append(r)
    return ReadingRuns(groups, primary(groups), smoke=[r for r in records if r["canonical"] is not True],
                       older=[r for r in canonical if r["fingerprint"] != fingerprint],
                       truncated=truncated, continued=continued)
