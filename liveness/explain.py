"""What changed on a day: a day's slices against the same slices over a trailing window.

Pure numpy, no Django. A *slice* is the images of one value of a dimension (or of two), with
counts k of n for one measure on the day and over the window. For each slice:

- its rate on the day and over the window, with 95% Wilson intervals;
- the risk ratio against the rest of the day, (k/n) / ((K-k)/(N-n)) (the explanation measure of
  MacroBase, SIGMOD 2017), and against its own window, (k/n) / (k_w/n_w);
- its excess k - n * p_w, with p_w the slice's window rate, or the whole window's when the
  slice's window holds too few images to have a rate of its own (fewer than 30, the too-few rule:
  a new device, or a burst of retries where the window had one), and its share of the day's
  excess K - N * P_w;
- its shift: how many times the day's rate change the slice's rate changed,
  (excess / n) / (day's excess / N), equal to share / (n / N);
- its share beyond its size, share - n / N: the part of the change it accounts for beyond moving
  with the day (0 for a slice that moved exactly as the day did, e.g. the whole day);
- a likelihood-ratio test (G-test) of its day against its window, Bonferroni-corrected over
  the slices tested. The G-test, not the normal approximation: at the tail levels a Bonferroni
  correction asks for, a z-test on a few expected counts calls noise significant.

A slice holding every image of the day (a dimension with one value that day) is the day itself
and is left out. Slices on too few images (the measure's n < 30, as `liveness.metrics.Rate.too_few`) are not
tested and rank below every slice with enough images.

Ranking, in the direction the day moved (up for a rising rate, down for a falling one, e.g. a
TPR drop): first the significant slices that moved that way, then the other slices with enough
images, then the ones with too few; within each by share beyond size (by excess in the day's
direction when the day did not move). Not by the share alone: every slice holding the cause
accounts for about its whole share too (the site of the guilty device, "passed the gates" with
nearly every image), and chance would decide between them and the cause.

A combination of two slices is shown only when it is significant, moved the day's way and
concentrates the change clearly more than either of its single slices: its shift is at least
`CLEAR_FACTOR` times the larger shift of the two, and within each single slice its day rate
differs significantly (G-test, Bonferroni over the combinations tested) from the rest of that
slice. A cause that is one device alone gives every "that device x something" combination about
that device's rate, so none is shown; a cause that is one device's small faces gives the
combination a rate apart from the device's other faces and from the other devices' small faces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .drift import psi_from_counts
from .metrics import Rate, wilson

ALPHA = 0.05  # family-wise error rate of the Bonferroni-corrected tests
CLEAR_FACTOR = 1.5  # how much more a combination must concentrate the change than its slices


@dataclass(frozen=True)
class Measure:
    name: str
    label: str
    k: str  # the count field (DaySlice / DailyMetric "all_" counts)
    n: str  # the denominator's field
    adverse: int  # +1: a rise is bad (flag rate, FPR, low quality); -1: a drop is bad (TPR)


MEASURES = {
    m.name: m
    for m in (
        Measure("flag_rate", "flag rate", "flagged", "scored", +1),
        Measure("fpr", "FPR (BPCER)", "fp", "genuine", +1),
        Measure("tpr", "TPR", "tp", "attacks", -1),
        Measure("low_quality", "low quality", "low_quality", "scored", +1),
    )
}


@dataclass(frozen=True)
class SliceCounts:
    """One slice's counts for one measure: k of n on the day and over the window, and the score
    histograms (equal bins) of both."""

    dims: str
    value: str
    k: int
    n: int
    window_k: int
    window_n: int
    histogram: tuple = ()
    window_histogram: tuple = ()


@dataclass
class SliceResult:
    dims: str
    value: str
    day: Rate
    window: Rate
    rest_ratio: float | None
    window_ratio: float | None
    excess: float
    share: float | None
    shift: float | None
    beyond: float | None  # share - n / N
    p_value: float | None
    p_adjusted: float | None
    significant: bool
    too_few: bool
    psi: float | None
    new: bool  # no window images: compared with the whole window


@dataclass
class Overall:
    day: Rate
    window: Rate
    excess: float  # K - N * P_w
    direction: int  # +1 the day's rate rose (or would be bad rising), -1 it fell
    p_value: float | None
    significant: bool
    psi: float | None


@dataclass
class Explanation:
    overall: Overall
    slices: list[SliceResult] = field(default_factory=list)
    combinations: list[SliceResult] = field(default_factory=list)
    tested_slices: int = 0
    tested_combinations: int = 0


def _xlogx_over(o: np.ndarray, e: np.ndarray) -> np.ndarray:
    """o * ln(o / e), 0 where o = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(o > 0, o * np.log(np.where(o > 0, o, 1) / np.where(e > 0, e, 1)), 0.0)


