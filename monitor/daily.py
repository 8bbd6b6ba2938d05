"""Per-day figures (DailyMetric), recomputed from the image rows whenever a day finishes."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import Count, Q

from .models import DailyMetric, Image, Run

PASSED = Q(category__in=["live", "attack"])
FLAGGED = Q(category="attack")


def compute_day(day: dt.date) -> list[DailyMetric]:
    """Replace the day's DailyMetric rows: one per (ensemble, device) and one per ensemble for
    all devices. Images without an ensemble (unreadable, no face) count under the run's."""
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
    runs = Run.objects.filter(day=day, status=Run.DONE).exclude(ensemble=None).order_by("-finished_at")
    last = runs.first()
    default_ensemble = last.ensemble_id if last else None
    metrics: dict[tuple, DailyMetric] = {}
    for r in rows:
        ensemble_id = r["ensemble_id"] or default_ensemble
        for device_id in (r["device_id"], None):
            m = metrics.get((ensemble_id, device_id))
            if m is None:
                m = metrics[(ensemble_id, device_id)] = DailyMetric(
                    day=day, device_id=device_id, ensemble_id=ensemble_id, counts={}
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
    used = {}  # ensemble -> (threshold, model versions) of its latest scored image that day
    for ensemble_id in {e for e, _ in metrics}:
        latest = Image.objects.filter(day=day, ensemble_id=ensemble_id).exclude(score=None).order_by("-scored_at")
        used[ensemble_id] = latest.values_list("threshold", "model_versions").first() or (None, {})
    for (ensemble_id, _), m in metrics.items():
        m.threshold, m.model_versions = used[ensemble_id]
    with transaction.atomic():
        DailyMetric.objects.filter(day=day).delete()
        return DailyMetric.objects.bulk_create(metrics.values())
