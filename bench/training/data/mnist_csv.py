"""MNIST as CSV (label, 784 pixels a row): generated once from the verified IDX files, checked against the
IDX SHA-256 whenever it is read. pandas (the CSV reader) is imported only where a CSV is read: a
deliberately lazy import that the other datasets do not need.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Optional

import numpy as np

from bench.training.data import mnist
from bench.training.data.files import DataError, Log, write_atomic

CSV_FILES = {"train": "mnist_train.csv", "test": "mnist_test.csv"}


def mnist_csv_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "MNIST" / "csv"


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
    specs = {s.name: s for s in mnist.MNIST_RAW}
    got = (hashlib.sha256(mnist.idx_images(images[:, 0])).hexdigest(),
           hashlib.sha256(mnist.idx_labels(labels)).hexdigest())
    want = (specs[f"{prefix}-images-idx3-ubyte"].sha256, specs[f"{prefix}-labels-idx1-ubyte"].sha256)
    if got != want:
        raise DataError(f"{path}: contents differ from MNIST; delete it to regenerate")
    return images, labels


def load_mnist_csv(data_dir: Path, log: Log = print) -> dict[str, np.ndarray]:
    """mnist_train.csv / mnist_test.csv (label, 784 pixels), generated once from verified IDX, re-verified when
    read."""
    folder = mnist_csv_dir(data_dir)
    arrays = None
    out = {}
    for split, fname in CSV_FILES.items():
        path = folder / fname
        if not path.exists():
            arrays = arrays or mnist.load_mnist(data_dir, log)
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
