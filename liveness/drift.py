"""Score distribution drift: score histograms on fixed bins over [0, 1] and the population
stability index (PSI) between two of them.

Pure numpy, no Django.
"""

from __future__ import annotations

import numpy as np

PSI_EPSILON = 1e-4


def score_histogram(scores, bins: int = 10) -> np.ndarray:
    """Counts of scores on `bins` equal-width bins over [0, 1]: [0, 1/b), ..., [(b-1)/b, 1].

    Scores outside [0, 1] are clipped into the end bins; NaN scores are ignored.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    s = np.clip(s[~np.isnan(s)], 0.0, 1.0)
    counts, _ = np.histogram(s, bins=np.linspace(0.0, 1.0, bins + 1))
    return counts


def psi_from_counts(expected_counts, actual_counts) -> float:
    """PSI = sum over bins of (a - e) * ln(a / e), with e, a the bins' proportions.

    A proportion of 0 (an empty bin) is replaced by PSI_EPSILON = 1e-4 so the logarithm is finite;
    the proportions are not renormalised. Raises ValueError when either side has no data.
    """
    e = np.asarray(expected_counts, dtype=np.float64).ravel()
    x = np.asarray(actual_counts, dtype=np.float64).ravel()
    if e.shape != x.shape:
        raise ValueError(f"{len(e)} expected bins but {len(x)} actual bins")
    if e.sum() <= 0 or x.sum() <= 0:
        raise ValueError("PSI needs at least one score on each side")
    return float(_psi_rows(e, x))


def _psi_rows(expected, actual) -> np.ndarray:
    """PSI of each row of `actual` against the same row of `expected` (counts, bins on the last axis)."""
    pe = np.maximum(expected / expected.sum(axis=-1, keepdims=True), PSI_EPSILON)
    px = np.maximum(actual / actual.sum(axis=-1, keepdims=True), PSI_EPSILON)
    return np.sum((px - pe) * np.log(px / pe), axis=-1)


def psi_by_chance(expected_counts, actual_total: int, tail: float, draws: int = 8000, seed: int = 0) -> float:
    """The PSI that chance alone exceeds with probability `tail` when a day of `actual_total` scores
    and a window of the expected counts' size are drawn from one distribution.

    A day of about a hundred scores over sparse bins can pass 0.2 by sampling noise alone: this is
    the level a real shift must pass. Drawn (a parametric bootstrap, `draws` pairs, a fixed seed, so the
    same counts give the same level) from the window's proportions with half a count added to every
    bin, so that a bin empty in the window can still be hit by chance.
    """
    e = np.asarray(expected_counts, dtype=np.float64).ravel()
    if e.sum() <= 0 or actual_total <= 0:
        raise ValueError("PSI needs at least one score on each side")
    if not 0 < tail < 1:
        raise ValueError(f"tail must be between 0 and 1, not {tail}")
    p = (e + 0.5) / (e.sum() + 0.5 * len(e))
    rng = np.random.default_rng(seed)
    window = rng.multinomial(int(e.sum()), p, size=draws).astype(np.float64)
    day = rng.multinomial(int(actual_total), p, size=draws).astype(np.float64)
    return float(np.quantile(_psi_rows(window, day), 1.0 - tail))


def psi(expected_scores, actual_scores, bins: int = 10) -> float:
    """Population stability index of the actual score distribution against the expected one.

    Bins: `bins` equal-width bins over [0, 1] (`score_histogram`); empty bins: proportion floored
    at PSI_EPSILON = 1e-4 (`psi_from_counts`). 0 for identical distributions (identical bin
    proportions); by the usual reading < 0.1 is stable, 0.1-0.2 a moderate shift, > 0.2 drift.
    """
    return psi_from_counts(score_histogram(expected_scores, bins), score_histogram(actual_scores, bins))
