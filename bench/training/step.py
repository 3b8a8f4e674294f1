"""The training step the engine runs per batch: eager (the reference) or replayed as one CUDA graph.

Why: a recipe like ultimate_mlp takes 215,000 steps of batch 64; on a GPU, eager PyTorch spends
most of such a step launching about a hundred small kernels from Python, not computing them.

"eager": zero the grads, forward, loss, backward, clip, optimizer step, scheduler step, add the
batch's loss and hits to the epoch's sums: every op launched from Python. It is the reference,
and on a CPU the only step (bitwise the loop the engine always ran).

"graph" (CUDA with the fast pipeline): forward, loss, backward, clipping and the epoch sums are
captured once as a CUDA graph and replayed for every batch of the captured shape; the optimizer
step and the scheduler step stay eager, unchanged. They must: PyTorch's Adam/AdamW cannot run
inside a graph when OneCycleLR cycles beta1 every step (the foreach path turns a tensor beta1
into a host scalar, a sync that capture forbids; the fused kernels take beta1 as a float), and an
lr or beta baked into a graph would silently stay at its first value. So the optimizer and the
schedule do exactly what the eager step does, in the same float arithmetic.

Why the graph step is correct and deterministic:
- A replay launches the very kernels the captured code launched, at the same addresses; the
  batch is copied into the step's own input tensors first (a full-batch recipe's cached split,
  the same memory every epoch, is read in place and never written). The parameters' .grad tensors are the
  ones the captured backward wrote (captured with grads set to None, so a replay overwrites them,
  as zero_grad(set_to_none) + backward does); the eager optimizer reads them.
- Dropout draws from the default CUDA generator: capture records its Philox offsets, and every
  replay reads the generator's current seed and offset and advances it by the whole graph's
  increment, so the draws continue the same stream an eager run consumes. The augmentation's own
  generator is used outside the graph (the batch is augmented before it is copied in).
- Capture needs warm-up iterations (lazy cuBLAS/cuDNN set-up) on a side stream. They would move
  BatchNorm's running statistics and the dropout stream, so they are undone: buffers copied back,
  CPU and CUDA RNG states restored, grads dropped. The optimizer is never stepped in warm-up.
  Capture itself executes nothing. Training therefore starts from the same state as eager.
- A batch of another shape (the last, partial batch of an epoch) takes the eager step with the
  same optimizer, then the grads are pointed back at the graph's tensors. Which batches replay
  and which run eagerly depends only on the batch sizes, so a run, a rerun and a resumed run
  (which captures anew at its first batch) execute the same sequence of kernels.
- torch.use_deterministic_algorithms(True) stays on: the captured kernels are the deterministic
  ones. Whether a replay gives bitwise the eager step's numbers on the same GPU is for the GPU
  tests to report; the run key and the record name the step, so the two are never mixed.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Optional

import torch

STEPS = ("eager", "graph")
WARMUP_ITERS = 3            # forward + backward passes on a side stream before capture (undone)

_DEFAULT = contextvars.ContextVar("bench_step_default", default="eager")


class StepError(RuntimeError):
    """The graph step cannot run here: the message says why and what to pass instead."""


@contextlib.contextmanager
def default_step(name: str):
    """The step a RunContext without one uses (the run's estimate trains with the run's step)."""
    token = _DEFAULT.set(name)
    try:
        yield
    finally:
        _DEFAULT.reset(token)


def current(name: Optional[str]) -> str:
    """A context's step: its own, else the enclosing default_step(), else eager."""
    name = name or _DEFAULT.get()
    if name not in STEPS:
        raise ValueError(f"unknown step {name!r} (one of {', '.join(STEPS)})")
    return name


def graph_unavailable(device: torch.device, pipeline: str, uses_engine: bool = True) -> Optional[str]:
    """Why the graph step cannot be used for this run (None when it can)."""
    if not uses_engine:
        return "the recipe trains outside the torch engine"
    if device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    if pipeline != "fast":
        return "the faithful pipeline feeds CPU batches through a DataLoader"
    if not torch.cuda.is_available() or not hasattr(torch.cuda, "CUDAGraph"):
        return f"torch {torch.__version__} has no usable CUDA graphs here"
    return None


