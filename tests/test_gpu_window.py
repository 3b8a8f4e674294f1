"""The GPU window (tools/gpu_window.py), checked on a CPU: its plan fits 15 minutes with a start-up, every
training wave is a command the real parser takes, the step is chosen from the CUDA tests' results, and
records packed there arrive here without overwriting anything."""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import tarfile
import time
from pathlib import Path

import pytest

from bench.cli.parser import build_parser
from bench.contract import registry

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("gpu_window", ROOT / "tools" / "gpu_window.py")
window = importlib.util.module_from_spec(spec)
sys.modules["gpu_window"] = window                  # dataclasses look their module up by name
spec.loader.exec_module(window)


def test_the_plan_fits_fifteen_minutes_with_one_start_up(capsys):
    assert window.main(["plan"]) == 0
    out = capsys.readouterr().out
    assert "fits" in out and "timeout_s=570" in out
    total = window.START_UP_S + window.TIMEOUT_S + window.RETURN_S
    assert total <= window.DEVICE_S and window.TIMEOUT_S <= 600
    assert sum(s.seconds for s in window.PLAN) + window.PACK_S <= window.COMMAND_S < window.TIMEOUT_S


def test_a_plan_that_does_not_fit_says_so(monkeypatch, capsys):
    monkeypatch.setattr(window, "PLAN", window.PLAN + (window.Step("more", 300, "lenet_sgd", 1),))
    assert window.main(["plan"]) == 1 and "DOES NOT FIT" in capsys.readouterr().out


@pytest.mark.parametrize("wave", [s for s in window.PLAN if s.recipe], ids=lambda s: s.recipe)
def test_every_wave_is_a_command_bench_takes(wave):
    args = build_parser().parse_args(wave.bench_args(60, "graph"))
    assert args.command_module == "run" and args.budget == 60 and args.step == "graph" and args.device == "cuda"
    recipe = registry.load(args.recipe)
    if wave.stop_after:
        assert wave.stop_after < recipe.hparams.epochs          # a truncated record of the unchanged schedule


def junit(tmp_path, cases) -> Path:
    body = "".join(f'<testcase name="{n}">' + {"failed": "<failure/>", "skipped": "<skipped/>", "passed": ""}[s]
                   + "</testcase>" for n, s in cases)
    path = tmp_path / "gpu-tests.xml"
    path.write_text(f"<testsuites><testsuite>{body}</testsuite></testsuites>")
    return path


def test_the_step_is_graph_only_when_every_graph_test_passed(tmp_path):
    none = tmp_path / "none.jsonl"
    assert window.choose_step(junit(tmp_path, [("t[graph-a]", "passed"), ("t[eager-a]", "passed")]), none)[0] == "graph"
    assert window.choose_step(junit(tmp_path, [("t[graph-a]", "passed"), ("t[graph-b]", "failed")]), none)[0] == "eager"
    assert window.choose_step(tmp_path / "missing.xml", none)[0] == "eager"
    report = tmp_path / "report.jsonl"
    report.write_text(json.dumps({"recipe": "mnist_99_4", "step": "graph", "ok": False}) + "\n")
    assert window.choose_step(junit(tmp_path, [("t[graph-a]", "passed")]), report)[0] == "eager"


def test_records_packed_there_arrive_here_and_never_overwrite(tmp_path, monkeypatch):
    there = tmp_path / "there"
    old = there / "results" / "lenet_sgd" / "old.json"
    old.parent.mkdir(parents=True)
    old.write_text("{}")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    monkeypatch.setattr(window, "ROOT", there)
    out = tmp_path / "out"
    out.mkdir()
    w = window.Window(out, 60)
    new = there / "results" / "lenet_sgd" / "new.json"
    new.write_text('{"seed": 0}')
    (there / "results" / "lenet_sgd" / "partial").mkdir()
    (there / "results" / "lenet_sgd" / "partial" / "k.pt").write_text("checkpoint")
    w.pack()
    with tarfile.open(out / "records.tar.gz") as tar:
        assert tar.getnames() == ["results/lenet_sgd/new.json"]
    here = tmp_path / "here"
    (here / "lenet_sgd").mkdir(parents=True)
    assert window.unpack(out, here) == 0 and (here / "lenet_sgd" / "new.json").read_text() == '{"seed": 0}'
    (here / "lenet_sgd" / "new.json").write_text("kept")
    assert window.unpack(out, here) == 0 and (here / "lenet_sgd" / "new.json").read_text() == "kept"
    assert window.unpack(tmp_path / "nothing", here) == 2
