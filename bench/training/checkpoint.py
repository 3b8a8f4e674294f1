"""The checkpoint file of a run in progress: a header with its format and the SHA-256 of its body, then the
torch-serialized state (the epoch, the model, the optimizer and scheduler, every RNG, the curves, the run key).

Why: torch.load accepts a file with one flipped bit and a resumed run is then silently not bitwise; a file
of another run, or of another shape, gave a traceback on every rerun. Here a checkpoint is used only when
its digest, its run key and its fields check out; anything else is moved aside (never deleted: it may be
all that is left of a long run) with one line saying why, and the seed starts over, which gives the bits
of an uninterrupted run.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from bench.contract.errors import EnvironmentProblem

MAGIC = b"bench-checkpoint 1\n"
REQUIRED = ("epoch", "curves", "rng")


def write(path: Path, state: dict) -> None:
    """Header + body into a temporary file, fsync, then rename over the old checkpoint: whole or not at all."""
    buf = io.BytesIO()
    torch.save(state, buf)
    body = buf.getvalue()
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot write the checkpoint {path}: {exc.strerror or exc} (the previous checkpoint, "
                                 "if any, is kept; free the space or fix the folder, then rerun to resume)") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def body_of(data: bytes) -> tuple[Optional[bytes], Optional[str]]:
    """(the serialized state, None) when the header and digest check out, else (None, why not)."""
    if not data.startswith(MAGIC):
        return None, "it is not a bench checkpoint (no header: cut by a kill, or written by another program)"
    digest, _, body = data[len(MAGIC):].partition(b"\n")
    if hashlib.sha256(body).hexdigest().encode() != digest:
        return None, "its contents do not match its digest (damaged on disk)"
    return body, None


def read(path: Path) -> dict:
    """The state in an intact checkpoint file (ValueError when it is not one): for tools and tests."""
    body, why = body_of(Path(path).read_bytes())
    if why:
        raise ValueError(f"{path}: {why}")
    return torch.load(io.BytesIO(body), map_location="cpu", weights_only=False)


def problem_with(path: Path, key: str, gens: dict) -> tuple[Optional[dict], Optional[str]]:
    """(the state, None) when the file is this run's intact checkpoint, else (None, why not)."""
    if path.is_dir():
        return None, "it is a folder"
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"it cannot be read ({exc.strerror or exc})"
    body, why = body_of(data)
    if why:
        return None, why
    try:
        state = torch.load(io.BytesIO(body), map_location="cpu", weights_only=False)
    except Exception as exc:                     # any failure to unpickle means: not usable
        return None, f"it cannot be loaded ({exc.__class__.__name__})"
    if not isinstance(state, dict):
        return None, f"it holds a {type(state).__name__}, not a run's state"
    if state.get("key") != key:
        return None, f"it belongs to another run (key {str(state.get('key'))[:12]}, not {key[:12]})"
    missing = [k for k in REQUIRED if k not in state]
    rng = state.get("rng")
    if missing or not isinstance(rng, dict) or set(rng.get("gens") or {}) != set(gens):
        return None, f"it lacks {', '.join(missing) or 'the random states of this run'}"
    if not isinstance(state["epoch"], int) or state["epoch"] < 1 or not isinstance(state["curves"], dict):
        return None, "its epoch or curves are not a run's"
    return state, None


def set_aside(path: Path, why: str, log: Callable[[str], None] = print) -> Optional[Path]:
    """Move an unusable checkpoint out of the way (kept beside it, never deleted) and say so in one line."""
    target = path.with_name(f"{path.name}.unusable-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    try:
        os.replace(path, target)
    except OSError as exc:
        raise EnvironmentProblem(f"the checkpoint {path} is unusable ({why}) and cannot be moved aside "
                                 f"({exc.strerror or exc}): move it yourself, then rerun") from exc
    log(f"note: checkpoint {path.name} set aside as {target.name}: {why}; this seed starts over")
    return target
