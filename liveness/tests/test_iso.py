"""ISO/IEC 30107-3 figures: APCER per PAI species (untyped attacks reported apart), BPCER, ACER, BPCER20."""

from __future__ import annotations

import numpy as np
import pytest

from liveness.iso import apcer_point, bpcer20, bpcer100, bpcer_at_apcer, iso_at

# genuine: 0.12 0.35 0.50 0.62 0.71 0.80 0.85 0.90 0.93 0.97
# attacks: print 0.05 0.20 0.40 0.66 | replay 0.15 0.33 0.55 | mask 0.28 0.75 | no type 0.45
ISO_S = [0.12, 0.35, 0.50, 0.62, 0.71, 0.80, 0.85, 0.90, 0.93, 0.97]
ISO_S += [0.05, 0.20, 0.40, 0.66, 0.15, 0.33, 0.55, 0.28, 0.75, 0.45]
ISO_A = [False] * 10 + [True] * 10
ISO_T = [None] * 10 + ["print"] * 4 + ["replay"] * 3 + ["mask", "mask", ""]


def test_it_gives_apcer_per_type_bpcer_and_acer_at_a_threshold():
    iso = iso_at(ISO_S, ISO_A, ISO_T, 0.5)
    per = iso["apcer_per_type"]
    assert sorted(per) == ["mask", "print", "replay", "unknown"]
    # attacks above 0.5 (decided live): print 0.66, replay 0.55, mask 0.75, none of the untyped
    assert (per["print"].k, per["print"].n) == (1, 4)
    assert (per["replay"].k, per["replay"].n) == (1, 3)
    assert (per["mask"].k, per["mask"].n) == (1, 2)
    assert (per["unknown"].k, per["unknown"].n) == (0, 1)
    assert iso["apcer"] == 0.5 and iso["apcer_type"] == "mask" and iso["apcer_rate"] == per["mask"]
    assert iso["untyped"] == per["unknown"]  # reported apart, never the reported APCER
    # genuine at or below 0.5: 0.12 0.35 0.50 (the tie at t counts as rejected)
    assert iso["bpcer"] == 0.3 and (iso["bpcer_rate"].k, iso["bpcer_rate"].n) == (3, 10)
    assert iso["acer"] == pytest.approx(0.4)


def test_it_gives_iso_figures_with_missing_classes_and_no_threshold():
    iso = iso_at([0.2, 0.8], [False, False], None, 0.5)
    assert iso["apcer"] is None and iso["acer"] is None and iso["apcer_per_type"] == {}
    assert iso["bpcer"] == 0.5
    iso = iso_at([0.2, 0.8], [True, True], ["print", "print"], None)  # no threshold: nothing flagged
    assert iso["apcer"] == 1.0 and iso["bpcer"] is None and iso["acer"] is None


def test_it_gives_bpcer20_and_bpcer100():
    # 5% or 1% of at most 4 attacks per type allows none above t: t = the highest attack, 0.75;
    # genuine at or below 0.75: 0.12 0.35 0.50 0.62 0.71
    assert bpcer_at_apcer(ISO_S, ISO_A, ISO_T, 0.05) == 0.5
    assert bpcer20(ISO_S, ISO_A, ISO_T) == 0.5 and bpcer100(ISO_S, ISO_A, ISO_T) == 0.5
    # 50%: print may keep 2 of 4 above t (t >= 0.20), replay 1 of 3 (t >= 0.33), mask 1 of 2
    # (t >= 0.28); the lone untyped attack (0.45) is no PAI species and requires nothing:
    # t = 0.33, genuine 0.12 below; there print (0.40 0.66) and mask (0.75) tie at 1/2: mask by name
    p = apcer_point(ISO_S, ISO_A, ISO_T, 0.5)
    assert p.threshold == 0.33 and p.apcer == 0.5 and (p.bpcer.k, p.bpcer.n) == (1, 10)
    assert p.apcer_type == "mask" and (p.untyped.k, p.untyped.n) == (1, 1)
    assert iso_at(ISO_S, ISO_A, ISO_T, 0.33)["apcer"] <= 0.5 < iso_at(ISO_S, ISO_A, ISO_T, 0.28)["apcer"]
    # 100% allows everything: the smallest observed score
    assert apcer_point(ISO_S, ISO_A, ISO_T, 1.0).threshold == 0.05
    assert bpcer_at_apcer([0.1], [True], ["print"], 0.05) is None
    assert bpcer_at_apcer([0.1], [False], [None], 0.05) is None


