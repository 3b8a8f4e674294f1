"""Synthetic run records that pass bench.records.evidence's validation: metrics computed from their curves, the
reading's own hyperparameters (they give its fingerprint), a complete run ending at its planned epochs."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from bench.contract import registry
from bench.records.format import SCHEMA_VERSION
from bench.records.selection import summarize
from bench.records.store import write_record


def make_record(recipe: str, seed: int, value: float, *, variant: str | None = None, canonical: bool = True,
                fingerprint: str | None = None, pipeline: str = "fast", device: str = "cpu", host: str = "host1",
                machine: str = "Test CPU / 2 threads", epoch_time: float = 1.0, started: int = 0,
                weights: str | None = None, key: str | None = None, status: str = "complete",
                epochs: int = 3, threads: int | None = 2, precision: str = "fp32") -> dict:
    """A complete run whose document-protocol headline (best test epoch / best val epoch) is `value`."""
    r = registry.load(recipe, variant)
    fp = fingerprint or r.fingerprint
    hp = r.hparams
    n = epochs
    # a complete run's evaluated epochs are its last n (it reached its planned epochs); a truncated one's its first n
    last = hp.epochs if status == "complete" else n
    curve = [round(value - 1 + i / max(1, n - 1), 4) for i in range(n)]
    curve[min(1, n - 1)] = value                                   # the best epoch is epoch 2
    curve[-1] = min(curve[-1], value - 0.01) if n > 1 else value
    curves = {"epoch": list(range(last - n + 1, last + 1)), "train_loss": [0.9 / (i + 1) for i in range(n)],
              "train_acc": [90.0 + 9 * i / max(1, n - 1) for i in range(n)],
              "test_loss": [0.2 / (i + 1) for i in range(n)],
              "test_acc": list(curve), "lr": [0.1] * n, "epoch_time_s": [epoch_time * 1.5] + [epoch_time] * (n - 1)}
    if hp.split != "official":
        curves.update(val_acc=list(curve), val_loss=[0.3 / (i + 1) for i in range(n)])
    metrics = summarize(curves, hp.selection)
    metrics.update(params=r.params, wall_time_s=sum(curves["epoch_time_s"]))
    overrides = {} if canonical else {"epochs": n}
    k = key or hashlib.sha256(f"{recipe}{variant}{fp}{seed}{pipeline}{device}{canonical}{host}{threads}"
                              .encode()).hexdigest()[:24]
    return {"schema_version": SCHEMA_VERSION, "recipe": recipe, "variant": variant, "fingerprint": fp,
            "harness": "h", "key": k, "seed": seed, "canonical": canonical, "overrides": overrides,
            "pipeline": pipeline, "step": "eager", "hparams": json.loads(json.dumps(dataclasses.asdict(hp))),
            "metrics": metrics,
            "curves": curves, "params": r.params, "constraints": [], "wall_time_s": metrics["wall_time_s"],
            "epochs_run": last, "epochs_planned": hp.epochs,
            "stop_after": n if status == "truncated" else None, "truncated": status == "truncated",
            "resumed_from_epoch": 0, "device": device,
            "env": {"python": "3.11.7", "torch": "2.14.1", "cuda": None, "gpu": None, "cpu": "Test CPU",
                    "threads": threads, "platform": "test"},
            "machine": machine, "host": host, "threads": threads if device == "cpu" else None,
            "git_commit": "abc123", "started_at": f"2026-01-01T00:{started:02d}:00Z",
            "finished_at": "2026-01-01T01:00:00Z",
            "weights_sha256": weights or hashlib.sha256(f"{k}{seed}{value}".encode()).hexdigest(),
            "status": status, "assumptions": [], "extra": {}, "precision": precision}


def write(results: Path, *records: dict) -> list[Path]:
    return [write_record(results, r) for r in records]


def runs(recipe: str, values, **kw) -> list[dict]:
    return [make_record(recipe, s, v, **kw) for s, v in enumerate(values)]
