"""REPORT.md from synthetic records (no training): same bytes on a rerun, smoke runs and older
fingerprints kept out of the statistics, corrupt records listed, one value per seed."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench import registry, report
from bench.cli import main
from bench.store import SCHEMA_VERSION, write_record

RECIPES = ("lenet_sgd", "mnist_99_4", "ultimate_mlp")


def make_record(recipe: str, seed: int, value: float, *, canonical: bool = True, fingerprint: str | None = None,
                pipeline: str = "fast", device: str = "cpu", machine: str = "Test CPU / 2 threads",
                epoch_time: float = 1.0, weights: str | None = None, started: int = 0, key: str | None = None,
                honest: float | None = None) -> dict:
    """A complete run record whose headline metrics are `value`, with three epochs of curves."""
    fp = fingerprint or registry.load(recipe).fingerprint
    overrides = {} if canonical else {"epochs": 3}
    curves = {"epoch": [1, 2, 3], "train_loss": [0.9, 0.5, 0.3], "train_acc": [90.0, 95.0, 97.0],
              "test_loss": [0.2, 0.1, 0.05], "test_acc": [value - 1, value, value - 0.01],
              "lr": [0.1, 0.1, 0.1], "epoch_time_s": [epoch_time * 1.5, epoch_time, epoch_time]}
    metrics = {"test_acc_best": value, "test_acc_selected": value, "test_acc_final": value - 0.01,
               "test_acc_honest": value - 0.01 if honest is None else honest, "best_test_epoch": 2,
               "train_loss_final": 0.3, "train_acc_final": 97.0, "test_loss_final": 0.05, "val_acc_best": value,
               "params": registry.load(recipe).params, "wall_time_s": sum(curves["epoch_time_s"])}
    return {"schema_version": SCHEMA_VERSION, "recipe": recipe, "fingerprint": fp, "harness": "h",
            "key": key or f"{fp}-{seed}-{pipeline}-{device}-{canonical}", "seed": seed, "canonical": canonical,
            "overrides": overrides, "pipeline": pipeline, "hparams": {}, "metrics": metrics, "curves": curves,
            "params": metrics["params"], "wall_time_s": metrics["wall_time_s"], "epochs_run": 3,
            "device": device, "env": {"python": "3.11.7", "torch": "2.14.1", "cuda": None, "gpu": None,
                                      "cpu": "Test CPU", "threads": 2},
            "machine": machine, "git_commit": "abc123", "started_at": f"2026-01-01T00:{started:02d}:00Z",
            "finished_at": "2026-01-01T01:00:00Z", "weights_sha256": weights or f"w{seed}", "status": "complete"}


def write(results: Path, *records: dict) -> None:
    for r in records:
        write_record(results, r)


@pytest.fixture(autouse=True)
def few_recipes(monkeypatch):
    """Three recipes stand for the registry: every code path, and no dependence on others' edits."""
    loaded = [registry.load(n) for n in RECIPES]
    monkeypatch.setattr(report.registry, "all_recipes", lambda: loaded)


def render(results: Path, out: Path) -> str:
    return report.write_report(results, out).read_text()


def section(text: str, recipe: str) -> str:
    return text.split(f"\n## {recipe}\n", 1)[1].split("\n## ", 1)[0]


def summary_row(text: str, recipe: str) -> list[str]:
    line = next(x for x in text.splitlines() if x.startswith(f"| {recipe} "))
    return [c.strip() for c in line.strip("|").split("|")]


MNIST_VALUES = [99.12, 99.33, 99.14, 99.28, 99.28]


def test_rerun_gives_identical_bytes(results, tmp_path):
    write(results, *(make_record("mnist_99_4", s, v) for s, v in enumerate(MNIST_VALUES)),
          *(make_record("mnist_99_4", s, 99.2 + s / 20, pipeline="faithful") for s in range(2)),
          make_record("lenet_sgd", 0, 99.0), make_record("mnist_99_4", 7, 50.0, canonical=False))
    out = tmp_path / "site" / "REPORT.md"

    def snapshot():
        report.write_report(results, out)
        files = sorted(p for p in out.parent.rglob("*") if p.is_file())
        return {p.relative_to(out.parent).as_posix(): p.read_bytes() for p in files}

    first, second = snapshot(), snapshot()
    assert first == second
    assert {"REPORT.md", "report_figures/mnist_99_4_seeds.png", "report_figures/mnist_99_4_curves.png",
            "report_figures/lenet_sgd_seeds.png", "report_figures/lenet_sgd_curves.png"} == set(first)
    assert b"Software" not in first["report_figures/mnist_99_4_seeds.png"]
    text = first["REPORT.md"].decode()
    assert "(report_figures/mnist_99_4_seeds.png)" in text and "(report_figures/mnist_99_4_curves.png)" in text


