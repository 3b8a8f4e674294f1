"""The regression gate on synthetic baseline and candidate folders: every exit, and the JSON."""
from __future__ import annotations

import json

import pytest

from bench.cli.main import main
from bench.judging import gate as gate_module
from tests.records import make_record, runs, write

BASE = [99.20, 99.25, 99.30, 99.22, 99.28]


@pytest.fixture
def folders(tmp_path):
    base, cand = tmp_path / "baseline", tmp_path / "candidate"
    base.mkdir()
    cand.mkdir()
    return base, cand


def gate(base, cand, *extra):
    """`python -m bench compare` as the nightly calls it: exit code and the JSON summary."""
    json_path = base.parent / "compare.json"
    json_path.unlink(missing_ok=True)
    code = main(["compare", "--baseline", str(base), "--candidate", str(cand), "--json", str(json_path),
                 *map(str, extra)])
    return code, (json.loads(json_path.read_text()) if json_path.exists() else None)


def row(summary, reading):
    return next(r for r in summary["readings"] if r["reading"] == reading)


def test_same_runs_pass(folders, capsys):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE), *runs("lenet_sgd", [99.0, 99.1, 99.05]))
    write(cand, *runs("mnist_99_4", [v + 0.01 for v in BASE], started=9),
          *runs("lenet_sgd", [99.0, 99.1, 99.05], started=9))
    code, summary = gate(base, cand)
    assert code == 0 and summary["regressed"] == [] and summary["broken"] == []
    r = row(summary, "mnist_99_4")
    assert r["status"] == "ok" and r["baseline"]["n"] == 5 and r["timing_comparable"] is True
    assert r["slowdown"] == pytest.approx(1.0)
    assert "no regression" in capsys.readouterr().out


def test_a_material_drop_fails(folders):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE))
    write(cand, *runs("mnist_99_4", [v - 0.5 for v in BASE], started=9))
    code, summary = gate(base, cand)
    r = row(summary, "mnist_99_4")
    assert code == 1 and summary["regressed"] == ["mnist_99_4"] and r["status"] == "regression: worse"
    assert r["p_worse"] < 1e-3 and r["delta"] == pytest.approx(-0.5)


def test_a_drop_below_the_minimum_effect_passes_and_noise_passes(folders):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE))
    write(cand, *runs("mnist_99_4", [v - 0.08 for v in BASE], started=9))
    assert gate(base, cand)[0] == 0
    assert gate(base, cand, "--min-effect", "0")[0] == 1


def test_slower_on_one_host_fails_and_other_hosts_are_not_judged(folders):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE, epoch_time=1.0))
    write(cand, *[make_record("mnist_99_4", s, v, epoch_time=2.0 + s / 100, started=9) for s, v in enumerate(BASE)])
    code, summary = gate(base, cand)
    r = row(summary, "mnist_99_4")
    assert code == 1 and r["status"] == "regression: slower" and r["slowdown"] == pytest.approx(2.0, rel=0.02)
    assert gate(base, cand, "--max-slowdown", "2.5")[0] == 0
    cand2 = base.parent / "other"
    write(cand2, *runs("mnist_99_4", BASE, epoch_time=3.0, host="elsewhere", started=9))
    code, summary = gate(base, cand2)
    assert code == 0 and row(summary, "mnist_99_4")["timing_comparable"] is False


@pytest.mark.parametrize("candidate, reason", [
    ([], "no candidate runs"),
    ([99.2], "converged candidate run"),
    ([99.2, 99.25, float("nan"), 99.3], "diverged"),
    ([99.2, 99.25, 11.0, 99.3], "diverged"),
])
def test_a_broken_night_fails(folders, candidate, reason):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE), *runs("lenet_sgd", [99.0, 99.1, 99.05]))
    write(cand, *runs("lenet_sgd", [99.0, 99.1, 99.05], started=9))
    records = [make_record("mnist_99_4", s, v, started=9) for s, v in enumerate(candidate)]
    for r in records:
        if r["metrics"]["test_acc_best"] != r["metrics"]["test_acc_best"]:       # NaN: as a record stores it
            r["metrics"]["test_acc_best"] = None
            r["curves"]["test_acc"] = [None] * 3
            r["metrics"].update({k: None for k in r["metrics"] if k.startswith("test_acc")})
    write(cand, *records)
    code, summary = gate(base, cand)
    assert code == 1 and "mnist_99_4" in summary["broken"]
    assert reason in json.dumps(row(summary, "mnist_99_4"))


def test_a_changed_recipe_fails_unless_accepted(folders):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE, fingerprint="0000000000000000"))
    write(cand, *runs("mnist_99_4", BASE, started=9))
    code, summary = gate(base, cand)
    assert code == 1 and "--accept-changed mnist_99_4" in row(summary, "mnist_99_4")["status"]
    code, summary = gate(base, cand, "--accept-changed", "mnist_99_4")
    assert code == 0 and row(summary, "mnist_99_4")["status"] == "changed (accepted): not compared"


def test_never_cpu_against_cuda(folders, capsys):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE))
    write(cand, *runs("mnist_99_4", BASE, device="cuda:0", machine="GPU", started=9))
    code, summary = gate(base, cand)
    assert code == 0 and "never cpu against cuda" in row(summary, "mnist_99_4")["status"]
    assert "never cpu against cuda" in capsys.readouterr().out


def test_smoke_runs_and_new_readings_are_not_failures(folders):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE))
    write(cand, *runs("mnist_99_4", BASE, started=9), *runs("mnist_99_4", [10.0, 11.0, 12.0], canonical=False),
          *runs("lenet_sgd", [99.0, 99.1, 99.05]))
    code, summary = gate(base, cand)
    assert code == 0 and row(summary, "lenet_sgd")["status"] == "new: only in the candidate"


