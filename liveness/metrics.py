"""Metrics with the sign conventions of SPEC section 2 (positive = attack; live if s > t).

- `wilson` / `Rate`: a count k of n with its 95% Wilson score interval.
- `threshold_at_fpr` / `OperatingPoint`: the threshold at a target FPR (FP budget ceil(f * G)).
- `confusion`: TP/FN/FP/TN at a given threshold.
- `strategy_table` / `StrategyRow`: the threshold table of SPEC section 5 (minface x quality x
  target FPR), sorted by TPR within each target FPR, best row marked.
- `iso_at`, `apcer_point`, `bpcer_at_apcer`, `bpcer20`, `bpcer100`: ISO/IEC 30107-3 figures; the
  reported APCER (`reported_apcer`) is the worst PAI species, untyped attacks reported apart.
- `score_histogram`, `psi_from_counts`, `psi`: score distribution drift.

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


def _check_scores(s: np.ndarray) -> None:
    if np.isnan(s).any():
        raise ValueError("scores contain NaN: drop unscored images before computing metrics")


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
    s = np.asarray(scores, dtype=np.float64).ravel()
    a = np.asarray(is_attack, dtype=bool).ravel()
    if len(s) != len(a):
        raise ValueError(f"{len(s)} scores but {len(a)} labels")
    _check_scores(s)
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
    s = np.asarray(scores, dtype=np.float64).ravel()
    a = np.asarray(is_attack, dtype=bool).ravel()
    n = len(s)
    if len(a) != n:
        raise ValueError(f"{n} scores but {len(a)} labels")
    _check_scores(s)
    size = face_size_of(_optional(face_w, n, "face_w"), _optional(face_h, n, "face_h"))
    qual = quality_mask(_optional(yaw, n, "yaw"), _optional(pitch, n, "pitch"), _optional(blur, n, "blur"), gates)
    fprs = [float(f) for f in target_fprs]

    order = np.argsort(s, kind="stable")
    ss, aa = s[order], a[order]
    size_s, qual_s = size[order], qual[order]
    all_q = bool(qual_s.all())

    points: list[tuple[int | None, bool, list[OperatingPoint]]] = []
    for minface in minfaces:
        if minface is None:
            face_keep = None
        else:
            face_keep = ~(size_s < minface)  # NaN (unknown) passes
        for quality in (False, True):
            keep = face_keep
            if quality and not all_q:
                keep = qual_s if keep is None else keep & qual_s
            if keep is None or keep.all():
                pts = _points_sorted(ss, aa, fprs)
            else:
                pts = _points_sorted(ss[keep], aa[keep], fprs)
            points.append((None if minface is None else int(minface), quality, pts))

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


# --- ISO/IEC 30107-3 ---------------------------------------------------------------------------------

UNKNOWN_TYPE = "unknown"


def _type_name(v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return UNKNOWN_TYPE
    return str(v).strip() or UNKNOWN_TYPE


def _attack_type_codes(attack_types, n: int) -> tuple[list[str], np.ndarray]:
    """Factorise attack types: (sorted names, code per row). None, NaN and "" become "unknown"."""
    if attack_types is None:
        return [UNKNOWN_TYPE], np.zeros(n, dtype=np.intp)
    t = np.asarray(attack_types, dtype=object).ravel()
    if len(t) != n:
        raise ValueError(f"attack_types has {len(t)} values for {n} scores")
    raw: dict = {}
    raw_codes = np.fromiter((raw.setdefault(v, len(raw)) for v in t.tolist()), dtype=np.intp, count=n)
    names = sorted({_type_name(v) for v in raw})
    index = {name: i for i, name in enumerate(names)}
    remap = np.array([index[_type_name(v)] for v in raw], dtype=np.intp)
    return names, remap[raw_codes] if n else raw_codes


def _species(counts: dict[str, int]) -> list[str]:
    """The groups the reported APCER is taken over, by name: the PAI species (typed attacks) present;
    when no attack has a type, the one pooled group UNKNOWN_TYPE. Empty without attacks."""
    typed = [name for name, n in counts.items() if name != UNKNOWN_TYPE and n]
    return typed or [name for name, n in counts.items() if n]


def reported_apcer(per_type: dict[str, Rate]) -> tuple[str, Rate] | None:
    """The reported APCER of ISO/IEC 30107-3: (type, rate) of the worst PAI species (first by name
    on ties). Attacks without a type (UNKNOWN_TYPE) are no species: they never set it and are
    reported apart. When no attack has a type at all, the attacks are one pooled group, reported
    under UNKNOWN_TYPE (a score file without attack types still gets its APCER and BPCER20).
    None without attacks."""
    pool = {name: per_type[name] for name in _species({name: r.n for name, r in per_type.items()})}
    worst = None
    for name in sorted(pool):
        if worst is None or pool[name].value > worst[1].value:
            worst = (name, pool[name])
    return worst


def untyped_apart(per_type: dict[str, Rate], reported: tuple[str, Rate] | None) -> Rate | None:
    """The rate of the untyped attacks when they are reported apart from the species: None when
    there are none, or when they are the pooled group that is itself the reported APCER."""
    if reported is not None and reported[0] == UNKNOWN_TYPE:
        return None
    return per_type.get(UNKNOWN_TYPE)


def _labelled(scores, is_attack):
    s = np.asarray(scores, dtype=np.float64).ravel()
    a = np.asarray(is_attack, dtype=bool).ravel()
    if len(s) != len(a):
        raise ValueError(f"{len(s)} scores but {len(a)} labels")
    _check_scores(s)
    return s, a


def iso_at(scores, is_attack, attack_types, t: float | None) -> dict:
    """ISO/IEC 30107-3 figures at threshold t (live iff s > t; None = nothing flagged).

    Returns a dict:
      "apcer_per_type": {type: Rate}   attacks of that type with s > t, of attacks of that type
                                       (attacks without a type count as "unknown"; only types
                                       present among the attacks appear)
      "apcer":      float | None       the reported APCER (`reported_apcer`): the worst PAI species;
                                       untyped attacks never set it, unless no attack has a type
                                       (then all attacks are one pooled group, "unknown"); None
                                       without attacks
      "apcer_type": str | None         the type that gives it (first by name on ties)
      "apcer_rate": Rate | None        that type's rate, with counts (for intervals and greying)
      "untyped":    Rate | None        the untyped attacks, reported apart; None when there are
                                       none or when they are the pooled group
      "bpcer":      float | None       genuine with s <= t / genuine (= FPR; None without genuine)
      "bpcer_rate": Rate               the same with counts and Wilson interval
      "acer":       float | None       (apcer + bpcer) / 2, None when either is None
    """
    s, a = _labelled(scores, is_attack)
    live = np.ones(len(s), dtype=bool) if t is None else s > t
    names, codes = _attack_type_codes(attack_types, len(s))
    n_type = np.bincount(codes[a], minlength=len(names))
    k_type = np.bincount(codes[a & live], minlength=len(names))
    per_type = {name: wilson(int(k), int(m)) for name, k, m in zip(names, k_type, n_type, strict=True) if m}
    reported = reported_apcer(per_type)
    apcer_type, apcer_rate = reported if reported else (None, None)
    apcer = apcer_rate.value if apcer_rate else None
    genuine = int((~a).sum())
    bpcer_rate = wilson(int((~a & ~live).sum()), genuine)
    bpcer = bpcer_rate.value if genuine else None
    acer = (apcer + bpcer) / 2 if apcer is not None and bpcer is not None else None
    return {
        "apcer_per_type": per_type,
        "apcer": apcer,
        "apcer_type": apcer_type,
        "apcer_rate": apcer_rate,
        "untyped": untyped_apart(per_type, reported),
        "bpcer": bpcer,
        "bpcer_rate": bpcer_rate,
        "acer": acer,
    }


@dataclass(frozen=True)
class ApcerPoint:
    """The operating point of BPCERxx: threshold t, reported APCER there (and its type), BPCER with
    counts, and the untyped attacks there when they are reported apart (see `iso_at`)."""

    threshold: float
    apcer: float
    bpcer: Rate
    apcer_type: str | None = None
    untyped: Rate | None = None


def apcer_point(scores, is_attack, attack_types, max_apcer: float) -> ApcerPoint | None:
    """The smallest observed score t at which the reported APCER (worst PAI species, s > t) <= max_apcer.

    Only the species the reported APCER is taken over count (`_species`: typed attacks; all attacks
    pooled when none has a type): untyped attacks among typed ones put no requirement on t.
    Per species with n attacks, APCER <= b allows m = floor(b * n) (robust: floor(b*n + 1e-9))
    attacks above t, so t must be at least that species' (n - m)-th smallest score; t is the largest
    of these requirements (itself an observed score), or the smallest observed score when no species
    requires anything. None without attacks or without genuine images. O(n log n).
    """
    s, a = _labelled(scores, is_attack)
    if not a.any() or a.all():
        return None
    names, codes = _attack_type_codes(attack_types, len(s))
    sa, ca = s[a], codes[a]
    order = np.lexsort((sa, ca))  # by type, then score
    sa, ca = sa[order], ca[order]
    n_type = np.bincount(ca, minlength=len(names))
    start = np.concatenate(([0], np.cumsum(n_type)[:-1]))
    allowed = np.floor(max_apcer * n_type + 1e-9).astype(np.int64)
    need = n_type - allowed  # this many of the species' attacks must be at or below t
    counted = _species({name: int(m) for name, m in zip(names, n_type, strict=True)})
    req = [sa[start[i] + need[i] - 1] for i, name in enumerate(names) if name in counted and need[i] >= 1]
    t = float(max(req)) if req else float(s.min())
    k_type = np.bincount(ca[sa > t], minlength=len(names))
    per_type = {name: wilson(int(k), int(m)) for name, k, m in zip(names, k_type, n_type, strict=True) if m}
    reported = reported_apcer(per_type)
    genuine = int((~a).sum())
    bpcer = wilson(int((~a & ~(s > t)).sum()), genuine)
    return ApcerPoint(t, reported[1].value, bpcer, reported[0], untyped_apart(per_type, reported))


def bpcer_at_apcer(scores, is_attack, attack_types, max_apcer: float) -> float | None:
    """BPCER at the smallest observed score with reported APCER <= max_apcer (`apcer_point`).

    BPCER20 = bpcer_at_apcer(..., 0.05), BPCER100 = bpcer_at_apcer(..., 0.01). None without attacks
    or without genuine images.
    """
    p = apcer_point(scores, is_attack, attack_types, max_apcer)
    return None if p is None else p.bpcer.value


def bpcer20(scores, is_attack, attack_types=None) -> float | None:
    return bpcer_at_apcer(scores, is_attack, attack_types, 0.05)


def bpcer100(scores, is_attack, attack_types=None) -> float | None:
    return bpcer_at_apcer(scores, is_attack, attack_types, 0.01)


# --- score distribution drift ------------------------------------------------------------------------

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
