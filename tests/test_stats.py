"""bench.judging.rule and bench.judging.stats against values computed by hand: the one-sided predictive rule on
the metric's scale without a floor, failed runs (diverged, outliers), bounded metrics, both orientations,
underflow, Holm, Clopper-Pearson, TOST, Welch at unequal n, and n = 0, 1, 2, 3, zero spread; and the rule's
operating characteristic, simulated."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from bench.judging import rule, stats

ACC = rule.Scale("percent", True, 10_000)
LOSS = rule.Scale("loss", False)
MNIST = [99.12, 99.33, 99.14, 99.28, 99.28, 99.23, 99.21, 99.17, 99.16, 99.19]   # committed fast seeds 0-9


def logit(p):
    return math.log(p / (1 - p))


def by_hand(values, claim):
    """The rule written out: logit scale, the runs' own sd (no floor), Student t predictive, one-sided."""
    y = [logit(v / 100) for v in values]
    n, ybar, s = len(y), float(np.mean(y)), float(np.std(y, ddof=1))
    scale = s * math.sqrt(1 + 1 / n)
    p_one = float(st.t.sf((logit(claim / 100) - ybar) / scale, n - 1))
    upper_y = ybar + st.t.ppf(0.95, n - 1) * scale
    return p_one, 100 / (1 + math.exp(-upper_y))


def test_the_rule_by_hand_on_the_committed_mnist_runs():
    j = rule.judge(MNIST, 99.43, ACC)
    p_one, upper = by_hand(MNIST, 99.43)
    assert j.p_one == pytest.approx(p_one, rel=1e-9) and j.best_plausible == pytest.approx(upper, rel=1e-12)
    assert j.verdict == "not reproduced" and j.provisional is False and j.label == "not reproduced"
    assert j.best_plausible < 99.43 and j.reaching == 0 and j.n == 10
    # best of K: 1 - (1 - p)^K, and the smallest K reaching 5%
    assert j.best_of[20] == pytest.approx(1 - (1 - p_one) ** 20)
    k = j.plausible_k
    assert 1 - (1 - p_one) ** k >= 0.05 > 1 - (1 - p_one) ** (k - 1)


def test_one_sided_predictive_bound_is_the_verdict_boundary():
    """reproduced iff the claim is at most the one-sided 95% upper bound; here just above / below it."""
    j = rule.judge(MNIST, 99.0, ACC)
    below, above = j.best_plausible - 1e-6, j.best_plausible + 1e-6
    assert rule.judge(MNIST, below, ACC).verdict == "reproduced"
    assert rule.judge(MNIST, above, ACC).verdict == "not reproduced"
    assert rule.judge(MNIST, below, ACC).p_one == pytest.approx(0.05, abs=1e-5)


def test_fewer_seeds_do_not_make_reproduced_more_likely_through_the_two_sided_tail():
    """The failing side gets the whole 5%: a claim 3 sd above the mean is not reproduced at n = 20."""
    rng = np.random.default_rng(0)
    hits = []
    for n in (5, 20):
        count = 0
        for _ in range(400):
            v = 99.0 + 0.3 * rng.standard_normal(n)
            count += rule.judge(v, 99.0 + 3 * 0.3, rule.Scale("plain")).verdict == "reproduced"
        hits.append(count / 400)
    assert hits[1] < hits[0] and hits[1] < 0.2


def test_zero_spread_of_a_continuous_metric_is_a_seeding_fault_not_a_verdict():
    """Independent seeds never agree to the last digit of a loss: identical runs mean the seeding is broken."""
    j = rule.judge([0.1, 0.1, 0.1, 0.1], 0.1, LOSS)
    assert j.verdict == "seeding fault" and j.std == 0 and math.isnan(j.p_one)
    assert rule.judge([99.2, 99.2, 99.2], 99.43, rule.Scale("percent")).verdict == "seeding fault"  # images unknown
    assert rule.judge([0.1, 0.1], 0.1, LOSS).verdict == "insufficient"                 # two are too few to say


