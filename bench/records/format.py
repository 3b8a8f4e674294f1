"""The record format: one JSON object per run, its schema versions, its digest, and the checks every
field must pass before a record counts. Shared by the writer (bench.records.store) and every reader
(bench.records.evidence), so that what one trusts all trust. No torch: a checker reads records anywhere.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import datetime
from typing import Optional

from bench.records.selection import summarize

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)   # 1: before variants, host identity and truncated runs
STATUSES = ("complete", "truncated")
PIPELINES = ("fast", "faithful")
PRECISIONS = ("fp32", "tf32")
HEX = re.compile(r"^[0-9a-f]+$")
# Metrics whose values are percentages, and losses: the ranges a valid record respects.
PERCENT = re.compile(r"(^|_)acc(_|$)")
LOSS = re.compile(r"(^|_)loss(_|$)")


def finite(v) -> bool:
    """A real number that is neither NaN nor infinite (what a metric's value must be to count)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def clean(value):
    """JSON has no NaN/inf: store them as null so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def digest(record: dict) -> str:
    """sha256 of a record's canonical JSON without its digest and the reader's own fields."""
    body = {k: v for k, v in record.items() if k != "digest" and not k.startswith("_")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=False).encode()).hexdigest()


def hardware(env: dict) -> str:
    """The GPU, or the CPU model with the kernels torch picked for it (bits differ between AVX2 and AVX512)."""
    return env.get("gpu") or " ".join(filter(None, (env.get("cpu"), env.get("cpu_capability")))) or "unknown"


def machine_key(env: dict) -> str:
    """A short label for 'the same machine' when comparing timings."""
    return f"{hardware(env)} / {env.get('threads')} threads"


# ---------------------------------------------------------------- validation

class Invalid(ValueError):
    """Why a record cannot be used."""


def is_int(v) -> bool:
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
    r.setdefault("precision", "fp32")            # before precision was recorded, every run was fp32 (CPU only)
    return r


def validate(r: dict, folder: str, known: Optional[dict] = None, raw: Optional[dict] = None) -> None:
    """Raise Invalid naming the first thing wrong with a (normalized) record; its digest is checked on the
    record as it was written (`raw`), before normalize() filled in what older schemas did not record."""
    _need(isinstance(r.get("recipe"), str), "recipe is not a string")
    _need(r["recipe"] == folder, f"a record of {r['recipe']!r} in folder {folder!r} (copied or moved?)")
    if known is not None:
        _need(r["recipe"] in known, f"no recipe module recipes/{r['recipe']}.py")
        if r["variant"] is not None:
            _need(r["variant"] in known[r["recipe"]], f"{r['recipe']} has no variant {r['variant']!r}")
    _need(r["variant"] is None or isinstance(r["variant"], str), "variant is not a string")
    for name in ("fingerprint", "weights_sha256", "key"):
        _need(isinstance(r.get(name), str) and HEX.match(r[name] or "") is not None, f"{name} is not a hex string")
    _need(is_int(r.get("seed")) and r["seed"] >= 0, f"seed is {r.get('seed')!r}, not an integer >= 0")
    _need(isinstance(r.get("canonical"), bool), "canonical is not true/false")
    _need(isinstance(r.get("overrides"), dict), "overrides is not an object")
    dirty = str(r.get("git_commit") or "").endswith("+dirty")
    _need(r["canonical"] == (not r["overrides"]) or (dirty and not r["canonical"]),
          "canonical contradicts its overrides")
    _need(r.get("status") in STATUSES, f"status is {r.get('status')!r}")
    _need(r["truncated"] is (r["status"] == "truncated"), "truncated contradicts status")
    _need(r["pipeline"] in PIPELINES, f"pipeline is {r['pipeline']!r}")
    _need(r["precision"] in PRECISIONS, f"precision is {r['precision']!r}")
    _need(isinstance(r.get("device"), str) and r["device"].split(":")[0] in ("cpu", "cuda"),
          f"device is {r.get('device')!r}")
    _need(r["precision"] == "fp32" or r["device"].startswith("cuda"), "precision tf32 on a CPU (TF32 is a GPU mode)")
    _need(isinstance(r.get("env"), dict), "env is not an object")
    _need(r["threads"] is None or (is_int(r["threads"]) and r["threads"] >= 1), "threads is not a count")
    _need(is_int(r.get("params")) and r["params"] > 0, "params is not a positive integer")
    _need(_is_num(r.get("wall_time_s")) and r["wall_time_s"] >= 0, "wall_time_s is not a duration")
    _need(is_int(r.get("epochs_run")) and r["epochs_run"] >= 1, "epochs_run is not a positive integer")
    _need(r.get("git_commit") is None or isinstance(r["git_commit"], str), "git_commit is not a string")
    _need(r.get("lineage") is None or (isinstance(r["lineage"], str) and HEX.match(r["lineage"]) is not None),
          "lineage is not a hex string")
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
    _need(all(is_int(e) for e in curves["epoch"]) and curves["epoch"] == sorted(set(curves["epoch"])),
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
    _need(all(t >= 0 for t in times), "an epoch took a negative time")
    _need(_same(r["wall_time_s"], sum(times)) or not times, "wall_time_s is not the sum of its epoch times")
    _check_status(r)
    _need("digest" in r, "it has no digest (bench writes one into every record: written by hand, or edited)")
    _need(r["digest"] == digest(raw if raw is not None else r),
          "its digest does not match its contents (edited after it was written)")


def _stopped_early(r: dict) -> bool:
    """The run says it stopped early, and its curves show it: its patience's worth of evaluated epochs at the end
    brought no better validation accuracy than the best before them."""
    patience = (r.get("hparams") or {}).get("early_stop_patience")
    val = r["curves"].get("val_acc") or []
    if not (r.get("extra") or {}).get("early_stopped") or not is_int(patience) or not val:
        return False
    values = [v if v is not None else -math.inf for v in val]
    return values.index(max(values)) <= len(values) - 1 - patience


def _check_status(r: dict) -> None:
    """complete only when the run reached its planned epochs or an early stop its curves show; its planned
    epochs are its hyperparameters'."""
    planned, epochs = r.get("epochs_planned"), (r.get("hparams") or {}).get("epochs")
    if planned is None:                                   # schema 1 did not record it
        return
    _need(not is_int(epochs) or planned == epochs, f"epochs_planned {planned} contradicts hparams.epochs {epochs}")
    if r["status"] == "complete":
        _need(r["epochs_run"] == planned or _stopped_early(r),
              f"status complete after {r['epochs_run']} of {planned} planned epochs, with no early stop its curves "
              "show (a truncated run relabelled?)")


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