def test_a_rejected_candidate_record_fails_the_night(folders):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE))
    paths = write(cand, *runs("mnist_99_4", BASE, started=9))
    paths[0].write_text(paths[0].read_text()[:100])
    code, summary = gate(base, cand)
    assert code == 1 and any("rejected candidate record" in b for b in summary["broken"])


def test_bad_input_and_internal_errors_have_their_own_codes(folders, tmp_path, monkeypatch, capsys):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE))
    assert gate(base, tmp_path / "missing")[0] == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert gate(empty, empty)[0] == 2
    with pytest.raises(SystemExit):
        gate(base, cand, "--alpha", "1.5")

    def broken(*a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(gate_module, "compare_reading", broken)
    write(cand, *runs("mnist_99_4", BASE, started=9))
    assert gate(base, cand)[0] == 3                   # the nightly tells "broken gate" from "worse" (1)
    assert "internal error" in capsys.readouterr().err


def test_a_recipe_that_diverges_now_and_then_is_judged_on_its_rate(folders):
    base, cand = folders
    fragile = [98.4, 11.0, 98.2, 98.3, 98.4]                 # the baseline itself lost one seed in five
    write(base, *runs("mnist_99_4", [v if v > 20 else 11.0 for v in fragile]))
    write(cand, *runs("mnist_99_4", [98.3, 98.4, 11.2, 98.35, 98.2], started=9))
    code, summary = gate(base, cand)
    r = row(summary, "mnist_99_4")
    assert code == 0 and not r["broken"] and r["diverged"] == {"baseline": [1, 5], "candidate": [1, 5]}
    cand2 = base.parent / "worse"
    write(cand2, *runs("mnist_99_4", [11.0, 10.9, 11.2, 11.1, 98.3], started=9))
    code, summary = gate(base, cand2)
    r = row(summary, "mnist_99_4")
    assert code == 1 and r["broken"] and "only 1 converged candidate run" in r["status"]
    assert r["p_diverged"] == pytest.approx(0.1032, abs=1e-3)      # 4/5 against 1/5: Fisher alone cannot tell
    cand3 = base.parent / "many"
    write(cand3, *runs("mnist_99_4", [11.0] * 12 + [98.3, 98.4], started=9))
    r = row(gate(base, cand3)[1], "mnist_99_4")
    assert r["worse"] and r["p_diverged"] < 0.05                   # 12/14 against 1/5


def test_identical_data_passes_the_committed_results_against_themselves():
    from pathlib import Path
    results = Path(__file__).resolve().parent.parent / "results"
    code, summary = gate(results, results)
    assert code == 0, [r["status"] for r in summary["readings"] if r["broken"] or r["regressed"]]
    statuses = {r["reading"]: r["status"] for r in summary["readings"]}
    # the same records on both sides: identical, or (a baseline of fewer than two converged runs) not judged
    assert all(s.startswith(("ok: identical", "not judged")) for s in statuses.values()), statuses
    assert statuses["numpy_cnn:page_literal"].startswith("ok: identical")        # 5 of 5 diverged, twice alike


def test_the_baseline_seeds_rerun_on_the_same_host_with_the_same_bits_pass_without_statistics(folders):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE))
    write(cand, *runs("mnist_99_4", BASE, started=9))                       # the same keys and the same weights
    code, summary = gate(base, cand)
    assert code == 0 and row(summary, "mnist_99_4")["status"].startswith("ok: identical")
    assert "p_worse" not in row(summary, "mnist_99_4")


def test_the_same_seeds_on_the_same_host_with_other_bits_say_what_differs_then_are_judged(folders):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE))
    upgraded = [make_record("mnist_99_4", s, v, started=9, weights=f"{s + 1}" * 64) for s, v in enumerate(BASE)]
    for r in upgraded:
        r["env"] = {**r["env"], "torch": "2.99.0"}
    write(cand, *upgraded)
    code, summary = gate(base, cand)
    r = row(summary, "mnist_99_4")
    assert code == 0 and r["status"] == "ok" and "p_worse" in r
    assert any("bits changed" in n and "torch" in n for n in r["notes"])


@pytest.mark.parametrize("baseline, candidate, code, status", [
    ([99.2], [99.21, 99.19], 0, "not judged"),                       # a baseline of one run: nothing to judge
    ([99.2, 11.0, 10.0, 99.3], [99.2, 99.25, 12.0], 0, "not judged"),  # unstable baseline, candidate no worse
    ([99.2, 11.0, 10.0, 99.3], [11.0, 10.5, 12.0], 1, "broken"),     # ... and a candidate that did worse
])
def test_an_unjudgeable_baseline_is_broken_only_for_what_the_candidate_did(folders, baseline, candidate, code,
                                                                           status):
    base, cand = folders
    write(base, *runs("lenet_sgd", baseline))
    write(cand, *runs("lenet_sgd", candidate, started=9, host="night"))
    got, summary = gate(base, cand)
    assert got == code and row(summary, "lenet_sgd")["status"].startswith(status), row(summary, "lenet_sgd")


def test_a_night_that_ran_some_readings_judges_those_only(folders):
    base, cand = folders
    write(base, *runs("mnist_99_4", BASE), *runs("lenet_sgd", [99.0, 99.1, 99.05]))
    write(cand, *runs("lenet_sgd", [99.0, 99.1, 99.05], started=9, host="night"))
    assert gate(base, cand)[0] == 1                                        # mnist_99_4 missing: broken
    code, summary = gate(base, cand, "--readings", "lenet_sgd")
    assert code == 0 and [r["reading"] for r in summary["readings"]] == ["lenet_sgd"]
    assert gate(base, cand, "--readings", "nope")[0] == 2
