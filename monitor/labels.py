"""Labels: the one path every label change takes (review, bulk labelling, CSV import, sidecar),
with its audit trail (LabelEvent) and the recomputation of the figures it changes.

Numbers follow labels: a change schedules `tasks.recompute_day` once per affected day when the
transaction commits, however many images it touched. Bulk changes never go through
`Image.save()` (which would schedule one recomputation per image).

The review queue: flagged images (decision attack) not yet reviewed, newest day first and within
a day highest score first (closest to the threshold, most likely a false positive). A reviewer
holds a short claim on the image shown (KOALA_REVIEW_CLAIM_SECONDS, default 120) so two reviewers
never get the same one; a claim is taken with a conditional UPDATE, so it is atomic on every
database.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from liveness.sidecar import normalise_label

from .models import AttackType, Image, InboxFile, LabelEvent

LABELS = ("genuine", "attack")
SOURCES = tuple(s for s, _ in LabelEvent.SOURCE_CHOICES)
CHUNK = 1000
UNDO_NOTE = "undo"


class LabelError(ValueError):
    """A label change that cannot be made; the message is meant for the user."""


# --- setting labels -----------------------------------------------------------------------------


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


def _schedule_recompute(days: Iterable[dt.date]) -> None:
    from . import tasks  # tasks import the services, which import the models

    for day in sorted(set(days)):
        text = day.isoformat()
        transaction.on_commit(lambda text=text: tasks.recompute_day.delay(text))


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


def _apply(
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
        changed, _, days = _apply(ids, label, attack_type, user=user, source=source, note=(note or "")[:500])
        _schedule_recompute(days)
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


# --- the review queue ------------------------------------------------------------------------------


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
        holder = im["review_claimed_by"]
        if holder is not None and holder != getattr(user, "pk", None) and (im["review_claim_until"] or now) > now:
            raise LabelError("another reviewer is looking at this image; take the next one")
        if im["reviewed_at"] is not None:
            raise LabelError("this image was already reviewed; undo that review first")
        _, events, days = _apply(
            [im["pk"]],
            label,
            attack_type,
            user=user,
            source=LabelEvent.REVIEW,
            note=note,
            always_event=True,
            extra={"reviewed_at": now, "reviewed_by": user, "review_claimed_by": None, "review_claim_until": None},
        )
        _schedule_recompute(days)
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
        _, _, days = _apply(
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
        _schedule_recompute(days)
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


# --- CSV import and export -----------------------------------------------------------------------


class ImportRow(NamedTuple):
    line: int
    image_id: int
    old_label: str
    new_label: str
    attack_type: str


class ImportProblem(NamedTuple):
    line: int
    message: str


@dataclass
class ImportResult:
    rows: list[ImportRow] = field(default_factory=list)
    errors: list[ImportProblem] = field(default_factory=list)
    changed: int = 0  # written, or (dry run) that would be written
    dry_run: bool = True
    written: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def unchanged(self) -> int:
        return len(self.rows) - self.changed


def _clean_path(text: str) -> str:
    path = text.strip().replace("\\", "/")
    inbox = str(settings.INBOX_DIR).replace("\\", "/").rstrip("/") + "/"
    if path.startswith(inbox):
        path = path[len(inbox) :]
    while path.startswith("./"):
        path = path[2:]
    return path.lstrip("/")


def _lookup(keys: set[str], by: str) -> tuple[dict[str, tuple[int, str, str]], set[str]]:
    """(key (sha256 or inbox path) -> (image id, label, attack type), the sha256 keys that match
    unreadable images only)."""
    out: dict[str, tuple[int, str, str]] = {}
    unreadable: set[str] = set()
    keys_list = sorted(keys)
    for start in range(0, len(keys_list), CHUNK):
        chunk = keys_list[start : start + CHUNK]
        if by == "sha256":
            unreadable |= _lookup_sha256(chunk, out)
        else:
            for pk, key, label, atype in Image.objects.filter(path__in=chunk).values_list(
                "pk", "path", "label", "attack_type"
            ):
                out[key] = (pk, label, atype)
            # a duplicate file (same bytes under another name) points at the same image
            rest = [k for k in chunk if k not in out]
            if rest:
                for key, pk, label, atype in InboxFile.objects.filter(path__in=rest, image__isnull=False).values_list(
                    "path", "image_id", "image__label", "image__attack_type"
                ):
                    out[key] = (pk, label, atype)
    return out, unreadable


def _lookup_sha256(chunk: list[str], out: dict[str, tuple[int, str, str]]) -> set[str]:
    """Add the readable image of each sha256 of `chunk` to `out` (at most one: Image's constraints);
    return the ones that match only unreadable images. Those bytes may be stored once per day
    they arrived broken on, and show no picture to label: never one of them picked at random."""
    rows = Image.objects.filter(sha256__in=chunk).values_list("pk", "sha256", "label", "attack_type", "category")
    unreadable = set()
    for pk, key, label, atype, category in rows:
        if category == "unreadable":
            unreadable.add(key)
        else:
            out[key] = (pk, label, atype)
    return unreadable - set(out)


def import_labels(text: str, *, user, dry_run: bool) -> ImportResult:
    """Labels from CSV text: a header with `label` and `sha256` or `path` (relative to the inbox),
    optional `attack_type`. Every bad line is reported with its line number; with any error (or
    a dry run) nothing is written. Otherwise the changes are written (source "import") in one
    transaction."""
    result = ImportResult(dry_run=dry_run)
    text = (text or "").lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader, None)
        while header is not None and not any(c.strip() for c in header):
            header = next(reader, None)
        if header is None:
            result.errors.append(ImportProblem(1, "the file is empty: expected a header with label and sha256 or path"))
            return result
        header_line = reader.line_num
        columns = [c.strip().lower() for c in header]
        key = "sha256" if "sha256" in columns else "path" if "path" in columns else None
        if key is None or "label" not in columns:
            result.errors.append(
                ImportProblem(header_line, "the header needs a label column and a sha256 or path column")
            )
            return result
        i_key, i_label = columns.index(key), columns.index("label")
        i_type = columns.index("attack_type") if "attack_type" in columns else None
        known_types = set(attack_type_names())

        parsed: list[tuple[int, str, str, str]] = []  # line, key, label, attack type
        for row in reader:
            line = reader.line_num
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(columns):
                result.errors.append(ImportProblem(line, f"expected {len(columns)} columns, found {len(row)}"))
                continue
            raw_key = row[i_key].strip()
            ref = raw_key.lower() if key == "sha256" else _clean_path(raw_key)
            if not ref:
                result.errors.append(ImportProblem(line, f"empty {key}"))
                continue
            label = normalise_label(row[i_label])
            if label is None:
                result.errors.append(
                    ImportProblem(
                        line, f"unknown label {row[i_label].strip()!r} (use genuine/live/real/1 or attack/spoof/fake/0)"
                    )
                )
                continue
            atype = row[i_type].strip().lower() if i_type is not None else ""
            if atype and label == "genuine":
                result.errors.append(ImportProblem(line, f"attack type {atype!r} given for a genuine label"))
                continue
            if atype and atype not in known_types:
                result.errors.append(
                    ImportProblem(line, f"unknown attack type {atype!r} (known: {', '.join(sorted(known_types))})")
                )
                continue
            parsed.append((line, ref, label, atype))
    except csv.Error as exc:
        result.errors.append(ImportProblem(reader.line_num, f"not readable as CSV: {exc}"))
        return result

    found, unreadable = _lookup({ref for _, ref, _, _ in parsed}, key)
    first_line: dict[int, int] = {}
    for line, ref, label, atype in parsed:
        if ref in unreadable:
            result.errors.append(
                ImportProblem(line, f"sha256 {ref!r} is of unreadable files only: no picture to label")
            )
            continue
        hit = found.get(ref)
        if hit is None:
            result.errors.append(ImportProblem(line, f"unknown image: no image with {key} {ref!r}"))
            continue
        pk, old_label, old_type = hit
        if pk in first_line:
            result.errors.append(ImportProblem(line, f"the same image as line {first_line[pk]}"))
            continue
        first_line[pk] = line
        result.rows.append(ImportRow(line, pk, old_label, label, atype))
        if (old_label, old_type) != (label, atype):
            result.changed += 1
    result.errors.sort()

    if result.errors or dry_run:
        return result
    groups: dict[tuple[str, str], list[int]] = {}
    for row in result.rows:
        groups.setdefault((row.new_label, row.attack_type), []).append(row.image_id)
    with transaction.atomic():  # one transaction, one recomputation per day for all the groups
        result.changed, days = 0, set()
        for (label, atype), ids in groups.items():
            changed, _, changed_days = _apply(ids, label, atype, user=user, source=LabelEvent.IMPORT, note="")
            result.changed += changed
            days |= changed_days
        _schedule_recompute(days)
    result.written = True
    return result


EXPORT_COLUMNS = [
    "sha256",
    "path",
    "old_label",
    "old_attack_type",
    "new_label",
    "new_attack_type",
    "user",
    "when",
    "source",
    "note",
    "undone",
]


def _cell(value: str) -> str:
    """No formula injection when the file is opened in a spreadsheet."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def labels_csv(queryset=None) -> str:
    """The audit trail as CSV (one line per LabelEvent, oldest first). `queryset`: LabelEvents,
    or Images (their events); default every event."""
    if queryset is None:
        queryset = LabelEvent.objects.all()
    elif queryset.model is Image:
        queryset = LabelEvent.objects.filter(image__in=queryset)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(EXPORT_COLUMNS)
    rows = queryset.order_by("created_at", "id").values_list(
        "image__sha256",
        "image__path",
        "old_label",
        "old_attack_type",
        "new_label",
        "new_attack_type",
        "user__username",
        "created_at",
        "source",
        "note",
        "undone",
    )
    for sha, path, ol, ot, nl, nt, username, when, source, note, undone in rows.iterator(chunk_size=2000):
        w.writerow(
            [
                sha,
                _cell(path),
                ol,
                ot,
                nl,
                nt,
                _cell(username or ""),
                when.isoformat(),
                source,
                _cell(note),
                int(undone),
            ]
        )
    return out.getvalue()
