"""Run records: one JSON file per run, written atomically, never overwritten.

Layout: results/<recipe>/<started>_seed<seed>_<key8>_<nonce>.json; the in-progress state of
a run (checkpoint and lock) lives in results/<recipe>/partial/, which is not committed. Every
record carries a digest of its contents (bench.records.format); bench.records.evidence is the one reader.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Iterator

from bench.contract.errors import BadInput, EnvironmentProblem
from bench.records.format import clean, digest


class StoreError(BadInput):
    """The results folder cannot be used as asked (unwritable, or written by a newer bench)."""


def partial_dir(results: Path, recipe: str) -> Path:
    return Path(results) / recipe / "partial"


def check_writable(folder: Path, what: str = "results folder") -> None:
    """Fail before any work, not after, and without creating anything: the folder (or the
    nearest existing parent it would be created in) must be a writable directory."""
    path = Path(folder).absolute()
    while not path.exists():
        path = path.parent
    if not path.is_dir():
        raise StoreError(f"{what} {folder} cannot be created: {path} is a file")
    if not os.access(path, os.W_OK | os.X_OK):
        raise StoreError(f"{what} {folder} is not writable ({path}: permission denied)")


def write_record(results: Path, record: dict) -> Path:
    """temp file + fsync + link: the record appears whole or not at all, and never replaces one. A disk that
    refuses (full, read-only) is an EnvironmentProblem: the run's checkpoint is kept, a rerun records it."""
    try:
        return _write(Path(results), record)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot write the record of {record['recipe']} seed {record['seed']} into "
                                 f"{Path(results) / record['recipe']}: {exc.strerror or exc} (its checkpoint is kept: "
                                 "free the space or fix the folder, then rerun the same command)") from exc


def _write(results: Path, record: dict) -> Path:
    folder = Path(results) / record["recipe"]
    folder.mkdir(parents=True, exist_ok=True)
    body = clean({k: v for k, v in record.items() if not k.startswith("_")})
    body["digest"] = digest(body)
    payload = json.dumps(body, indent=1, sort_keys=True, allow_nan=False) + "\n"
    stamp = record["started_at"].replace(":", "").replace("-", "")[:15]
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".record-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared results folder is for everyone to read
        while True:
            path = folder / f"{stamp}_seed{record['seed']}_{record['key'][:8]}_{secrets.token_hex(3)}.json"
            try:
                os.link(tmp, path)  # fails if the name exists: nothing is ever overwritten
                break
            except FileExistsError:
                continue
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


@contextlib.contextmanager
def run_lock(results: Path, recipe: str, key: str) -> Iterator[bool]:
    """An exclusive lock per run key; yields False when another process holds it.

    flock is released by the kernel when its holder dies, so a killed run never blocks. The
    holder removes the file when it is done; a process that locked a file just removed by
    its previous holder sees that its path now names another file (or none) and tries again.
    """
    folder = partial_dir(results, recipe)
    path = folder / f"{key}.lock"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise StoreError(f"{path} is a folder where this run's lock file goes: remove it and rerun")
    except OSError as exc:
        raise EnvironmentProblem(f"cannot make {folder}: {exc.strerror or exc}") from exc
    while True:
        f = open(path, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            yield False
            return
        try:
            same = os.fstat(f.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        f.close()                              # locked a file that was unlinked meanwhile: retry
    try:
        yield True
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        f.close()