def test_accuracies_that_tie_on_one_image_are_judged_at_that_resolution():
    """Three seeds' best validation accuracy all at 4,973 of 5,000 images (seen in ultimate_mlp): an accuracy moves
    in steps of one image, so a tie is no fault; the spread is taken as one step's rounding sd."""
    val = rule.Scale("percent", True, 5_000)
    tie = rule.judge([99.46, 99.46, 99.46], 99.40, val)
    assert tie.verdict == "reproduced" and tie.std == 0 and 0 < tie.p_one < 1
    assert rule.judge([99.46, 99.46, 99.46], 99.60, val).verdict == "not reproduced"
    step = val.resolution(99.46) / math.sqrt(12)
    assert tie.y_sd == pytest.approx(step)
    # where the runs spread over several images, the step changes nothing
    spread = rule.judge([99.40, 99.46, 99.52], 99.40, val)
    assert spread.y_sd == pytest.approx(float(np.std(val.forward([99.40, 99.46, 99.52]), ddof=1)))


def test_no_floor_a_claim_close_to_tight_runs_can_be_rejected():
    """The binomial floor (sd >= sqrt(p(1-p)/N)) made a claim 0.05 points above ten tight runs unfalsifiable;
    the runs' own spread rejects it."""
    runs = [99.00, 99.01, 99.02, 99.00, 99.01, 99.02, 99.01, 99.00, 99.02, 99.01]
    j = rule.judge(runs, 99.08, ACC)
    p_one, upper = by_hand(runs, 99.08)
    assert j.p_one == pytest.approx(p_one) and j.best_plausible == pytest.approx(upper)
    assert j.verdict == "not reproduced"


def test_bounds_are_respected_on_the_original_scale():
    j = rule.judge([99.9, 99.95, 99.99, 99.97], 99.99, ACC)
    assert j.best_plausible < 100 and j.worst_plausible > 0 and j.ci[1] < 100
    losses = rule.judge([0.01, 0.011, 0.5, 0.02], 0.001, LOSS)
    assert losses.best_plausible > 0 and losses.worst_plausible > 0


def test_diverged_runs_count_against_and_make_it_unstable():
    one = rule.judge([99.2, 99.3, 99.25, 99.28, math.nan], 99.3, ACC)
    assert one.n == 5 and one.n_diverged == 1 and len(one.values) == 4 and one.verdict != "unstable"
    assert one.reaching <= 2 and one.reaching_ci == stats.clopper_pearson(one.reaching, 5)
    assert one.p_any == pytest.approx(one.p_one * 4 / 5)              # a failed run never reaches the claim
    two = rule.judge([99.2, 99.3, 99.25, 11.0, 10.9], 99.3, ACC)   # two runs at chance
    assert two.verdict == "unstable" and two.n_diverged == 2
    assert max(two.values) < 100 and two.best_plausible < 100       # no [-40, 202] interval from mixing them
    assert rule.judge([None, None, None], 99.0, ACC).verdict == "unstable"          # every run diverged
    assert rule.judge([None, None], 99.0, ACC).verdict == "unstable"                # two of two diverged


def test_a_loss_at_chance_diverged_and_a_percent_metric_is_judged_on_the_logit_whatever_its_name():
    assert rule.diverged(2.31, LOSS) and rule.diverged(math.inf, LOSS) and not rule.diverged(0.5, LOSS)
    scale = rule.Scale.of("top5_error_rate", "%", False, 10_000)
    assert scale.kind == "percent"
    j = rule.judge([0.8, 0.85, 0.9, 0.82, 0.88], 0.5, scale)
    assert 0 < j.best_plausible < 100 and 0 < j.worst_plausible < 100     # never [-74.5, 111.8]


def test_one_run_far_below_the_others_fails_and_never_makes_a_verdict_kinder():
    """A run at 25% (or an honest run that trained badly at 60%) widened the interval enough to call any claim
    reproduced; it is an outlier: it fails like a diverged run."""
    tight = [99.19, 99.21, 99.17, 99.23, 99.20, 99.18, 99.22, 99.16, 99.24, 99.19]
    before = rule.judge(tight, 99.43, ACC)
    for bad in (25.0, 60.0):
        after = rule.judge(tight + [bad], 99.43, ACC)
        assert after.n_outliers == 1 and after.n_diverged == 1 and after.verdict == before.verdict == "not reproduced"
        assert after.p_any <= before.p_any and after.reaching == 0
    two = rule.judge(tight + [25.0, 60.0], 99.43, ACC)
    assert two.verdict == "unstable"
    assert rule.failed_runs([99.2, 99.21, 99.19, 99.35], ACC) == [False] * 4   # better than the rest: never failed


