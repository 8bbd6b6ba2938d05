"""Metrics with the sign conventions of SPEC section 2 (positive = attack; live if s > t)."""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def threshold_at_fpr(scores, is_attack, target_fpr: float) -> OperatingPoint:
    """SPEC section 2: the largest observed score t with #(genuine s <= t) <= ceil(f * G).

    O(n log n): sort all scores once; walk the distinct values in increasing order, counting
    genuine scores at or below each; the last value within the budget is t.
    """
    s = np.asarray(scores, dtype=np.float64)
    a = np.asarray(is_attack, dtype=bool)
    attacks, genuine = int(a.sum()), int((~a).sum())
    if len(s) == 0:
        return OperatingPoint(None, 0, 0, attacks, genuine)
    k = fp_budget(target_fpr, genuine)
    order = np.argsort(s, kind="mergesort")
    ss, aa = s[order], a[order]
    values, first = np.unique(ss, return_index=True)
    # genuine count at or below each distinct value = genuine before the next value starts
    genuine_cum = np.cumsum(~aa)
    last = np.append(first[1:], len(ss)) - 1
    g_le = genuine_cum[last]
    ok = np.nonzero(g_le <= k)[0]
    if len(ok) == 0:
        return OperatingPoint(None, 0, 0, attacks, genuine)
    i = ok[-1]
    tp = int(np.cumsum(aa)[last[i]])
    return OperatingPoint(float(values[i]), tp, int(g_le[i]), attacks, genuine)
