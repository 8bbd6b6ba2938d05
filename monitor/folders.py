"""Files and folders the job writes: the sorted links SORTED/<day>/<category>/ and the thumbnails,
each written to a temporary file and renamed (`atomic_write`); rebuilt from the rows on demand."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from django.conf import settings

from liveness.decode import UnreadableImage, decode_image
from liveness.pipeline import THUMB_SIDE, thumbnail

from .models import Image

log = logging.getLogger(__name__)


TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{8}\.tmp", re.DOTALL)  # the names of `temp_path`


STALE_TEMP_SECONDS = 300  # a write takes milliseconds: a temporary file this old was left by a killed process


def temp_path(dst: Path) -> Path:
    """Where `atomic_write` writes `dst` before the rename: `.<name>.<8 hex>.tmp` beside it."""
    return dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write(dst: Path, write: Callable[[Path], None]) -> None:
    """Write via a temporary name in the same folder, then rename: never a half-written file. A
    process killed in between leaves the temporary file: remove_stale_temp_files() takes it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dst)
    try:
        write(tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temp_files(folders: Iterable[Path], older_than: float | None = None) -> int:
    """Delete the temporary files an interrupted atomic_write left in `folders` (not below them),
    when older than `older_than` seconds (STALE_TEMP_SECONDS): a write in progress is never that
    old. The age is the inode's change time, which a hard link or a copy sets to now (a hard link
    keeps the inbox file's old mtime). Returns how many were deleted."""
    cutoff = time.time() - (STALE_TEMP_SECONDS if older_than is None else older_than)
    removed = 0
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if not TEMP_NAME.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
            if max(st.st_ctime, st.st_mtime) < cutoff:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
    if removed:
        log.info("removed %d temporary files left by interrupted writes", removed)
    return removed


def link_or_copy(src: Path, tmp: Path) -> None:
    try:
        os.link(src, tmp, follow_symlinks=True)
    except OSError:
        shutil.copy2(src, tmp)


def temp_folders(day: dt.date, images: list[Image]) -> set[Path]:
    """Where a killed write of the day may have left a temporary file: the day's category folders,
    and the thumbnail folders of `images` (those whose files are missing: the thumbnail folders
    are shared by all days, too large to list at every finish)."""
    day_dir = settings.SORTED_DIR / day.isoformat()
    folders = {p for p in day_dir.iterdir() if p.is_dir()} if day_dir.is_dir() else set()
    return folders | {(settings.THUMBS_DIR / im.thumb_relpath).parent for im in images}


def sorted_relpath(im: Image) -> str:
    device, name = Path(im.path).parts[-2:]
    return f"{im.day.isoformat()}/{im.category}/{device}__{name}"


def write_files(im: Image, decoded=None, *, save: bool = True) -> bool:
    """Link the image into SORTED/<day>/<category>/ and write its thumbnail (both atomic).
    `decoded`: an already reduced PIL image to make the thumbnail from (else the file is read).
    Sets `sorted_path` / `has_thumbnail` on `im` and saves them unless `save` is False (a batch
    saves its images in one statement). Returns whether they changed."""
    if im.purged_at is not None:  # retention deleted its files (monitor/purge.py): do not bring them back
        return False
    src = settings.INBOX_DIR / im.path
    rel = sorted_relpath(im)
    updates = {}
    if im.sorted_path and im.sorted_path != rel:
        (settings.SORTED_DIR / im.sorted_path).unlink(missing_ok=True)
    if src.exists():
        atomic_write(settings.SORTED_DIR / rel, lambda tmp: link_or_copy(src, tmp))
        updates["sorted_path"] = rel
    if im.category != "unreadable" and not (im.has_thumbnail and decoded is None):
        thumb = decoded
        if thumb is None and src.exists():
            try:
                thumb = thumbnail(decode_image(src.read_bytes()).image, THUMB_SIDE)
            except (OSError, UnreadableImage):
                thumb = None
        if thumb is not None:
            atomic_write(settings.THUMBS_DIR / im.thumb_relpath, lambda tmp: thumb.save(tmp, "JPEG", quality=85))
            updates["has_thumbnail"] = True
    if updates and save:
        Image.objects.filter(pk=im.pk).update(**updates)
    for k, v in updates.items():
        setattr(im, k, v)
    return bool(updates)


def rebuild_folders(day: dt.date | None = None, progress: Callable[[int], None] | None = None) -> int:
    """Recreate SORTED/<day>/ (all days if None) and missing thumbnails from the database."""
    images = Image.objects.all() if day is None else Image.objects.filter(day=day)
    days = images.values_list("day", flat=True).distinct()
    for d in days:
        shutil.rmtree(settings.SORTED_DIR / d.isoformat(), ignore_errors=True)
    if day is None:
        thumb_folders = settings.THUMBS_DIR.glob("??") if settings.THUMBS_DIR.is_dir() else []
    else:
        thumb_folders = {settings.THUMBS_DIR / sha[:2] for sha in images.values_list("sha256", flat=True)}
    remove_stale_temp_files(thumb_folders)
    images.update(sorted_path="")
    n = 0
    for im in images.iterator(chunk_size=500):
        if im.has_thumbnail and not (settings.THUMBS_DIR / im.thumb_relpath).exists():
            im.has_thumbnail = False
        write_files(im)
        n += 1
        if progress:
            progress(1)
    return n
