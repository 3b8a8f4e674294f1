"""The training step (bench/training/step.py): its CPU side here, in every test run; its CUDA side where a GPU is.

On a CPU (always run): the step resolves to eager, gives the records and run keys of before,
and the graph step's bookkeeping (warm-up undone, static inputs, partial batches, epoch sums,
grads re-pointed, resume) matches the eager step bit for bit when the CUDA graph is replaced by a
stand-in that reruns the captured code (bench.training.step.RecordedGraphs). Also `bench run --dry-run`
and the floor line of `bench speed`.

Marked `gpu` (collected everywhere, skipped without CUDA; on the GPU machine:
`python3 -m pytest tests/test_gpu.py -m gpu -q`): each torch recipe trains one short epoch on
CUDA with both steps, check-determinism is bitwise on CUDA for mnist_99_4 and ultimate_mlp at one
epoch with both steps, and a graph run cut and resumed ends with the uninterrupted weights. With
BENCH_GPU_REPORT=FILE, each determinism test appends {"recipe", "step", "ok", "sha"} as one JSON line
(tools/gpu_campaign.sh reads it to choose the step of the long runs).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re

import pytest
import torch

from bench.contract import registry
from bench.contract.recipe import DATASETS, apply_overrides
from bench.running.options import RunOptions
from bench.running.runner import run_key
from bench.training import data as data_layer
from bench.training import engine
from bench.training import step as step_module
from bench.training.determinism import seed_everything
from bench.training.engine import RunContext, train
from bench.training.numerics import one_thread, probe_hparams, synthetic_arrays
from bench.training.splits import make_splits

CPU = torch.device("cpu")
HAS_CUDA = torch.cuda.is_available()


def on_gpu(test):
    """Marked `gpu`: collected everywhere, skipped where torch sees no CUDA device."""
    reason = "needs a CUDA GPU (python3 -m pytest tests/test_gpu.py -m gpu)"
    test = pytest.mark.skipif(not HAS_CUDA, reason=reason)(test)
    return pytest.mark.gpu(test)


TORCH_RECIPES = [r.name for r in registry.all_recipes() if r.uses_engine]


@pytest.fixture
def recorded_graphs(monkeypatch):
    """engine.train() makes its graph steps with the CPU stand-in for CUDA graphs; returns the steps made."""
    made = []
    real = step_module.make_step

    def make(name, *args, **kw):
        if name == "graph":
            kw["graphs"] = step_module.RecordedGraphs()
        made.append(real(name, *args, **kw))
        return made[-1]
    monkeypatch.setattr(engine, "make_step", make)
    return made


def _train(recipe, hp, arrays, device, step, pipeline="fast", checkpoint=None, stop_after=None, seed=0):
    gens = seed_everything(seed, device)
    splits = make_splits(arrays, hp, gens["split"], device)
    ctx = RunContext(f"{recipe.label} {step}", seed, device, gens, pipeline, checkpoint=checkpoint,
                     key="k", progress=False, stop_after=stop_after, step=step)
    return train(recipe.module, hp, splits, ctx), splits


def _probe_arrays(hp):
    channels = DATASETS[hp.dataset][1]
    n_train = 96 + (16 if hp.split != "official" else 0)
    return synthetic_arrays(n_train=n_train, n_test=16, channels=channels, size=32 if channels == 3 else 28)


def _no_time(curves):
    return {k: v for k, v in curves.items() if k != "epoch_time_s"}


# ---------------------------------------------------------------- resolution (CPU)

def test_the_step_is_eager_on_a_cpu_and_graph_only_where_it_can_run():
    assert step_module.resolve(None, CPU, "fast") == ("eager", None)
    assert step_module.resolve("eager", CPU, "fast") == ("eager", None)
    step, note = step_module.resolve("graph", CPU, "fast")
    assert step == "eager" and "CUDA" in note
    cuda = torch.device("cuda")
    step, note = step_module.resolve(None, cuda, "faithful")
    assert step == "eager" and "faithful" in note
    step, note = step_module.resolve("graph", cuda, "fast", uses_engine=False)
    assert step == "eager" and "outside the torch engine" in note
    if not HAS_CUDA:
        assert step_module.resolve(None, cuda, "fast")[0] == "eager"
    with pytest.raises(ValueError):
        step_module.resolve("compiled", CPU, "fast")


def test_the_engine_refuses_a_graph_step_it_cannot_run():
    recipe = registry.load("mnist_99_4")
    hp = probe_hparams(recipe)
    with pytest.raises(step_module.StepError, match="CUDA"):
        _train(recipe, dataclasses.replace(hp, epochs=1), _probe_arrays(hp), CPU, "graph")


def test_a_context_without_a_step_takes_the_enclosing_default():
    assert step_module.current(None) == "eager"
    with step_module.default_step("graph"):
        assert step_module.current(None) == "graph" and step_module.current("eager") == "eager"
    assert step_module.current(None) == "eager"


def test_a_graph_run_has_a_run_key_of_its_own():
    recipe = registry.load("mnist_99_4")
    opts = RunOptions(results=None, data_dir=None, device=CPU, host="h")
    assert opts.step == "eager" and opts.precision == "fp32"
    _, parsed = apply_overrides(recipe.hparams, {})
    eager = run_key(recipe, 0, opts, parsed)
    graph = run_key(recipe, 0, dataclasses.replace(opts, step="graph"), parsed)
    assert eager != graph
    import hashlib
    what = {"recipe": recipe.name, "variant": recipe.variant_name, "fingerprint": recipe.fingerprint, "seed": 0,
            "overrides": parsed, "pipeline": "fast", "device": "cpu", "threads": torch.get_num_threads(),
            "host": "h", "step": "eager", "precision": "fp32", "software": {"torch": torch.__version__},
            "uncommitted": False}
    assert eager == hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:24]


# ---------------------------------------------------------------- the graph step's bookkeeping (CPU)

@pytest.mark.parametrize("name", ["ultimate_mlp", "mnist_99_4", "fc_sigmoid_bn", "vgg_mnist"])
def test_the_graph_steps_bookkeeping_gives_the_eager_bits_on_a_cpu(name, recorded_graphs):
    """Replaying the captured code (RecordedGraphs) must give exactly the eager weights and curves: the
    warm-up leaves no trace (BatchNorm statistics, dropout draws), partial batches run eagerly with the
    grads pointed back, and the epoch sums add up. ultimate_mlp: 96 images, batch 64 (a partial batch
    every epoch), BatchNorm, dropout, clipping, OneCycle with cycled beta1; fc_sigmoid_bn: the whole
    split as one batch, read in place."""
    recipe = registry.load(name)
    hp = probe_hparams(recipe)
    arrays = _probe_arrays(hp)
    with one_thread(), torch.random.fork_rng(devices=[]):
        eager, _ = _train(recipe, hp, arrays, CPU, "eager")
        graph, splits = _train(recipe, hp, arrays, CPU, "graph")
    step = recorded_graphs[-1]
    assert isinstance(step, step_module.GraphStep) and step.graphs.captures == 1 and step.replays > 0
    full, rest = divmod(len(splits.train), hp.batch_size)
    assert step.replays == hp.epochs * max(full, 1) and step.eager_steps == (hp.epochs * bool(rest) if full else 0)
    assert graph.weights_sha256 == eager.weights_sha256
    assert _no_time(graph.curves) == _no_time(eager.curves)


def test_the_graph_step_never_writes_into_the_dataset(recorded_graphs):
    """ultimate_mlp is unshuffled: its label batches are views of the split, which the step must copy, not
    overwrite; fc_sigmoid's one batch is the cached split itself, read in place."""
    for name in ("ultimate_mlp", "fc_sigmoid"):
        recipe = registry.load(name)
        hp = probe_hparams(recipe)
        arrays = _probe_arrays(hp)
        with one_thread(), torch.random.fork_rng(devices=[]):
            _, splits = _train(recipe, hp, arrays, CPU, "graph")
        again = make_splits(arrays, hp, seed_everything(0, CPU)["split"], CPU)
        assert torch.equal(splits.train.x, again.train.x) and torch.equal(splits.train.y, again.train.y), name


