"""What every dataset loader shares: the error a user can fix, checked files, atomic writes, download timeouts.

A data file is used only after its checksum is verified, and is written only whole (atomically), so an
interrupted fetch never leaves a file that looks like data.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from bench.contract.errors import BadInput


class DataError(BadInput):
    """A dataset problem the user can fix; the message names the file and the fix."""


@dataclass(frozen=True)
class FileSpec:
    name: str
    sha256: str
    size: int


DOWNLOAD_TIMEOUT_S = float(os.environ.get("BENCH_DOWNLOAD_TIMEOUT", "15"))

Log = Callable[[str], None]


def default_data_dir(explicit: Optional[str] = None) -> Path:
    return Path(explicit or os.environ.get("BENCH_DATA_DIR") or "data")


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file read in 1 MiB chunks (hashlib.file_digest needs Python 3.11)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_file(path: Path, spec: FileSpec) -> Optional[str]:
    """None when the file is the canonical one, else what is wrong with it."""
    if not path.exists():
        return "missing"
    if not path.is_file():
        return "not a file (a folder or a special file where the data file goes)"
    size = path.stat().st_size
    if size != spec.size:
        return f"truncated or wrong size ({size:,} bytes, expected {spec.size:,})"
    if file_digest(path) != spec.sha256:
        return "checksum mismatch (sha256 differs from the canonical file)"
    return None


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; data files are for everyone to read
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def socket_timeout(seconds: float):
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def check_gz(gz: Path, spec: FileSpec) -> tuple[Optional[bytes], Optional[str]]:
    """(the unpacked bytes, None) when a .gz holds the canonical file, else (None, what is wrong with it)."""
    if not gz.is_file():
        return None, "missing" if not gz.exists() else "not a file"
    try:
        with gzip.open(gz, "rb") as f:
            unpacked = f.read()
    except (OSError, EOFError) as exc:            # a cut or non-gzip download
        return None, f"unreadable gzip ({exc})"
    if len(unpacked) != spec.size or hashlib.sha256(unpacked).hexdigest() != spec.sha256:
        return None, "its contents fail the canonical checksum (sha256 of the unpacked file)"
    return unpacked, None
