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
    pe = np.maximum(e / e.sum(), PSI_EPSILON)
    px = np.maximum(x / x.sum(), PSI_EPSILON)
    return float(np.sum((px - pe) * np.log(px / pe)))


def psi(expected_scores, actual_scores, bins: int = 10) -> float:
    """Population stability index of the actual score distribution against the expected one.

    Bins: `bins` equal-width bins over [0, 1] (`score_histogram`); empty bins: proportion floored
    at PSI_EPSILON = 1e-4 (`psi_from_counts`). 0 for identical distributions (identical bin
    proportions); by the usual reading < 0.1 is stable, 0.1-0.2 a moderate shift, > 0.2 drift.
    """
    return psi_from_counts(score_histogram(expected_scores, bins), score_histogram(actual_scores, bins))