def test_failure_is_decided_on_the_headline_and_holds_for_every_claim():
    headline = [99.2, 99.25, 11.0, 99.22]
    mask = rule.failed_runs(headline, ACC)
    secondary = rule.judge([0.1, 0.2, 0.15, 0.12], 0.2, LOSS, mask)        # the loss of run 3 looks fine
    assert mask == [False, False, True, False] and secondary.n_diverged == 1 and len(secondary.values) == 3


def test_small_n():
    assert rule.judge([], 99.0, ACC).verdict == "no runs"
    assert rule.judge([99.0], 99.0, ACC).verdict == "insufficient"
    assert rule.judge([99.0, 99.1], 99.0, ACC).verdict == "insufficient"
    three = rule.judge([99.0, 99.1, 99.2], 99.0, ACC)
    assert three.verdict == "reproduced" and three.provisional and three.label == "reproduced (provisional)"
    assert math.isnan(rule.judge([99.0], 99.0, ACC).p_one)


def test_lower_is_better_and_exceeded_needs_the_margin():
    assert rule.judge([0.12, 0.11, 0.13, 0.12], 0.0124, LOSS).verdict == "not reproduced"
    assert rule.judge([0.012, 0.013, 0.0125, 0.0128], 0.0124, LOSS).verdict == "reproduced"
    assert rule.judge([0.001, 0.0011, 0.0012, 0.001], 0.0124, LOSS).verdict == "exceeded"
    runs = [99.30, 99.32, 99.31, 99.33, 99.30]
    near = rule.judge(runs, runs[0] - 0.05, ACC)          # below every run, but within the 0.1-point margin
    assert near.verdict == "reproduced"
    assert rule.judge(runs, 98.0, ACC).verdict == "exceeded"


def test_underflow_never_shows_zero():
    j = rule.judge([50.0, 50.1, 50.2, 49.9, 50.0], 99.9, ACC)
    assert j.verdict == "not reproduced" and j.plausible_k is None
    assert 0 <= j.best_of[1] <= j.best_of[20] <= 1
    assert rule.best_of_k(1e-20, (1, 20))[20] == pytest.approx(2e-19, rel=1e-6)   # 1-(1-p)^k would give 0
    assert rule.smallest_k(1e-20) is None and rule.smallest_k(0.06) == 1
    assert rule.smallest_k(0.01) == math.ceil(math.log(0.95) / math.log(0.99))


def test_distribution_free_check_from_19_runs():
    runs = list(np.linspace(99.0, 99.3, 19))
    assert rule.judge(runs, 99.5, ACC).beats_all is True
    assert rule.judge(runs, 99.2, ACC).beats_all is False
    assert rule.judge(runs[:18], 99.5, ACC).beats_all is None


def test_clopper_pearson_and_holm():
    lo, hi = stats.clopper_pearson(0, 5)
    assert lo == 0 and hi == pytest.approx(1 - 0.025 ** (1 / 5))        # 0/5 still allows up to 52%
    assert hi == pytest.approx(0.5218, abs=1e-4)
    assert stats.clopper_pearson(5, 5)[1] == 1
    assert stats.holm([0.01, 0.04, 0.03, math.nan]) == pytest.approx([0.03, 0.06, 0.06, math.nan], nan_ok=True)
    secondary = [rule.judge(MNIST, c, ACC) for c in (99.34, 99.35)]    # p about 0.046 and 0.035
    assert [j.verdict for j in secondary] == ["not reproduced", "not reproduced"]
    corrected = rule.with_holm(secondary)                                # adjusted: 2 x 0.035 = 0.071 for both
    assert corrected[1].p_adjusted == pytest.approx(2 * secondary[1].p_one)
    assert corrected[0].p_adjusted == pytest.approx(max(secondary[0].p_one, 2 * secondary[1].p_one))
    assert [j.verdict for j in corrected] == ["reproduced", "reproduced"]
    alone = rule.with_holm([rule.judge(MNIST, 99.45, ACC)])           # one claim: nothing to correct
    assert alone[0].verdict == "not reproduced" and alone[0].p_adjusted == alone[0].p_one


