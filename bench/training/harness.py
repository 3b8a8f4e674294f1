"""The harness hash: which version of the code every torch run goes through, stored beside the recipe's
fingerprint in each record (a Ray worker whose harness differs from the driver's refuses to train)."""
from __future__ import annotations

import hashlib
from pathlib import Path

HARNESS_FILES = ("engine.py", "step.py", "augment.py", "data/__init__.py", "data/files.py", "data/mnist.py",
                 "data/mnist_csv.py", "data/cifar10.py", "splits.py", "determinism.py")


def harness_hash() -> str:
    """Hash of the code every torch run goes through, stored beside the recipe fingerprint."""
    h = hashlib.sha256()
    for name in HARNESS_FILES:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]
