"""REPORT.md from synthetic records (no training): same bytes on a rerun, what counts and what is only
listed, the verdict columns, readings, early curves, reruns on other hardware, determinism alarms."""
from __future__ import annotations

import re
from pathlib import Path

from bench.cli.main import main
from bench.contract import registry
from bench.records import evidence
from bench.report import markdown as report
from bench.report import sections
from tests.records import make_record, runs, write

MNIST = [99.12, 99.33, 99.14, 99.28, 99.28]


def render(results: Path, out: Path) -> str:
    return report.write_report(evidence.read(results), out).read_text()


def section(text: str, reading: str) -> str:
    head = f"\n## {reading}\n" if ":" not in reading else f"\n### {reading}\n"
    return text.split(head, 1)[1].split("\n## ", 1)[0]


def summary_row(text: str, reading: str) -> list[str]:
    line = next(x for x in text.splitlines() if re.match(rf"^\| {re.escape(reading)} +\|", x))
    return [c.strip() for c in line.strip("|").split("|")]


def test_rerun_gives_identical_bytes(results, tmp_path):
    write(results, *runs("mnist_99_4", MNIST), *runs("mnist_99_4", [99.2, 99.25], pipeline="faithful"),
          make_record("lenet_sgd", 0, 99.0), make_record("mnist_99_4", 7, 50.0, canonical=False))
    out = tmp_path / "site" / "REPORT.md"

    def snapshot():
        report.write_report(evidence.read(results), out)
        return {p.relative_to(out.parent).as_posix(): p.read_bytes() for p in sorted(out.parent.rglob("*"))
                if p.is_file()}

    first, second = snapshot(), snapshot()
    assert first == second
    assert {"report_figures/mnist_99_4_seeds.png", "report_figures/mnist_99_4_curves.png"} <= set(first)
    assert b"Software" not in first["report_figures/mnist_99_4_seeds.png"]


def test_summary_columns(results, tmp_path):
    write(results, *runs("mnist_99_4", MNIST))
    row = summary_row(render(results, tmp_path / "R.md"), "mnist_99_4")
    assert row[0] == "mnist_99_4" and row[1] == "`test_acc_best` 99.43%" and row[2] == "5"
    assert row[3] == "99.23 ± 0.094" and row[5] == "0/5"
    assert row[7] == "15,578 / 15,578"                             # the document states its parameter count
    assert row[-1].startswith("not reproduced (provisional)") and "selected on test" in row[-1]
    lenet = summary_row(render(results, tmp_path / "R.md"), "lenet_sgd")
    assert lenet[7] == "61,706 / —"                               # ... this one does not: never our count as "claimed"


def test_smoke_truncated_and_older_runs_never_enter_statistics(results, tmp_path):
    write(results, *runs("mnist_99_4", MNIST), *runs("mnist_99_4", [10.0, 11.0], canonical=False),
          *runs("mnist_99_4", [50.0, 51.0, 52.0], fingerprint="0123456789abcdef"),
          *(make_record("mnist_99_4", seed, value, status="truncated") for seed, value in [(5, 60.0), (6, 61.0)]))
    text = render(results, tmp_path / "R.md")
    assert summary_row(text, "mnist_99_4")[2] == "5"
    body = section(text, "mnist_99_4")
    assert "### Smoke runs (non-canonical)" in body and "### Older fingerprints" in body
    assert "### Truncated runs (--stop-after: early curves only)" in body
    assert "`0123456789abcdef`" in body


def test_claim_blocks(results, tmp_path):
    write(results, *runs("mnist_99_4", MNIST))
    body = section(render(results, tmp_path / "R.md"), "mnist_99_4")
    block = body.split("#### `test_acc_best`")[1].split("####")[0]
    assert "one-sided 95% upper predictive bound" in block and "Student t predictive" in block
    assert "runs reaching the claim: 0/5 (95% CI 0%–52%" in block
    assert "plausible only as the best of K = " in block
    assert "verdict within seed noise: **not reproduced (provisional)**" in block
    loss = body.split("#### `train_loss_final`")[1].split("####")[0]
    assert "upper" not in loss.split("predictive bound")[0][-20:] or "lower predictive bound" in loss
    assert "Holm-adjusted p" in body.split("#### `test_acc_final`")[1].split("####")[0]
    assert "#### `params`: claimed 15,578" in body and "verdict: **reproduced**" in body.split("#### `params`")[1]


