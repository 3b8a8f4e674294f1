"""Seeding, deterministic flags and the environment fingerprint stored with every run.

Same recipe + seed + machine + thread count must give bitwise-identical final weights;
everything random in a run draws from the generators made here, and all of their states
can be saved and restored so that a resumed run continues the same streams.
"""
from __future__ import annotations

import hashlib
import os
import platform
import random
import subprocess
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits

# cuBLAS needs this before the first CUDA call to make matmuls deterministic.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

STREAMS = ("shuffle", "augment", "split")


def deterministic_mode() -> None:
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True)


def stream_seed(seed: int, stream: str) -> int:
    """Independent 63-bit seed per (run seed, stream), stable across machines."""
    digest = hashlib.sha256(f"{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def seed_everything(seed: int, device: torch.device) -> dict[str, torch.Generator]:
    """Seed python/numpy/torch global RNGs and make one generator per data stream.

    Model init and dropout use torch's global RNG (as the documents' code does);
    shuffling and the train/val split draw on the CPU, augmentation on the run's device.
    """
    deterministic_mode()
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


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    out: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            out[key.strip()] = value.strip()
    except OSError:
        pass
    return out


def _cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_id() -> str:
    """Vendor, family, model and stepping: 'AMD EPYC' names several generations, this names one."""
    info = _cpuinfo()
    parts = [info.get("vendor_id"), info.get("cpu family") and f"family {info['cpu family']}",
             info.get("model") and f"model {info['model']}", info.get("stepping") and f"stepping {info['stepping']}"]
    return " ".join(p for p in parts if p) or platform.machine()


def _torch_config(*needles: str) -> str | None:
    """The line of torch's build configuration naming a library (MKL, oneDNN), without its prefix."""
    for line in torch.__config__.show().splitlines():
        if any(n in line for n in needles):
            return line.strip().lstrip("- ").strip()
    return None


def cpu_software() -> dict:
    """The libraries whose kernels make a CPU run's bits: torch with its BLAS and oneDNN, NumPy with its BLAS."""
    blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
    return {"torch": torch.__version__, "torch_blas": _torch_config("Math Kernel Library", "OpenBLAS", "BLAS_INFO"),
            "onednn": _torch_config("MKL-DNN", "oneDNN"), "numpy": np.__version__,
            "numpy_blas": " ".join(str(blas[0].get(k)) for k in ("internal_api", "version", "architecture"))
            if blas else None}


def cpu_identity() -> dict:
    """What the bits of a CPU computation depend on: the processor, the kernels torch picked for it, and
    the libraries (two AVX512 machines of different vendors give different bits for the same code)."""
    return {"cpu": _cpu_model(), "cpu_id": cpu_id(), "capability": str(torch.backends.cpu.get_cpu_capability()),
            **cpu_software()}


def git_commit(root: Path) -> str | None:
    """HEAD of the checkout the code runs from, with '+dirty' when it has local edits."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "bench", "recipes"],
                               cwd=root, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):   # not a git checkout (e.g. an installed wheel), no git
        return None
    return (sha + ("+dirty" if dirty else "")) if sha else None


def environment(device: torch.device) -> dict:
    """What ran the job: enough to tell two machines apart and to rerun on the same one."""
    cuda = device.type == "cuda"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "cpu": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the kernels torch picked: AVX2, AVX512…
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "blas_threads": blas_threads(),
        "platform": platform.platform(),
    }


def _machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            return Path(path).read_text().strip()
        except OSError:
            continue
    return ""


def host_identity(device: torch.device) -> str:
    """One physical (or virtual) machine, not a kind of machine: two VMs with the same CPU model
    and thread count can differ in speed and in bits, so timings and "already recorded" go by this.
    The OS's machine id, the host name, the CPU and the kernels torch picked, and the GPU's UUID."""
    parts = [_machine_id(), platform.node(), _cpu_model(), str(torch.backends.cpu.get_cpu_capability()),
             str(os.cpu_count())]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        parts += [props.name, str(getattr(props, "uuid", ""))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def hardware(env: dict) -> str:
    """The GPU, or the CPU model with the kernels torch picked for it (bits differ between AVX2 and AVX512)."""
    return env.get("gpu") or " ".join(filter(None, (env.get("cpu"), env.get("cpu_capability")))) or "unknown"


def machine_key(env: dict) -> str:
    """A short label for 'the same machine' when comparing timings."""
    return f"{hardware(env)} / {env.get('threads')} threads"


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
