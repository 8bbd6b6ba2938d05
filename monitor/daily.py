"""Per-day figures (DailyMetric), recomputed from the image rows whenever a day finishes.

A fixed number of grouped queries per day, whatever its size: counts per category and label,
labelled attacks per attack type, and the score histogram (bins computed in SQL by a CASE on the
bin edges of `liveness.drift.score_histogram`, so the stored counts equal numpy's).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from django.db import transaction
from django.db.models import Case, Count, IntegerField, Q, Value, When

from liveness.iso import UNKNOWN_TYPE

from . import attempts
from .counts import DECIDED, HISTOGRAM_BINS, lock_day
from .explain import store_day_slices
from .models import DailyMetric, Image

PASSED = Q(category__in=["live", "attack"])
FLAGGED = Q(category="attack")
DECIDED_ATTACK = DECIDED & Q(decision="attack")
COUNT_FIELDS = ("scored", "flagged", "genuine", "fp", "attacks", "tp")


def score_bin(field: str = "score", bins: int = HISTOGRAM_BINS) -> Case:
    """The bin index of `field` on `bins` equal-width bins over [0, 1], as an SQL expression.

    Same edges (np.linspace) and rules as numpy's histogram: [e_i, e_i+1), the last bin closed;
    scores below 0 or above 1 fall into the end bins (score_histogram clips them).
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    whens = [When(**{f"{field}__lt": float(edge)}, then=Value(i)) for i, edge in enumerate(edges[1:-1])]
    return Case(*whens, default=Value(bins - 1), output_field=IntegerField())


def _counts(passed: Q, flagged: Q) -> dict:
    return {
        "scored": Count("id", filter=passed),
        "flagged": Count("id", filter=flagged),
        "genuine": Count("id", filter=passed & Q(label="genuine")),
        "fp": Count("id", filter=flagged & Q(label="genuine")),
        "attacks": Count("id", filter=passed & Q(label="attack")),
        "tp": Count("id", filter=flagged & Q(label="attack")),
    }


def compute_day(day: dt.date) -> list[DailyMetric]:
    """Replace the day's DailyMetric rows: one per device and one for all devices, each covering
    every production decision of the day whichever ensemble and threshold made it (`decided_by`
    lists them). A fixed number of queries whatever the day's size."""
    users = attempts.group_day(day)  # attempt groups first: the per-user figures and slices read them
    metrics = _Rows(day)
    _add_counts(day, metrics)
    _add_attack_types(day, metrics)
    _add_histograms(day, metrics)
    _set_decided_by(day, metrics)
    attempts.set_user_figures(metrics, users)
    store_day_slices(day)  # the slices of "what changed", after the attempt groups
    with transaction.atomic():
        lock_day(day)  # two computations of one day at once must not both insert
        DailyMetric.objects.filter(day=day).delete()
        return DailyMetric.objects.bulk_create(metrics.values())


class _Rows(dict):
    """device id (None: all devices) -> the day's DailyMetric being filled, made on first use."""

    def __init__(self, day: dt.date):
        super().__init__()
        self.day = day

    def __missing__(self, device_id):
        m = DailyMetric(
            day=self.day, device_id=device_id, counts={}, attack_types={}, all_attack_types={}, decided_by=[]
        )
        m.histogram = [0] * HISTOGRAM_BINS
        self[device_id] = m
        return m

    def both(self, device_id) -> tuple[DailyMetric, DailyMetric]:
        """The device's row and the all-devices row: every count goes to both."""
        return self[device_id], self[None]


def _add_counts(day: dt.date, metrics: _Rows) -> None:
    every = {f"all_{k}": v for k, v in _counts(DECIDED, DECIDED_ATTACK).items()}
    rows = (
        Image.objects.filter(day=day)
        .values("device_id", "category")
        .annotate(n=Count("id"), **_counts(PASSED, FLAGGED), **every)
        .order_by()
    )
    for r in rows:
        for m in metrics.both(r["device_id"]):
            m.images += r["n"]
            m.counts[r["category"]] = m.counts.get(r["category"], 0) + r["n"]
            for field in COUNT_FIELDS:
                setattr(m, field, getattr(m, field) + r[field])
                setattr(m, f"all_{field}", getattr(m, f"all_{field}") + r[f"all_{field}"])


def _add_attack_types(day: dt.date, metrics: _Rows) -> None:
    by_type = (
        Image.objects.filter(DECIDED, day=day, label="attack")
        .values("device_id", "attack_type")
        .annotate(
            n=Count("id", filter=PASSED),
            tp=Count("id", filter=FLAGGED),
            all_n=Count("id"),
            all_tp=Count("id", filter=DECIDED_ATTACK),
        )
        .order_by()
    )
    for r in by_type:
        name = r["attack_type"].strip() or UNKNOWN_TYPE
        for m in metrics.both(r["device_id"]):
            for field, n, tp in (("attack_types", r["n"], r["tp"]), ("all_attack_types", r["all_n"], r["all_tp"])):
                if n:
                    counts = getattr(m, field).setdefault(name, {"attacks": 0, "tp": 0})
                    counts["attacks"] += n
                    counts["tp"] += tp


def _add_histograms(day: dt.date, metrics: _Rows) -> None:
    bins = (
        Image.objects.filter(PASSED, day=day, score__isnull=False)
        .annotate(bin=score_bin())
        .values("device_id", "bin")
        .annotate(n=Count("id"))
        .order_by()
    )
    for r in bins:
        for m in metrics.both(r["device_id"]):
            m.histogram[r["bin"]] += r["n"]


def _set_decided_by(day: dt.date, metrics: dict[int | None, DailyMetric]) -> None:
    """Who decided the day's scored images: per (ensemble, threshold) the images and the model
    versions of its latest image, most images first; the row's `ensemble`, `threshold` and
    `model_versions` are the first of them. Images without a score (unreadable, no face) decided
    nothing and are left out."""
    groups = (
        Image.objects.filter(day=day, score__isnull=False)
        .values("device_id", "ensemble_id", "ensemble__name", "threshold")
        .annotate(n=Count("id"))
        .order_by()
    )
    per_device: dict[int | None, dict[tuple, dict]] = {}
    for g in groups:
        for device_id in (g["device_id"], None):
            key = (g["ensemble_id"], g["threshold"])
            d = per_device.setdefault(device_id, {}).setdefault(
                key,
                {
                    "ensemble": g["ensemble__name"],
                    "ensemble_id": g["ensemble_id"],
                    "threshold": g["threshold"],
                    "images": 0,
                },
            )
            d["images"] += g["n"]
    versions = {}
    for ensemble_id, threshold in per_device.get(None, {}):
        latest = Image.objects.filter(day=day, ensemble_id=ensemble_id, threshold=threshold).order_by("-scored_at")
        versions[(ensemble_id, threshold)] = latest.values_list("model_versions", flat=True).first() or {}
    for device_id, m in metrics.items():
        found = sorted(
            per_device.get(device_id, {}).items(), key=lambda kv: (-kv[1]["images"], -(kv[1]["ensemble_id"] or 0))
        )
        m.decided_by = [d | {"model_versions": versions[key]} for key, d in found]
        if m.decided_by:
            first = m.decided_by[0]
            m.ensemble_id, m.threshold, m.model_versions = (
                first["ensemble_id"],
                first["threshold"],
                first["model_versions"],
            )