def test_claims_without_a_better_side_are_described_not_judged(results, tmp_path):
    write(results, *runs("lenet_sgd", [99.1, 99.0, 98.9]))
    block = section(render(results, tmp_path / "R.md"), "lenet_sgd").split("#### `best_test_epoch`")[1].split("####")[0]
    assert "no verdict: the claim has no better side" in block and "0/3 runs at 13" in block


def test_not_comparable_claims_say_why(results, tmp_path):
    write(results, *runs("vgg_mnist", [99.3, 99.4, 99.35]))
    vgg = section(render(results, tmp_path / "R.md"), "vgg_mnist")
    block = vgg.split("#### `train_loss_final`")[1].split("####")[0]
    assert "verdict: **not comparable**" in block and "batch" in block


def test_diverged_runs_make_it_unstable(results, tmp_path):
    write(results, *runs("lenet_sgd", [99.1, 99.0, 11.0, 10.5, 99.05]))
    row = summary_row(render(results, tmp_path / "R.md"), "lenet_sgd")
    assert row[2] == "5 (2 failed)" and row[-1].startswith("unstable")


def test_reruns_on_other_hardware_are_extra_draws_and_one_machine_differing_is_an_alarm(results, tmp_path):
    write(results, make_record("lenet_sgd", 0, 99.10, host="a", started=1),
          make_record("lenet_sgd", 0, 99.00, host="b", started=2),            # another machine: another draw
          make_record("lenet_sgd", 1, 99.05, host="a", key="a" * 24, weights="1" * 64, started=3),
          make_record("lenet_sgd", 1, 99.07, host="a", key="a" * 24, weights="2" * 64, started=4),
          make_record("lenet_sgd", 2, 99.20, host="a", started=5))
    text = render(results, tmp_path / "R.md")
    assert summary_row(text, "lenet_sgd")[2] == "5"
    body = section(text, "lenet_sgd")
    assert "seed 0 ran once on each of 2 machines" in body and "other machines: other bits are expected" in body
    assert "seed 1 has 2 distinct runs" in body and "not deterministic" in body.split("seed 1 has")[1]


def test_seeds_run_on_two_machines_are_one_line_with_their_pairing_by_seed(results, tmp_path):
    amd = [99.00, 99.10, 98.90, 99.05, 98.95]
    intel = [99.02, 99.12, 98.93, 99.04, 98.97]                          # each seed lands where it landed before
    write(results, *runs("lenet_sgd", amd, host="amd", machine="AMD CPU / 2 threads"),
          *runs("lenet_sgd", intel, host="intel", machine="Intel CPU / 2 threads", started=1))
    text = render(results, tmp_path / "R.md")
    assert summary_row(text, "lenet_sgd")[2] == "10"                      # every run counts
    block = section(text, "lenet_sgd").split("#### Determinism")[1].split("####")[0]
    lines = [x for x in block.splitlines() if x.startswith("- ")]
    assert len(lines) == 1, block                                         # one line for five seeds, not fifteen
    assert "seeds 0-4 ran once on each of 2 machines (AMD CPU / 2 threads, host amd; Intel CPU / 2 threads, " \
           "host intel)" in lines[0]
    r = float(re.search(r"correlate r = ([0-9.]+) \(Pearson, 5 seeds", lines[0]).group(1))
    assert r > 0.95                                                        # the seed decides the run here
    write(results, make_record("lenet_sgd", 5, 99.0, host="amd", machine="AMD CPU / 2 threads"),
          make_record("lenet_sgd", 5, 10.0, host="intel", machine="Intel CPU / 2 threads", started=1))
    block = section(render(results, tmp_path / "R2.md"), "lenet_sgd").split("#### Determinism")[1].split("####")[0]
    assert "seeds 0-5 ran once" in block and "(Pearson, 5 seeds" in block   # a failed run pairs with nothing


def test_readings_table_measures_the_variants(results, tmp_path):
    write(results, *runs("lenet_sgd", [99.1, 99.0, 98.9, 99.05, 99.0]),
          *runs("lenet_sgd", [99.2, 99.25, 99.22, 99.3, 99.21], variant="relu_between_fc"))
    text = render(results, tmp_path / "R.md")
    readings = section(text, "lenet_sgd").split("#### Readings")[1].split("####")[0]
    assert "| lenet_sgd:relu_between_fc" in readings and "canonical" in readings
    row = next(x for x in readings.splitlines() if x.startswith("| lenet_sgd:relu"))
    assert float(row.split("|")[6]) < 0.05                               # Welch p against the canonical reading
    assert summary_row(text, "lenet_sgd:relu_between_fc")[2] == "5"
    assert "### lenet_sgd:relu_between_fc" in text and "Assumptions this reading changes" in text