def test_smoke_runs_never_enter_statistics(results, tmp_path):
    write(results, *(make_record("mnist_99_4", s, v) for s, v in enumerate(MNIST_VALUES)),
          *(make_record("mnist_99_4", s, 10.0, canonical=False) for s in range(3)))
    text = render(results, tmp_path / "REPORT.md")
    row = summary_row(text, "mnist_99_4")
    assert row[3] == "5" and row[4] == "99.23 ± 0.094" and row[6] == "99.12 / 99.28 / 99.33"
    body = section(text, "mnist_99_4")
    assert "10.00" not in body.split("### Smoke runs")[0]
    smoke = body.split("### Smoke runs (non-canonical)")[1]
    assert "3 smoke run(s), never in statistics" in smoke and smoke.count("| epochs=3 ") == 3
    assert smoke.count("| 10.00 ") == 3


def test_only_smoke_runs_means_no_runs(results, tmp_path):
    write(results, make_record("lenet_sgd", 0, 99.0, canonical=False))
    text = render(results, tmp_path / "REPORT.md")
    assert summary_row(text, "lenet_sgd")[3] == "0" and summary_row(text, "lenet_sgd")[-1] == "no runs"
    assert not (tmp_path / "report_figures" / "lenet_sgd_seeds.png").exists()


def test_corrupt_record_is_listed_as_skipped(results, tmp_path):
    write(results, make_record("lenet_sgd", 0, 99.0))
    (results / "lenet_sgd" / "20260101T000000_seed1_cut.json").write_text('{"schema_version": 1, "recipe": ')
    (results / "lenet_sgd" / "20260101T000000_seed2_half.json").write_text(json.dumps({"schema_version": 1}))
    (results / "gone").mkdir()
    write(results, {**make_record("lenet_sgd", 0, 99.0), "recipe": "gone"})
    skipped = render(results, tmp_path / "REPORT.md").split("## Skipped records")[1]
    assert "lenet_sgd/20260101T000000_seed1_cut.json" in skipped and "unreadable record (JSONDecodeError" in skipped
    assert "lenet_sgd/20260101T000000_seed2_half.json" in skipped and "missing fields" in skipped
    assert "no recipe module recipes/gone.py" in skipped


def test_older_fingerprints_are_counted_not_used(results, tmp_path):
    write(results, *(make_record("lenet_sgd", s, 99.0 + s / 100) for s in range(3)),
          *(make_record("lenet_sgd", s, 90.0, fingerprint="0123456789abcdef") for s in range(4)))
    text = render(results, tmp_path / "REPORT.md")
    assert summary_row(text, "lenet_sgd")[3] == "3" and summary_row(text, "lenet_sgd")[4] == "99.01 ± 0.010"
    assert "4 canonical record(s) of older fingerprints (`0123456789abcdef` ×4)" in section(text, "lenet_sgd")


def test_reruns_of_a_seed_use_the_earliest_and_check_bitwise(results, tmp_path):
    write(results, make_record("lenet_sgd", 0, 99.10, key="k0", weights="same", started=1),
          make_record("lenet_sgd", 0, 98.00, key="k0", weights="same", started=5),
          make_record("lenet_sgd", 1, 99.00, key="k1", weights="one", started=2),
          make_record("lenet_sgd", 1, 99.00, key="k1", weights="other", started=6),
          make_record("lenet_sgd", 2, 99.20, key="k2", started=3))
    text = render(results, tmp_path / "REPORT.md")
    assert summary_row(text, "lenet_sgd")[4] == "99.10 ± 0.100"
    body = section(text, "lenet_sgd")
    assert "reruns of seed 0 matched bitwise: yes (2 records)" in body
    assert "reruns of seed 1 matched bitwise: no (2 records)" in body
    mismatch = body.split("reruns of seed 1")[1].split("- fast")[0]   # where and when each differing run ran
    assert mismatch.count("  - weights `") == 2 and "`one`" in mismatch and "`other`" in mismatch
    assert "on Test CPU / 2 threads" in mismatch


