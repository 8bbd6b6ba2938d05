"""Attempts: a rejected user tries again, seconds later, on the same device, with nearly the same
picture. A day's images are grouped into attempt groups (one user's consecutive tries), so the
pages can show per-user figures beside per-image ones: how many users were rejected at least
once, and how many on every try.

Grouping (`group_day`), per device in capture order (then path): an image joins the group of the
image before it when it was captured at most KOALA_ATTEMPT_GAP_SECONDS later and shows the same
person: the same sidecar subject, or, where either has no subject, a face hash
(liveness/pipeline.py `face_hash`) at most KOALA_ATTEMPT_HASH_DISTANCE bits away. Two different
subjects are two people whatever their hashes. An image without a capture time is a group of its
own. Groups never span days or devices.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, F, Max, Q, QuerySet

from liveness.ensemble import ATTACK, LIVE
from liveness.metrics import wilson

from . import browse, db
from .models import DailyMetric, Image, InboxFile
from .slices import FIRST_ATTEMPTS  # the images a stacked gallery shows

DECISIONS = (LIVE, ATTACK)
USER_FIELDS = (
    "users",
    "users_rejected",
    "users_always_rejected",
    "genuine_users",
    "genuine_users_rejected",
    "genuine_users_always_rejected",
)
UPDATE_CHUNK = 500  # ids per UPDATE of the images that are a group of their own (SQLite's 999 parameters)
STACKED_COUNTS_SECONDS = 600  # a safety net only: the key of the cached counts follows the data


@dataclass(slots=True)
class Shot:
    """One image as the grouping reads it."""

    id: int
    device_id: int
    captured_at: dt.datetime | None
    subject: str
    face_hash: str
    decision: str
    label: str
    stored: tuple  # (attempt_group, attempt_index, attempt_size) as stored


COLUMNS = ("id", "device_id", "captured_at", "subject", "face_hash", "decision", "label")
STORED = ("attempt_group", "attempt_index", "attempt_size")


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hex hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def same_user(prev: Shot, cur: Shot, gap: float, distance: int) -> bool:
    """Whether `cur` (captured after `prev` on the same device) is another try of prev's user."""
    if prev.captured_at is None or cur.captured_at is None:
        return False
    if (cur.captured_at - prev.captured_at).total_seconds() > gap:
        return False
    if prev.subject and cur.subject:
        return prev.subject == cur.subject
    return bool(prev.face_hash and cur.face_hash) and hamming(prev.face_hash, cur.face_hash) <= distance


def groups_of(shots: list[Shot], gap: float, distance: int) -> list[list[Shot]]:
    """Consecutive shots of one device (in capture order) cut into attempt groups."""
    groups: list[list[Shot]] = []
    for shot in shots:
        if groups and groups[-1][-1].device_id == shot.device_id and same_user(groups[-1][-1], shot, gap, distance):
            groups[-1].append(shot)
        else:
            groups.append([shot])
    return groups


def _day_shots(day: dt.date) -> list[Shot]:
    rows = (
        Image.objects.filter(day=day)
        .order_by("device_id", F("captured_at").asc(nulls_last=True), "path", "id")
        .values_list(*COLUMNS, *STORED)
    )
    return [Shot(*r[: len(COLUMNS)], stored=tuple(r[len(COLUMNS) :])) for r in rows]


def group_day(day: dt.date) -> dict[int | None, dict[str, int]]:
    """Write the day's attempt groups on its images (attempt_group = the id of the group's first
    image, attempt_index from 1, attempt_size) and return the per-user figures per device id and
    for all devices (None), as `user_counts` counts them. Rewrites only the rows that changed, so
    a second run of an unchanged day writes nothing."""
    gap, distance = settings.KOALA_ATTEMPT_GAP_SECONDS, settings.KOALA_ATTEMPT_HASH_DISTANCE
    groups = groups_of(_day_shots(day), gap, distance)
    alone, changed = [], []  # most images are a group of their own: those in a few plain UPDATEs
    for group in groups:
        for i, shot in enumerate(group, 1):
            wanted = (group[0].id, i, len(group))
            if shot.stored == wanted:
                continue
            if len(group) == 1:
                alone.append(shot.id)
            else:
                changed.append((*wanted, shot.id))
    if alone or changed:
        with transaction.atomic():
            for start in range(0, len(alone), UPDATE_CHUNK):
                ids = alone[start : start + UPDATE_CHUNK]
                Image.objects.filter(pk__in=ids).update(attempt_group=F("id"), attempt_index=1, attempt_size=1)
            db.update_rows(
                Image,
                [Image(pk=pk, attempt_group=g, attempt_index=i, attempt_size=n) for g, i, n, pk in changed],
                list(STORED),
            )
    return user_counts(groups)


