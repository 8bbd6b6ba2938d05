"""Metrics with the sign conventions of SPEC section 2 (positive = attack; live if s > t).

- `wilson` / `Rate`: a count k of n with its 95% Wilson score interval.
- `threshold_at_fpr` / `OperatingPoint`: the threshold at a target FPR (FP budget ceil(f * G)).
- `confusion`: TP/FN/FP/TN at a given threshold.
- `strategy_table` / `StrategyRow`: the threshold table of SPEC section 5 (minface x quality x
  target FPR), sorted by TPR within each target FPR, best row marked.
- `labelled_scores`: scores and labels as flat arrays, checked (also for `liveness.iso`).

The ISO/IEC 30107-3 figures are in `liveness.iso`, score distribution drift in `liveness.drift`.

Pure numpy, no Django. Scores must not be NaN (drop unscored images first): a ValueError says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Rate:
    k: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else 0.0

    @property
    def too_few(self) -> bool:
        return self.n < 30


def wilson(k: int, n: int, z: float = 1.959963984540054) -> Rate:
    """k of n with its 95% Wilson score interval."""
    if n == 0:
        return Rate(0, 0, 0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    # exact ends at k = 0 and k = n (float rounding would otherwise leave 0.9999999999999999,
    # an interval that excludes the observed rate of 1)
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return Rate(k, n, low, high)


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float | None
    tp: int
    fp: int
    attacks: int
    genuine: int

    @property
    def tpr(self) -> float:
        return self.tp / self.attacks if self.attacks and self.threshold is not None else 0.0

    @property
    def fpr(self) -> float:
        return self.fp / self.genuine if self.genuine and self.threshold is not None else 0.0


def fp_budget(target_fpr: float, genuine: int) -> int:
    """k = ceil(f * G), robust against float error."""
    return max(0, math.ceil(target_fpr * genuine - 1e-9))


# --- shared core: operating points on already-sorted scores ------------------------------------------


def labelled_scores(scores, is_attack) -> tuple[np.ndarray, np.ndarray]:
    """(scores as float64, is_attack as bool), both flat; ValueError when their lengths differ or a
    score is NaN."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    a = np.asarray(is_attack, dtype=bool).ravel()
    if len(s) != len(a):
        raise ValueError(f"{len(s)} scores but {len(a)} labels")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN: drop unscored images before computing metrics")
    return s, a


def _points_sorted(ss: np.ndarray, aa: np.ndarray, target_fprs) -> list[OperatingPoint]:
    """The SPEC section 2 threshold for each f in `target_fprs`, on scores sorted ascending.

    With gc = cumulative genuine count along the sorted scores and budget k: the first position j
    where gc exceeds k holds a genuine score v; every t >= v has at least k + 1 genuine at or below
    it, every observed t < v at most k. So t is the largest observed score below v (the element just
    before v's tie group), found by binary search: O(log n) per target once gc is built.
    """
    n = len(ss)
    attacks = int(aa.sum())
    genuine = n - attacks
    if n == 0:
        return [OperatingPoint(None, 0, 0, attacks, genuine) for _ in target_fprs]
    gc = np.cumsum(~aa)
    out = []
    for f in target_fprs:
        k = fp_budget(f, genuine)
        if k >= genuine:  # every genuine image is within the budget: t is the highest score
            idx = n - 1
        else:
            j = int(np.searchsorted(gc, k, side="right"))  # first position with gc > k
            idx = int(np.searchsorted(ss, ss[j], side="left")) - 1
        if idx < 0:
            out.append(OperatingPoint(None, 0, 0, attacks, genuine))
            continue
        fp = int(gc[idx])
        out.append(OperatingPoint(float(ss[idx]), idx + 1 - fp, fp, attacks, genuine))
    return out


def threshold_at_fpr(scores, is_attack, target_fpr: float) -> OperatingPoint:
    """SPEC section 2: the largest observed score t with #(genuine s <= t) <= ceil(f * G).

    O(n log n): one sort, then a cumulative genuine count and two binary searches (`_points_sorted`).
    """
    s, a = labelled_scores(scores, is_attack)
    order = np.argsort(s, kind="stable")
    return _points_sorted(s[order], a[order], [target_fpr])[0]


# --- confusion counts at a threshold -----------------------------------------------------------------


