"""The evidence layer and bad input at the door: every reproduction of the integrity issue, by fault
injection on temporary copies. Each must give exit 2 or a loud warning, untouched verdicts, nothing lost."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from bench.cli.main import main
from bench.contract import registry
from bench.records import evidence
from bench.report import markdown as report
from tests.records import runs, write

MNIST = [99.12, 99.33, 99.14, 99.28, 99.28, 99.23, 99.21, 99.17, 99.16, 99.19]


@pytest.fixture
def folder(tmp_path) -> Path:
    """A results folder with 10 mnist_99_4 runs and 5 lenet_sgd runs."""
    results = tmp_path / "results"
    write(results, *runs("mnist_99_4", MNIST), *runs("lenet_sgd", [99.14, 98.97, 98.91, 99.01, 99.05]))
    return results


def headline(results: Path, recipe: str = "mnist_99_4") -> tuple:
    ev = evidence.read(results)
    r = registry.load(recipe)
    res = report.headline_result(r, report.runs_of(ev, r).primary)
    return res.judgement.verdict, res.judgement.n, round(res.judgement.mean, 6)


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_file(results: Path, recipe: str = "mnist_99_4", seed: int = 0) -> Path:
    return next(p for p in sorted((results / recipe).glob("*.json")) if json.loads(p.read_text())["seed"] == seed)


def test_clean_folder_reads_whole(folder):
    ev = evidence.read(folder)
    assert len(ev.records) == 15 and not ev.rejected and not ev.not_records and not ev.copies
    assert headline(folder) == ("not reproduced", 10, round(sum(MNIST) / 10, 6))


def test_a_one_byte_edit_is_rejected_and_the_verdict_stays(folder, capsys, tmp_path):
    before = headline(folder)
    path = one_file(folder)
    path.write_text(path.read_text().replace('"test_acc_best": 99.12', '"test_acc_best": 19.12'))
    ev = evidence.read(folder)
    (bad,) = ev.rejected
    assert bad.path == path and "disagree with its own curves" in bad.reason and bad.seed == 0
    assert headline(folder)[0] == before[0] and headline(folder)[1] == 9
    # a consistent edit of metric and curve is caught by the digest
    path.write_text(path.read_text().replace('19.12', '99.12').replace("99.12", "99.92"))
    assert "digest" in evidence.read(folder).rejected[0].reason
    assert main(["report", "--results", str(folder), "--out", str(tmp_path / "R.md"), "--strict"]) == 1
    err = capsys.readouterr().err
    assert f"rejected mnist_99_4/{path.name}" in err
    text = (tmp_path / "R.md").read_text()
    assert text.index("## Rejected records") < text.index("## Summary") and path.name in text


def test_a_rejected_fast_record_does_not_move_the_headline_to_the_other_pipeline(folder):
    write(folder, *runs("mnist_99_4", [v + 0.05 for v in MNIST], pipeline="faithful"))
    fast = headline(folder)
    path = one_file(folder)
    path.write_text(path.read_text()[:200])
    ev = evidence.read(folder)
    primary = report.runs_of(ev, registry.load("mnist_99_4")).primary
    assert len(ev.rejected) == 1 and primary.pipeline == "fast" and len(primary.runs) == 9
    assert headline(folder)[1] == 9 and headline(folder)[2] != fast[2]


def test_a_copied_folder_is_rejected_and_copies_count_once(folder):
    before = headline(folder, "lenet_sgd")
    shutil.copytree(folder / "lenet_sgd", folder / "lenet_sgd_backup")
    ev = evidence.read(folder)
    assert len(ev.rejected) == 5 and all("in folder 'lenet_sgd_backup'" in x.reason for x in ev.rejected)
    assert headline(folder, "lenet_sgd") == before
    path = one_file(folder, "lenet_sgd")
    shutil.copy(path, path.with_name("copy-" + path.name))                 # a copy beside it: the same run
    ev = evidence.read(folder)
    assert len(ev.of("lenet_sgd")) == 5 and sum(len(v) for v in ev.copies.values()) == 1
    assert headline(folder, "lenet_sgd") == before


def test_a_cut_record_warns_and_run_refuses_to_retrain_its_seed(folder, tmp_path, capsys, fake_data):
    path = one_file(folder, "mnist_99_4", 3)
    path.write_text(path.read_text()[:200])
    assert main(["report", "--results", str(folder), "--out", str(tmp_path / "R.md")]) == 0
    assert f"rejected mnist_99_4/{path.name}: unreadable" in capsys.readouterr().err
    assert headline(folder)[1] == 9
    before = snapshot(folder)
    code = main(["run", "--recipe", "mnist_99_4", "--seeds", "1", "--seed-start", "3", "--results", str(folder),
                 "--device", "cpu", "--no-progress", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "is rejected" in err and "--force" in err and snapshot(folder) == before


@pytest.mark.parametrize("field, value, reason", [
    ("started_at", None, "started_at"), ("seed", "0", "seed"), ("metrics", None, "metrics"),
    ("status", "done", "status"), ("recipe", "lenet_sgd", "in folder"), ("params", -5, "params"),
    ("canonical", "yes", "canonical"), ("weights_sha256", "zz", "weights_sha256")])
def test_malformed_fields_are_rejected_with_a_reason(folder, field, value, reason, tmp_path):
    path = one_file(folder)
    data = json.loads(path.read_text())
    data[field] = value
    data.pop("digest")
    path.write_text(json.dumps(data))
    (bad,) = evidence.read(folder).rejected
    assert reason in bad.reason
    assert headline(folder)[1] == 9
    assert main(["report", "--results", str(folder), "--out", str(tmp_path / "R.md")]) == 0
    assert main(["compare", "--baseline", str(folder), "--candidate", str(folder), "--json",
                 str(tmp_path / "c.json")]) in (0, 1)


def test_out_of_range_values_and_a_future_schema_are_rejected(folder):
    path = one_file(folder)
    data = json.loads(path.read_text())
    data["curves"]["test_acc"][0] = 140.0
    data.pop("digest")
    path.write_text(json.dumps(data))
    assert "outside 0..100%" in evidence.read(folder).rejected[0].reason
    path.write_text(json.dumps({**data, "schema_version": 99}))
    assert "schema_version 99" in evidence.read(folder).rejected[0].reason


def test_an_empty_object_is_not_a_record_and_never_fatal(folder, tmp_path, capsys):
    (folder / "mnist_99_4" / "notes.json").write_text("{}")
    (folder / "mnist_99_4" / "list.json").write_text("[1, 2]")
    ev = evidence.read(folder)
    assert len(ev.not_records) == 2 and not ev.rejected and len(ev.records) == 15
    assert main(["report", "--results", str(folder), "--out", str(tmp_path / "R.md"), "--strict"]) == 0
    assert "not a record" in capsys.readouterr().err


@pytest.mark.parametrize("recipe, setting, message", [
    ("mnist_99_4", "lr=-1", "lr must be a finite number > 0"),
    ("mnist_99_4", "lr=nan", "lr must be a finite number > 0"),
    ("mnist_99_4", "weight_decay=-1", "weight_decay must be a finite number >= 0"),
    ("mnist_99_4", "mean=", "mean must be one or more value(s)"),
    ("mnist_99_4", "std=0", "std must be one or more value(s), each a finite number > 0"),
    ("mnist_99_4", "dropout=1", "dropout must be in [0, 1)"),
    ("mnist_99_4", "split=tail", "needs 1 <= val_size"),
    ("numpy_cnn", "lr=-1", "lr must be a finite number > 0"),
    ("numpy_cnn", "val_size=70000", "needs 1 <= val_size <= 59999"),
    ("numpy_cnn", "val_size=60000", "needs 1 <= val_size <= 59999"),
    ("ultimate_mlp", "pct_start=1.5", "pct_start must be in (0, 1)"),
])
def test_every_hyperparameter_is_checked_against_its_domain_before_anything(recipe, setting, message, tmp_path,
                                                                            capsys):
    results = tmp_path / "results"
    code = main(["run", "--recipe", recipe, "--set", setting, "--results", str(results), "--data-dir",
                 str(tmp_path / "data"), "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]
    assert not results.exists() and not (tmp_path / "data").exists()      # nothing written, nothing downloaded


def test_every_field_of_every_reading_declares_a_domain():
    for r in registry.all_readings():
        assert set(r.hparams.domains()) >= {f.name for f in dataclasses.fields(r.hparams)}, r.label


def test_a_schedule_too_short_for_onecycle_is_bad_input(tmp_path, capsys):
    code = main(["run", "--recipe", "ultimate_mlp", "--epochs", "1", "--train-limit", "256", "--results",
                 str(tmp_path / "r"), "--device", "cpu", "--no-progress", "--data-dir", str(tmp_path / "d")])
    assert code == 2 and "schedule torch rejects" in capsys.readouterr().err


def test_paths_are_checked_before_work(folder, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("x")
    checks = [
        (["run", "--recipe", "lenet_sgd", "--data-dir", str(readme), "--results", str(tmp_path / "r"),
          "--device", "cpu"], "is a file, not a folder"),
        (["report", "--results", str(folder), "--out", str(folder)], "is a folder"),
        (["compare", "--baseline", str(folder), "--candidate", str(folder), "--json", str(folder)], "is a folder"),
        (["run", "--recipe", "lenet_sgd", "--results", str(readme / "sub"), "--device", "cpu"], "is a file"),
    ]
    for args, message in checks:
        before = snapshot(tmp_path)
        assert main(args) == 2, args
        assert message in capsys.readouterr().err
        assert snapshot(tmp_path) == before


def test_unwritable_recipe_folder_is_bad_input(folder, tmp_path, capsys):
    import os
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    (folder / "lenet_sgd").chmod(0o500)
    try:
        assert main(["run", "--recipe", "lenet_sgd", "--results", str(folder), "--device", "cpu"]) == 2
    finally:
        (folder / "lenet_sgd").chmod(0o755)


def test_report_out_elsewhere_writes_its_figures_beside_it(folder, tmp_path):
    out = tmp_path / "site" / "R.md"
    assert main(["report", "--results", str(folder), "--out", str(out)]) == 0
    assert (tmp_path / "site" / "report_figures" / "mnist_99_4_seeds.png").exists()
    assert not (tmp_path / "report_figures").exists()


def test_argparse_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--recipe", "mnist_99_4", "--seeds", "zero"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and err[0].startswith("error: argument --seeds")


def test_the_thread_count_the_host_the_precision_and_the_software_are_part_of_the_run_key(monkeypatch):
    import dataclasses

    import torch

    from bench.running import runner
    from bench.running.options import RunOptions
    from bench.running.runner import done_here, run_key
    r = registry.load("lenet_sgd")
    opts = RunOptions(results=Path("r"), data_dir=Path("d"), device=torch.device("cpu"), host="h")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run_key(r, 0, opts, {})
        torch.set_num_threads(2)
        two = run_key(r, 0, opts, {})
        other_host = run_key(r, 0, dataclasses.replace(opts, host="other"), {})
        tf32 = run_key(r, 0, dataclasses.replace(opts, precision="tf32"), {})
        monkeypatch.setattr(runner, "software", lambda device: {"torch": "2.99.0"})     # a torch upgrade
        upgraded = run_key(r, 0, opts, {})
    finally:
        torch.set_num_threads(threads)
    assert len({one, two, other_host, tf32, upgraded}) == 5           # each is another run, never "already recorded"
    recorded = [{"key": two, "status": "complete"}]
    assert done_here(recorded, two, None) and not done_here(recorded, one, None)
    truncated = [{"key": two, "status": "truncated", "epochs_run": 10}]
    assert done_here(truncated, two, 5) and not done_here(truncated, two, 12) and not done_here(truncated, two, None)


def test_a_record_from_another_machine_does_not_skip_a_seed(tmp_path, fake_data, capsys):
    """The newcomer's question: runs committed from other hardware are evidence, never "already recorded"."""
    results = tmp_path / "results"
    args = ["run", "--recipe", "lenet_sgd", "--results", str(results), "--device", "cpu",       # canonical, on
            "--no-progress", "--data-dir", str(tmp_path), "--threads", "1"]                 # small synthetic data
    assert main(args) == 0
    (path,) = (results / "lenet_sgd").glob("*.json")
    record = json.loads(path.read_text())
    assert record["host"] and record["threads"] == 1
    out = capsys.readouterr().out
    assert main(args) == 0
    again = capsys.readouterr().out                     # nothing trains, and the question still gets its answer
    assert "already recorded on this machine" in again and "your runs against the evidence" in again
    assert "this machine" in again and "n=1" in again, again
    other = {**record, "host": "another-host", "key": "f" * 24, "weights_sha256": "e" * 64}   # other bits
    other.pop("digest")
    path.unlink()
    write(results, other)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "already recorded" not in out, out
    assert "your runs against the evidence" in out and "other machines" in out
    assert len(evidence.read(results).records) == 2


def test_interrupt_messages_tell_the_truth(tmp_path, fake_data, monkeypatch, capsys):
    from bench.running import runner
    from bench.training import engine

    def interrupt_at_once(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "train", interrupt_at_once)
    args = ["run", "--recipe", "lenet_sgd", "--epochs", "3", "--results", str(tmp_path / "r"), "--device", "cpu",
            "--no-progress", "--data-dir", str(tmp_path)]
    assert main(args) == 130
    assert "nothing was saved" in capsys.readouterr().err

    real = engine.train

    def interrupt_after_a_checkpoint(module, hp, splits, ctx):
        ctx.save_checkpoint({"epoch": 1, "curves": {}})
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "train", interrupt_after_a_checkpoint)
    assert main(args) == 130
    assert "epoch 1 of 3 is checkpointed" in capsys.readouterr().err
    monkeypatch.setattr(runner, "train", real)


def test_data_verify_covers_the_csv(tmp_path, capsys):
    csv = tmp_path / "MNIST" / "csv"
    csv.mkdir(parents=True)
    (csv / "mnist_test.csv").write_text("1,2,3\n")
    assert main(["data", "verify", "--data-dir", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert "mnist_csv" in out and "mnist_test.csv" in out and "expected 785 integer columns" in out
