"""The regression gate on synthetic baseline and candidate folders: exit codes and the JSON."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from bench import compare, registry
from bench.cli import main
from bench.compare import CompareError
from bench.recipe import Claim
from bench.store import StoreError
from tests.test_report import make_record, write

BASE = [99.20, 99.25, 99.30, 99.22, 99.28]


@pytest.fixture(autouse=True)
def few_recipes(monkeypatch):
    loaded = [registry.load(n) for n in ("lenet_sgd", "mnist_99_4")]
    monkeypatch.setattr(compare.registry, "all_recipes", lambda: loaded)


@pytest.fixture
def folders(tmp_path):
    base, cand = tmp_path / "baseline", tmp_path / "candidate"
    base.mkdir()
    cand.mkdir()
    return base, cand


def bench_compare(base, cand, *extra, json_path=None):
    """`python -m bench compare` as the nightly job calls it: exit code and the JSON summary."""
    json_path = json_path or base.parent / "compare.json"
    code = main(["compare", "--baseline", str(base), "--candidate", str(cand), "--json", str(json_path),
                 *map(str, extra)])
    return code, (json.loads(json_path.read_text()) if code in (0, 1) else None)


def runs(recipe, values, **kw):
    return [make_record(recipe, s, v, **kw) for s, v in enumerate(values)]


def row(summary, recipe):
    return next(r for r in summary["recipes"] if r["recipe"] == recipe)


def test_same_runs_do_not_regress(folders, capsys):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE), *runs("lenet_sgd", [99.0, 99.1, 99.05]))
    write(cand, *runs("mnist_99_4", [v + 0.01 for v in BASE]), *runs("lenet_sgd", [99.0, 99.1, 99.05]))
    code, summary = bench_compare(base, cand)
    assert code == 0 and summary["regressed"] == []
    r = row(summary, "mnist_99_4")
    assert r["status"] == "ok" and r["metric"] == "test_acc_best" and r["baseline"]["n"] == 5
    assert r["slowdown"] == pytest.approx(1.0) and r["timing_comparable"] is True
    out = capsys.readouterr().out
    assert "| mnist_99_4 " in out and "no regression" in out


def test_a_material_significant_drop_fails(folders, capsys):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE), *runs("lenet_sgd", [99.0, 99.1, 99.05]))
    write(cand, *runs("mnist_99_4", [v - 0.5 for v in BASE]), *runs("lenet_sgd", [99.0, 99.1, 99.05]))
    code, summary = bench_compare(base, cand)
    assert code == 1 and summary["regressed"] == ["mnist_99_4"]
    r = row(summary, "mnist_99_4")
    assert r["status"] == "regression: worse" and r["worse"] and not r["slower"]
    assert r["welch_p"] < 1e-4 and r["mannwhitney_p"] == pytest.approx(1 / 252)
    assert r["worse_by"] == pytest.approx(0.5) and r["delta"] == pytest.approx(-0.5)
    assert row(summary, "lenet_sgd")["status"] == "ok"
    assert "REGRESSION in mnist_99_4" in capsys.readouterr().out


def test_a_drop_smaller_than_min_effect_passes(folders):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE))
    write(cand, *runs("mnist_99_4", [v - 0.05 for v in BASE]))
    code, summary = bench_compare(base, cand)
    assert code == 0 and row(summary, "mnist_99_4")["welch_p"] < 0.05
    code, summary = bench_compare(base, cand, "--min-effect", "0.01")
    assert code == 1 and summary["min_effect"] == 0.01


def test_noise_is_not_a_regression(folders):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE))
    write(cand, *runs("mnist_99_4", [99.35, 99.05, 99.30, 99.10, 99.25]))
    code, summary = bench_compare(base, cand)
    assert code == 0 and row(summary, "mnist_99_4")["welch_p"] > 0.05


def test_better_is_not_a_regression(folders):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE))
    write(cand, *runs("mnist_99_4", [v + 1 for v in BASE]))
    code, summary = bench_compare(base, cand)
    assert code == 0 and row(summary, "mnist_99_4")["welch_p"] > 0.99


def test_slower_on_the_same_machine_fails(folders):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE, epoch_time=1.0))
    write(cand, *runs("mnist_99_4", BASE, epoch_time=2.0))
    code, summary = bench_compare(base, cand)
    r = row(summary, "mnist_99_4")
    assert code == 1 and r["status"] == "regression: slower" and r["slowdown"] == pytest.approx(2.0)
    assert r["baseline"]["seconds_per_epoch"] == pytest.approx(1.0)
    assert bench_compare(base, cand, "--max-slowdown", "2.5")[0] == 0


def test_timings_from_other_machines_are_not_judged(folders, capsys):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE, epoch_time=1.0))
    write(cand, *runs("mnist_99_4", BASE, epoch_time=3.0, device="cuda", machine="H100 / 16 threads"))
    code, summary = bench_compare(base, cand)
    r = row(summary, "mnist_99_4")
    assert code == 0 and r["timing_comparable"] is False and r["slower"] is False
    assert r["slowdown"] == pytest.approx(3.0)
    assert any("machines differ" in w for w in summary["warnings"])
    assert any("different groups" in w for w in summary["warnings"])
    assert "warning: mnist_99_4: machines differ" in capsys.readouterr().out


def test_a_changed_recipe_is_not_comparable(folders):
    base, cand = folders
    write(base, *runs("mnist_99_4", [v + 5 for v in BASE], fingerprint="0000000000000000"))
    write(cand, *runs("mnist_99_4", BASE))
    code, summary = bench_compare(base, cand)
    r = row(summary, "mnist_99_4")
    assert code == 0 and r["status"] == "not comparable: recipe changed" and not r["regressed"]
    assert r["baseline_fingerprints"] == ["0000000000000000"]


def test_the_shared_fingerprint_is_compared(folders):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE), *runs("mnist_99_4", [1.0] * 3, fingerprint="0000000000000000"))
    write(cand, *runs("mnist_99_4", BASE))
    code, summary = bench_compare(base, cand)
    assert code == 0 and row(summary, "mnist_99_4")["fingerprint"] == registry.load("mnist_99_4").fingerprint


def test_smoke_runs_are_ignored(folders):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE))
    write(cand, *runs("mnist_99_4", BASE), *runs("mnist_99_4", [10.0, 11.0, 12.0], canonical=False))
    code, summary = bench_compare(base, cand)
    assert code == 0 and row(summary, "mnist_99_4")["candidate"]["n"] == 5


def test_few_runs_are_reported_not_judged(folders):
    base, cand = folders
    write(base, *runs("mnist_99_4", [99.3]), *runs("lenet_sgd", [99.0, 99.1]))
    write(cand, *runs("mnist_99_4", [90.0]), *runs("lenet_sgd", [98.0, 98.1]))
    code, summary = bench_compare(base, cand)
    mnist, lenet = row(summary, "mnist_99_4"), row(summary, "lenet_sgd")
    assert not mnist["worse"] and any("fewer than 2 seeds" in n for n in mnist["notes"])
    assert lenet["worse"] and lenet["mannwhitney_p"] is None      # Welch at 2 a side; rank test needs 3
    assert code == 1


def test_only_one_side_warns(folders):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE), *runs("lenet_sgd", [99.0, 99.1, 99.05]))
    write(cand, *runs("mnist_99_4", BASE))
    code, summary = bench_compare(base, cand)
    assert code == 0 and row(summary, "lenet_sgd")["status"] == "only in baseline"
    assert "lenet_sgd: runs only in the baseline" in summary["warnings"]


def test_lower_is_better_headline():
    claim = Claim("test_loss_final", 0.02, "q", selection="final_epoch", unit="", higher_is_better=False,
                  headline=True)
    recipe = SimpleNamespace(name="lossy", headline=claim, fingerprint="f")

    def recs(values, **kw):
        return [{**make_record("lenet_sgd", s, 99.0, fingerprint="f", **kw),
                 "metrics": {"test_loss_final": v}} for s, v in enumerate(values)]

    base = recs([0.020, 0.021, 0.022])
    worse = compare.compare_recipe(recipe, base, recs([0.20, 0.21, 0.22]), 0.05, 0.1, 1.25)
    better = compare.compare_recipe(recipe, base, recs([0.002, 0.003, 0.001]), 0.05, 0.001, 1.25)
    assert worse["worse"] and worse["worse_by"] == pytest.approx(0.189)
    assert not better["worse"] and better["worse_by"] < 0


def test_bad_input_exits_2(folders, tmp_path):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE))
    assert bench_compare(base, tmp_path / "missing")[0] == 2
    write(cand, *runs("lenet_sgd", [99.0, 99.1, 99.05]))
    assert bench_compare(base, cand)[0] == 2
    with pytest.raises(CompareError, match="no recipe has canonical complete runs in both"):
        compare.compare(base, cand)
    write(cand, {**make_record("mnist_99_4", 0, 99.0), "schema_version": 99})
    with pytest.raises(StoreError, match="schema_version 99"):
        compare.compare(base, cand)
    with pytest.raises(SystemExit):
        bench_compare(base, cand, "--alpha", "1.5")
