"""`bench export`: what a user exports is exactly what REPORT.md counted."""
from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from bench.cli.main import main
from bench.contract import registry
from tests.conftest import ROOT
from tests.records import make_record, runs, write


def summary_rows(text: str) -> dict[str, list[str]]:
    table = text.split("## Summary", 1)[1].split("\n\n", 2)[1]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells
    return rows


def recompute(frame: pd.DataFrame, reading: str, metric: str):
    """The report's primary group from the CSV alone: current canonical complete runs, fast, most runs, cuda."""
    rows = frame[(frame.reading == reading) & frame.current & frame.canonical & (frame.status == "complete")]
    if rows.empty:
        return 0, None
    groups = rows.groupby(["pipeline", "device"])
    key = max(groups.groups, key=lambda k: (k[0] == "fast", len(groups.get_group(k)), k[1] == "cuda"))
    values = groups.get_group(key)[metric]
    converged = values[values > 20.0] if "acc" in metric else values.dropna()
    return len(values), converged.mean()


def test_the_committed_results_export_to_the_numbers_of_report_md(tmp_path):
    out = tmp_path / "runs.csv"
    assert main(["export", "--results", str(ROOT / "results"), "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    rows = summary_rows((ROOT / "REPORT.md").read_text())
    checked = 0
    for reading, cells in rows.items():
        r = registry.load(reading)
        n, mean = recompute(frame, reading, r.headline.metric)
        assert cells[2].split()[0] == str(n), reading
        if n and mean == mean:
            shown = float(cells[3].split(" ± ")[0])
            assert shown == pytest.approx(mean, abs=0.006), reading
            checked += 1
    assert checked >= 3


def test_formats_filters_and_the_curves_table(results, tmp_path, capsys):
    write(results, *runs("lenet_sgd", [99.1, 99.0, 98.9]), make_record("lenet_sgd", 5, 50.0, canonical=False),
          *runs("mnist_99_4", [99.2, 99.3]))
    paths = list((results / "mnist_99_4").glob("*.json"))
    paths[0].write_text("{cut")
    assert main(["export", "--results", str(results), "--out", str(tmp_path / "a.jsonl")]) == 0
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[0])["recipe"] in ("lenet_sgd", "mnist_99_4")
    assert "1 rejected record(s) left out" in capsys.readouterr().err
    assert main(["export", "--results", str(results), "--recipe", "lenet_sgd", "--canonical-only"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert len(frame) == 3 and set(frame.recipe) == {"lenet_sgd"} and frame.canonical.all()
    assert {"reading", "seed", "fingerprint", "current", "host", "hardware", "threads", "test_acc_best",
            "weights_sha256"} <= set(frame.columns)
    assert main(["export", "--results", str(results), "--curves", "--out", str(tmp_path / "c.csv")]) == 0
    curves = pd.read_csv(tmp_path / "c.csv")
    assert set(curves.columns) == {"recipe", "reading", "seed", "run", "epoch", "metric", "value"}
    assert len(curves) == 5 * 3 * 6                                # 5 runs x 3 epochs x 6 curves


def test_bad_formats_outputs_and_recipes_exit_2(results, tmp_path, capsys):
    write(results, *runs("lenet_sgd", [99.1]))
    checks = [(["--out", str(tmp_path / "x.xlsx")], "unknown format"),
              (["--out", str(tmp_path)], "is a folder"),
              (["--out", str(tmp_path / "missing" / "x.csv")], "does not exist"),
              (["--recipe", "nope"], "unknown recipe"),
              (["--format", "parquet"], "parquet")]
    for extra, message in checks:
        assert main(["export", "--results", str(results), *extra]) == 2, extra
        assert message in capsys.readouterr().err
    assert main(["export", "--results", str(tmp_path / "nowhere")]) == 2