def g_test(k1, n1, k2, n2) -> np.ndarray:
    """Two-sided p-values of the likelihood-ratio test that k1/n1 and k2/n2 share one rate
    (2x2 table, chi-square with one degree of freedom). NaN where a side has no images."""
    k1, n1, k2, n2 = (np.asarray(v, dtype=np.float64) for v in (k1, n1, k2, n2))
    total = n1 + n2
    hits = k1 + k2
    misses = total - hits
    safe = np.where(total > 0, total, 1)
    g = 2 * (
        _xlogx_over(k1, n1 * hits / safe)
        + _xlogx_over(n1 - k1, n1 * misses / safe)
        + _xlogx_over(k2, n2 * hits / safe)
        + _xlogx_over(n2 - k2, n2 * misses / safe)
    )
    g = np.maximum(g, 0.0)  # rounding can leave -1e-15 for identical rates
    p = np.array([math.erfc(math.sqrt(v / 2)) for v in np.atleast_1d(g)])
    return np.where((n1 > 0) & (n2 > 0), p, np.nan)


def bonferroni(p_values, tested: int) -> np.ndarray:
    return np.minimum(1.0, np.asarray(p_values, dtype=np.float64) * max(tested, 1))


def _psi(expected, actual) -> float | None:
    if not len(expected) or not len(actual) or sum(expected) <= 0 or sum(actual) <= 0:
        return None
    return psi_from_counts(expected, actual)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _rate_or_none(k: int, n: int) -> float | None:
    return k / n if n else None


def _too_few(n: int) -> bool:
    """The too-few rule of `liveness.metrics.Rate`, for n images."""
    return Rate(0, n, 0.0, 1.0).too_few


def overall(k: int, n: int, window_k: int, window_n: int, adverse: int, histogram=(), window_histogram=()) -> Overall:
    """The whole day against the whole window (one test, no correction)."""
    day, window = wilson(k, n), wilson(window_k, window_n)
    p_window = window.value
    excess = k - n * p_window
    direction = (1 if excess > 0 else -1) if excess else adverse
    p = float(g_test(k, n, window_k, window_n)[0]) if n and window_n else None
    significant = p is not None and not day.too_few and p < ALPHA
    return Overall(day, window, excess, direction, p, significant, _psi(window_histogram, histogram))


def evaluate(
    rows: list[SliceCounts], whole: Overall, candidates_only: bool = False, order: dict[str, int] | None = None
) -> tuple[list[SliceResult], int]:
    """Every slice with images on the day for the measure, ranked; and how many were tested.
    `candidates_only`: only the significant slices that moved the day's way (what a combination
    must be), sparing the details of the thousands that are not. `order`: dims -> place, for ties
    (see `rank`)."""
    # a slice holding every image of the day is the day itself (one format, every gate passed)
    rows = [r for r in rows if r.n > 0 and (r.n, r.k) != (whole.day.n, whole.day.k)]
    if not rows:
        return [], 0
    k = np.array([r.k for r in rows], dtype=np.float64)
    n = np.array([r.n for r in rows], dtype=np.float64)
    wk = np.array([r.window_k for r in rows], dtype=np.float64)
    wn = np.array([r.window_n for r in rows], dtype=np.float64)
    # a slice whose window holds too few images for a rate of its own (none: a new device) is
    # held against the whole window: one retry in the window must not stand for a retry rate
    thin = np.array([_too_few(r.window_n) for r in rows])
    ref_k = np.where(thin, whole.window.k, wk)
    ref_n = np.where(thin, whole.window.n, wn)
    p_ref = np.divide(ref_k, ref_n, out=np.zeros_like(ref_k), where=ref_n > 0)
    excess = k - n * p_ref
    p_values = g_test(k, n, ref_k, ref_n)
    too_few = np.array([_too_few(r.n) for r in rows])
    testable = ~too_few & ~np.isnan(p_values)
    tested = int(testable.sum())
    p_adjusted = bonferroni(np.where(testable, p_values, 1.0), tested)
    significant = testable & (p_adjusted < ALPHA)
    keep = significant & (excess * whole.direction > 0) if candidates_only else np.ones(len(rows), dtype=bool)
    results = [
        _result(r, whole, float(excess[i]), p_values[i], p_adjusted[i] if testable[i] else None, bool(significant[i]))
        for i, r in enumerate(rows)
        if keep[i]
    ]
    return rank(results, whole.direction, order), tested


