"""Per-day figures (DailyMetric), recomputed from the image rows whenever a day finishes.

A fixed number of grouped queries per day, whatever its size: counts per category and label,
labelled attacks per attack type, and the score histogram (bins computed in SQL by a CASE on the
bin edges of `liveness.metrics.score_histogram`, so the stored counts equal numpy's).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from django.db import connection, transaction
from django.db.models import Case, Count, IntegerField, Q, Value, When

from liveness.metrics import UNKNOWN_TYPE

from .models import DailyMetric, Image, Run

PASSED = Q(category__in=["live", "attack"])
FLAGGED = Q(category="attack")
HISTOGRAM_BINS = 10  # liveness.metrics.psi's default


def score_bin(field: str = "score", bins: int = HISTOGRAM_BINS) -> Case:
    """The bin index of `field` on `bins` equal-width bins over [0, 1], as an SQL expression.

    Same edges (np.linspace) and rules as numpy's histogram: [e_i, e_i+1), the last bin closed;
    scores below 0 or above 1 fall into the end bins (score_histogram clips them).
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    whens = [When(**{f"{field}__lt": float(edge)}, then=Value(i)) for i, edge in enumerate(edges[1:-1])]
    return Case(*whens, default=Value(bins - 1), output_field=IntegerField())


def compute_day(day: dt.date) -> list[DailyMetric]:
    """Replace the day's DailyMetric rows: one per (ensemble, device) and one per ensemble for
    all devices. Images without an ensemble (unreadable, no face) count under the run's.

    Keeps its signature: the end of a run (services.finish_run) and tasks.recompute_day call it;
    alert rules are evaluated separately (monitor.alerts.evaluate_day)."""
    rows = (
        Image.objects.filter(day=day)
        .values("ensemble_id", "device_id", "category")
        .annotate(
            n=Count("id"),
            genuine=Count("id", filter=PASSED & Q(label="genuine")),
            fp=Count("id", filter=FLAGGED & Q(label="genuine")),
            attacks=Count("id", filter=PASSED & Q(label="attack")),
            tp=Count("id", filter=FLAGGED & Q(label="attack")),
        )
        .order_by()
    )
    runs = Run.objects.filter(day=day, status=Run.DONE, shadow=False).exclude(ensemble=None).order_by("-finished_at")
    last = runs.first()
    default_ensemble = last.ensemble_id if last else None
    metrics: dict[tuple, DailyMetric] = {}
    for r in rows:
        ensemble_id = r["ensemble_id"] or default_ensemble
        for device_id in (r["device_id"], None):
            m = metrics.get((ensemble_id, device_id))
            if m is None:
                m = metrics[(ensemble_id, device_id)] = DailyMetric(
                    day=day, device_id=device_id, ensemble_id=ensemble_id, counts={}, attack_types={}
                )
            m.images += r["n"]
            m.counts[r["category"]] = m.counts.get(r["category"], 0) + r["n"]
            if r["category"] in ("live", "attack"):
                m.scored += r["n"]
            if r["category"] == "attack":
                m.flagged += r["n"]
            m.genuine += r["genuine"]
            m.fp += r["fp"]
            m.attacks += r["attacks"]
            m.tp += r["tp"]
    for m in metrics.values():
        m.histogram = [0] * HISTOGRAM_BINS
    by_type = (
        Image.objects.filter(PASSED, day=day, label="attack")
        .values("ensemble_id", "device_id", "attack_type")
        .annotate(n=Count("id"), tp=Count("id", filter=FLAGGED))
        .order_by()
    )
    for r in by_type:
        name = r["attack_type"].strip() or UNKNOWN_TYPE
        for device_id in (r["device_id"], None):
            counts = metrics[(r["ensemble_id"] or default_ensemble, device_id)].attack_types.setdefault(
                name, {"attacks": 0, "tp": 0}
            )
            counts["attacks"] += r["n"]
            counts["tp"] += r["tp"]
    bins = (
        Image.objects.filter(PASSED, day=day, score__isnull=False)
        .annotate(bin=score_bin())
        .values("ensemble_id", "device_id", "bin")
        .annotate(n=Count("id"))
        .order_by()
    )
    for r in bins:
        for device_id in (r["device_id"], None):
            metrics[(r["ensemble_id"] or default_ensemble, device_id)].histogram[r["bin"]] += r["n"]
    used = {}  # ensemble -> (threshold, model versions) of its latest scored image that day
    for ensemble_id in {e for e, _ in metrics}:
        latest = Image.objects.filter(day=day, ensemble_id=ensemble_id).exclude(score=None).order_by("-scored_at")
        used[ensemble_id] = latest.values_list("threshold", "model_versions").first() or (None, {})
    for (ensemble_id, _), m in metrics.items():
        m.threshold, m.model_versions = used[ensemble_id]
    with transaction.atomic():
        lock_day(day)  # two computations of one day at once must not both insert
        DailyMetric.objects.filter(day=day).delete()
        return DailyMetric.objects.bulk_create(metrics.values())


def lock_day(day: dt.date) -> None:
    """A transaction lock per day on PostgreSQL; SQLite's IMMEDIATE transactions already serialise."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [0x4B0A1A, day.toordinal()])
