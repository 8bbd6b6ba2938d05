"""Labels: the one path every label change takes (review, bulk labelling, CSV import, sidecar),
with its audit trail (LabelEvent) and the recomputation of the figures it changes.

Numbers follow labels: a change schedules the `recompute_day` task once per affected day when the
transaction commits, however many images it touched (`schedule_recompute`, the one place that
schedules it). The review queue is monitor/review_queue.py, the CSV import and export
monitor/label_csv.py; both change labels through `apply_labels` here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from .celery import app as celery_app
from .models import AttackType, Image, LabelEvent

LABELS = ("genuine", "attack")
SOURCES = tuple(s for s, _ in LabelEvent.SOURCE_CHOICES)
CHUNK = 1000
RECOMPUTE_TASK = "monitor.tasks.recompute_day"


class LabelError(ValueError):
    """A label change that cannot be made; the message is meant for the user."""


def attack_type_names() -> list[str]:
    """The attack types an image may be labelled with, in menu order (keys 1-9 of the review page)."""
    return list(AttackType.objects.order_by("position", "name").values_list("name", flat=True))


def validate(label: str, attack_type: str = "") -> tuple[str, str]:
    """(label, attack_type) cleaned, or LabelError. A genuine image has no attack type."""
    label = (label or "").strip().lower()
    attack_type = (attack_type or "").strip().lower()
    if label not in LABELS:
        raise LabelError(f"unknown label {label!r}: use genuine or attack")
    if label == "genuine":
        return label, ""
    if attack_type and not AttackType.objects.filter(name=attack_type).exists():
        known = ", ".join(attack_type_names()) or "none"
        raise LabelError(f"unknown attack type {attack_type!r} (known: {known})")
    return label, attack_type


def schedule_recompute(days: Iterable[dt.date]) -> None:
    """Recompute each day's figures and alerts once the transaction commits. The task is looked up
    by name in the Celery app: the tasks module imports the runs, which import this one."""
    task = celery_app.tasks[RECOMPUTE_TASK]
    for day in sorted(set(days)):
        text = day.isoformat()
        transaction.on_commit(lambda text=text: task.delay(text))


def _ids(image_ids) -> list[int]:
    if isinstance(image_ids, QuerySet) and image_ids.model is Image:
        image_ids = image_ids.values_list("pk", flat=True)
    out, seen = [], set()
    for i in image_ids:
        i = int(i)
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def apply_labels(
    ids: list[int],
    label: str,
    attack_type: str,
    *,
    user,
    source: str,
    note: str,
    always_event: bool = False,
    extra: dict | None = None,
) -> tuple[int, list[LabelEvent], set[dt.date]]:
    """Label the images (already validated); inside the caller's transaction, which schedules the
    recomputation of the days returned. Returns (changed, events written, days changed).
    `always_event`: write an event even when nothing changes (a review verdict); `extra`: more
    fields to update on every image of `ids`."""
    now = timezone.now()
    changed_days: set[dt.date] = set()
    events: list[LabelEvent] = []
    changed = 0
    missing = 0
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        rows = list(
            Image.objects.select_for_update()
            .filter(pk__in=chunk)
            .order_by("pk")
            .values_list("pk", "label", "attack_type", "day")
        )
        missing += len(chunk) - len(rows)
        to_change = []
        for pk, old_label, old_type, day in rows:
            differs = (old_label, old_type) != (label, attack_type)
            if differs:
                to_change.append(pk)
                changed_days.add(day)
            if differs or always_event:
                events.append(
                    LabelEvent(
                        image_id=pk,
                        old_label=old_label,
                        old_attack_type=old_type,
                        new_label=label,
                        new_attack_type=attack_type,
                        user=user,
                        source=source,
                        note=note,
                        created_at=now,
                    )
                )
        if to_change:
            Image.objects.filter(pk__in=to_change).update(label=label, attack_type=attack_type)
            changed += len(to_change)
        if extra:
            Image.objects.filter(pk__in=chunk).update(**extra)
    if missing:
        raise LabelError(f"{missing} of the selected images no longer exist; reload the page")
    LabelEvent.objects.bulk_create(events, batch_size=CHUNK)
    return changed, events, changed_days


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise LabelError(f"unknown label source {source!r}")


def set_labels(
    image_ids: Iterable[int], label: str, attack_type: str = "", *, user, source: str, note: str = ""
) -> int:
    """Label the images (ids, or a queryset of images) `label` / `attack_type`: one LabelEvent per
    image whose label or type changes, bulk updates, one recomputation per affected day on
    commit. Returns the number of images changed. All or nothing (LabelError)."""
    _check_source(source)
    label, attack_type = validate(label, attack_type)
    ids = _ids(image_ids)
    if not ids:
        return 0
    with transaction.atomic():
        changed, _, days = apply_labels(ids, label, attack_type, user=user, source=source, note=(note or "")[:500])
        schedule_recompute(days)
    return changed


def record_sidecar_labels(images) -> int:
    """Audit rows (source "sidecar") for the labels images got from their sidecar at scoring time.
    Call it after the images are stored; images without a label, or with a label history
    already, are skipped (a re-scored image keeps its labels). No recomputation: the run's
    finish computes the day. Returns the events written."""
    ids = _ids(im.pk if isinstance(im, Image) else im for im in images)
    written = 0
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        with transaction.atomic():
            has_history = set(
                LabelEvent.objects.filter(image_id__in=chunk).values_list("image_id", flat=True).distinct()
            )
            events = [
                LabelEvent(image_id=pk, new_label=label, new_attack_type=attack_type, source=LabelEvent.SIDECAR)
                for pk, label, attack_type in Image.objects.filter(pk__in=chunk)
                .exclude(label="")
                .values_list("pk", "label", "attack_type")
                if pk not in has_history
            ]
            LabelEvent.objects.bulk_create(events, batch_size=CHUNK)
        written += len(events)
    return written