def test_early_curve_table_from_truncated_runs(results, tmp_path):
    points = registry.load("ultimate_mlp").document_log
    assert points, "ultimate_mlp carries the notebook's printed log"
    first = next(p for p in points if p.epoch == 1)
    write(results, *[make_record("ultimate_mlp", s, first.value + d, status="truncated", epochs=3)
                     for s, d in enumerate([-0.1, 0.05, 0.1, -0.05, 0.0])])
    text = render(results, tmp_path / "R.md")
    body = section(text, "ultimate_mlp")
    table = body.split("### Early curve against the document's printed log")[1].split("####")[0]
    assert re.search(r"\| 1 +\| val_acc +\|", table)
    assert "logged epochs lie inside their 95% interval" in table and "Joint test" in table
    assert summary_row(text, "ultimate_mlp")[2] == "0"                      # truncated runs feed no verdict
    assert (tmp_path / "report_figures" / "ultimate_mlp_curves.png").exists()


def test_a_truncated_run_continued_later_counts_once(results, tmp_path):
    key = "ab" * 12                                   # one run: cut at epoch 3, then continued to epoch 5
    short = make_record("ultimate_mlp", 0, 97.0, status="truncated", epochs=3, key=key)
    longer = make_record("ultimate_mlp", 0, 97.05, status="truncated", epochs=5, key=key)
    paths = write(results, short, longer, make_record("ultimate_mlp", 1, 97.2, status="truncated", epochs=3))
    text = render(results, tmp_path / "R.md")
    body = section(text, "ultimate_mlp")
    table = body.split("### Early curve against the document's printed log")[1].split("####")[0]
    assert re.search(r"\| 1 +\| val_acc +\| [0-9.]+ +\| 2 +\|", table), table
    continued = body.split("Truncated runs continued by a later record")[1]
    assert paths[0].name in continued and paths[1].name not in continued


