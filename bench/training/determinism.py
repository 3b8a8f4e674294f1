"""Seeding, deterministic flags, float32 precision and CPU threads: what makes a run repeat bit for bit.

Same recipe + seed + machine + thread count must give bitwise-identical final weights;
everything random in a run draws from the generators made here, and all of their states
can be saved and restored so that a resumed run continues the same streams.
"""
from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits

# cuBLAS needs this before the first CUDA call to make matmuls deterministic.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

STREAMS = ("shuffle", "augment", "split")


PRECISIONS = ("fp32", "tf32")


def set_precision(precision: str) -> None:
    """float32 matmuls and convolutions in IEEE fp32 (the canonical runs, as on a CPU) or TF32 on tensor cores.

    cuDNN's convolutions default to TF32 in torch: left alone, a GPU run would compute in another
    precision than the CPU evidence. One setting for matmuls, convolutions and RNNs, through torch's
    fp32_precision API where it exists (torch 2.9+), else the older allow_tf32 flags."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (one of {', '.join(PRECISIONS)})")
    mode = "ieee" if precision == "fp32" else "tf32"
    if hasattr(torch.backends, "fp32_precision"):
        torch.backends.fp32_precision = mode
        for backend in (torch.backends.cuda.matmul, torch.backends.cudnn.conv, torch.backends.cudnn.rnn):
            backend.fp32_precision = mode
    else:
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"


def precision_in_force() -> dict:
    """What torch will do with float32 now, read back (recorded in every run's environment)."""
    if hasattr(torch.backends, "fp32_precision"):
        return {"matmul": torch.backends.cuda.matmul.fp32_precision, "conv": torch.backends.cudnn.conv.fp32_precision}
    return {"matmul": "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee",
            "conv": "tf32" if torch.backends.cudnn.allow_tf32 else "ieee"}


def deterministic_mode(precision: str = "fp32") -> None:
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True)
    set_precision(precision)


def stream_seed(seed: int, stream: str) -> int:
    """Independent 63-bit seed per (run seed, stream), stable across machines."""
    digest = hashlib.sha256(f"{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def seed_everything(seed: int, device: torch.device, precision: str = "fp32") -> dict[str, torch.Generator]:
    """Seed python/numpy/torch global RNGs and make one generator per data stream.

    Model init and dropout use torch's global RNG (as the documents' code does);
    shuffling and the train/val split draw on the CPU, augmentation on the run's device.
    """
    deterministic_mode(precision)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    gens = {}
    for name in STREAMS:
        dev = device if name == "augment" else torch.device("cpu")
        gens[name] = torch.Generator(device=dev).manual_seed(stream_seed(seed, name))
    return gens


def rng_state(gens: dict[str, torch.Generator]) -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "gens": {k: g.get_state() for k, g in gens.items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, gens: dict[str, torch.Generator]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    for k, g in gens.items():
        g.set_state(state["gens"][k])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def set_threads(n: int) -> None:
    """CPU threads for torch and for NumPy's BLAS: both change the bits of a CPU run."""
    torch.set_num_threads(n)
    threadpool_limits(limits=n, user_api="blas")


def blas_threads() -> int | None:
    """Threads NumPy's BLAS uses now (it follows OMP_NUM_THREADS / OPENBLAS_NUM_THREADS at start)."""
    counts = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return min(counts) if counts else None


def weights_sha256(state: dict) -> str:
    """Hash of a state dict's tensors in key order: equal hashes mean bitwise-equal weights."""
    h = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        h.update(key.encode())
        if isinstance(value, torch.Tensor):
            h.update(str(value.dtype).encode() + str(tuple(value.shape)).encode())
            flat = value.detach().cpu().contiguous().reshape(-1)
            h.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
        elif isinstance(value, np.ndarray):
            h.update(str(value.dtype).encode() + str(value.shape).encode())
            h.update(np.ascontiguousarray(value).tobytes())
        else:
            h.update(repr(value).encode())
    return h.hexdigest()