def test_it_treats_untyped_attacks_alike_whatever_the_missing_marker():
    iso = iso_at([0.6, 0.7, 0.2, 0.1], [True, True, True, False], [None, float("nan"), " ", "x"], 0.5)
    assert list(iso["apcer_per_type"]) == ["unknown"]
    assert (iso["apcer_per_type"]["unknown"].k, iso["apcer_per_type"]["unknown"].n) == (2, 3)
    # no attack has a type: all attacks are one pooled group, and that group is the reported APCER
    assert iso["apcer_type"] == "unknown" and iso["apcer"] == pytest.approx(2 / 3) and iso["untyped"] is None


# 200 genuine, typed species print (60), replay (50), mask (40), and 32 untyped attacks that are
# missed far more often than any species (scores spread up into the genuine range)
_RNG = np.random.default_rng(30107)
MIX_GENUINE = _RNG.uniform(0.3, 1.0, 200).round(4)
MIX_TYPED = {
    "print": _RNG.uniform(0.0, 0.45, 60).round(4),
    "replay": _RNG.uniform(0.0, 0.55, 50).round(4),
    "mask": _RNG.uniform(0.0, 0.50, 40).round(4),
}
MIX_UNTYPED = _RNG.uniform(0.2, 0.95, 32).round(4)


def mixed_set():
    attacks = np.concatenate([*MIX_TYPED.values(), MIX_UNTYPED])
    s = np.concatenate([MIX_GENUINE, attacks])
    a = np.array([False] * len(MIX_GENUINE) + [True] * len(attacks))
    t = [None] * len(MIX_GENUINE) + [n for n, v in MIX_TYPED.items() for _ in v] + [""] * len(MIX_UNTYPED)
    return s, a, t


def brute_bpcer_at_apcer(s, a, groups: dict[str, np.ndarray], max_apcer):
    """The SPEC section 2 reading, by brute force: the smallest observed score t at which every group
    has at most max_apcer of its attacks above t; BPCER there."""
    for t in np.unique(s):
        if all((g > t).sum() / len(g) <= max_apcer for g in groups.values()):
            return t, (s[~a] <= t).sum() / (~a).sum()
    raise AssertionError("the highest score always qualifies")


def test_it_never_reports_untyped_attacks_as_the_apcer_even_when_they_are_the_worst():
    s, a, types = mixed_set()
    iso = iso_at(s, a, types, 0.5)

    typed = {name: (v > 0.5).sum() / len(v) for name, v in MIX_TYPED.items()}
    untyped_missed = int((MIX_UNTYPED > 0.5).sum())
    assert untyped_missed / 32 > max(typed.values())  # the untyped attacks would be the worst
    worst = max(typed, key=typed.get)
    assert iso["apcer_type"] == worst and iso["apcer"] == pytest.approx(typed[worst])
    assert (iso["apcer_rate"].k, iso["apcer_rate"].n) == ((MIX_TYPED[worst] > 0.5).sum(), len(MIX_TYPED[worst]))
    assert (iso["untyped"].k, iso["untyped"].n) == (untyped_missed, 32)
    bpcer = (MIX_GENUINE <= 0.5).sum() / 200
    assert iso["acer"] == pytest.approx((typed[worst] + bpcer) / 2)


@pytest.mark.parametrize("max_apcer", [0.05, 0.01, 0.2])
def test_it_takes_bpcer20_and_bpcer100_over_the_typed_species_only(max_apcer):
    s, a, types = mixed_set()
    p = apcer_point(s, a, types, max_apcer)

    t, bpcer = brute_bpcer_at_apcer(s, a, MIX_TYPED, max_apcer)
    assert p.threshold == t and p.bpcer.value == pytest.approx(bpcer)
    assert p.apcer <= max_apcer and p.apcer_type in MIX_TYPED
    assert (p.untyped.k, p.untyped.n) == ((MIX_UNTYPED > t).sum(), 32)
    # counting the untyped attacks as a species would have moved the threshold up
    with_untyped, _ = brute_bpcer_at_apcer(s, a, {**MIX_TYPED, "unknown": MIX_UNTYPED}, max_apcer)
    assert with_untyped > t


def test_it_pools_all_attacks_when_none_has_a_type():
    s, a, _ = mixed_set()
    attacks = s[a]
    iso = iso_at(s, a, None, 0.5)
    p = apcer_point(s, a, [""] * len(s), 0.05)

    assert iso["apcer_type"] == "unknown" and iso["untyped"] is None
    assert (iso["apcer_rate"].k, iso["apcer_rate"].n) == ((attacks > 0.5).sum(), len(attacks))
    t, bpcer = brute_bpcer_at_apcer(s, a, {"all": attacks}, 0.05)
    assert p.threshold == t and p.bpcer.value == pytest.approx(bpcer)
    assert p.apcer_type == "unknown" and p.untyped is None
    assert bpcer20(s, a) == pytest.approx(bpcer)
