"""The math of "what changed" (liveness/explain.py), on small cases worked out by hand."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from liveness.drift import PSI_EPSILON
from liveness.explain import (
    CLEAR_FACTOR,
    MEASURES,
    SliceCounts,
    bonferroni,
    evaluate,
    explain,
    g_test,
    overall,
)

ROOT = Path(__file__).resolve().parents[2]
UP = MEASURES["flag_rate"].adverse


def by_value(results):
    return {r.value: r for r in results}


def test_it_computes_the_likelihood_ratio_test_of_a_two_by_two_table():
    # 10 of 20 against 5 of 20: expected cells 7.5 / 12.5 on each side
    cells = [(10, 7.5), (10, 12.5), (5, 7.5), (15, 12.5)]
    g = 2 * sum(o * math.log(o / e) for o, e in cells)
    chi2_sf = 1 - math.erf(math.sqrt(g / 2))  # chi-square, one degree of freedom

    assert g_test(10, 20, 5, 20)[0] == pytest.approx(chi2_sf, rel=1e-9)
    assert g_test(10, 20, 5, 20)[0] == pytest.approx(0.1, abs=0.002)  # G = 2.706, chi2's 90% point
    assert g_test(3, 30, 30, 300)[0] == pytest.approx(1.0)  # the same rate on both sides


def test_it_has_no_p_value_without_images_on_a_side():
    assert np.isnan(g_test(0, 0, 5, 20)[0])


def test_it_corrects_p_values_for_the_slices_tested():
    assert list(bonferroni([0.001, 0.02, 0.5], 3)) == pytest.approx([0.003, 0.06, 1.0])


def test_it_gives_each_slice_its_ratios_excess_and_share():
    # window: 200 flagged of 2000 (10%); the day: 40 of 200, 20 more than the window's rate gives
    whole = overall(40, 200, 200, 2000, UP)
    rows = [SliceCounts("device", "a", 30, 100, 100, 1000), SliceCounts("device", "b", 10, 100, 100, 1000)]
    rows.append(SliceCounts("format", "JPEG", 40, 200, 200, 2000))  # every image: the day itself

    ranked, tested = evaluate(rows, whole)

    assert whole.excess == pytest.approx(20.0)
    a, b = ranked
    assert (a.value, b.value) == ("a", "b")
    assert a.rest_ratio == pytest.approx(0.30 / 0.10)
    assert a.window_ratio == pytest.approx(0.30 / 0.10)
    assert a.excess == pytest.approx(30 - 100 * 0.10)
    assert a.share == pytest.approx(1.0)
    assert a.shift == pytest.approx(1.0 / (100 / 200))
    assert b.excess == pytest.approx(0.0) and b.share == pytest.approx(0.0)
    assert tested == 2
    assert a.significant and not b.significant
    assert a.p_adjusted == pytest.approx(min(1.0, 2 * a.p_value))
    assert (a.day.k, a.day.n, a.window.k, a.window.n) == (30, 100, 100, 1000)


def test_it_ranks_the_cause_above_a_larger_slice_holding_it_whose_share_is_as_large():
    # device a (a quarter of the day) went from 10% to 30%; site north holds a and b, and b's
    # 5 extra flagged images by chance give north a larger share than a's
    whole = overall(155, 1000, 1000, 10000, UP)
    rows = [
        SliceCounts("site", "north", 105, 500, 500, 5000),
        SliceCounts("site", "south", 50, 500, 500, 5000),
        SliceCounts("device", "a", 75, 250, 250, 2500),
    ]

    ranked, _ = evaluate(rows, whole)

    a, north = by_value(ranked)["a"], by_value(ranked)["north"]
    assert north.share == pytest.approx(55 / 55) and a.share == pytest.approx(50 / 55)
    assert a.beyond == pytest.approx(50 / 55 - 250 / 1000) and north.beyond == pytest.approx(1 - 500 / 1000)
    assert a.significant and north.significant
    assert [r.value for r in ranked][:2] == ["a", "north"]


def test_it_holds_a_new_slice_against_the_whole_window():
    whole = overall(20, 100, 100, 1000, UP)  # window rate 10%
    (new,), _ = evaluate([SliceCounts("device", "new-cam", 12, 40, 0, 0)], whole)

    assert new.new
    assert new.excess == pytest.approx(12 - 40 * 0.10)
    assert new.window_ratio is None  # no window rate of its own
    assert new.p_value == pytest.approx(g_test(12, 40, 100, 1000)[0])


def test_it_never_tests_or_ranks_a_slice_with_too_few_images_above_one_with_enough():
    whole = overall(60, 1000, 500, 10000, UP)
    rows = [SliceCounts("site", "tiny", 10, 10, 5, 100), SliceCounts("site", "big", 50, 990, 495, 9900)]

    ranked, tested = evaluate(rows, whole)

    assert [r.value for r in ranked] == ["big", "tiny"]  # tiny's excess (9.5) is far larger
    tiny = by_value(ranked)["tiny"]
    assert tiny.too_few and not tiny.significant and tiny.p_adjusted is None
    assert tested == 1


def test_it_explains_a_tpr_drop_by_the_slice_that_dropped():
    # window TPR 90%; the day: 50 of 100 at site a, 95 of 100 at site b
    whole = overall(145, 200, 1800, 2000, MEASURES["tpr"].adverse)
    rows = [SliceCounts("site", "b", 95, 100, 900, 1000), SliceCounts("site", "a", 50, 100, 900, 1000)]

    ranked, _ = evaluate(rows, whole)

    assert whole.direction == -1
    assert ranked[0].value == "a"
    assert ranked[0].share == pytest.approx((50 - 90) / (145 - 180))
    assert ranked[0].significant


def test_it_shows_a_combination_only_when_it_concentrates_the_change_clearly_more():
    # window 5% everywhere; the day 100 of 1000 flagged: 50 more than 5% gives
    whole = overall(100, 1000, 500, 10000, UP)
    singles = [
        SliceCounts("device", "a", 60, 200, 100, 2000),  # share 1.0, shift 5
        SliceCounts("face_size", "<100", 55, 150, 75, 1500),  # share 0.95, shift 6.33
        SliceCounts("hour", "10", 50, 300, 150, 3000),
        SliceCounts("blur", "<0.1", 20, 100, 50, 1000),  # shift 3
    ]
    combos = [
        SliceCounts("device|face_size", "a|<100", 45, 50, 25, 500),  # share 0.85, shift 17
        SliceCounts("device|hour", "a|10", 40, 100, 50, 1000),  # share 0.7, shift 7: significant, not clear
        SliceCounts("device|face_size", "a|>=150", 15, 150, 75, 1500),  # shift 1
        # shift 8.3, but 14 of 30 is not clearly apart from the rest of device a (46 of 170)
        SliceCounts("device|blur", "a|<0.1", 14, 30, 15, 300),
    ]

    result = explain(singles, combos, whole)

    assert [c.value for c in result.combinations] == ["a|<100"]
    kept = result.combinations[0]
    assert kept.shift == pytest.approx((42.5 / 50) / (50 / 1000))
    assert kept.shift >= CLEAR_FACTOR * (52.5 / 150) / (50 / 1000)
    hour = next(c for c in evaluate(combos, whole)[0] if c.value == "a|10")
    device_a_shift = (50 / 50) / (200 / 1000)  # above hour 10's own shift (35 / 50) / (300 / 1000)
    assert hour.significant and hour.shift == pytest.approx((35 / 50) / (100 / 1000))
    assert hour.shift < CLEAR_FACTOR * device_a_shift
    blur = next(c for c in evaluate(combos, whole)[0] if c.value == "a|<0.1")
    assert blur.significant and blur.shift >= CLEAR_FACTOR * device_a_shift
    assert g_test(14, 30, 60 - 14, 200 - 30)[0] * 4 > 0.05
    assert result.tested_combinations == 4


def test_it_compares_the_score_distribution_of_a_slice():
    whole = overall(10, 80, 100, 800, UP, (20, 60), (200, 600))
    rows = [SliceCounts("device", "a", 5, 40, 50, 400, (10, 0), (0, 10))]

    (a,), _ = evaluate(rows, whole)

    eps = PSI_EPSILON  # the proportion of an empty bin
    assert a.psi == pytest.approx((1 - eps) * math.log(1 / eps) + (eps - 1) * math.log(eps / 1))
    assert whole.psi == pytest.approx(0.0)


def _normal_day(rng, slices: int):
    """Slices of realistic sizes whose day is drawn from the same rates as their 14-day window."""
    n = rng.integers(5, 2000, size=slices)
    p = rng.uniform(0.001, 0.1, size=slices)  # FPR-like rare rates to flag-rate-like ones
    wn = n * 14 + rng.integers(0, 50, size=slices)
    k, wk = rng.binomial(n, p), rng.binomial(wn, p)
    rows = [SliceCounts("device", f"cam-{i}", int(k[i]), int(n[i]), int(wk[i]), int(wn[i])) for i in range(slices)]
    return rows, overall(int(k.sum()), int(n.sum()), int(wk.sum()), int(wn.sum()), UP)


def test_it_reports_nothing_significant_on_a_normal_day():
    rows, whole = _normal_day(np.random.default_rng(7), 300)

    ranked, tested = evaluate(rows, whole)

    assert tested > 250
    assert not whole.significant
    assert not [r for r in ranked if r.significant]


def test_it_keeps_false_alarms_within_the_error_rate_over_many_normal_days():
    # the Bonferroni family-wise rate is 5%: a test with tails too light (a z-test on small
    # expected counts) would report something on far more of these days
    rng = np.random.default_rng(11)
    days = 300
    alarms = sum(any(r.significant for r in evaluate(*_normal_day(rng, 100))[0]) for _ in range(days))

    assert alarms / days <= 0.07  # a pooled z-test reports something on more of these days


def test_it_imports_without_django():
    code = "import sys, liveness.explain; print(any(m == 'django' or m.startswith('django.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