def _result(r: SliceCounts, whole: Overall, excess: float, p, p_adjusted, significant: bool) -> SliceResult:
    big_k, big_n = whole.day.k, whole.day.n
    share = excess / whole.excess if whole.excess else None
    day = wilson(r.k, r.n)
    return SliceResult(
        dims=r.dims,
        value=r.value,
        day=day,
        window=wilson(r.window_k, r.window_n),
        rest_ratio=_ratio(r.k / r.n, _rate_or_none(big_k - r.k, big_n - r.n)),
        window_ratio=_ratio(r.k / r.n, _rate_or_none(r.window_k, r.window_n)),
        excess=excess,
        share=None if share is None else float(share),
        shift=None if share is None or not big_n else float(share / (r.n / big_n)),
        beyond=None if share is None or not big_n else float(share - r.n / big_n),
        p_value=None if np.isnan(p) else float(p),
        p_adjusted=None if p_adjusted is None else float(p_adjusted),
        significant=significant,
        too_few=day.too_few,
        psi=_psi(r.window_histogram, r.histogram),
        new=r.window_n == 0,
    )


def rank(results: list[SliceResult], direction: int, order: dict[str, int] | None = None) -> list[SliceResult]:
    """Significant slices that moved the day's way first, then the rest with enough images,
    then too few; within each, by share beyond size (or excess in the day's direction). Slices
    with the same images (a site with one resolution) tie: `order` (dims -> place) puts the
    dimension a user thinks of first (device, site) first; unlisted dims after, by name."""
    order = order or {}

    def key(r: SliceResult):
        moved = r.excess * direction
        group = 2 if r.too_few else (0 if r.significant and moved > 0 else 1)
        return (group, -(moved if r.beyond is None else r.beyond), order.get(r.dims, len(order)), r.dims, r.value)

    return sorted(results, key=key)


def concentrates(combo: SliceResult, singles: list[SliceResult | None], direction: int, tested: int) -> bool:
    """The rule for showing a combination: significant, moved the day's way, a shift at least
    CLEAR_FACTOR times the larger shift of its single slices, and a day rate apart from the rest
    of each single slice (significant after correcting for the `tested` combinations)."""
    if not combo.significant or combo.too_few or combo.excess * direction <= 0 or combo.shift is None:
        return False
    if any(s is None for s in singles):
        return False
    best = max((s.shift for s in singles if s.shift is not None), default=0.0)
    if combo.shift < CLEAR_FACTOR * max(best, 0.0):
        return False
    k, n = combo.day.k, combo.day.n
    rest_k = [s.day.k - k for s in singles]
    rest_n = [s.day.n - n for s in singles]
    p = bonferroni(g_test([k] * len(singles), [n] * len(singles), rest_k, rest_n), tested)
    return bool(np.all(p < ALPHA))  # NaN (a slice with nothing besides the combination) fails


def explain(
    singles: list[SliceCounts],
    combinations: list[SliceCounts],
    whole: Overall,
    separator: str = "|",
    order: dict[str, int] | None = None,
) -> Explanation:
    """Rank the single slices; keep the combinations (dims "a|b", value "x|y") that
    `concentrates` admits against their single slices "a"="x" and "b"="y". `order`: see `rank`."""
    ranked, tested = evaluate(singles, whole, order=order)
    combos, tested_combos = evaluate(combinations, whole, candidates_only=True, order=order)
    by_key = {(s.dims, s.value): s for s in ranked}
    kept = []
    for c in combos:
        parts = list(zip(c.dims.split(separator), c.value.split(separator), strict=False))
        if concentrates(c, [by_key.get(p) for p in parts], whole.direction, tested_combos):
            kept.append(c)
    return Explanation(whole, ranked, kept, tested, tested_combos)
