"""Which runs count together: records of one reading sorted into groups (pipeline, device), the group a
summary stands on, truncated runs and the later records that continued them, smoke and older runs."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Optional

from bench.records.format import machine_key


def device_type(record: dict) -> str:
    return str(record["device"]).split(":")[0]


def machine(record: dict) -> str:
    """The hardware label of a record (GPU, or CPU with its kernels, and threads)."""
    return record.get("machine") or machine_key(record.get("env") or {})


def host(record: dict) -> str:
    """A record's host identity; schema 1 records say only their platform string."""
    return record.get("host") or f"unknown ({(record.get('env') or {}).get('platform', '?')})"


@dataclass
class Group:
    """Canonical complete runs of one reading and fingerprint on one pipeline, one device type and one
    precision (TF32 runs are another implementation cell, compared with the FP32 ones, never pooled).

    Every distinct run counts: a seed rerun on another machine (or with other bits) is another draw;
    copies of one run were already counted once by read()."""
    pipeline: str
    device: str
    runs: list = field(default_factory=list)
    precision: str = "fp32"

    @property
    def label(self) -> str:
        return f"{self.pipeline} / {self.device}" + (f" / {self.precision}" if self.precision != "fp32" else "")

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
    """Fast before faithful, cuda before cpu, fp32 before tf32; runs sorted by seed, then time."""
    by: dict[tuple, list] = {}
    for r in sorted(records, key=lambda r: (r["seed"], r["started_at"], r.get("_path", ""))):
        by.setdefault((r["pipeline"], device_type(r), r.get("precision", "fp32")), []).append(r)
    groups = [Group(p, d, runs, precision) for (p, d, precision), runs in by.items()]
    return sorted(groups, key=lambda g: (g.pipeline != "fast", g.device != "cuda", g.precision != "fp32", g.pipeline,
                                         g.device, g.precision))


def primary(groups: list[Group]) -> Optional[Group]:
    """The group a summary row stands on: the fast pipeline (what `bench run` records by default) in fp32
    (the canonical precision), then the device with most runs, then cuda. Not "most runs" first: one
    rejected fast record must not move the headline onto the other pipeline."""
    return max(groups, key=lambda g: (g.pipeline == "fast", g.precision == "fp32", len(g.runs), g.device == "cuda"),
               default=None)


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


def computed_afresh_after(later: dict, truncated: dict) -> int:
    """The last epoch of `later` that may be `truncated`'s own computation, restored from a checkpoint: none
    (0) when `later` descends from another from-scratch start (its lineage, kept in every checkpoint, differs:
    it may have been resumed in stretches of its own); else its last resume point."""
    if later.get("lineage") and later.get("lineage") != truncated.get("lineage"):
        return 0
    return later.get("resumed_from_epoch") or 0


def retraces(rr: ReadingRuns) -> list[Retrace]:
    out = []
    current = [r for g in rr.groups for r in g.runs] + rr.truncated + rr.continued
    for t in rr.continued:
        for o in current:
            if not carries_further(o, t):
                continue
            start = computed_afresh_after(o, t)
            theirs = {e: i for i, e in enumerate(o["curves"].get("epoch", []))}
            shared = [(i, theirs[e], e) for i, e in enumerate(t["curves"].get("epoch", []))
                      if e > start and e in theirs]
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
