"""A hostile user's cases: no command destroys a record, a self-consistent lie (fields edited, metrics
re-summarized with the project's own function, the digest redone) cannot move a verdict, a damaged or foreign
checkpoint is set aside and the seed starts over to the same bits, and bad input or a refusing machine is one
line and exit 2 or 1, never a traceback."""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from bench.cli.main import main
from bench.contract import registry
from bench.records import evidence
from bench.records.format import digest
from bench.records.selection import summarize
from tests.conftest import ROOT
from tests.records import make_record, runs, write

SMALL = ["--device", "cpu", "--no-progress", "--threads", "1"]
COMMITTED = ROOT / "results"


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


def lie(record: dict, **fields) -> dict:
    """The record with fields changed, its metrics re-summarized from its curves and its digest redone."""
    out = {**record, **fields}
    out["metrics"] = {**summarize(out["curves"], out["hparams"]["selection"]),
                      "params": out["params"], "wall_time_s": out["wall_time_s"]}
    out.pop("digest", None)
    out["digest"] = digest(out)
    return out


def put(results: Path, record: dict) -> Path:
    """Write a record file as it is (no digest added: a lie comes with its own)."""
    folder = results / record["recipe"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"lie_{record['seed']}_{len(list(folder.glob('*')))}.json"
    path.write_text(json.dumps(record, indent=1, sort_keys=True))
    return path


def committed(recipe: str, **where) -> dict:
    """A committed record of a recipe matching every field given."""
    for path in sorted((COMMITTED / recipe).glob("*.json")):
        r = json.loads(path.read_text())
        if all(r.get(k) == v for k, v in where.items()):
            return r
    raise LookupError(where)


# ---------------------------------------------------------------- no command writes into results/

@pytest.mark.parametrize("argv", [
    ["report", "--out", "{rec}"],
    ["report", "--out", "{results}/REPORT.md"],
    ["export", "--format", "jsonl", "--out", "{results}/lenet_sgd/runs.json"],
    ["export", "--format", "jsonl", "--out", "{rec}"],
    ["compare", "--baseline", "{results}", "--candidate", "{results}", "--json", "{rec}"],
    ["report", "--out", "{outside}"],                        # a record copied outside results/ is not a report
])
def test_no_output_path_names_a_record_or_sits_in_results(argv, tmp_path, capsys):
    results = tmp_path / "results"
    (path,) = write(results, make_record("lenet_sgd", 0, 99.0))
    outside = tmp_path / "copy.json"
    shutil.copy(path, outside)
    before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    args = [a.format(rec=path, results=results, outside=outside) for a in argv]
    if args[0] != "compare":
        args += ["--results", str(results)]
    assert main(args) == 2
    line = one_line_error(capsys)
    assert "record" in line or "results folder" in line
    assert {p: p.read_bytes() for p in results.rglob("*") if p.is_file()} == before
    assert outside.read_bytes() == path.read_bytes()


# ---------------------------------------------------------------- lies that would move a verdict

def test_a_record_without_its_digest_is_rejected(tmp_path):
    record = make_record("mnist_99_4", 0, 99.95)
    record.pop("digest", None)
    put(tmp_path / "results", record)
    (bad,) = evidence.read(tmp_path / "results").rejected
    assert "no digest" in bad.reason


def test_a_schema_1_record_relabelled_with_todays_fingerprint_is_rejected(tmp_path):
    old = committed("lenet_sgd", schema_version=1)
    put(tmp_path / "results", lie(old, fingerprint=registry.load("lenet_sgd").fingerprint))
    (bad,) = evidence.read(tmp_path / "results").rejected
    assert "hyperparameters are not lenet_sgd's" in bad.reason or "never pinned" in bad.reason


def test_a_commit_that_never_pinned_the_fingerprint_is_caught():
    """A current record whose git_commit is real but older than the fingerprint it claims."""
    now = committed("mnist_99_4", fingerprint=registry.load("mnist_99_4").fingerprint, canonical=True)
    first = registry.load("mnist_99_4")
    from bench.records.provenance import Provenance
    prov = Provenance()
    oldest = prov._git("rev-list", "--max-parents=0", "HEAD").split()[0]
    assert prov.why_not({**now, "git_commit": oldest}) is not None
    assert prov.why_not(now) is None and first.label == "mnist_99_4"


def test_truncated_runs_relabelled_complete_are_rejected(tmp_path):
    cut = committed("ultimate_mlp", status="truncated", epochs_run=38)
    put(tmp_path / "results", lie(cut, status="complete", truncated=False))
    (bad,) = evidence.read(tmp_path / "results").rejected
    assert "status complete after 38 of 250" in bad.reason


def test_smoke_runs_relabelled_canonical_are_rejected(tmp_path):
    smoke = make_record("lenet_sgd", 0, 99.0, canonical=False, status="truncated")
    smoke["hparams"] = {**smoke["hparams"], "epochs": 3, "train_limit": 512}        # what a smoke run trained
    put(tmp_path / "results", lie(smoke, canonical=True, overrides={}, status="complete", truncated=False,
                                  epochs_planned=3, stop_after=None))
    (bad,) = evidence.read(tmp_path / "results").rejected
    assert "hyperparameters are not lenet_sgd's" in bad.reason


def test_copies_with_a_new_key_and_host_count_once(tmp_path):
    results = tmp_path / "results"
    (path,) = write(results, make_record("lenet_sgd", 0, 99.0))
    original = json.loads(path.read_text())
    for i in range(3):
        put(results, lie(original, key=f"{i}" * 24, host=f"host{i}"))
    ev = evidence.read(results)
    assert len(ev.records) == 1 and sum(len(v) for v in ev.copies.values()) == 3


def test_negative_epoch_times_are_rejected(tmp_path):
    record = make_record("lenet_sgd", 0, 99.0)
    times = [-0.5] + record["curves"]["epoch_time_s"][1:]
    put(tmp_path / "results", lie(record, curves={**record["curves"], "epoch_time_s": times}, wall_time_s=sum(times)))
    (bad,) = evidence.read(tmp_path / "results").rejected
    assert "negative" in bad.reason


def test_a_lineage_that_is_no_id_is_rejected(tmp_path):
    put(tmp_path / "results", lie(make_record("lenet_sgd", 0, 99.0), lineage="../../etc"))
    (bad,) = evidence.read(tmp_path / "results").rejected
    assert "lineage" in bad.reason


def test_a_run_of_uncommitted_code_is_never_canonical(tmp_path, fake_data, monkeypatch):
    from bench.running import runner
    monkeypatch.setattr(runner, "code_version", lambda: ("abc123+dirty", "h"))
    results = tmp_path / "results"
    assert main(["run", "--recipe", "lenet_sgd", "--results", str(results), *SMALL]) == 0
    (record,) = [json.loads(p.read_text()) for p in (results / "lenet_sgd").glob("*.json")]
    assert record["git_commit"].endswith("+dirty") and record["canonical"] is False and not record["overrides"]
    (kept,) = evidence.read(results).records
    put(results, lie(record, canonical=True))
    assert "uncommitted changes" in evidence.read(results).rejected[0].reason and kept


# ---------------------------------------------------------------- checkpoints

def _interrupted_run(tmp_path, monkeypatch):
    """A lenet smoke run stopped after epoch 1 (its checkpoint kept), and the uninterrupted run's weights."""
    from bench.running import runner
    results = tmp_path / "results"
    args = ["run", "--recipe", "lenet_sgd", "--epochs", "2", "--results", str(results), *SMALL]
    whole = tmp_path / "whole"
    assert main(["run", "--recipe", "lenet_sgd", "--epochs", "2", "--results", str(whole), *SMALL]) == 0
    (ref,) = [json.loads(p.read_text()) for p in (whole / "lenet_sgd").glob("*.json")]
    real = runner.RunnerContext.save_checkpoint

    def stop_after_first(self, state):
        real(self, state)
        if state["epoch"] == 1:
            raise KeyboardInterrupt
    monkeypatch.setattr(runner.RunnerContext, "save_checkpoint", stop_after_first)
    assert main(args) == 130
    monkeypatch.setattr(runner.RunnerContext, "save_checkpoint", real)
    (ck,) = (results / "lenet_sgd" / "partial").glob("*.pt")
    return results, args, ck, ref["weights_sha256"]


@pytest.mark.parametrize("damage", ["flip a bit", "another run's state", "a list", "no random state", "a folder"])
def test_an_unusable_checkpoint_is_set_aside_and_the_seed_starts_over_to_the_same_bits(damage, tmp_path, fake_data,
                                                                                       monkeypatch, capsys):
    import torch

    from bench.training import checkpoint
    results, args, ck, want = _interrupted_run(tmp_path, monkeypatch)
    lineage = checkpoint.read(ck)["lineage"]
    if damage == "flip a bit":
        data = bytearray(ck.read_bytes())
        data[len(data) // 2] ^= 0x01
        ck.write_bytes(bytes(data))
    elif damage == "a folder":
        ck.unlink()
        ck.mkdir()
    else:
        state = checkpoint.read(ck)
        bad = {"another run's state": {**state, "model": {"w": torch.zeros(3)}},
               "a list": [1, 2, 3], "no random state": {k: v for k, v in state.items() if k != "rng"}}[damage]
        checkpoint.write(ck, bad)
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "set aside" in out and "starts over" in out
    assert list(ck.parent.glob("*.unusable-*"))                  # kept, never deleted
    (record,) = [json.loads(p.read_text()) for p in (results / "lenet_sgd").glob("*.json")]
    assert record["weights_sha256"] == want and record["resumed_from_epoch"] == 0
    assert record["lineage"] not in (None, lineage), "a seed that starts over is a from-scratch start of its own"


# ---------------------------------------------------------------- bad input: one line, exit 2

@pytest.mark.parametrize("argv", [
    ["run", "--recipe", "lenet_sgd", "--seed-start", str(2 ** 64)],
    ["check-determinism", "--recipe", "lenet_sgd", "--seed", str(2 ** 64)],
    ["run", "--recipe", "lenet_sgd", "--seeds", "100000000000000", "--dry-run"],
    ["run", "--recipe", "lenet_sgd", "--results", ""],
    ["report", "--results", ""],
    ["export", "--out", ""],
])
def test_bad_input_is_one_line_and_exit_2(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*argv, *(SMALL if argv[0] in ("run", "check-determinism") else [])]) == 2
    one_line_error(capsys)
    assert not any(tmp_path.iterdir())                           # nothing written, not even a folder


@pytest.mark.parametrize("argv", [["--recipe", "lenet_sgd", "--eval-limit", "1"],
                                  ["--recipe", "ultimate_mlp", "--epochs", "1", "--train-limit", "64",
                                   "--set", "val_size=64"]])
def test_tiny_smoke_runs_are_estimated_never_divided_by_zero(argv, tmp_path, fake_data, capsys):
    assert main(["run", *argv, "--dry-run", "--results", str(tmp_path / "r"), *SMALL]) == 0
    assert "estimate on this machine" in capsys.readouterr().out


@pytest.mark.parametrize("make", ["results a dangling link", "recipe folder a file", "partial a file",
                                  "lock a folder"])
def test_a_results_folder_that_cannot_hold_records_is_named(make, tmp_path, fake_data, capsys):
    results = tmp_path / "results"
    if make == "results a dangling link":
        results.symlink_to(tmp_path / "nowhere")
    elif make == "recipe folder a file":
        results.mkdir()
        (results / "lenet_sgd").write_text("")
    elif make == "partial a file":
        (results / "lenet_sgd").mkdir(parents=True)
        (results / "lenet_sgd" / "partial").write_text("")
    else:
        from bench.contract.recipe import apply_overrides
        from bench.running.options import RunOptions
        from bench.running.runner import run_key
        import torch
        from bench.training.environment import host_identity
        cpu = torch.device("cpu")
        torch.set_num_threads(1)
        recipe = registry.load("lenet_sgd")
        _, parsed = apply_overrides(recipe.hparams, {"epochs": "1"})
        key = run_key(recipe, 0, RunOptions(results=results, data_dir=tmp_path, device=cpu, host=host_identity(cpu)),
                      parsed)
        (results / "lenet_sgd" / "partial" / f"{key}.lock").mkdir(parents=True)
    assert main(["run", "--recipe", "lenet_sgd", "--epochs", "1", "--results", str(results), *SMALL]) == 2
    one_line_error(capsys)


def test_a_recipe_module_that_fails_to_import_is_named_and_every_other_recipe_works(tmp_path, fake_data, capsys):
    bad = ROOT / "recipes" / "zz_broken_for_a_test.py"
    bad.write_text("def build_model(hp:\n")
    try:
        assert main(["list"]) == 0
        captured = capsys.readouterr()
        assert "zz_broken_for_a_test" in captured.err and "lenet_sgd" in captured.out
        assert main(["report", "--results", str(COMMITTED), "--out", str(tmp_path / "R.md")]) == 0
        assert "zz_broken_for_a_test" in (tmp_path / "R.md").read_text()
        assert main(["export", "--results", str(COMMITTED), "--out", str(tmp_path / "runs.csv")]) == 0
        assert main(["run", "--recipe", "lenet_sgd", "--epochs", "1", "--results", str(tmp_path / "r"), *SMALL]) == 0
        capsys.readouterr()
        assert main(["run", "--recipe", "zz_broken_for_a_test", *SMALL]) == 2
        assert "fails to import" in one_line_error(capsys)
    finally:
        bad.unlink()


# ---------------------------------------------------------------- the machine refuses: one line, exit 1

@pytest.mark.parametrize("where", ["record", "checkpoint"])
def test_a_full_disk_is_one_line_exit_1_and_loses_nothing(where, tmp_path, fake_data, monkeypatch, capsys):
    from bench.records import store
    from bench.training import checkpoint

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    if where == "record":
        monkeypatch.setattr(store, "_write", full)
    else:
        monkeypatch.setattr(checkpoint.os, "replace", full)
    results = tmp_path / "results"
    assert main(["run", "--recipe", "lenet_sgd", "--epochs", "1", "--results", str(results), *SMALL]) == 1
    assert "No space left on device" in one_line_error(capsys)
    if where == "record":                                         # the checkpoint survives: a rerun records it
        monkeypatch.undo()
        assert list((results / "lenet_sgd" / "partial").glob("*.pt"))


# ---------------------------------------------------------------- other

def test_a_fifo_in_results_never_hangs_a_command(tmp_path):
    results = tmp_path / "results"
    write(results, *runs("lenet_sgd", [99.0, 99.1, 99.05]))
    os.mkfifo(results / "lenet_sgd" / "pipe.json")
    ev = evidence.read(results)
    assert len(ev.records) == 3 and any(p.name == "pipe.json" for p in ev.not_records)


def test_an_output_path_that_is_a_fifo_is_refused_without_hanging(tmp_path, capsys):
    results = tmp_path / "results"
    write(results, *runs("lenet_sgd", [99.0, 99.1, 99.05]))
    os.mkfifo(tmp_path / "out.md")
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "out.md")]) == 2
    assert "not a regular file" in one_line_error(capsys)


