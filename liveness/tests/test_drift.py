"""Score distribution drift: score histograms and the population stability index."""

from __future__ import annotations

import math

import numpy as np
import pytest

from liveness.drift import PSI_EPSILON, psi, psi_by_chance, psi_from_counts, score_histogram


def test_it_gives_zero_psi_for_identical_distributions():
    rng = np.random.default_rng(3)
    s = rng.beta(5, 2, 10_000)
    assert psi(s, s) == 0.0
    assert psi(s, rng.permutation(s)) == 0.0
    assert psi(s, rng.beta(5, 2, 10_000)) < 0.01


def test_it_grows_psi_with_the_shift_of_the_distribution():
    rng = np.random.default_rng(4)
    base = np.clip(rng.normal(0.6, 0.1, 20_000), 0, 1)
    values = [psi(base, np.clip(base + d, 0, 1)) for d in (0.0, 0.05, 0.1, 0.2)]
    assert values[0] == 0.0
    assert values == sorted(values) and values[1] > 0
    assert values[3] > 0.2  # drift


def test_it_computes_psi_by_hand_and_survives_empty_bins():
    # two bins: expected 50/50, actual 75/25: (0.75-0.5) ln(1.5) + (0.25-0.5) ln(0.5)
    assert psi([0.1, 0.9], [0.1, 0.1, 0.1, 0.9], bins=2) == pytest.approx(0.25 * math.log(1.5) - 0.25 * math.log(0.5))
    # an empty bin on one side: proportion floored at 1e-4
    v = psi_from_counts([10, 0], [5, 5])
    assert v == pytest.approx((0.5 - 1.0) * math.log(0.5) + (0.5 - PSI_EPSILON) * math.log(0.5 / PSI_EPSILON))
    assert list(score_histogram([0.0, 0.1, 0.5, 1.0, 1.2, -0.1], bins=2)) == [3, 3]
    with pytest.raises(ValueError):
        psi([], [0.5])


# a day's scores as they come: most live near 1, attacks near 0, a few in the sparse bins between
SPARSE = np.array([0.08, 0.01, 0.01, 0.005, 0.005, 0.01, 0.02, 0.05, 0.11, 0.7])


@pytest.mark.parametrize("tail", [0.05, 0.01])
def test_it_finds_the_psi_that_chance_passes_as_often_as_asked(tail):
    window, n = SPARSE * 1000, 100
    level = psi_by_chance(window, n, tail)
    rng = np.random.default_rng(123)  # other draws than the level's own
    passed = [psi_from_counts(rng.multinomial(1000, SPARSE), rng.multinomial(n, SPARSE)) > level for _ in range(5000)]
    assert np.mean(passed) == pytest.approx(tail, rel=0.4)
    assert level > 0.2  # on a day of 100 scores, noise alone passes the usual bound


def test_it_lowers_the_chance_level_as_the_counts_grow():
    levels = [psi_by_chance(SPARSE * 1000 * k, 100 * k, 0.01) for k in (1, 10, 100)]
    assert levels[0] > 10 * levels[1] > 100 * levels[2] > 0
    assert levels[2] < 0.01


def test_it_gives_the_same_level_for_the_same_counts_and_refuses_empty_sides():
    assert psi_by_chance(SPARSE * 1000, 100, 0.01) == psi_by_chance(SPARSE * 1000, 100, 0.01)
    with pytest.raises(ValueError, match="each side"):
        psi_by_chance([0, 0], 10, 0.01)
    with pytest.raises(ValueError, match="tail"):
        psi_by_chance(SPARSE * 1000, 100, 1.5)