def test_a_graph_run_cut_and_resumed_ends_with_the_uninterrupted_bits(recorded_graphs, tmp_path):
    recipe = registry.load("ultimate_mlp")
    hp = probe_hparams(recipe)
    arrays = _probe_arrays(hp)
    with one_thread(), torch.random.fork_rng(devices=[]):
        whole, _ = _train(recipe, hp, arrays, CPU, "graph")
        cut, _ = _train(recipe, hp, arrays, CPU, "graph", checkpoint=tmp_path / "c.pt", stop_after=1)
        resumed, _ = _train(recipe, hp, arrays, CPU, "graph", checkpoint=tmp_path / "c.pt")
    assert cut.truncated and resumed.resumed_from == 1
    assert resumed.weights_sha256 == whole.weights_sha256
    assert sum(s.graphs.captures for s in recorded_graphs) == 3, "each train() call captures once"


# ---------------------------------------------------------------- the CLI on a CPU

def test_a_cpu_run_records_the_eager_step_even_when_graph_is_asked_for(fake_data, results, capsys, monkeypatch):
    from bench.cli.main import main
    monkeypatch.delenv("BENCH_STEP", raising=False)
    code = main(["run", "--recipe", "mnist_99_4", "--device", "cpu", "--epochs", "1", "--train-limit", "128",
                 "--results", str(results), "--no-progress", "--step", "graph", "--data-dir", "unused"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "--step graph is not possible here" in out and "step eager" in out
    (path,) = (results / "mnist_99_4").glob("*.json")
    assert json.loads(path.read_text())["step"] == "eager"
    assert "BENCH_STEP" not in os.environ, "no step leaks into later runs of this process"


def test_dry_run_prints_the_plan_and_the_estimate_and_writes_nothing(fake_data, tmp_path, capsys):
    from bench.cli.main import main
    results = tmp_path / "results"
    code = main(["run", "--recipe", "mnist_99_4", "--device", "cpu", "--seeds", "3", "--jobs", "2",
                 "--budget", "5m", "--results", str(results), "--no-progress", "--dry-run", "--data-dir", "unused"])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines[0].startswith("mnist_99_4 [") and "seeds 0..2" in lines[0] and "step eager" in lines[0]
    assert any(line.startswith("estimate on this machine:") and "with 2 jobs" in line for line in lines)
    assert lines[-1].startswith("dry run: would train seed(s) 0, 1, 2 of mnist_99_4")
    assert not results.exists()


def test_speed_prints_the_floor_third_and_the_fast_pipelines_overhead(fake_data, capsys):
    from bench.cli.main import main
    assert main(["speed", "--recipe", "mnist_99_4", "--device", "cpu", "--data-dir", "unused"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [line.split()[0] for line in lines if re.match(r"^\S+ +[\d.]+ s per epoch", line)]
    assert rows == ["fast", "faithful", "floor"]
    (overhead,) = [line for line in lines if line.startswith("fast/floor: ")]
    assert float(overhead.split()[1].rstrip("x:")) > 0 and "1.15x" in overhead
    assert lines[-1].startswith("per epoch, faithful/fast: ")


# ---------------------------------------------------------------- on a GPU

def _report(**row):
    path = os.environ.get("BENCH_GPU_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


def _mnist_dir():
    from tests.conftest import ROOT
    folder = data_layer.default_data_dir(os.environ.get("BENCH_DATA_DIR") or str(ROOT / "data"))
    raw = data_layer.mnist_raw_dir(folder)
    if not all((raw / s.name).exists() or (raw / (s.name + ".gz")).exists() for s in data_layer.MNIST_RAW):
        pytest.skip(f"no MNIST in {raw} (set BENCH_DATA_DIR)")
    return folder


@pytest.fixture
def no_inherited_step(monkeypatch):
    monkeypatch.delenv("BENCH_STEP", raising=False)


def smoke_config(recipe):
    """One epoch of the recipe's own hyperparameters on synthetic data with enough steps for its schedule
    (OneCycleLR needs several: 4 steps of 64 and pct_start 0.25 divide by zero at construction)."""
    over = {"epochs": "1"} if recipe.hparams.split == "official" else {"epochs": "1", "val_size": "64"}
    hp, _ = apply_overrides(recipe.hparams, over)
    n_train = min(max(256, SMOKE_STEPS * hp.batch_size), 4096)
    channels, size = (3, 32) if hp.dataset == "cifar10" else (1, 28)
    arrays = synthetic_arrays(n_train=n_train + (64 if hp.split != "official" else 0), n_test=64, channels=channels,
                              size=size)
    return hp, arrays, n_train


SMOKE_STEPS = 16


@pytest.mark.parametrize("name", TORCH_RECIPES)
def test_the_gpu_smoke_config_builds_and_steps_every_recipes_optimizer_and_schedule_on_cpu(name):
    """What the CUDA test below trains, constructed here on every test run: a smoke config that torch's
    schedulers reject would waste the rare GPU window."""
    recipe = registry.load(name)
    hp, _, n_train = smoke_config(recipe)
    steps = math.ceil(n_train / hp.batch_size)
    with torch.random.fork_rng(devices=[]):
        model = recipe.build_model(hp)
        optimizer = recipe.module.build_optimizer(model, hp)
        schedule = recipe.module.build_scheduler(optimizer, hp, steps)
        if schedule is not None and schedule.step_on == "batch":
            for _ in range(steps * hp.epochs):
                optimizer.step()
                schedule.scheduler.step()
    assert steps >= 1


@on_gpu
@pytest.mark.parametrize("step", ["graph", "eager"])
@pytest.mark.parametrize("name", TORCH_RECIPES)
def test_each_torch_recipe_trains_one_short_epoch_on_cuda(name, step, monkeypatch, no_inherited_step):
    recipe = registry.load(name)
    hp, arrays, _ = smoke_config(recipe)
    made = []
    real = step_module.make_step
    monkeypatch.setattr(engine, "make_step", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    result, _ = _train(recipe, hp, arrays, torch.device("cuda"), step)
    for key, values in result.curves.items():
        assert values and all(math.isfinite(v) for v in values), f"{key}: {values}"
    assert made[-1].__class__.__name__ == ("GraphStep" if step == "graph" else "EagerStep")
    if step == "graph":
        assert made[-1].replays > 0


@on_gpu
@pytest.mark.parametrize("step", ["graph", "eager"])
@pytest.mark.parametrize("name", ["mnist_99_4", "ultimate_mlp"])
def test_check_determinism_on_cuda_is_bitwise(name, step, capsys, no_inherited_step):
    from bench.cli.main import main
    code = main(["check-determinism", "--recipe", name, "--device", "cuda", "--epochs", "1", "--step", step,
                 "--no-progress", "--data-dir", str(_mnist_dir())])
    out = capsys.readouterr().out
    sha = re.search(r"\(([0-9a-f]{16})", out)
    _report(recipe=name, step=step, ok=code == 0, sha=sha.group(1) if sha else None, out=out.strip()[-300:])
    assert code == 0, out
    assert f"step {step}" in out


@on_gpu
@pytest.mark.parametrize("step", ["graph", "eager"])
def test_a_cuda_run_cut_and_resumed_ends_with_the_uninterrupted_bits(step, tmp_path, no_inherited_step):
    recipe = registry.load("ultimate_mlp")
    hp, _ = apply_overrides(recipe.hparams, {"epochs": "3", "train_limit": "2000", "eval_limit": "1000"})
    arrays = data_layer.load("mnist", _mnist_dir())
    cuda = torch.device("cuda")
    whole, _ = _train(recipe, hp, arrays, cuda, step)
    cut, _ = _train(recipe, hp, arrays, cuda, step, checkpoint=tmp_path / "c.pt", stop_after=1)
    resumed, _ = _train(recipe, hp, arrays, cuda, step, checkpoint=tmp_path / "c.pt")
    _report(recipe="ultimate_mlp resume", step=step, ok=resumed.weights_sha256 == whole.weights_sha256,
            sha=whole.weights_sha256[:16])
    assert cut.truncated and resumed.resumed_from == 1
    assert resumed.weights_sha256 == whole.weights_sha256

