"""Command-line argument types and the checks at the door: everything about a command is checked here
before anything is downloaded, trained or written (bad input is exit 2 with one line)."""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import torch

from bench.contract.errors import UsageError
from bench.records.evidence import is_record_file
from bench.records.store import check_writable
from bench.running.budget import parse_duration


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (and exit 2), like every other bad input."""

    def error(self, message):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def nonnegative_int(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else None
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0 (got {text!r})")
    return value


class Seconds(float):
    """A parsed --budget that remembers how the user wrote it (for the "continue with" command)."""
    text = ""


def duration(text: str) -> Seconds:
    try:
        value = Seconds(parse_duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    value.text = text
    return value


def bounded_float(low: float, high: float = math.inf, closed_low: bool = True):
    """argparse type: a float in [low, high) (or (low, high) when closed_low is False)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (low <= value if closed_low else low < value) or not value < high:
            raise argparse.ArgumentTypeError(f"{value} is outside {'[' if closed_low else '('}{low}, {high})")
        return value
    return parse


def fraction(text: str) -> float:
    """argparse type: a float in (0, 1] (--gpus-per-run)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{value} is outside (0, 1]")
    return value


def resolve_device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name}: not a device (use cpu or cuda)") from None
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {name}: only cpu and cuda are supported")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA GPU is visible to torch {torch.__version__} on this machine")
    return device


def path_arg(flag: str, text: str) -> Path:
    """A path argument given as an empty string would mean the working folder: refused."""
    if not str(text).strip():
        raise UsageError(f"{flag} is empty: give a path")
    return Path(text)


def check_folder_arg(flag: str, path: Path) -> None:
    """A folder argument must be a folder, or creatable: never a file (checked before any work)."""
    if not str(path).strip():
        raise UsageError(f"{flag} is empty: give a folder")
    if path.is_symlink() and not path.exists():
        raise UsageError(f"{flag} {path} is a link to nothing ({os.readlink(path)}): fix or remove the link")
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path} is a file, not a folder")


def inside(path: Path, folder: Path) -> bool:
    a, b = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return a == b or b in a.parents


def check_output_arg(flag: str, path: Path, results: list[Path], also: tuple = ()) -> None:
    """An output file of a command other than `run`: never a folder, never inside a results folder (only `run`
    writes there, and a file there would be read as evidence), never an existing record anywhere; its folder
    writable. `also` names more paths the command writes beside it (the report's figures)."""
    if not str(path).strip():
        raise UsageError(f"{flag} is empty: give a file name")
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give a file name")
    if path.exists() and not path.is_file():        # a FIFO or a device: writing to it would block or go astray
        raise UsageError(f"{flag} {path} is not a regular file (a pipe or a device); give a file name")
    for target in (path, *also):
        for folder in results:
            if inside(target, folder):
                raise UsageError(f"{flag} {path} would write {target} into the results folder {folder}: only `bench "
                                 "run` writes there (a file there is read as evidence); write it elsewhere")
    if is_record_file(path):
        raise UsageError(f"{flag} {path} is a run record: it would be overwritten; give another file name")
    check_writable(path.parent, f"{flag} {path}: its folder")



def overrides_of(args) -> dict[str, str]:
    out = {}
    for item in args.set or []:
        if "=" not in item:
            raise UsageError(f"--set {item}: expected key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    for flag in ("epochs", "train_limit", "eval_limit"):
        if getattr(args, flag, None) is not None:
            out[flag] = str(getattr(args, flag))
    return out


def warn_broken(broken: dict[str, str]) -> None:
    """One line on stderr per recipe module that fails to load (the command goes on with the others)."""
    for name, why in sorted(broken.items()):
        print(f"warning: skipped {name}: {why}", file=sys.stderr)