@dataclass(frozen=True)
class Confusion:
    """Counts at a threshold t (None = no threshold: nothing is flagged). Positive = attack."""

    threshold: float | None
    tp: int
    fn: int
    fp: int
    tn: int

    @property
    def attacks(self) -> int:
        return self.tp + self.fn

    @property
    def genuine(self) -> int:
        return self.fp + self.tn

    @property
    def tpr(self) -> Rate:
        return wilson(self.tp, self.attacks)

    @property
    def fpr(self) -> Rate:
        return wilson(self.fp, self.genuine)


def confusion(scores, is_attack, threshold: float | None) -> Confusion:
    """Decided attack iff s <= threshold (live iff s > threshold); threshold None flags nothing."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    a = np.asarray(is_attack, dtype=bool).ravel()
    if len(s) != len(a):
        raise ValueError(f"{len(s)} scores but {len(a)} labels")
    flagged = np.zeros(len(s), dtype=bool) if threshold is None else s <= threshold
    tp = int((flagged & a).sum())
    fp = int((flagged & ~a).sum())
    attacks = int(a.sum())
    return Confusion(threshold, tp, attacks - tp, fp, len(s) - attacks - fp)


# --- strategy table ("threshold table", SPEC section 5) ----------------------------------------------


@dataclass(frozen=True)
class QualityGates:
    """Pose and blur gates of the strategy table's `quality on` (SPEC 4.4 defaults); None disables one.

    `liveness.quality.Gates` has the same attributes and can be passed instead (its `min_face` is
    not used here: the face size is the table's other axis, `minface`).
    """

    max_yaw: float | None = 30
    max_pitch: float | None = 30
    max_blur: float | None = 0.5


DEFAULT_MINFACES = (None, 100, 110, 120, 130, 140, 150)
DEFAULT_TARGET_FPRS = (0.001, 0.01)


@dataclass(frozen=True)
class StrategyRow:
    """One row of the threshold table. `as_dict()` has exactly the keys of the issue-4 JSON export."""

    minface: int | None
    quality: bool
    target_fpr: float
    threshold: float | None
    tp: int
    fp: int
    attack: int
    genuine: int
    best: bool = False

    @property
    def tpr(self) -> float:
        return self.tp / self.attack if self.attack and self.threshold is not None else 0.0

    @property
    def fpr(self) -> float:
        return self.fp / self.genuine if self.genuine and self.threshold is not None else 0.0

    @property
    def tpr_rate(self) -> Rate:
        return wilson(self.tp, self.attack)

    @property
    def fpr_rate(self) -> Rate:
        return wilson(self.fp, self.genuine)

    @property
    def strategy(self) -> str:
        face = "none" if self.minface is None else str(self.minface)
        return f"minface {face}, quality {'on' if self.quality else 'off'}"

    def as_dict(self) -> dict:
        return {
            "minface": self.minface,
            "quality": self.quality,
            "target_fpr": self.target_fpr,
            "threshold": self.threshold,
            "tpr": self.tpr,
            "fpr": self.fpr,
            "attack": self.attack,
            "genuine": self.genuine,
            "fp": self.fp,
            "tp": self.tp,
        }


def _optional(values, n: int, name: str) -> np.ndarray:
    if values is None:
        return np.full(n, np.nan)
    v = np.asarray(values, dtype=np.float64).ravel()
    if len(v) != n:
        raise ValueError(f"{name} has {len(v)} values for {n} scores")
    return v


def face_size_of(face_w, face_h) -> np.ndarray:
    """min(w, h) over the known sides (NaN = unknown); NaN only when both are unknown.

    Not the true min when one side is missing, but what `minface N` needs (see `strategy_table`):
    it is an upper bound of min(w, h), so a value below N proves the row fails, and a value >= N
    proves nothing, so the row passes as a missing value does.
    """
    w = np.asarray(face_w, dtype=np.float64)
    h = np.asarray(face_h, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.fmin(w, h)


def quality_mask(yaw, pitch, blur, gates=None) -> np.ndarray:
    """True where the image passes the pose and blur gates; a missing (NaN) value passes."""
    g = QualityGates() if gates is None else gates
    yaw, pitch, blur = (np.asarray(v, dtype=np.float64) for v in (yaw, pitch, blur))
    keep = np.ones(np.broadcast(yaw, pitch, blur).shape, dtype=bool)
    # comparisons with NaN are False, so "fails" is written as the positive comparison
    if getattr(g, "max_yaw", None) is not None:
        keep &= ~(np.abs(yaw) > g.max_yaw)
    if getattr(g, "max_pitch", None) is not None:
        keep &= ~(np.abs(pitch) > g.max_pitch)
    if getattr(g, "max_blur", None) is not None:
        keep &= ~(blur > g.max_blur)
    return keep


def strategy_table(
    scores,
    is_attack,
    *,
    face_w=None,
    face_h=None,
    yaw=None,
    pitch=None,
    blur=None,
    target_fprs=DEFAULT_TARGET_FPRS,
    minfaces=DEFAULT_MINFACES,
    gates=None,
) -> list[StrategyRow]:
    """The threshold table of SPEC section 5: every minface x quality off/on x target FPR.

    - `minface N` keeps images with min(face_w, face_h) >= N; None keeps every image. A missing
      value passes (SPEC section 5), and the value is min(w, h), so per face box:
      both sides known: kept iff min(w, h) >= N;
      one side known and below N: dropped, since min(w, h) <= that side < N whatever the other is;
      one side known and >= N: kept, the min is unknown;
      no side known: kept, the value is missing.
      (`face_size_of` gives the known sides' min; NaN only for the last case.)
    - `quality on` keeps images passing the pose and blur gates of `gates` (`QualityGates()` by
      default: |yaw| <= 30, |pitch| <= 30, blur <= 0.5; any object with `max_yaw`, `max_pitch`,
      `max_blur`, e.g. `liveness.quality.Gates`); a missing value passes.
    - On each subset, the threshold, TP and FP follow `threshold_at_fpr` exactly (same core).

    Rows are grouped by target FPR (in the order given) and sorted by TPR descending, then FPR
    ascending, then strategy order (minfaces as given, quality off before on). The first row of a
    group is `best`, unless no strategy of the group has a threshold.

    Cost: one argsort of all scores; each strategy's subset is the sorted order filtered by its
    mask (no re-sort), then a cumulative sum and binary searches. Its time on a million rows:
    `python -m bench.threshold_table` (bench/README.md).
    """
    s, a = labelled_scores(scores, is_attack)
    n = len(s)
    size = face_size_of(_optional(face_w, n, "face_w"), _optional(face_h, n, "face_h"))
    qual = quality_mask(_optional(yaw, n, "yaw"), _optional(pitch, n, "pitch"), _optional(blur, n, "blur"), gates)
    fprs = [float(f) for f in target_fprs]
    order = np.argsort(s, kind="stable")
    points = _strategy_points(s[order], a[order], size[order], qual[order], minfaces, fprs)
    return _ranked_rows(points, fprs)


def _strategy_points(ss, aa, size_s, qual_s, minfaces, fprs) -> list[tuple[int | None, bool, list[OperatingPoint]]]:
    """(minface, quality, operating point per target FPR) of each strategy, in strategy order, on
    arrays already sorted by score: each subset is the sorted order filtered by its mask."""
    all_q = bool(qual_s.all())
    points = []
    for minface in minfaces:
        face_keep = None if minface is None else ~(size_s < minface)  # NaN (unknown) passes
        for quality in (False, True):
            keep = face_keep
            if quality and not all_q:
                keep = qual_s if keep is None else keep & qual_s
            if keep is None or keep.all():
                pts = _points_sorted(ss, aa, fprs)
            else:
                pts = _points_sorted(ss[keep], aa[keep], fprs)
            points.append((None if minface is None else int(minface), quality, pts))
    return points


def _ranked_rows(points, fprs) -> list[StrategyRow]:
    """The rows grouped by target FPR, each group sorted by TPR then FPR, its first row `best`."""
    rows: list[StrategyRow] = []
    for i, f in enumerate(fprs):
        group = [
            StrategyRow(minface, quality, f, p[i].threshold, p[i].tp, p[i].fp, p[i].attacks, p[i].genuine)
            for minface, quality, p in points
        ]
        group.sort(key=lambda r: (-r.tpr, r.fpr))  # stable: ties keep the strategy order
        if group and group[0].threshold is not None:
            group[0] = replace(group[0], best=True)
        rows.extend(group)
    return rows
