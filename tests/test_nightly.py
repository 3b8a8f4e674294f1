"""The nightly path, exercised: tools/nightly.py (what .github/workflows/nightly.yml runs) on two real lenet_sgd
seeds of a fresh window, into a fresh folder, the gate against the committed results, the report --strict.
Each step's exit code is asserted, so a change that breaks the nightly fails CI."""
from __future__ import annotations

import datetime as dt
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("nightly", ROOT / "tools" / "nightly.py")
nightly = importlib.util.module_from_spec(spec)
spec.loader.exec_module(nightly)


def test_every_night_draws_seeds_no_night_drew_before():
    days = [dt.date(2026, 12, 1) + dt.timedelta(d) for d in range(400)]
    windows = [set(range(nightly.seed_window(d, 5), nightly.seed_window(d, 5) + 5)) for d in days]
    assert all(not (a & b) for i, a in enumerate(windows) for b in windows[i + 1:i + 30])
    assert min(min(w) for w in windows) >= nightly.SEED_BASE > 9            # never the committed seeds 0-9


@pytest.mark.slow
def test_one_night_on_two_real_lenet_seeds(tmp_path, real_data_dir):
    out = tmp_path / "night"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "nightly.py"), "--readings", "lenet_sgd",
                           "--seeds", "2", "--seed-start", "500", "--device", "cpu", "--threads", "2",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**__import__("os").environ, "BENCH_DATA_DIR": str(real_data_dir)})
    summary = json.loads((out / "nightly.json").read_text())
    codes = {s["step"]: s["exit"] for s in summary["steps"]}
    assert codes["run lenet_sgd"] == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert codes["compare"] in (0, 1), proc.stdout[-3000:]                 # 1 would be a real regression, never a crash
    assert codes["report"] == 0, proc.stdout[-3000:]
    gate = json.loads((out / "compare.json").read_text())
    (row,) = gate["readings"]
    assert row["reading"] == "lenet_sgd" and not row["broken"] and "p_worse" in row and row["candidate"]["n"] == 2
    assert proc.returncode == (0 if codes["compare"] == 0 else 1)
    assert (out / "REPORT.md").exists() and len(list((out / "results" / "lenet_sgd").glob("*.json"))) == 2
