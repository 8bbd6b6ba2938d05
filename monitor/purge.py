"""Retention (README "Privacy"): delete the image files of days older than N days, keep the rows.

For every image of a day before `today - N` not yet purged:

- its link (or copy) in SORTED/<day>/<category>/ and its thumbnail are deleted: these are the
  system's own copies;
- the originals in the inbox (every inbox file with those bytes) are deleted only when asked
  (`include_inbox`, KOALA_RETENTION_INBOX=1). SPEC section 3 makes the inbox the devices'
  delivery area that the system never modifies; deleting there is the operator's explicit
  decision, for sites where nothing else expires the inbox;
- the row stays with its scores, quality values, labels and label history, and the day's
  metrics are untouched; it is marked `purged_at`, so pages say "purged" and the file views
  answer 410 Gone.

An image whose files could not all be deleted (permissions, I/O) is left unmarked and tried
again next time. Paths are resolved and must stay inside their folder: a tampered row never
deletes anything else. Called by `manage.py purge_images` and the nightly task
`monitor.tasks.purge_expired_images` (when KOALA_RETENTION_DAYS > 0).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from .folders import sorted_relpath
from .models import Image, InboxFile

log = logging.getLogger(__name__)

CHUNK = 500


@dataclass
class PurgeResult:
    cutoff: dt.date  # images of days before this one were purged
    dry_run: bool = False
    include_inbox: bool = False
    images: int = 0
    links: int = 0
    thumbnails: int = 0
    originals: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def summary(self) -> str:
        verb = "would purge" if self.dry_run else "purged"
        files = f"{self.links} links, {self.thumbnails} thumbnails, " + (
            f"{self.originals} inbox originals" if self.include_inbox else "inbox originals kept"
        )
        text = f"{verb} {self.images} images of days before {self.cutoff.isoformat()}: {files}"
        text += "; scores, labels and metrics kept"
        if self.errors:
            text += f"; {len(self.errors)} files could not be deleted (their images are tried again next time)"
        return text


def cutoff_day(older_than_days: int, today: dt.date | None = None) -> dt.date:
    """The first day kept: days before it are older than `older_than_days` days."""
    if isinstance(older_than_days, bool) or not isinstance(older_than_days, int) or older_than_days < 1:
        raise ValueError(f"older than: expected a whole number of days, at least 1, got {older_than_days!r}")
    return (today or timezone.localdate()) - dt.timedelta(days=older_than_days)


def expired(cutoff: dt.date):
    """The images due: of a day before `cutoff`, not yet purged."""
    return Image.objects.filter(day__lt=cutoff, purged_at__isnull=True)


def _file_inside(root: Path, relpath: str) -> Path | None:
    """root/relpath if it is a file (or a link) inside root, else None. The link itself is what
    gets deleted, so only its folder is resolved."""
    if not relpath or "\x00" in relpath:
        return None
    root = root.resolve()
    path = root / relpath
    try:
        path = path.parent.resolve() / path.name
    except OSError:
        return None
    if not path.is_relative_to(root) or path.name in ("", ".", "..") or not (path.is_file() or path.is_symlink()):
        return None
    return path


def _delete(path: Path | None, dry_run: bool, result: PurgeResult) -> bool | None:
    """True: deleted (or would be); None: nothing there; False: could not be deleted."""
    if path is None:
        return None
    if dry_run:
        return True
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return None
    except OSError as exc:
        result.errors.append((str(path), f"{exc.__class__.__name__}: {exc.strerror or exc}"))
        log.warning("purge: could not delete %s: %s", path, exc)
        return False


def _purge_one(im: Image, inbox_paths: list[str], result: PurgeResult) -> bool:
    """Delete the image's files; True when nothing is left behind."""
    ok = True
    links = {im.sorted_path}
    try:
        links.add(sorted_relpath(im))  # where it would be linked, in case the row lost track
    except ValueError:  # a path without <device>/<name>
        pass
    links.discard("")
    for rel in links:
        done = _delete(_file_inside(settings.SORTED_DIR, rel), result.dry_run, result)
        result.links += done is True
        ok &= done is not False
    # an unreadable image has no thumbnail; one named by its bytes would be a readable image's
    # (Image.sha256 is unique among readable images only: the same broken bytes recur per day)
    if im.category != "unreadable":
        done = _delete(_file_inside(settings.THUMBS_DIR, im.thumb_relpath), result.dry_run, result)
        result.thumbnails += done is True
        ok &= done is not False
    if result.include_inbox:
        for rel in sorted({im.path, *inbox_paths}):
            done = _delete(_file_inside(settings.INBOX_DIR, rel), result.dry_run, result)
            result.originals += done is True
            ok &= done is not False
    return ok


def _tidy(root: Path, days: set[dt.date]) -> None:
    """Remove the purged days' folders of SORTED that are now empty (never the inbox)."""
    for day in days:
        folder = root / day.isoformat()
        if not folder.is_dir():
            continue
        for sub in folder.iterdir():
            if sub.is_dir():
                try:
                    sub.rmdir()
                except OSError:
                    pass
        try:
            folder.rmdir()
        except OSError:
            pass


def purge_images(
    older_than_days: int,
    *,
    dry_run: bool = False,
    include_inbox: bool | None = None,
    progress: Callable[[int], None] | None = None,
    today: dt.date | None = None,
) -> PurgeResult:
    """Delete the files of the images of days older than `older_than_days` days (see the module
    docstring); `include_inbox` defaults to KOALA_RETENTION_INBOX. Returns the counts."""
    cutoff = cutoff_day(older_than_days, today)
    if include_inbox is None:
        include_inbox = settings.KOALA_RETENTION_INBOX
    result = PurgeResult(cutoff=cutoff, dry_run=dry_run, include_inbox=include_inbox)
    days: set[dt.date] = set()
    last_pk = 0
    while True:
        chunk = list(expired(cutoff).filter(pk__gt=last_pk).order_by("pk")[:CHUNK])
        if not chunk:
            break
        last_pk = chunk[-1].pk
        inbox_paths: dict[int, list[str]] = {}
        if include_inbox:
            for image_id, path in InboxFile.objects.filter(image__in=chunk).values_list("image_id", "path"):
                inbox_paths.setdefault(image_id, []).append(path)
        purged = [im.pk for im in chunk if _purge_one(im, inbox_paths.get(im.pk, []), result)]
        result.images += len(purged)
        days.update(im.day for im in chunk)
        if purged and not dry_run:
            Image.objects.filter(pk__in=purged).update(purged_at=timezone.now(), has_thumbnail=False, sorted_path="")
        if progress:
            progress(len(chunk))
    if not dry_run:
        _tidy(settings.SORTED_DIR, days)
    log.info("retention: %s", result.summary)
    return result
