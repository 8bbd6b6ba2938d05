"""Metrics with the SPEC section 2 conventions: positive = attack, live iff s > t, FP budget ceil(f * G)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liveness.metrics import (
    OperatingPoint,
    QualityGates,
    confusion,
    fp_budget,
    strategy_table,
    threshold_at_fpr,
    wilson,
)

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
    [
        (0.001, 6045, 7),
        (0.01, 6045, 61),
        (0.2, 5, 1),
        (0.1, 30, 3),
        (0.07, 100, 7),
        (0.01, 100, 1),
        (0.001, 1000, 1),
        (0.0, 500, 0),
    ],
)
def test_it_computes_the_fp_budget_as_ceil_f_times_g_robustly(f, g, k):
    # 0.1 * 30 = 3.0000000000000004 and 0.07 * 100 = 7.000000000000001 in floats: ceil must not round them up
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


def test_it_refuses_nan_scores():
    with pytest.raises(ValueError, match="NaN"):
        threshold_at_fpr([0.1, float("nan")], [True, False], 0.1)


# --- strategy table --------------------------------------------------------------------------------


def row_of(rows, minface, quality, f):
    [row] = [r for r in rows if (r.minface, r.quality, r.target_fpr) == (minface, quality, f)]
    return row


def test_it_reproduces_the_worked_example_through_the_strategy_table():
    rows = strategy_table(*scored(GENUINE, ATTACK), target_fprs=(0.2,), minfaces=(None,))
    assert len(rows) == 2
    off = row_of(rows, None, False, 0.2)
    assert off.threshold == 0.15
    assert (off.tp, off.attack, off.fp, off.genuine) == (2, 4, 1, 5)
    assert off.tpr == 2 / 4 and off.fpr == 1 / 5
    assert off.as_dict() == {
        "minface": None,
        "quality": False,
        "target_fpr": 0.2,
        "threshold": 0.15,
        "tpr": 0.5,
        "fpr": 0.2,
        "attack": 4,
        "genuine": 5,
        "fp": 1,
        "tp": 2,
    }
    # no quality values at all: every image passes, quality on gives the same numbers
    on = row_of(rows, None, True, 0.2)
    assert (on.threshold, on.tp, on.fp, on.attack, on.genuine) == (0.15, 2, 1, 4, 5)
    assert off.tpr_rate == wilson(2, 4) and off.fpr_rate == wilson(1, 5)


def test_it_keeps_ties_together_at_the_threshold_in_the_table():
    # k = ceil(0.5 * 4) = 2; at 0.5 three genuine are <= t, so t drops to 0.2 (as in threshold_at_fpr)
    rows = strategy_table(*scored([0.2, 0.5, 0.5, 0.9], [0.1, 0.5, 0.6]), target_fprs=(0.5,), minfaces=(None,))
    r = row_of(rows, None, False, 0.5)
    assert (r.threshold, r.tp, r.fp) == (0.2, 1, 1)
    # with k = 3 the tie group fits as a whole and the attack tied at 0.5 is a true positive
    rows = strategy_table(*scored([0.2, 0.5, 0.5, 0.9], [0.1, 0.5, 0.6]), target_fprs=(0.75,), minfaces=(None,))
    r = row_of(rows, None, False, 0.75)
    assert (r.threshold, r.tp, r.fp) == (0.6, 3, 3)


def test_it_handles_an_all_genuine_set_in_the_table():
    rows = strategy_table([0.3, 0.1, 0.7, 0.5], [False] * 4, target_fprs=(0.25, 0.001), minfaces=(None, 100))
    r = row_of(rows, None, False, 0.25)  # k = 1: just below the second genuine score, 0.3
    assert (r.threshold, r.tp, r.fp, r.attack, r.genuine) == (0.1, 0, 1, 0, 4)
    assert r.tpr == 0.0 and r.fpr == 0.25
    r = row_of(rows, 100, True, 0.001)  # k = ceil(0.004) = 1 as well
    assert (r.threshold, r.fp) == (0.1, 1)


def test_it_handles_a_set_without_genuine_images_in_the_table():
    rows = strategy_table([0.3, 0.1, 0.7], [True] * 3, target_fprs=(0.01,), minfaces=(None,))
    r = row_of(rows, None, False, 0.01)
    assert (r.threshold, r.tp, r.fp, r.attack, r.genuine) == (0.7, 3, 0, 3, 0)
    assert r.tpr == 1.0 and r.fpr == 0.0


def test_it_gives_empty_strategies_no_threshold():
    # every face below 120: the minface-150 subset is empty
    rows = strategy_table([0.2, 0.8], [True, False], face_w=[100, 110], face_h=[100, 110], minfaces=(None, 150))
    r = row_of(rows, 150, False, 0.01)
    assert (r.threshold, r.tp, r.fp, r.attack, r.genuine, r.tpr, r.fpr) == (None, 0, 0, 0, 0, 0.0, 0.0)
    assert row_of(rows, None, False, 0.01).threshold == 0.8


def test_it_uses_the_exact_integer_budget_at_g_6045():
    rng = np.random.default_rng(1)
    genuine = rng.permutation(np.arange(1, 6046) / 10000)  # 0.0001 .. 0.6045, distinct
    attack = np.full(20, 0.00005)
    s = np.concatenate([genuine, attack])
    a = np.concatenate([np.zeros(6045, bool), np.ones(20, bool)])
    assert fp_budget(0.001, 6045) == 7
    r = row_of(strategy_table(s, a, minfaces=(None,)), None, False, 0.001)
    assert r.threshold == 0.0007  # the 7th genuine score: the 8th would exceed the budget
    assert (r.fp, r.genuine, r.tp) == (7, 6045, 20)
    assert r.fpr == 7 / 6045 == pytest.approx(0.00115798, abs=1e-8)
    r = row_of(strategy_table(s, a, minfaces=(None,)), None, False, 0.01)
    assert (r.fp, r.threshold) == (61, 0.0061)


def test_it_filters_by_face_size_and_lets_a_missing_size_pass():
    nan = float("nan")
    s = [0.1, 0.2, 0.3, 0.4, 0.5, 0.9]
    a = [True, True, True, True, False, False]
    fw = [90, 130, nan, 200, 140, 140]
    fh = [200, 129, nan, nan, 140, 140]
    #        min 90 (out), 129 (out at 130), unknown (in), 200 (one side known, in), 140, 140
    rows = strategy_table(s, a, face_w=fw, face_h=fh, target_fprs=(0.5,), minfaces=(None, 129, 130))
    assert (row_of(rows, None, False, 0.5).attack, row_of(rows, None, False, 0.5).genuine) == (4, 2)
    assert row_of(rows, 129, False, 0.5).attack == 3  # 129 >= 129 is kept
    r = row_of(rows, 130, False, 0.5)
    assert (r.attack, r.genuine) == (2, 2)
    assert (r.threshold, r.tp, r.fp) == (0.5, 2, 1)
    # a known side below N fails even when the other side is unknown
    r = row_of(
        strategy_table([0.1, 0.5], [True, False], face_w=[90, nan], face_h=[nan, nan], minfaces=(100,)),
        100,
        False,
        0.01,
    )
    assert (r.attack, r.genuine) == (0, 1)


# minface 130 on one face box: (face_w, face_h, kept); a known side bounds min(w, h) from above
ONE_BOX = [
    (140.0, 150.0, True),  # both known, min 140 >= 130
    (140.0, 120.0, False),  # both known, min 120 < 130
    (120.0, float("nan"), False),  # one known, below N: min(w, h) <= 120 < 130 whatever h is
    (float("nan"), 120.0, False),
    (130.0, float("nan"), True),  # one known, at N: the min is unknown, and unknown passes
    (float("nan"), 200.0, True),
    (float("nan"), float("nan"), True),  # none known: missing, passes
]


@pytest.mark.parametrize("w,h,kept", ONE_BOX)
def test_it_keeps_a_face_box_by_its_known_sides(w, h, kept):
    # the path of stored images too: monitor.threshold_input passes box_w / box_h as these arrays
    rows = strategy_table([0.2, 0.9], [True, False], face_w=[w, w], face_h=[h, h], target_fprs=(0.5,))
    r = row_of(rows, 130, False, 0.5)
    assert (r.attack, r.genuine) == ((1, 1) if kept else (0, 0))
    assert row_of(rows, None, False, 0.5).genuine == 1  # no filter keeps it in every case


def test_it_filters_by_the_quality_gates_and_lets_missing_values_pass():
    nan = float("nan")
    s = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9]
    a = [True, True, True, True, True, True, False, False]
    yaw = [30, -31, nan, 0, 0, 0, nan, 0]
    pitch = [-30, 0, nan, 31, 0, 0, nan, 0]
    blur = [0.5, 0.0, nan, 0.0, 0.51, nan, nan, 0.2]
    # kept with quality on: 0.1 (all at the gate), 0.3 (all unknown), 0.6, 0.7, 0.9
    rows = strategy_table(s, a, yaw=yaw, pitch=pitch, blur=blur, target_fprs=(0.5,), minfaces=(None,))
    r = row_of(rows, None, True, 0.5)
    assert (r.attack, r.genuine, r.threshold, r.tp, r.fp) == (3, 2, 0.7, 3, 1)
    assert row_of(rows, None, False, 0.5).attack == 6
    # a disabled gate (None) keeps everything it would have removed
    gates = QualityGates(max_yaw=None, max_pitch=30, max_blur=None)
    r = row_of(strategy_table(s, a, yaw=yaw, pitch=pitch, blur=blur, minfaces=(None,), gates=gates), None, True, 0.01)
    assert r.attack == 5  # only the pitch 31 image goes


def test_it_accepts_the_pipeline_gates_object():
    from liveness.quality import Gates

    rows = strategy_table([0.1, 0.9], [True, False], yaw=[50, 0], minfaces=(None,), gates=Gates(max_yaw=60))
    assert row_of(rows, None, True, 0.01).attack == 1


def test_it_sorts_rows_by_tpr_within_each_target_and_marks_the_best():
    s = [0.1, 0.15, 0.2, 0.3, 0.4, 0.8, 0.9]
    a = [True, False, False, True, True, False, False]
    fw = [200, 50, 200, 200, 200, 200, 200]  # minface 100 drops the genuine 0.15
    rows = strategy_table(s, a, face_w=fw, face_h=fw, target_fprs=(0.25, 0.5), minfaces=(None, 100))
    key = [(r.target_fpr, r.minface, r.quality, r.best) for r in rows]
    assert key == [
        # f = 0.25, k = 1. None: t = 0.15 (below genuine 0.2), TPR 1/3. 100: t = 0.4, TPR 3/3, FPR 1/3
        (0.25, 100, False, True),
        (0.25, 100, True, False),  # same numbers (no quality data): strategy order decides
        (0.25, None, False, False),
        (0.25, None, True, False),
        # f = 0.5, k = 2 both. None: t = 0.4, TPR 3/3, FPR 2/4. 100: t = 0.8, TPR 3/3, FPR 2/3
        (0.5, None, False, True),
        (0.5, None, True, False),
        (0.5, 100, False, False),
        (0.5, 100, True, False),
    ]
    assert (rows[0].threshold, rows[0].tp, rows[0].attack, rows[0].fp, rows[0].genuine) == (0.4, 3, 3, 1, 3)
    assert (rows[2].threshold, rows[2].tp, rows[2].fp) == (0.15, 1, 1)
    assert (rows[4].threshold, rows[4].tp, rows[4].fp, rows[4].genuine) == (0.4, 3, 2, 4)
    assert (rows[6].threshold, rows[6].tp, rows[6].fp, rows[6].genuine) == (0.8, 3, 2, 3)
    assert rows[0].strategy == "minface 100, quality off"


def test_it_marks_no_best_row_when_no_strategy_has_a_threshold():
    rows = strategy_table([0.1, 0.5], [False, True], target_fprs=(0.0,), minfaces=(None,))
    assert all(r.threshold is None for r in rows)
    assert not any(r.best for r in rows)


def test_it_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="face_w"):
        strategy_table([0.1, 0.2], [True, False], face_w=[100])


def literal_face_size(w, h):
    sides = [v for v in (w, h) if not math.isnan(v)]
    return min(sides) if sides else None


def literal_quality(yaw, pitch, blur, gates):
    ok = True
    if gates.max_yaw is not None and not math.isnan(yaw):
        ok &= abs(yaw) <= gates.max_yaw
    if gates.max_pitch is not None and not math.isnan(pitch):
        ok &= abs(pitch) <= gates.max_pitch
    if gates.max_blur is not None and not math.isnan(blur):
        ok &= blur <= gates.max_blur
    return ok


NAN = float("nan")
image = st.tuples(
    st.one_of(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0]), st.floats(0, 1)),
    st.booleans(),
    st.sampled_from([NAN, 90.0, 100.0, 110.0, 130.0, 150.0, 200.0]),
    st.sampled_from([NAN, 99.0, 100.0, 120.0, 150.0]),
    st.sampled_from([NAN, -40.0, -30.0, 0.0, 30.0, 30.5]),
    st.sampled_from([NAN, -30.0, 10.0, 31.0]),
    st.sampled_from([NAN, 0.0, 0.5, 0.51, 1.0]),
)
gate_values = st.builds(
    QualityGates,
    max_yaw=st.sampled_from([None, 0, 30]),
    max_pitch=st.sampled_from([None, 30]),
    max_blur=st.sampled_from([None, 0.5, 1.0]),
)


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(image, max_size=30),
    fprs=st.lists(st.sampled_from([0.0, 0.001, 0.01, 0.1, 0.2, 1 / 3, 0.5, 1.0]), min_size=1, max_size=3, unique=True),
    minfaces=st.lists(st.sampled_from([None, 100, 110, 130, 150]), min_size=1, max_size=4, unique=True),
    gates=gate_values,
)
def test_it_agrees_with_a_brute_force_strategy_table(data, fprs, minfaces, gates):
    cols = list(zip(*data, strict=True)) if data else [()] * 7
    s, a, fw, fh, yaw, pitch, blur = (list(c) for c in cols)
    rows = strategy_table(
        s, a, face_w=fw, face_h=fh, yaw=yaw, pitch=pitch, blur=blur, target_fprs=fprs, minfaces=minfaces, gates=gates
    )
    assert len(rows) == len(fprs) * len(minfaces) * 2
    for f in fprs:
        group = [r for r in rows if r.target_fpr == f]
        assert len(group) == len(minfaces) * 2
        keys = [(-r.tpr, r.fpr) for r in group]
        assert keys == sorted(keys)
        assert [r.best for r in group] == [i == 0 and group[0].threshold is not None for i in range(len(group))]
        for r in group:
            keep = [
                i
                for i in range(len(s))
                if (r.minface is None or (sz := literal_face_size(fw[i], fh[i])) is None or sz >= r.minface)
                and (not r.quality or literal_quality(yaw[i], pitch[i], blur[i], gates))
            ]
            sub_s, sub_a = [s[i] for i in keep], [a[i] for i in keep]
            t, tp, fp = brute_force(sub_s, sub_a, f)
            assert (r.threshold, r.tp, r.fp) == (t, tp, fp)
            assert (r.attack, r.genuine) == (sum(sub_a), len(sub_a) - sum(sub_a))


def test_it_agrees_with_the_single_threshold_search_on_a_large_tied_set():
    # speed on 1M rows is measured by `make bench` (bench/threshold_table.py), not here
    rng = np.random.default_rng(0)
    n = 200_000
    a = rng.random(n) < 0.3
    s = np.where(a, rng.beta(2, 5, n), rng.beta(5, 2, n)).round(4)  # rounded: many ties
    fw = rng.normal(140, 25, n)
    fw[rng.random(n) < 0.05] = np.nan
    fh = fw * rng.uniform(0.9, 1.2, n)
    yaw, pitch, blur = rng.normal(0, 20, n), rng.normal(0, 15, n), rng.random(n)
    rows = strategy_table(s, a, face_w=fw, face_h=fh, yaw=yaw, pitch=pitch, blur=blur)
    assert len(rows) == 28
    # spot check one strategy against the single-threshold function on its subset
    keep = ~(np.fmin(fw, fh) < 130) & (np.abs(yaw) <= 30) & (np.abs(pitch) <= 30) & (blur <= 0.5)
    op = threshold_at_fpr(s[keep], a[keep], 0.001)
    r = row_of(rows, 130, True, 0.001)
    assert (r.threshold, r.tp, r.fp, r.attack, r.genuine) == (op.threshold, op.tp, op.fp, op.attacks, op.genuine)


# --- confusion counts ------------------------------------------------------------------------------


def test_it_counts_the_confusion_matrix_at_a_threshold():
    c = confusion(*scored(GENUINE, ATTACK), 0.15)
    assert (c.tp, c.fn, c.fp, c.tn) == (2, 2, 1, 4)
    assert c.tpr == wilson(2, 4) and c.fpr == wilson(1, 5)
    c = confusion(*scored(GENUINE, ATTACK), None)
    assert (c.tp, c.fn, c.fp, c.tn) == (0, 4, 0, 5)