def test_cli_defaults_and_bad_input(results, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--results", "nowhere"]) == 2
    assert "does not exist" in capsys.readouterr().err
    write(results, make_record("lenet_sgd", 0, 99.0))
    assert main(["report", "--results", str(results), "--out", "r/REPORT.md"]) == 0
    assert (tmp_path / "r" / "REPORT.md").exists()


def test_a_group_that_spans_two_commits_is_named_once_with_each_commit_counted():
    from collections import Counter
    commits = Counter({("fast / cpu", "bbb"): 6, ("fast / cpu", "aaa"): 4, ("faithful / cpu", "aaa"): 2})
    assert sections.commit_list(commits) == ["faithful / cpu: `aaa` ×2", "fast / cpu: `aaa` ×4, `bbb` ×6"]


def _cut(record: dict, n: int, **changes) -> dict:
    """The record's run stopped after n epochs: curves sliced, metrics recomputed from them."""
    from bench.records.selection import summarize
    curves = {k: v[:n] for k, v in record["curves"].items()}
    metrics = summarize(curves, record["hparams"]["selection"])
    metrics.update(params=record["params"], wall_time_s=sum(curves["epoch_time_s"]))
    return {**record, "curves": curves, "metrics": metrics, "wall_time_s": metrics["wall_time_s"], "epochs_run": n,
            "stop_after": n, "truncated": True, "status": "truncated", "weights_sha256": "c" * 64, **changes}


def _determinism(results, tmp_path) -> str:
    return section(render(results, tmp_path / "R.md"), "ultimate_mlp").split("#### Determinism")[1].split("####")[0]


def test_epochs_a_later_run_trained_again_must_match_the_truncated_run(results, tmp_path):
    full = make_record("ultimate_mlp", 0, 97.0, epochs=250, key="ab" * 12, started=5)
    write(results, _cut(full, 3, started_at="2026-01-01T00:01:00Z"), full)
    determinism = _determinism(results, tmp_path)
    assert "epochs 1-3 of a truncated run" in determinism
    assert "every loss, accuracy and lr identical" in determinism


def test_a_retrained_epoch_with_other_values_is_flagged_not_deterministic(results, tmp_path):
    full = make_record("ultimate_mlp", 0, 97.0, epochs=250, key="ab" * 12, started=5)
    short = _cut(full, 3, started_at="2026-01-01T00:01:00Z")
    short["curves"]["lr"] = [0.1, 0.1000001, 0.1]                # one value off in the 7th digit
    write(results, short, full)
    assert "**values differ from epoch 2 on one machine and thread count: not deterministic**" in \
        _determinism(results, tmp_path)


def test_epochs_restored_from_a_checkpoint_are_not_called_a_second_computation(results, tmp_path):
    full = make_record("ultimate_mlp", 0, 97.0, epochs=250, key="ab" * 12, started=5)
    full["resumed_from_epoch"] = 3
    write(results, _cut(full, 3, started_at="2026-01-01T00:01:00Z", resumed_from_epoch=0), full)
    assert "trained again" not in _determinism(results, tmp_path)


def test_a_run_of_its_own_lineage_resumed_in_stretches_still_counts_every_epoch_it_shares(results, tmp_path):
    full = make_record("ultimate_mlp", 0, 97.0, epochs=250, key="ab" * 12, started=5)
    full.update(resumed_from_epoch=120, lineage="1" * 16)        # from scratch, stopped and resumed at epoch 120
    write(results, _cut(full, 3, started_at="2026-01-01T00:01:00Z", lineage="2" * 16), full)
    assert "epochs 1-3 of a truncated run" in _determinism(results, tmp_path)


def test_a_run_that_continued_the_truncated_runs_own_checkpoints_is_no_second_computation(results, tmp_path):
    full = make_record("ultimate_mlp", 0, 97.0, epochs=250, key="ab" * 12, started=5)
    full.update(resumed_from_epoch=3, lineage="1" * 16)
    write(results, _cut(full, 3, started_at="2026-01-01T00:01:00Z", resumed_from_epoch=0), full)
    assert "trained again" not in _determinism(results, tmp_path)


def test_runs_with_one_value_tie_on_an_accuracy_and_leave_nothing_to_predict_from_on_a_loss(results, tmp_path):
    write(results, *runs("mnist_99_4", [99.3, 99.3]))
    block = section(render(results, tmp_path / "R.md"), "mnist_99_4")
    accuracy = block.split("#### `test_acc_best`")[1].split("####")[0]
    assert "the 2 runs tie: one value, on a metric that counts images" in accuracy
    assert "one-sided 95% upper predictive bound" in accuracy
    loss = block.split("#### `test_loss_final`")[1].split("####")[0]
    assert "no predictive bound, interval or best-of-k chance (the 2 runs gave one value" in loss
    assert "—%" not in block and "best of k runs reaches the claim: \n" not in block


def test_seeds_that_give_one_set_of_weights_are_a_seeding_fault_not_a_sample(results, tmp_path):
    """Different seeds, bitwise the same final weights: the seed reached nothing. Counted once as one run, they
    must not read as fewer honest draws: the Determinism section names them and every judged claim says so."""
    rs = [make_record("lenet_sgd", s, v, weights=("a" * 64 if s in (0, 2) else None))
          for s, v in enumerate([99.0, 98.95, 99.0, 99.05])]
    write(results, *rs)
    text = render(results, tmp_path / "R.md")
    block = section(text, "lenet_sgd")
    assert "**seeds 0, 2 gave bitwise identical final weights: the seed does not reach the run" in block
    assert "verdict within seed noise: **seeding fault**: runs of different seeds gave bitwise identical" in block
    assert re.search(r"^\| lenet_sgd +\|.*\| seeding fault", text, re.M)


def test_pipelines_are_compared_on_the_machines_both_ran_on():
    amd = [{"machine": "AMD / 2 threads", "seed": s} for s in range(3)]
    intel = [{"machine": "Intel / 2 threads", "seed": s} for s in range(3)]
    (fast, faithful), where = sections.on_shared_machines(amd + intel, amd)
    assert fast == amd and faithful == amd and "AMD / 2 threads, the machines both ran on" in where
    assert sections.on_shared_machines(amd, amd) == ((amd, amd), "")              # one machine: nothing to say
    assert sections.on_shared_machines(amd, intel) == ((amd, intel), "")          # none shared: both whole