def resolve(requested: Optional[str], device: torch.device, pipeline: str,
            uses_engine: bool = True) -> tuple[str, Optional[str]]:
    """(the step to run, a note to print or None). No request: graph on CUDA with the fast
    pipeline, eager elsewhere; a graph request that cannot be honoured falls back to eager."""
    if requested not in (None, "auto", *STEPS):
        raise ValueError(f"unknown step {requested!r} (one of {', '.join(STEPS)})")
    why = graph_unavailable(device, pipeline, uses_engine)
    if requested in (None, "auto"):
        if why is None:
            return "graph", None
        return "eager", (None if device.type == "cpu" else f"note: eager step ({why})")
    if requested == "graph" and why is not None:
        return "eager", f"note: --step graph is not possible here ({why}); running the eager step"
    return requested, None


# ---------------------------------------------------------------- the steps

class EagerStep:
    """The engine's original loop body, op for op (the CPU numbers depend on it)."""

    def __init__(self, model, optimizer, schedule, loss_fn, hp, device: torch.device):
        self.model, self.optimizer, self.schedule, self.loss_fn = model, optimizer, schedule, loss_fn
        self.hp, self.device = hp, device
        self.loss_sum: Optional[torch.Tensor] = None
        self.correct: Optional[torch.Tensor] = None

    def begin_epoch(self) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.correct = torch.zeros((), dtype=torch.int64, device=self.device)

    def __call__(self, x, y) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        out = self.model(x)
        loss = self.loss_fn(out, y)
        loss.backward()
        if self.hp.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.hp.grad_clip)
        self.optimizer.step()
        if self.schedule is not None and self.schedule.step_on == "batch":
            self.schedule.scheduler.step()
        self.loss_sum += loss.detach().double() * len(y)
        self.correct += (out.argmax(1) == y).sum()


class CudaGraphs:
    """The CUDA side of GraphStep (a test on a CPU swaps in a stand-in with the same methods)."""

    def __init__(self, device: torch.device):
        self.device = device

    @contextlib.contextmanager
    def side_stream(self):
        current = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            yield
        current.wait_stream(side)

    def rng_state(self):
        return torch.get_rng_state(), torch.cuda.get_rng_state(self.device)

    def set_rng_state(self, state) -> None:
        torch.set_rng_state(state[0])
        torch.cuda.set_rng_state(state[1], self.device)

    def capture(self, body, params):
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            body()
        return graph

    def replay(self, graph) -> None:
        graph.replay()


def _same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()
            and a.dtype == b.dtype and a.device == b.device)


def _fits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device