def test_description_of_a_claim_without_a_better_side():
    d = rule.describe([9, 12, 14, 15, 15], 13)
    assert (d.n, d.median, d.min, d.max, d.equal) == (5, 14, 9, 15, 0)
    assert rule.describe([13, 13, 14], 13).equal == 2


def test_scales_round_trip_and_orientation():
    for scale, values in ((ACC, [10.0, 50.0, 99.9]), (LOSS, [0.001, 1.0, 5.0]), (rule.Scale("plain"), [3.0, -2.0])):
        np.testing.assert_allclose(scale.inverse(scale.forward(values)), values, rtol=1e-12)
    assert ACC.forward([99.0])[0] > ACC.forward([98.0])[0]              # higher is better on the scale
    assert LOSS.forward([0.01])[0] > LOSS.forward([0.1])[0]


def test_plain_numbers_and_tests():
    x = [2, 4, 4, 4, 5, 5, 7, 9]
    assert stats.mean(x) == 5 and stats.std(x) == pytest.approx(math.sqrt(32 / 7))
    half = st.t.ppf(0.975, 7) * math.sqrt(32 / 7) / math.sqrt(8)
    assert stats.confidence_interval(x) == pytest.approx((5 - half, 5 + half))
    a, b = stats.bootstrap_interval(x), stats.bootstrap_interval(x)
    assert a == b and a[0] < 5 < a[1]
    assert stats.welch([1, 2, 3], [4, 5, 6], "less") == pytest.approx(st.ttest_ind([1, 2, 3], [4, 5, 6],
                                                                                   equal_var=False,
                                                                                   alternative="less").pvalue)
    assert math.isnan(stats.welch([1], [2, 3])) and stats.welch([1, 1], [1, 1]) == 1.0
    assert math.isnan(stats.mann_whitney([], [1]))


def test_gate_shifted_null_by_hand_is_welch():
    base, cand = [99.2, 99.25, 99.3, 99.22, 99.28], [98.8, 98.85, 98.9, 98.82, 98.88]
    p = stats.shifted_drop(base, cand, 0.1)
    ref = st.ttest_ind(np.array(base) - 0.1, cand, equal_var=False, alternative="greater").pvalue
    assert p == pytest.approx(ref) and p < 0.01
    assert stats.shifted_drop(base, [v - 0.05 for v in base], 0.1) > 0.5     # smaller than the minimum effect
    assert math.isnan(stats.shifted_drop(base, [99.0], 0.1))
    ratio, lo, hi = stats.log_ratio_interval([1.0, 1.1, 0.9], [2.0, 2.2, 1.8])
    assert ratio == pytest.approx(2.0, rel=0.01) and lo < ratio < hi


def test_welch_keeps_its_level_at_unequal_n_where_pooled_did_not():
    """10 baseline runs with sd 0.05 against 5 candidate runs with sd 0.15, the true drop exactly at the minimum
    effect: Welch's false alarms stay near 5%, the pooled test's did not."""
    rng = np.random.default_rng(11)
    trials, hits, pooled = 3000, 0, 0
    for _ in range(trials):
        b, c = rng.normal(99.2, 0.05, 10), rng.normal(99.1, 0.15, 5)
        hits += stats.shifted_drop(b, c, 0.1) < 0.05
        pooled += st.ttest_ind(b - 0.1, c, equal_var=True, alternative="greater").pvalue < 0.05
    assert hits / trials < 0.07 and pooled / trials > 0.09


def test_tost_shows_equivalence_only_with_the_data_to_show_it():
    a = [99.20, 99.22, 99.18, 99.21, 99.19, 99.20, 99.23, 99.17, 99.21, 99.19]
    assert stats.tost(a, [v + 0.01 for v in a], 0.1) < 0.05                 # the same within the margin
    assert stats.tost(a, [v + 0.3 for v in a], 0.1) > 0.5                    # clearly different
    assert stats.tost(a[:2], [a[0] + 0.05, a[1] - 0.2], 0.1) > 0.05          # too few to show anything
    assert math.isnan(stats.tost([1.0], [1.0, 2.0], 0.1))