def test_groups_summary_and_fast_vs_faithful(results, tmp_path):
    write(results, *(make_record("mnist_99_4", s, 99.2 + s / 100) for s in range(3)),
          *(make_record("mnist_99_4", s, 99.1 + s / 100, pipeline="faithful") for s in range(3)),
          *(make_record("mnist_99_4", s, 99.3, device="cuda:0", machine="GPU / 2 threads") for s in range(2)))
    text = render(results, tmp_path / "REPORT.md")
    assert summary_row(text, "mnist_99_4")[11] == "fast / cpu"     # 3 seeds each: fast beats faithful
    body = section(text, "mnist_99_4")
    for label in ("| fast / cuda ", "| fast / cpu ", "| faithful / cpu "):
        assert label in body
    assert re.search(r"On cpu: fast 99\.21 ± 0\.010 \(n=3\) vs faithful 99\.11 ± 0\.010 \(n=3\); "
                     r"Welch's t-test p = [0-9.e-]+\.", body)
    assert "On cuda" not in body
    commands = body.split("```bash\n")[1].split("```")[0].splitlines()
    run = "python -m bench run --recipe mnist_99_4"
    assert commands == [f"{run} --seeds 2 --device cuda", f"{run} --seeds 3 --device cpu --threads 2",
                        f"{run} --seeds 3 --pipeline faithful --device cpu --threads 2"]


def test_cuda_wins_a_tie_of_seeds():
    recs = [make_record("lenet_sgd", s, 99.0, device=d) for s in range(2) for d in ("cpu", "cuda")]
    assert report.primary(report.group_runs(recs)).label == "fast / cuda"


@pytest.mark.parametrize("values, verdict", [
    ([99.40, 99.45, 99.43, 99.41], "reproduced"),
    ([98.00, 98.02, 98.01], "not reproduced"),
    ([99.90, 99.92, 99.91], "exceeded"),
    ([99.4, 99.5], "insufficient"),
])
def test_summary_verdict(results, tmp_path, values, verdict):
    write(results, *(make_record("mnist_99_4", s, v) for s, v in enumerate(values)))
    text = render(results, tmp_path / "REPORT.md")
    assert summary_row(text, "mnist_99_4")[-1] == verdict
    assert f"- verdict: **{verdict}**" in section(text, "mnist_99_4").split("#### `test_acc_final`")[0]


def test_claim_details(results, tmp_path):
    write(results, *(make_record("mnist_99_4", s, v, honest=v - 0.1) for s, v in enumerate(MNIST_VALUES)),
          *(make_record("ultimate_mlp", s, 99.2) for s in range(3)))
    text = render(results, tmp_path / "REPORT.md")
    mnist = section(text, "mnist_99_4")
    assert "> Best Test Accuracy: 99.43%" in mnist and "flags: selected on test" in mnist
    assert "per seed: 0: 99.12, 1: 99.33, 2: 99.14, 3: 99.28, 4: 99.28" in mnist
    assert "chance that the best of k runs reaches the claim: k=1: 1.7%, k=5: 8.0%, k=10: 15.3%, k=20: 28.3%" in mnist
    assert "#### `params`: claimed 15,578" in mnist and "measured exactly: 15,578 parameters" in mnist
    assert "test-set selection adds 0.10 ± 0.000 points on average (n=5)" in mnist
    assert re.search(r"\| scheduler stepping +\| every batch, total_steps = 19 x 469 +\| assumed ", mnist)
    assert "- selected on test: `test_acc_best`" in mnist
    assert "Git commits: fast / cpu: `abc123` ×5" in mnist
    mlp = section(text, "ultimate_mlp")
    assert "did not look at the test set" in mlp
    assert "verdict: **none**: the document's hardware is not ours" in mlp
    assert "Test CPU / 2 threads" in mlp.split("#### `wall_time_s`")[1]
    aspiration = mlp.split("#### `test_acc_selected`: claimed 99.40%")[1].split("####")[0]
    assert "aspiration, not a measurement" in aspiration and "(aspiration)**" in aspiration


def test_cli_defaults_and_bad_input(results, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--results", "nowhere"]) == 2
    assert "does not exist" in capsys.readouterr().err
    write(results, {**make_record("lenet_sgd", 0, 99.0), "schema_version": 99})
    assert main(["report", "--results", str(results)]) == 2
    assert "schema_version 99" in capsys.readouterr().err
    assert not (tmp_path / "REPORT.md").exists()
    (results / "lenet_sgd").rename(tmp_path / "moved")
    assert main(["report", "--results", str(results), "--out", "r/REPORT.md"]) == 0
    assert (tmp_path / "r" / "REPORT.md").exists()