def user_counts(groups: list[list[Shot]]) -> dict[int | None, dict[str, int]]:
    """Per device id and for all devices (None): users = groups with a decision (live or attack,
    low quality included); rejected = with at least one attack decision; always rejected = every
    decided image attack; the genuine_ ones over the groups whose decided images are all labelled
    genuine."""
    sums: dict[int | None, list[int]] = {}
    for group in groups:
        decided = attacks = 0
        genuine = True
        for shot in group:
            if shot.decision in DECISIONS:
                decided += 1
                attacks += shot.decision == ATTACK
                genuine = genuine and shot.label == "genuine"
        if not decided:
            continue
        user = (1, int(attacks > 0), int(attacks == decided))
        flags = user + (user if genuine else (0, 0, 0))  # in the order of USER_FIELDS
        for device_id in (group[0].device_id, None):
            acc = sums.setdefault(device_id, [0] * len(USER_FIELDS))
            for i, v in enumerate(flags):
                acc[i] += v
    return {device_id: dict(zip(USER_FIELDS, acc, strict=True)) for device_id, acc in sums.items()}


def set_user_figures(metrics: dict[int | None, DailyMetric], counts: dict[int | None, dict[str, int]]) -> None:
    """Put the per-user counts of `group_day` on the day's DailyMetric rows (keyed by device id)."""
    for device_id, m in metrics.items():
        for k, v in counts.get(device_id, {}).items():
            setattr(m, k, v)


# --- reading them ---------------------------------------------------------------------------------


def per_user(m: DailyMetric) -> dict:
    """A day's per-user figures as the pages and the API show them: the users, the rates (Wilson
    intervals, too few under 30 users) and attempts per user = decided images / users."""
    return {
        "users": m.users,
        "genuine_users": m.genuine_users,
        "decided_images": m.all_scored,
        "attempts_per_user": m.all_scored / m.users if m.users else None,
        "rejected": wilson(m.users_rejected, m.users),
        "always_rejected": wilson(m.users_always_rejected, m.users),
        "genuine_rejected": wilson(m.genuine_users_rejected, m.genuine_users),
        "genuine_always_rejected": wilson(m.genuine_users_always_rejected, m.genuine_users),
    }


def group_images(im: Image) -> list[dict]:
    """The images of `im`'s attempt group in order (empty when it is alone or not grouped)."""
    if not im.attempt_group or (im.attempt_size or 0) < 2:
        return []
    fields = ("id", "attempt_index", "captured_at", "score", "decision", "category", "has_thumbnail", "path")
    return list(
        Image.objects.filter(day=im.day, attempt_group=im.attempt_group).order_by("attempt_index", "id").values(*fields)
    )


def stacked_counts(day: dt.date, data: dict, plain: dict[str, int]) -> dict[str, int]:
    """browse.category_counts of a stacked gallery: attempt groups, by their first image. Unlike
    the plain counts no index covers them (a scan of the day's rows), so they are cached under the
    plain counts of the same filter (`plain`: new images, rescored categories, changed labels
    change them) and the day's DailyMetric rows (re-created by compute_day whenever it regroups)."""
    rows = DailyMetric.objects.filter(day=day).aggregate(n=Count("id"), last=Max("id"), at=Max("computed_at"))
    scope = sorted((k, v) for k, v in data.items() if k not in ("after", "sort", "category", "stack"))
    fingerprint = repr((day, scope, sorted(plain.items()), sorted(rows.items())))
    key = "stacked-counts:" + hashlib.sha256(fingerprint.encode()).hexdigest()
    found = cache.get(key)
    if found is None:
        found = browse.category_counts(day, data, where=FIRST_ATTEMPTS)
        cache.set(key, found, STACKED_COUNTS_SECONDS)
    return found


def worst_decisions(day: dt.date, group_ids: list[int]) -> dict[int, str]:
    """{attempt group: "attack" if any of its images was decided attack, else "live"} for the
    groups with a decision, in one query on the (day, attempt_group) index."""
    rows = (
        Image.objects.filter(day=day, attempt_group__in=group_ids, decision__in=DECISIONS)
        .values("attempt_group")
        .annotate(attacks=Count("id", filter=Q(decision="attack")))
        .order_by()
    )
    return {r["attempt_group"]: "attack" if r["attacks"] else "live" for r in rows}


def earlier_copies(day: dt.date) -> QuerySet:
    """The day's inbox files that were exact copies (same bytes) of an earlier day's image: each
    InboxFile with its `image` (and `image.day`), by path."""
    return (
        InboxFile.objects.filter(day=day, status=InboxFile.DUPLICATE, image__day__lt=day)
        .select_related("image")
        .order_by("path")
    )