def _static_input(t: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(the tensor the graph reads, whether it is read-only). A view of a whole tensor (a full-batch
    recipe's cached, normalized split) is used in place and never written; anything else, a view of
    part of the dataset included, is copied into a tensor of the step's own."""
    base = t._base
    if base is not None and base.shape == t.shape and base.data_ptr() == t.data_ptr() and t.is_contiguous():
        return t, True
    return t.clone(), False


class GraphStep(EagerStep):
    """Forward, backward, clipping and the epoch sums as one CUDA graph; optimizer and schedule eager."""

    def __init__(self, model, optimizer, schedule, loss_fn, hp, device: torch.device, graphs=None):
        super().__init__(model, optimizer, schedule, loss_fn, hp, device)
        self.graphs = graphs if graphs is not None else CudaGraphs(device)
        self.graph = None
        self.static: Optional[tuple] = None    # ((x, read-only), (y, read-only)) the graph reads
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.grads: list = []
        self.replays = 0
        self.eager_steps = 0

    def begin_epoch(self) -> None:
        if self.loss_sum is None:       # the graph adds into these very tensors: zero them, never replace
            super().begin_epoch()
        else:
            self.loss_sum.zero_()
            self.correct.zero_()

    def _forward_backward(self, x, y):
        out = self.model(x)
        loss = self.loss_fn(out, y)
        loss.backward()
        if self.hp.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.hp.grad_clip)
        return out, loss

    def _capture(self, x, y) -> None:
        (sx, x_fixed), (sy, y_fixed) = _static_input(x), _static_input(y)
        buffers = list(self.model.buffers())
        saved = [b.detach().clone() for b in buffers]
        rng = self.graphs.rng_state()
        try:
            with self.graphs.side_stream():
                for _ in range(WARMUP_ITERS):
                    for p in self.params:
                        p.grad = None
                    self._forward_backward(sx, sy)
        finally:                         # undo the warm-up: statistics, random streams, grads
            with torch.no_grad():
                for b, s in zip(buffers, saved):
                    b.copy_(s)
            self.graphs.set_rng_state(rng)
            for p in self.params:
                p.grad = None

        def body():
            out, loss = self._forward_backward(sx, sy)
            self.loss_sum += loss.detach().double() * len(sy)
            self.correct += (out.argmax(1) == sy).sum()

        try:
            self.graph = self.graphs.capture(body, self.params)
        except Exception as exc:
            for p in self.params:
                p.grad = None
            raise StepError(f"capturing the training step as a CUDA graph failed ({exc.__class__.__name__}: "
                            f"{str(exc)[:300]}); rerun with --step eager") from exc
        self.static = ((sx, x_fixed), (sy, y_fixed))
        self.grads = [p.grad for p in self.params]

    def _load(self, x, y) -> bool:
        """Put the batch where the graph reads it; False when it cannot (then the step runs eagerly)."""
        pairs = list(zip((x, y), self.static))
        for t, (s, fixed) in pairs:
            if not _fits(t, s) or (fixed and not _same_memory(t, s)):
                return False
        for t, (s, fixed) in pairs:
            if not _same_memory(t, s):
                s.copy_(t)
        return True

    def __call__(self, x, y) -> None:
        if self.graph is None:
            self._capture(x, y)
        if not self._load(x, y):
            super().__call__(x, y)      # another shape (the last, partial batch): the eager step
            for p, g in zip(self.params, self.grads):
                p.grad = g              # the optimizer reads the tensors the graph writes
            self.eager_steps += 1
            return
        self.graphs.replay(self.graph)
        self.replays += 1
        self.optimizer.step()
        if self.schedule is not None and self.schedule.step_on == "batch":
            self.schedule.scheduler.step()


def make_step(name: str, model, optimizer, schedule, loss_fn, hp, device: torch.device, pipeline: str = "fast",
              graphs=None) -> EagerStep:
    """The step object for one train() call (made after a checkpoint is loaded, before the first batch)."""
    if name == "eager":
        return EagerStep(model, optimizer, schedule, loss_fn, hp, device)
    if graphs is None:
        why = graph_unavailable(device, pipeline)
        if why is not None:
            raise StepError(f"the graph step cannot run here: {why}; use --step eager")
    elif pipeline != "fast":
        raise StepError("the graph step needs the fast pipeline; use --step eager")
    return GraphStep(model, optimizer, schedule, loss_fn, hp, device, graphs)


# ---------------------------------------------------------------- a stand-in for tests on a CPU

class RecordedGraphs:
    """CudaGraphs' semantics without a GPU: capture records the body without running it (and gives
    every parameter a grad tensor of its own, as capture allocates them); replay reruns the body
    and writes the fresh grads into those tensors (as a replayed backward overwrites them). With
    it, the graph step's bookkeeping (warm-up undone, static inputs, partial batches, epoch sums,
    grads re-pointed) is checked on a CPU against the eager step, bit for bit."""

    def __init__(self):
        self.captures = 0

    @contextlib.contextmanager
    def side_stream(self):
        yield

    def rng_state(self):
        return torch.get_rng_state()

    def set_rng_state(self, state) -> None:
        torch.set_rng_state(state)

    def capture(self, body, params):
        self.captures += 1
        for p in params:
            p.grad = torch.full_like(p, float("nan"))     # garbage until the first replay, as on a GPU
        return {"body": body, "params": params, "grads": [p.grad for p in params]}

    def replay(self, graph) -> None:
        for p in graph["params"]:
            p.grad = None
        graph["body"]()
        with torch.no_grad():
            for p, g in zip(graph["params"], graph["grads"]):
                g.copy_(p.grad)
                p.grad = g
