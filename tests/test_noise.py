"""Implementation noise (bench.judging.noise) and the early curve's joint test (bench.judging.early), against
simulated cells and runs whose truth is known."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bench.contract import registry
from bench.judging import early, noise, rule
from bench.records.groups import split_runs
from tests.records import make_record

ACC = rule.Scale("percent", True, 10_000)


def cells(tau: float, readings: int, per: int, n: int, seed: int) -> list[noise.Cell]:
    rng = np.random.default_rng(seed)
    out = []
    for r in range(readings):
        mu = rng.normal(4.8, 0.3)
        for c in range(per):
            y = rng.normal(mu + rng.normal(0, tau), 0.08, n)
            out.append(noise.Cell(f"r{r}", f"cell{c}", n, float(y.mean()), float(y.var(ddof=1)) / n))
    return out


def test_tau_is_near_zero_without_implementation_noise_and_recovers_it_when_there_is():
    none = noise.estimate_tau(cells(0.0, 20, 3, 10, 1))
    assert none.tau < 0.03 and none.low == 0 and none.k == 60 and none.readings == 20 and none.df == 40
    some = noise.estimate_tau(cells(0.1, 40, 3, 10, 2))
    assert some.low <= 0.1 <= some.high and abs(some.tau - 0.1) < 0.04


def test_tau_needs_a_reading_with_two_cells():
    assert noise.estimate_tau([]) is None
    assert noise.estimate_tau([noise.Cell("a", "x", 5, 4.8, 0.001), noise.Cell("b", "x", 5, 4.7, 0.001)]) is None


def test_the_tipping_point_is_where_the_verdict_turns():
    runs = [99.19, 99.21, 99.17, 99.23, 99.20, 99.18, 99.22, 99.16, 99.24, 99.19]
    j = rule.judge(runs, 99.35, ACC)
    assert j.verdict == "not reproduced"
    star = noise.tipping_point(j, ACC, 99.35)
    assert rule.decide(j, ACC, 99.35, star - 1e-3)[0] == "not reproduced"
    assert rule.decide(j, ACC, 99.35, star + 1e-3)[0] == "reproduced"
    assert rule.decide(j, ACC, 99.35, 0.0)[1] == pytest.approx(j.p_one)
    kind = rule.judge(runs, 99.1, ACC)
    assert kind.verdict == "reproduced" and noise.tipping_point(kind, ACC, 99.1) is None   # noise only helps it


def test_cells_are_implementations_never_hosts_of_one_kind():
    recipe = registry.load("mnist_99_4")
    records = ([make_record("mnist_99_4", s, 99.2 + 0.01 * s, host=h) for s in range(3) for h in ("a", "b")]
               + [make_record("mnist_99_4", s, 99.25 + 0.01 * s, pipeline="faithful") for s in range(3)])
    got = noise.cells_of("mnist_99_4", records, "test_acc_best", ACC)
    assert [c.label.split(" / ")[0] for c in got] == ["faithful", "fast"] and [c.n for c in got] == [3, 6]
    assert recipe.label == "mnist_99_4"


def test_cells_that_share_seeds_say_how_closely_their_runs_follow_each_other():
    base = [99.10, 99.25, 99.05, 99.30, 99.15]
    amd = [make_record("mnist_99_4", s, v, host="a", machine="AMD / 2 threads") for s, v in enumerate(base)]
    intel = [make_record("mnist_99_4", s, v + 0.01, host="b", machine="Intel / 2 threads") for s, v in enumerate(base)]
    for r in intel:
        r["env"]["cpu"] = "Intel"                                   # another kind of CPU: another cell
    others = [make_record("mnist_99_4", s + 10, v, pipeline="faithful") for s, v in enumerate(base)]
    rs = noise.shared_seed_correlations(noise.cells_of("mnist_99_4", amd + intel + others, "test_acc_best", ACC))
    assert len(rs) == 1 and rs[0] > 0.99                           # faithful shares no seed: no pair with it
    assert noise.shared_seed_correlations(noise.cells_of("mnist_99_4", amd + others, "test_acc_best", ACC)) == []


def ultimate_runs(values_at_epoch: list[list[float]], seeds=None) -> list[dict]:
    """Truncated ultimate_mlp runs whose val_acc at epochs 1..E are the given values."""
    out = []
    for i, values in enumerate(values_at_epoch):
        r = make_record("ultimate_mlp", seeds[i] if seeds else i, 99.0, status="truncated", epochs=len(values),
                        host=f"h{i}")
        r["curves"]["val_acc"] = list(values)
        out.append(r)
    return out


def test_the_joint_test_accepts_a_log_that_is_one_more_run_and_rejects_one_far_off():
    recipe = registry.load("ultimate_mlp")
    points = [p for p in recipe.document_log if p.metric == "val_acc" and p.epoch <= 6]
    rng = np.random.default_rng(3)
    base = np.array([p.value for p in points])
    like = ultimate_runs([list(base + rng.normal(0, 0.08, len(base))) for _ in range(6)])
    rows = early.log_rows(recipe, like)
    test = early.joint_test(recipe, like, rows)
    assert test.judged == len(points) and test.p > 0.05
    far = ultimate_runs([list(base + 1.0 + rng.normal(0, 0.08, len(base))) for _ in range(6)])
    assert early.joint_test(recipe, far).p < 0.01


def test_one_run_counts_once_when_two_records_of_a_seed_agree():
    recipe = registry.load("ultimate_mlp")
    values = [[p.value + 0.05 * k for p in recipe.document_log[:3]] for k in range(3)]
    twice = ultimate_runs(values + [values[0]], seeds=[0, 1, 2, 0])   # seed 0 again, the same values
    assert len(early.distinct_runs(twice, recipe.document_log)) == 3
    other = ultimate_runs(values + [[v + 0.01 for v in values[0]]], seeds=[0, 1, 2, 0])   # other bits: another run
    assert len(early.distinct_runs(other, recipe.document_log)) == 4
    rr = split_runs(twice, recipe.fingerprint)
    assert math.isfinite(early.log_rows(recipe, rr.truncated)[0].mean)


def shared_seed_cells(tau: float, seed: int, with_seeds: bool = True) -> list[noise.Cell]:
    """Three readings, two cells each, both cells on seeds 0-9: each seed lands near where it landed in the
    other cell (seed sd 0.07 against 0.035 of the rest: r = 0.8, like mnist_99_4 on two CPUs)."""
    rng = np.random.default_rng(seed)
    out = []
    for r in range(3):
        mu, by_seed = rng.normal(4.8, 0.3), rng.normal(0, 0.07, 10)
        for c in range(2):
            y = mu + rng.normal(0, tau) + by_seed + rng.normal(0, 0.035, 10)
            out.append(noise.Cell(f"r{r}", f"cell{c}", 10, float(y.mean()), float(y.var(ddof=1)) / 10,
                                  tuple(enumerate(map(float, y))) if with_seeds else ()))
    return out


def test_cells_that_share_seeds_are_not_taken_as_independent():
    truth = 0.04
    aware = [noise.estimate_tau(shared_seed_cells(truth, s)).tau for s in range(300)]
    naive = [noise.estimate_tau(shared_seed_cells(truth, s, with_seeds=False)).tau for s in range(300)]
    assert np.median(naive) < 0.85 * truth                      # as independent cells: tau leans low (0.029)
    assert 0.75 * truth < np.median(aware) < 1.25 * truth        # with the shared seeds' covariance: 0.036
    for t in (0.0, truth):                                       # the Q-profile interval holds the truth
        covered = np.mean([(x := noise.estimate_tau(shared_seed_cells(t, s))).low <= t <= x.high for s in range(300)])
        assert covered > 0.9
