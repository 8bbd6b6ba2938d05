"""Discovery: the new files of a day in the inbox, INBOX/<day>/<device>/ (SPEC section 3).

`discover(run)` records a day's new files as pending InboxFiles; `has_work` and `inbox_days` tell
the schedule which days have files waiting."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

from .claims import mark_started, unclaimed
from .errors import JobError
from .models import Device, InboxFile, Run

log = logging.getLogger(__name__)


IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png"}


DEVICE_NAME_MAX = Device._meta.get_field("name").max_length


def parse_day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except (TypeError, ValueError):
        raise JobError(f"not a day: {text!r} (expected YYYY-MM-DD)") from None


def _day_files(day: dt.date) -> Iterator[tuple[str, Path, str | None]]:
    """(device, path, skip reason) for every candidate file in INBOX/<day>/<device>/.

    Files modified less than KOALA_SETTLE_SECONDS ago are left for the next run: a device may
    still be writing them."""
    inbox = settings.INBOX_DIR.resolve()
    day_dir = inbox / day.isoformat()
    if not day_dir.is_dir():
        return
    settled_before = time.time() - settings.KOALA_SETTLE_SECONDS
    for device_dir in sorted(day_dir.iterdir()):
        if not device_dir.is_dir():
            log.info("skipped %s: not a device folder", device_dir)
            continue
        if len(device_dir.name) > DEVICE_NAME_MAX:
            log.warning("skipped %s: device folder name longer than %d characters", device_dir, DEVICE_NAME_MAX)
            continue
        for path in sorted(device_dir.iterdir()):
            suffix = path.suffix.lower()
            if suffix == ".json":
                if not any(path.with_suffix(ext).exists() for ext in (*IMAGE_EXTENSIONS, ".JPG", ".JPEG", ".PNG")):
                    log.info("skipped %s: sidecar without an image", path)
                continue
            if suffix not in IMAGE_EXTENSIONS:
                log.info("skipped %s: not an image file name (.jpg, .jpeg, .png)", path)
                continue
            reason = None
            if not path.resolve().is_relative_to(inbox):
                reason = "the file (or a folder above it) is a link pointing outside the inbox"
            elif not path.is_file():
                reason = "not a regular file"
            elif path.stat().st_mtime > settled_before:
                log.info("left %s for the next run: modified in the last %s s", path, settings.KOALA_SETTLE_SECONDS)
                continue
            yield device_dir.name, path, reason


def discover(run: Run) -> list[int]:
    """Record new files of the run's day as pending InboxFiles; return the ids to process:
    new files, files left pending by an earlier crash (once their claim expired), and on
    --rescore every scored or failed file of the day."""
    t0 = time.monotonic()
    inbox = settings.INBOX_DIR.resolve()
    known = set(InboxFile.objects.filter(day=run.day).values_list("path", flat=True))
    devices: dict[str, Device] = {}
    new = []
    for device_name, path, skip in _day_files(run.day):
        rel = path.relative_to(inbox).as_posix()  # `_day_files` lists below the inbox only
        if rel in known:
            continue
        if device_name not in devices:
            devices[device_name], _ = Device.objects.get_or_create(name=device_name)
        status, reason = (InboxFile.FAILED, skip) if skip else (InboxFile.PENDING, "")
        new.append(InboxFile(path=rel, day=run.day, device=devices[device_name], status=status, reason=reason, run=run))
    InboxFile.objects.bulk_create(new, ignore_conflicts=True, batch_size=1000)
    if run.rescore:
        InboxFile.objects.filter(day=run.day, status__in=[InboxFile.DONE, InboxFile.FAILED]).update(
            status=InboxFile.PENDING, claimed_until=None
        )
    todo = unclaimed(InboxFile.objects.filter(day=run.day, status=InboxFile.PENDING))
    ids = list(todo.order_by("id").values_list("id", flat=True))
    InboxFile.objects.filter(id__in=ids).update(run=run)
    return mark_started(run, ids, t0)


def has_work(day: dt.date) -> bool:
    """True if the day has files not yet recorded, or pending files nobody is working on."""
    inbox = settings.INBOX_DIR.resolve()
    if unclaimed(InboxFile.objects.filter(day=day, status=InboxFile.PENDING)).exists():
        return True
    known = set(InboxFile.objects.filter(day=day).values_list("path", flat=True))
    return any(path.relative_to(inbox).as_posix() not in known for _, path, _ in _day_files(day))


def inbox_days() -> list[dt.date]:
    """Every folder of the inbox named like a day."""
    if not settings.INBOX_DIR.is_dir():
        return []
    days = []
    for p in settings.INBOX_DIR.iterdir():
        try:
            days.append(dt.date.fromisoformat(p.name))
        except ValueError:
            log.info("skipped %s: not a day folder (YYYY-MM-DD)", p)
    return sorted(days)