# ---------------------------------------------------------------- the rule's operating characteristic

def reproduced_rate(n: int, claim_offset_sd: float, trials: int, seed: int) -> float:
    """Chance the rule says "reproduced" when the runs' logit is normal(4.8, 0.05) and the claim lies
    claim_offset_sd sds above the true mean (None: the claim is itself one more run)."""
    rng = np.random.default_rng(seed)
    mu, sd, hits = 4.8, 0.05, 0
    for _ in range(trials):
        y = rng.normal(mu, sd, n)
        c = rng.normal(mu, sd) if claim_offset_sd is None else mu + claim_offset_sd * sd
        hits += rule.judge(100 / (1 + np.exp(-y)), 100 / (1 + math.exp(-c)), ACC).verdict in ("reproduced", "exceeded")
    return hits / trials


def test_more_seeds_reject_a_claim_three_sds_above_and_keep_one_that_is_one_more_run():
    far = [reproduced_rate(n, 3.0, 600, 1) for n in (3, 5, 10, 20)]
    assert far[2] <= 0.05 and far[0] > far[1] > far[2] >= far[3], far
    same = reproduced_rate(10, None, 1500, 2)
    assert same >= 0.94, same


def test_pearson_pairs_values_and_refuses_what_it_cannot_measure():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.1, 3.9, 6.2, 7.8]
    r, p = stats.pearson(a, b)
    assert r == pytest.approx(st.pearsonr(a, b).statistic) and 0 < p < 0.05
    assert stats.pearson([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])[0] == pytest.approx(-1.0)
    assert all(math.isnan(v) for v in stats.pearson([1.0, 2.0], [1.0, 2.0]))          # two pairs: no p
    assert all(math.isnan(v) for v in stats.pearson([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]))  # a constant side


def test_runs_of_one_seed_on_two_machines_count_as_what_they_are_worth():
    scale = rule.Scale.of("test_acc_best", "%", True, n_eval=10_000)
    seeds = list(range(10))
    first = [99.00, 99.10, 98.90, 99.05, 98.95, 99.02, 98.97, 99.08, 98.93, 99.04]
    echo = [v + 0.01 * (-1) ** i for i, v in enumerate(first)]          # each seed lands where it landed before
    pooled = rule.judge(first + echo, 99.15, scale, seeds=seeds + seeds)
    assert pooled.icc > 0.9 and 10 <= pooled.m_eff < 11                   # about ten runs' worth, not twenty
    naive = rule.judge(first + echo, 99.15, scale)                          # the same values as twenty seeds
    assert math.isnan(naive.icc) and naive.m_eff == 20
    assert pooled.p_one > naive.p_one and pooled.ci[1] - pooled.ci[0] > naive.ci[1] - naive.ci[0]
    assert pooled.provisional is False and rule.judge(first[:5] + echo[:5], 99.15, scale,
                                                      seeds=seeds[:5] * 2).provisional   # 5 seeds: provisional
    assert pooled.beats_all is None and naive.beats_all is not None          # 1/(n+1) needs exchangeable runs
    rng = np.random.default_rng(0)
    fresh = list(99 + 0.05 * rng.standard_normal(20))                      # a machine's rounding: a new draw
    independent = rule.judge(fresh, 99.15, scale, seeds=seeds + seeds)
    assert independent.m_eff > 15
    assert rule.judge(first, 99.15, scale, seeds=seeds).m_eff == 10 and math.isnan(rule.judge(first, 99.15, scale,
                                                                                            seeds=seeds).icc)


def test_one_seed_on_three_machines_is_insufficient_not_a_verdict():
    scale = rule.Scale.of("test_acc_best", "%", True, n_eval=10_000)
    j = rule.judge([99.0, 99.1, 99.05], 99.5, scale, seeds=[0, 0, 0])
    assert j.verdict == "insufficient" and j.m_eff == 1 and math.isnan(j.p_one)      # no chance from one seed
    assert rule.judge([99.0, 99.1, 99.05], 99.5, scale, seeds=[0, 1, 2]).verdict == "not reproduced"
