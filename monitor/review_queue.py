"""The review queue (on-call): flagged images (decision attack) not yet reviewed, newest day first
and within a day highest score first (closest to the threshold, most likely a false positive).

A reviewer holds a short claim on the image shown (KOALA_REVIEW_CLAIM_SECONDS, default 120) so two
reviewers never get the same one; a claim is taken with a conditional UPDATE, so it is atomic on
every database. A verdict is a label change (monitor/labels.py) with its own audit event.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from .labels import LABELS, LabelError, apply_labels, schedule_recompute, validate
from .models import Image, LabelEvent

UNDO_NOTE = "undo"


def claim_seconds() -> int:
    return int(getattr(settings, "KOALA_REVIEW_CLAIM_SECONDS", 120))


def _as_day(value) -> dt.date | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise LabelError(f"not a day: {value!r} (expected YYYY-MM-DD)") from None


def _device_filter(device) -> Q:
    if device in (None, ""):
        return Q()
    if hasattr(device, "pk"):
        return Q(device_id=device.pk)
    if isinstance(device, int):
        return Q(device_id=device)
    return Q(device__name=str(device))


def review_queue(user=None, *, day_from=None, day_to=None, device=None) -> QuerySet[Image]:
    """Flagged images (decision attack) not yet reviewed and not purged, newest day first, within a day highest
    score first. `device`: a Device, its id (int) or its name (str). Claims are not filtered here (see
    claim_next); `user` is accepted for symmetry with claim_next and unused."""
    # a purged image (retention, monitor/purge.py) has no picture left to judge
    qs = Image.objects.filter(decision="attack", reviewed_at__isnull=True, purged_at__isnull=True)
    if (d := _as_day(day_from)) is not None:
        qs = qs.filter(day__gte=d)
    if (d := _as_day(day_to)) is not None:
        qs = qs.filter(day__lte=d)
    qs = qs.filter(_device_filter(device))
    return qs.order_by("-day", "-score", "-id")


def _claimable(user, now) -> Q:
    """Not claimed by anyone else: no claim, an expired claim, or the user's own."""
    q = Q(review_claimed_by__isnull=True) | Q(review_claim_until__isnull=True) | Q(review_claim_until__lte=now)
    if user is not None:
        q |= Q(review_claimed_by=user)
    return q


def held_by_other(holder_id: int | None, until: dt.datetime | None, user, now: dt.datetime) -> bool:
    """The claim rule on one image's values: someone else holds it and their claim has not
    expired. `_claimable` is the same rule as a query."""
    return holder_id is not None and holder_id != getattr(user, "pk", None) and until is not None and until > now


def current_image(user, skip: list[int], **filters) -> Image | None:
    """The image the reviewer works on: the one they already hold (a reload keeps it, even when an
    image ahead of it in the queue became free meanwhile; its claim is renewed), else the next one
    claimed. `claim_next` alone would move a reviewer on to any free image ahead of theirs."""
    held = review_queue(user, **filters).filter(review_claimed_by=user).exclude(pk__in=skip).first()
    if held is not None:
        until = timezone.now() + dt.timedelta(seconds=claim_seconds())
        # conditional: only while it is still this reviewer's (nobody took over an expired claim)
        if Image.objects.filter(pk=held.pk, review_claimed_by=user, reviewed_at__isnull=True).update(
            review_claim_until=until
        ):
            release_claims(user, keep=held.pk)
            return Image.objects.select_related("device", "ensemble").get(pk=held.pk)
    im = claim_next(user, skip=skip, **filters)
    if im is not None:
        im = Image.objects.select_related("device", "ensemble").get(pk=im.pk)
    return im


def claim_next(user, *, day_from=None, day_to=None, device=None, skip=()) -> Image | None:
    """The first image of the queue that nobody else holds and is not in `skip`, claimed for the
    user for KOALA_REVIEW_CLAIM_SECONDS; None when the queue is empty. A reviewer holds one claim:
    their claims on other images are released (a skipped image goes back to the others). The
    user's own unexpired claim counts as free, so a reload shows the same image again."""
    skip = {int(s) for s in skip or ()}
    queue = review_queue(user, day_from=day_from, day_to=day_to, device=device)
    for _ in range(20):  # lost races: someone claimed the candidate between our read and UPDATE
        now = timezone.now()
        candidate = queue.filter(_claimable(user, now)).exclude(pk__in=skip).values_list("pk", flat=True).first()
        if candidate is None:
            release_claims(user)
            return None
        taken = Image.objects.filter(
            _claimable(user, now), pk=candidate, decision="attack", reviewed_at__isnull=True
        ).update(review_claimed_by=user, review_claim_until=now + dt.timedelta(seconds=claim_seconds()))
        if taken:
            release_claims(user, keep=candidate)
            return Image.objects.select_related("device").get(pk=candidate)
    return None