def test_a_gz_with_the_wrong_contents_is_named_and_never_unpacked(tmp_path, capsys):
    import gzip

    from bench.training import data
    raw = data.mnist_raw_dir(tmp_path)
    raw.mkdir(parents=True)
    for spec in data.MNIST_RAW:
        (raw / f"{spec.name}.gz").write_bytes(gzip.compress(b"not mnist"))
    def offline(workdir, log):
        raise OSError("no network in this test")
    with pytest.raises(data.DataError, match=r"\.gz: its contents fail"):
        data.fetch_mnist(tmp_path, log=lambda *_: None, sources={"nowhere": offline})
    assert not any(p.suffix != ".gz" for p in raw.iterdir())
    assert main(["data", "verify", "--data-dir", str(tmp_path)]) == 2
    assert "t10k-images-idx3-ubyte.gz" in capsys.readouterr().out


def test_a_csv_path_that_is_a_folder_is_reported_by_data_verify(tmp_path, capsys):
    from bench.training import data
    (data.mnist_csv_dir(tmp_path) / "mnist_train.csv").mkdir(parents=True)
    assert main(["data", "verify", "--data-dir", str(tmp_path)]) == 2
    assert "not a file" in capsys.readouterr().out


def test_export_of_one_variant_holds_its_runs(tmp_path, capsys):
    results = tmp_path / "results"
    write(results, *runs("lenet_sgd", [99.1, 99.0]), *runs("lenet_sgd", [99.2, 99.25, 99.3], variant="relu_between_fc"))
    assert main(["export", "--results", str(results), "--recipe", "lenet_sgd:relu_between_fc"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all("relu_between_fc" in line for line in lines[1:])


def test_a_refused_seed_creates_nothing_and_times_nothing(tmp_path, fake_data, capsys):
    results = tmp_path / "results"
    (path,) = write(results, make_record("lenet_sgd", 0, 99.0))
    path.write_text(path.read_text().replace('"seed": 0', '"seed": 0, "x": 1'))   # its digest now fails
    assert main(["run", "--recipe", "lenet_sgd", "--results", str(results), *SMALL]) == 2
    assert "rejected" in one_line_error(capsys) and not (results / "lenet_sgd" / "partial").exists()
    assert "estimate" not in capsys.readouterr().out


def test_a_file_given_for_a_folder_is_called_a_file(tmp_path, capsys):
    f = tmp_path / "a-file"
    f.write_text("")
    assert main(["report", "--results", str(f)]) == 2
    line = one_line_error(capsys)
    assert "is a file" in line and "does not exist" not in line
    assert dataclasses.is_dataclass(registry.load("lenet_sgd").hparams)
