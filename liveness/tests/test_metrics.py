"""Metrics with the SPEC section 2 conventions: positive = attack, live iff s > t, FP budget ceil(f * G)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liveness.metrics import OperatingPoint, fp_budget, threshold_at_fpr, wilson

GENUINE = [0.10, 0.20, 0.30, 0.90, 0.95]
ATTACK = [0.05, 0.15, 0.25, 0.40]


def scored(genuine, attack):
    return list(genuine) + list(attack), [False] * len(genuine) + [True] * len(attack)


# --- threshold at a target FPR ---------------------------------------------------------------------


def test_it_reproduces_the_worked_example_of_the_spec():
    op = threshold_at_fpr(*scored(GENUINE, ATTACK), 0.2)
    assert fp_budget(0.2, 5) == 1
    assert op.threshold == 0.15
    assert (op.tp, op.attacks, op.fp, op.genuine) == (2, 4, 1, 5)
    assert op.tpr == 2 / 4 and op.fpr == 1 / 5


def test_it_does_not_depend_on_the_input_order():
    s, a = scored(GENUINE, ATTACK)
    order = [3, 8, 0, 5, 1, 7, 2, 6, 4]
    op = threshold_at_fpr([s[i] for i in order], [a[i] for i in order], 0.2)
    assert (op.threshold, op.tp, op.fp) == (0.15, 2, 1)


@pytest.mark.parametrize(
    ("f", "g", "k"),
    [(0.001, 6045, 7), (0.01, 6045, 61), (0.2, 5, 1), (0.1, 30, 3), (0.01, 100, 1), (0.001, 1000, 1), (0.0, 500, 0)],
)
def test_it_computes_the_fp_budget_as_ceil_f_times_g_robustly(f, g, k):
    # 0.1 * 30 = 3.0000000000000004 and 0.01 * 100 = 1.0 in floats: ceil must not round them up
    assert fp_budget(f, g) == k


def test_it_allows_fpr_above_the_target_up_to_the_budget():
    genuine = [i / 100 for i in range(1, 11)]  # G = 10, f = 0.15 -> k = 2
    op = threshold_at_fpr(*scored(genuine, [0.005]), 0.15)
    assert op.threshold == 0.02 and op.fp == 2 and op.fpr == 0.2 > 0.15


def test_it_counts_a_genuine_score_equal_to_the_threshold_as_a_false_positive():
    # genuine 0.3 twice at the candidate: s <= t means both are flagged
    op = threshold_at_fpr(*scored([0.3, 0.3, 0.8, 0.9], [0.1, 0.3, 0.5]), 0.25)  # k = 1
    assert op.threshold == 0.1
    assert (op.tp, op.fp) == (1, 0)


def test_it_keeps_ties_together_at_the_threshold():
    op = threshold_at_fpr(*scored([0.2, 0.5, 0.5, 0.9], [0.1, 0.5, 0.6]), 0.5)  # k = 2
    # at t = 0.5 three genuine are <= t (over budget); at 0.2 one is: t is 0.2
    assert op.threshold == 0.2
    assert (op.tp, op.fp) == (1, 1)


def test_it_places_the_threshold_on_an_attack_score_above_the_last_allowed_genuine():
    op = threshold_at_fpr(*scored([0.5, 0.9], [0.1, 0.6, 0.7, 0.95]), 0.5)  # k = 1
    assert op.threshold == 0.7  # the largest observed score with one genuine at or below
    assert (op.tp, op.fp) == (3, 1)


def test_it_gives_threshold_none_when_no_score_fits_the_budget():
    op = threshold_at_fpr(*scored([0.1, 0.5, 0.9], [0.3, 0.7]), 0.0)  # k = 0, lowest score genuine
    assert op.threshold is None
    assert (op.tp, op.fp) == (0, 0)
    assert op.tpr == 0.0 and op.fpr == 0.0
    assert (op.attacks, op.genuine) == (2, 3)


def test_it_takes_the_highest_score_when_there_is_no_genuine_image():
    op = threshold_at_fpr([0.2, 0.6, 0.4], [True, True, True], 0.01)
    assert op.threshold == 0.6
    assert (op.tp, op.attacks, op.genuine) == (3, 3, 0)
    assert op.tpr == 1.0 and op.fpr == 0.0


def test_it_reports_no_attacks_as_zero_tpr():
    op = threshold_at_fpr([0.2, 0.6], [False, False], 0.5)
    assert op.threshold == 0.2 and op.attacks == 0 and op.tpr == 0.0 and op.fpr == 0.5


def test_it_returns_threshold_none_for_no_scores():
    op = threshold_at_fpr([], [], 0.01)
    assert op == OperatingPoint(None, 0, 0, 0, 0)


def test_it_accepts_an_fpr_of_one():
    op = threshold_at_fpr(*scored(GENUINE, ATTACK), 1.0)
    assert op.threshold == 0.95 and op.tpr == 1.0 and op.fpr == 1.0


def brute_force(scores, is_attack, f):
    """SPEC section 2, literally."""
    g = sum(1 for a in is_attack if not a)
    k = math.ceil(f * g - 1e-9)
    best = None
    for t in set(scores):
        if sum(1 for s, a in zip(scores, is_attack, strict=True) if not a and s <= t) <= k and (
            best is None or t > best
        ):
            best = t
    if best is None:
        return None, 0, 0
    tp = sum(1 for s, a in zip(scores, is_attack, strict=True) if a and s <= best)
    fp = sum(1 for s, a in zip(scores, is_attack, strict=True) if not a and s <= best)
    return best, tp, fp


labelled = st.lists(
    st.tuples(st.one_of(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0]), st.floats(0, 1)), st.booleans()),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(
    data=labelled,
    f=st.one_of(st.sampled_from([0.0, 0.001, 0.01, 0.05, 0.1, 0.2, 1 / 3, 0.5, 1.0]), st.floats(0, 1)),
)
def test_it_agrees_with_a_brute_force_reading_of_the_spec(data, f):
    scores = [s for s, _ in data]
    is_attack = [a for _, a in data]
    op = threshold_at_fpr(scores, is_attack, f)
    t, tp, fp = brute_force(scores, is_attack, f)
    assert op.threshold == t
    assert (op.tp, op.fp) == (tp, fp)
    assert op.attacks == sum(is_attack) and op.genuine == len(data) - sum(is_attack)
    if t is not None and op.genuine:
        assert op.fpr <= fp_budget(f, op.genuine) / op.genuine


# --- Wilson intervals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (5, 10, 0.2366, 0.7634),
        (1, 5, 0.0362, 0.6245),
        (7, 6045, 0.00056, 0.00239),
        (50, 100, 0.4038, 0.5962),
    ],
)
def test_it_gives_known_wilson_intervals(k, n, low, high):
    r = wilson(k, n)
    assert (r.k, r.n) == (k, n)
    assert r.low == pytest.approx(low, abs=1e-4)
    assert r.high == pytest.approx(high, abs=1e-4)
    assert r.low <= r.value <= r.high


def test_it_gives_the_whole_range_for_no_data():
    r = wilson(0, 0)
    assert (r.low, r.high, r.value) == (0.0, 1.0, 0.0)


def test_it_marks_rates_on_fewer_than_30_images_as_too_few():
    assert wilson(3, 29).too_few
    assert not wilson(3, 30).too_few


def test_it_narrows_the_interval_as_counts_grow():
    widths = [wilson(n // 10, n).high - wilson(n // 10, n).low for n in (10, 100, 1000, 10000)]
    assert widths == sorted(widths, reverse=True)


@pytest.mark.parametrize("n", [1, 3, 7, 10, 29, 30, 49, 100, 6045])
def test_it_always_contains_the_observed_rate_at_the_extremes(n):
    for k in (0, n):
        r = wilson(k, n)
        assert 0.0 <= r.low <= r.value <= r.high <= 1.0
    assert wilson(0, n).low == 0.0 and wilson(n, n).high == 1.0
