"""The environment stored with every run: the machine (CPU identity, host identity, GPU), the software and
its versions, the precision and the variables in force, and the commit of the code.

Why: bits differ between machines, libraries and precisions; a record must say enough to tell two runs
apart, to rerun on the same machine, and to explain a difference instead of raising a false alarm.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import re
import subprocess
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_info

from bench.training.determinism import blas_threads, precision_in_force

# Variables that change what a run computes or how fast: recorded as they were when it ran.
RECORDED_VARIABLES = ("CUBLAS_WORKSPACE_CONFIG", "OMP_WAIT_POLICY", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
COMMIT_VARIABLE = "BENCH_GIT_COMMIT"


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
    """HEAD of the checkout the code runs from, with '+dirty' when bench/ or recipes/ have local edits; the
    commit named in BENCH_GIT_COMMIT when that is set (a copied tree without .git, like the GPU machine's,
    whose sender names it; the evidence layer checks that commit's FROZEN.json against every record)."""
    if os.environ.get(COMMIT_VARIABLE, "").strip():
        return os.environ[COMMIT_VARIABLE].strip()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "bench", "recipes"],
                               cwd=root, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):   # not a git checkout (e.g. an installed wheel), no git
        return None
    return (sha + ("+dirty" if dirty else "")) if sha else None


def software(device: torch.device) -> dict:
    """The versions a run's bits depend on: torch, and on a GPU the CUDA and cuDNN it runs (part of the run key)."""
    out = {"torch": torch.__version__}
    if device.type == "cuda":
        out.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return out


def _nvidia_driver() -> str | None:
    """The NVIDIA kernel driver's version, as the driver itself reports it (Linux)."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    match = re.search(r"Kernel Module\s+(?:for \S+\s+)?([0-9][0-9.]+)", text)
    return match.group(1) if match else text.splitlines()[0].strip()[:120]


def _cublas() -> str | None:
    """The cuBLAS wheel torch loads its kernels from, when it came from a package."""
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name.startswith("nvidia-cublas"):
            return f"{name} {dist.version}"
    return None


def environment(device: torch.device) -> dict:
    """What ran the job: enough to tell two machines apart, to rerun on the same one, and to explain bits
    that differ (the libraries, the precision and the variables in force)."""
    cuda = device.type == "cuda"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "driver": _nvidia_driver() if cuda else None,
        "cublas": _cublas() if cuda else None,
        "cpu": _cpu_model(),
        "cpu_id": cpu_id(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the kernels torch picked: AVX2, AVX512…
        "cpu_software": cpu_software(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "blas_threads": blas_threads(),
        "fp32_precision": precision_in_force(),
        "variables": {name: os.environ.get(name) for name in RECORDED_VARIABLES},
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