def release_claims(user, keep: int | None = None) -> int:
    """Release the user's review claims (but `keep`'s). Returns how many were released."""
    if user is None:
        return 0
    qs = Image.objects.filter(review_claimed_by=user)
    if keep is not None:
        qs = qs.exclude(pk=keep)
    return qs.update(review_claimed_by=None, review_claim_until=None)


def review(image_id: int, verdict: str, *, user, attack_type: str = "", note: str = "") -> LabelEvent:
    """The on-call verdict on a flagged image: "genuine" (a false positive: a real user was
    rejected) or "attack" (correct, optionally with its type). Labels the image (source
    "review"; an event is written even when the label does not change), marks it reviewed and
    releases the claim. LabelError if someone else holds it or it is already reviewed."""
    verdict = (verdict or "").strip().lower()
    if verdict not in LABELS:
        raise LabelError(f"unknown verdict {verdict!r}: use genuine (a false positive) or attack")
    label, attack_type = validate(verdict, attack_type)
    note = (note or "").strip()[:500]
    if note == UNDO_NOTE:  # reserved for undo events
        note = "(undo)"
    with transaction.atomic():
        im = (
            Image.objects.select_for_update()
            .filter(pk=image_id)
            .values("pk", "reviewed_at", "review_claimed_by", "review_claim_until")
            .first()
        )
        if im is None:
            raise LabelError("this image no longer exists")
        now = timezone.now()
        if held_by_other(im["review_claimed_by"], im["review_claim_until"], user, now):
            raise LabelError("another reviewer is looking at this image; take the next one")
        if im["reviewed_at"] is not None:
            raise LabelError("this image was already reviewed; undo that review first")
        _, events, days = apply_labels(
            [im["pk"]],
            label,
            attack_type,
            user=user,
            source=LabelEvent.REVIEW,
            note=note,
            always_event=True,
            extra={"reviewed_at": now, "reviewed_by": user, "review_claimed_by": None, "review_claim_until": None},
        )
        schedule_recompute(days)
    return LabelEvent.objects.get(pk=events[0].pk) if events[0].pk else _latest_review(user, im["pk"])


def _latest_review(user, image_id: int) -> LabelEvent:
    return LabelEvent.objects.filter(user=user, image_id=image_id, source=LabelEvent.REVIEW).latest("created_at", "id")


def undo_last_review(user) -> Image | None:
    """Revert the user's most recent review that is not undone yet: the old label and type come
    back (a new "review" event with note "undo"), the event is marked undone, the image is
    unreviewed again and claimed for the user so it comes straight back to them. None when
    there is nothing to undo; LabelError when the label was changed since by another change."""
    with transaction.atomic():
        event = (
            LabelEvent.objects.select_for_update()
            .filter(user=user, source=LabelEvent.REVIEW, undone=False)
            .exclude(note=UNDO_NOTE)
            .order_by("-created_at", "-id")
            .first()
        )
        if event is None:
            return None
        im = Image.objects.select_for_update().filter(pk=event.image_id).values("label", "attack_type").first()
        if im is None:
            return None
        if (im["label"], im["attack_type"]) != (event.new_label, event.new_attack_type):
            raise LabelError("the label was changed since this review; it cannot be undone here")
        now = timezone.now()
        _, _, days = apply_labels(
            [event.image_id],
            event.old_label,
            event.old_attack_type,
            user=user,
            source=LabelEvent.REVIEW,
            note=UNDO_NOTE,
            always_event=True,
            extra={
                "reviewed_at": None,
                "reviewed_by": None,
                "review_claimed_by": user,
                "review_claim_until": now + dt.timedelta(seconds=claim_seconds()),
            },
        )
        LabelEvent.objects.filter(pk=event.pk).update(undone=True)
        schedule_recompute(days)
        release_claims(user, keep=event.image_id)
    return Image.objects.select_related("device").get(pk=event.image_id)


def review_progress(user=None, day=None, *, day_from=None, day_to=None, device=None) -> dict:
    """{"done_today", "left", "total"} for "37 of 120 today": images reviewed on `day` (a
    calendar day in TIME_ZONE, default today) by anyone, images left in the queue (with the
    same filters as the queue), total = done + left."""
    day = _as_day(day) or timezone.localdate()
    tz = timezone.get_current_timezone()
    start = dt.datetime.combine(day, dt.time.min, tzinfo=tz)
    end = start + dt.timedelta(days=1)
    done = Image.objects.filter(reviewed_at__gte=start, reviewed_at__lt=end).count()
    left = review_queue(user, day_from=day_from, day_to=day_to, device=device).count()
    return {"done_today": done, "left": left, "total": done + left}
