"""CIFAR-10 (the python-version batches): read from the folder or torchvision's download, checked against
torchvision's md5 list; it cannot be fetched any other way. torchvision is imported only inside these
functions (a deliberately lazy import).
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Optional

import numpy as np

from bench.training.data.files import (
    DOWNLOAD_TIMEOUT_S,
    DataError,
    Log,
    file_digest,
    socket_timeout,
)

CIFAR_FOLDER = "cifar-10-batches-py"


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
        with socket_timeout(DOWNLOAD_TIMEOUT_S):
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
