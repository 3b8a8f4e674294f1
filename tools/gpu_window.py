#!/usr/bin/env python3
"""The GPU window: everything a lent GPU is for, as ONE device command planned to fit 15 minutes of device
time with its start-up, packing its records after every step so that a command cut short still returns them.

A lent GPU comes rarely, for 15 minutes in all (start-up, idle time and give-back included), at most 10
minutes a command, with a machine that goes back 30 s after a call: two commands likely pay two start-ups.
So the window is one command, `run`, with its own deadline inside the tool's timeout:

  1. the CUDA tests (tests/test_gpu.py -m gpu) and, from them, the step the training uses (graph only if
     every graph-step test passed);
  2. `bench speed --recipe ultimate_mlp` on CUDA: eager against graph step, faithful against fast, the floor;
  3. training waves, each a `bench run --budget` that stops cleanly: complete canonical seeds of lenet_sgd and
     mnist_99_4 (their CUDA cells beside the CPU evidence), ultimate_mlp as --stop-after seeds of the full
     schedule (truncated records: the early-curve table, continued later), complete seeds of fc_sigmoid_bn
     and fc_sigmoid (5-6 hours a seed on a CPU);
  after each: every new record packed into $OUT/records.tar.gz.

Here (no GPU needed):
  python3 tools/gpu_window.py prepare      gpu-data/: the four MNIST files gzipped (11 MB, ignored by git) and
                                           the commit the records will name (the device gets no .git)
  python3 tools/gpu_window.py plan         the plan with its minutes (the dry run); exit 1 if it does not fit
On the GPU machine, through the device tool (the exact call is printed by `plan`):
  run(command="python3 tools/gpu_window.py run", carry=["gpu-data"], timeout_s=570), then give_back
Here, after it:
  python3 tools/gpu_window.py unpack FILES_AT    the records into results/ (never over an existing file)
  python -m bench report

Stdlib only: the GPU machine has its own Python 3.12 and torch, and no package index.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "gpu-data"
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")
DEVICE_S = 900              # device time a lent GPU gives, in all
START_UP_S = 120            # a fresh machine's start (1-2 minutes seen)
RETURN_S = 45               # the tree there, the files back, give_back
TIMEOUT_S = 570             # the device tool's timeout_s for the command (at most 600)
COMMAND_S = 540             # the command's own deadline: it packs and returns before the tool's timeout
PACK_S = 15                 # kept for the last packing
THREADS = 2                 # CPU threads per seed on the GPU machine (not part of a CUDA run's key)


@dataclass(frozen=True)
class Step:
    name: str
    seconds: int                        # at most this long (a wave's --budget; a check's timeout)
    recipe: Optional[str] = None        # a training wave
    seeds: int = 0
    jobs: int = 1
    stop_after: Optional[int] = None    # --stop-after: a truncated record of the unchanged schedule

    def bench_args(self, budget: int, step: str, device: str = "cuda") -> list[str]:
        args = ["run", "--recipe", self.recipe, "--device", device, "--seeds", str(self.seeds),
                "--jobs", str(self.jobs), "--budget", f"{budget}s", "--step", step, "--threads", str(THREADS),
                "--no-progress"]
        return args + (["--stop-after", str(self.stop_after)] if self.stop_after else [])


PLAN = (
    Step("CUDA tests (tests/test_gpu.py -m gpu) and the step to train with", 110),
    Step("bench speed --recipe ultimate_mlp --device cuda (eager vs graph step)", 50),
    Step("lenet_sgd: 5 complete seeds (the CUDA cell beside the CPU runs)", 50, "lenet_sgd", 5, 5),
    Step("mnist_99_4: 5 complete seeds (the CUDA cell beside the CPU runs)", 60, "mnist_99_4", 5, 5),
    Step("ultimate_mlp: 5 seeds, first 20 epochs of the 250-epoch schedule", 110, "ultimate_mlp", 5, 5, 20),
    Step("fc_sigmoid_bn: 2 complete seeds (50,000 full-batch steps)", 70, "fc_sigmoid_bn", 2, 2),
    Step("fc_sigmoid: 2 complete seeds (50,000 full-batch steps)", 60, "fc_sigmoid", 2, 2),
)


# ---------------------------------------------------------------- the plan

def carried() -> list[str]:
    """What gpu-data holds beyond what `prepare` puts there (it travels with every device call: 64 MiB at most)."""
    expected = {f"MNIST/raw/{n}.gz" for n in MNIST_FILES} | {"commit.json"}
    if not DATA.is_dir():
        return ["gpu-data/ is missing: run `python3 tools/gpu_window.py prepare` here first"]
    extra = [p.relative_to(DATA).as_posix() for p in DATA.rglob("*") if p.is_file()
             and p.relative_to(DATA).as_posix() not in expected]
    missing = sorted(expected - {p.relative_to(DATA).as_posix() for p in DATA.rglob("*") if p.is_file()})
    out = [f"gpu-data/ lacks {', '.join(missing)}: run `python3 tools/gpu_window.py prepare`"] if missing else []
    return out + ([f"gpu-data/ holds more than prepare put there ({', '.join(extra[:3])}): delete it, it travels"]
                  if extra else [])


def plan_lines() -> tuple[list[str], bool]:
    steps = sum(s.seconds for s in PLAN)
    total = START_UP_S + TIMEOUT_S + RETURN_S
    fits = steps + PACK_S <= COMMAND_S < TIMEOUT_S <= 600 and total <= DEVICE_S
    out = [f"GPU window: {DEVICE_S / 60:.0f} minutes of device time, one command",
           f"  {START_UP_S / 60:4.1f} min  start-up of a fresh machine (1-2 minutes seen)",
           f"  {TIMEOUT_S / 60:4.1f} min  the command, run(timeout_s={TIMEOUT_S}); its own deadline {COMMAND_S} s:"]
    for i, s in enumerate(PLAN, 1):
        out.append(f"             {i}. {s.seconds:3d} s  {s.name}")
    out += [f"             +  {PACK_S:3d} s  the last packing (records are packed after every step)",
            f"  {RETURN_S / 60:4.1f} min  the tree there, the files back, give_back",
            f"  {total / 60:4.1f} min  in all, of {DEVICE_S / 60:.0f}: "
            + (f"fits, {(DEVICE_S - total) / 60:.1f} min to spare" if fits else "DOES NOT FIT"),
            *(f"warning: {w}" for w in carried()),
            "", "Here first: python3 tools/gpu_window.py prepare",
            f'Then: run(command="python3 tools/gpu_window.py run", carry=["gpu-data"], timeout_s={TIMEOUT_S}); '
            "give_back;",
            "      python3 tools/gpu_window.py unpack <files_at> && python -m bench report"]
    return out, fits


# ---------------------------------------------------------------- here: prepare and unpack

def tree_hash() -> str:
    """The code that trains and judges (bench/, recipes/), as bytes: the device copy must be this tree."""
    h = hashlib.sha256()
    for path in sorted([*ROOT.glob("bench/**/*.py"), *ROOT.glob("recipes/*.py"), ROOT / "recipes" / "FROZEN.json"]):
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def prepare(data_dir: Path) -> int:
    raw = data_dir / "MNIST" / "raw"
    sys.path.insert(0, str(ROOT))
    from bench.training.data import MNIST_RAW          # the canonical checksums (here, where bench is installed)
    want = {s.name: s.sha256 for s in MNIST_RAW}
    target = DATA / "MNIST" / "raw"
    target.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        src, gz = raw / name, raw / f"{name}.gz"
        data = src.read_bytes() if src.exists() else gzip.decompress(gz.read_bytes()) if gz.exists() else None
        if data is None:
            print(f"error: {src} is missing: run `python -m bench data fetch mnist` first", file=sys.stderr)
            return 2
        if hashlib.sha256(data).hexdigest() != want[name]:
            print(f"error: {src} fails MNIST's SHA-256: delete it and fetch again", file=sys.stderr)
            return 2
        (target / f"{name}.gz").write_bytes(gzip.compress(data, 9, mtime=0))
    status = subprocess.run(["git", "status", "--porcelain", "--", "bench", "recipes"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    if status:
        print("error: bench/ or recipes/ has uncommitted changes: commit them first, so that the GPU records name "
              "the code that made them", file=sys.stderr)
        return 2
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    (DATA / "commit.json").write_text(json.dumps({"commit": commit, "tree": tree_hash()}) + "\n")
    keep = {target / f"{n}.gz" for n in MNIST_FILES} | {DATA / "commit.json"}
    for path in [p for p in DATA.rglob("*") if p.is_file() and p not in keep]:
        path.unlink()                                  # an unpacked or generated file would travel too (64 MiB)
    size = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    print(f"gpu-data: the four MNIST .gz files and commit {commit[:12]}, {size / 2**20:.1f} MiB "
          '(carry it: carry=["gpu-data"])')
    return 0


def unpack(files_at: Path, results: Path) -> int:
    archive = files_at / "records.tar.gz"
    if not archive.exists():
        print(f"error: {archive} does not exist (the window packed no record; see its window.log)", file=sys.stderr)
        return 2
    added = skipped = 0
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if not member.isfile() or parts[0] != "results" or ".." in parts or not member.name.endswith(".json"):
                continue
            target = results.joinpath(*parts[1:])
            if target.exists():
                skipped += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
            added += 1
    print(f"{added} record(s) into {results}; {skipped} already there (never overwritten)")
    return 0


# ---------------------------------------------------------------- there: the window

class Window:
    """The command on the GPU machine: steps under one deadline, a log, records packed after every step."""

    def __init__(self, out: Path, seconds: int):
        self.out, self.start, self.deadline = out, time.monotonic(), time.monotonic() + seconds
        self.stamp = time.time() - 1
        self.log = open(out / "window.log", "a", buffering=1)
        self.python = sys.executable

    def say(self, text: str) -> None:
        line = f"[{time.strftime('%H:%M:%S', time.gmtime())} +{time.monotonic() - self.start:5.0f} s] {text}"
        print(line, flush=True)
        self.log.write(line + "\n")

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def call(self, args: list[str], seconds: float, env: Optional[dict] = None) -> int:
        """A child process with its own time limit, its output into the log as it comes."""
        self.say("$ " + " ".join(args))
        try:
            proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    env={**os.environ, **(env or {})})
        except OSError as exc:                 # a tool this machine lacks: say so, and go on with the plan
            self.say(f"could not start {args[0]}: {exc}")
            return 127
        def copy():                        # the output as it comes, while the limit is watched here
            for line in proc.stdout:
                print(line, end="", flush=True)
                self.log.write(line)
        reader = threading.Thread(target=copy, daemon=True)
        reader.start()
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            pass
        if proc.poll() is None:
            proc.terminate()               # SIGTERM: a bench run stops at its last checkpoint and says what it saved
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            self.say(f"stopped at its limit of {seconds:.0f} s")
        code = proc.wait()
        reader.join(timeout=5)
        return code

    def pack(self) -> None:
        """Every record written since the window started (and a failed --jobs child's log), into one archive."""
        paths = [p for p in sorted((ROOT / "results").rglob("*")) if p.is_file() and p.stat().st_mtime >= self.stamp
                 and (p.suffix == ".json" and "partial" not in p.parts or p.suffix == ".log")]
        tmp = self.out / "records.tar.gz.tmp"
        with tarfile.open(tmp, "w:gz") as tar:
            for p in paths:
                tar.add(p, arcname=p.relative_to(ROOT).as_posix())
        os.replace(tmp, self.out / "records.tar.gz")
        self.say(f"packed {sum(p.suffix == '.json' for p in paths)} record(s) into $OUT/records.tar.gz")


def choose_step(junit: Path, report: Path) -> tuple[str, str]:
    """graph only if every graph-step test that ran passed and one did; else eager, with the reason."""
    cases = []
    if junit.exists():
        for case in ET.parse(junit).iter("testcase"):
            state = ("failed" if case.find("failure") is not None or case.find("error") is not None
                     else "skipped" if case.find("skipped") is not None else "passed")
            cases.append((case.get("name", ""), state))
    rows = [json.loads(line) for line in report.read_text().splitlines() if line.strip()] if report.exists() else []
    graph = [(n, s) for n, s in cases if "graph" in n]
    bad = [n for n, s in graph if s == "failed"] + [f"{r['recipe']} determinism" for r in rows
                                                     if r.get("step") == "graph" and not r.get("ok")]
    if bad:
        return "eager", "graph-step tests failed: " + ", ".join(bad[:6])
    if any(s == "passed" for _, s in graph):
        return "graph", f"{sum(s == 'passed' for _, s in graph)} graph-step tests passed, none failed"
    return "eager", "no graph-step test passed (none ran, or pytest was cut short)"


def run(out: Path, device: str = "cuda", seconds: int = COMMAND_S) -> int:
    """The window; `device` and `seconds` other than cuda and COMMAND_S only to rehearse it on a CPU."""
    w = Window(out, seconds)
    commit = {}
    if (DATA / "commit.json").exists():
        commit = json.loads((DATA / "commit.json").read_text())
    named = commit.get("commit", "unknown") + ("" if commit.get("tree") == tree_hash() else "+dirty")
    env = {"BENCH_DATA_DIR": str(DATA), "BENCH_GIT_COMMIT": named, "PYTHONUNBUFFERED": "1"}
    os.environ.update(env)
    w.say(f"GPU window: {seconds} s on {device}; the code is commit {named}")
    try:
        w.call(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"], 15)
        tests, speed, *waves = PLAN
        junit, report = out / "gpu-tests.xml", out / "gpu-report.jsonl"
        code = w.call([w.python, "-m", "pytest", "tests/test_gpu.py", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                       f"--junitxml={junit}"], min(tests.seconds, w.left()), {"BENCH_GPU_REPORT": str(report)})
        step, why = choose_step(junit, report)
        (out / "step.txt").write_text(f"{step}\nwhy: {why}\npytest exit {code}\n")
        w.say(f"pytest exit {code}; training step {step} ({why})")
        w.call([w.python, "-m", "bench", "speed", "--recipe", "ultimate_mlp", "--device", device, "--epochs", "1"],
               min(speed.seconds, w.left()))
        w.pack()
        for wave in waves:
            budget = int(min(wave.seconds, w.left() - PACK_S))
            if budget < 20:
                w.say(f"{wave.recipe}: no time left")
                continue
            w.call([w.python, "-m", "bench", *wave.bench_args(budget, step, device)], budget + 30)
            w.pack()
    finally:                                    # whatever broke, what was recorded comes back
        w.pack()
    w.say(f"done in {time.monotonic() - w.start:.0f} s")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="tools/gpu_window.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="verb", required=True)
    sub.add_parser("plan", help="the plan with its minutes (exit 1 if it does not fit)")
    prep = sub.add_parser("prepare", help="gpu-data/: MNIST gzipped and the commit the records will name")
    prep.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR") or "data")
    there = sub.add_parser("run", help="the window itself, on the GPU machine ($OUT: where its files go)")
    there.add_argument("--device", default="cuda", help=argparse.SUPPRESS)          # cpu: a rehearsal here
    there.add_argument("--seconds", type=int, default=COMMAND_S, help=argparse.SUPPRESS)
    unp = sub.add_parser("unpack", help="the window's records into results/")
    unp.add_argument("files_at", type=Path)
    unp.add_argument("--results", type=Path, default=ROOT / "results")
    args = p.parse_args(argv)
    if args.verb == "plan":
        lines, fits = plan_lines()
        print("\n".join(lines))
        return 0 if fits else 1
    if args.verb == "prepare":
        return prepare(Path(args.data_dir))
    if args.verb == "unpack":
        return unpack(args.files_at, args.results)
    out = Path(os.environ.get("OUT") or ROOT / "gpu-out")
    out.mkdir(parents=True, exist_ok=True)
    return run(out, args.device, args.seconds)


if __name__ == "__main__":
    sys.exit(main())
