"""What `bench run` was asked to do, checked at the door (bench.cli.run) and frozen: the only thing the
runner, `--jobs`, Ray and the budget see of the command line (never the argparse namespace)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from bench.contract.registry import Recipe


@dataclass(frozen=True)
class RunOptions:
    """One reading's run settings: everything a seed's training, its run key and its record depend on."""
    results: Path
    data_dir: Path
    device: torch.device
    host: str                                       # this machine's identity (bench.training.determinism)
    pipeline: str = "fast"
    overrides: dict = field(default_factory=dict)   # field -> text, as given on the command line
    force: bool = False
    progress: bool = True
    threads: Optional[int] = None
    stop_after: Optional[int] = None
    deadline: Optional[float] = None                # time.monotonic() at which a --budget is spent
    progress_lines: bool = False                    # a --jobs child: one line per epoch for the parent
    step: str = "eager"                             # the training step (bench.training.step): "eager" | "graph"
    precision: str = "fp32"                         # float32 matmuls and convolutions: "fp32" | "tf32" (CUDA)


@dataclass(frozen=True)
class RayOptions:
    address: Optional[str] = None
    gpus_per_run: Optional[float] = None
    cpus_per_run: Optional[int] = None
    checkpoint_dir: Optional[Path] = None

    def flags(self) -> str:
        """The command-line flags that give these options again (for the "continue with" line)."""
        pairs = (("--address", self.address), ("--gpus-per-run", self.gpus_per_run),
                 ("--cpus-per-run", self.cpus_per_run), ("--checkpoint-dir", self.checkpoint_dir))
        return "".join(f" {flag} {value}" for flag, value in pairs if value is not None)


@dataclass(frozen=True)
class Campaign:
    """`bench run` as a whole: the readings with their run options, the seeds, how to schedule them."""
    plans: tuple[tuple[Recipe, RunOptions], ...]
    seeds: tuple[int, ...]
    jobs: int = 1
    budget: Optional[float] = None                  # seconds
    budget_text: Optional[str] = None               # as the user wrote it (90m), for the "continue with" line
    run_all: bool = False
    dry_run: bool = False
    backend: str = "local"
    ray: RayOptions = RayOptions()
