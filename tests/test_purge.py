"""Retention (issue 8, privacy): `purge_images --older-than DAYS` deletes the image files of old
days (sorted-folder links and thumbnails; inbox originals only when asked) and keeps the rows
with their scores, labels and the day's metrics; the pages then say "purged" and the file views
answer 410 Gone."""

import datetime as dt
import io
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

import demo
from monitor import discovery, folders, purge, runs, tasks
from monitor.models import DailyMetric, Image, InboxFile
from tests import factories as f
from tests.conftest import jpeg_bytes, put, sidecar_for
from tests.test_settings import settings_in_env

TODAY = timezone.localdate()
OLD = TODAY - dt.timedelta(days=40)
RECENT = TODAY - dt.timedelta(days=2)


@pytest.fixture
def two_days(demo_ensemble, settings):
    """An old and a recent day, scored from real files: three labelled faces each, and on the
    old day also a duplicate (same bytes, another name) and a broken file."""
    for d, day in enumerate((OLD, RECENT)):
        for i in range(3):
            sample = demo.render_sample(np.random.default_rng([d, i]), label="genuine", face_size=200)
            data = jpeg_bytes(sample)
            put(settings.INBOX_DIR, day.isoformat(), "phone-01", f"face{i}.jpg", data, sidecar_for(sample))
            if day == OLD and i == 0:
                put(settings.INBOX_DIR, day.isoformat(), "phone-02", "again.jpg", data)
        if day == OLD:
            put(settings.INBOX_DIR, day.isoformat(), "phone-01", "broken.jpg", b"not an image")
        runs.run_day(day)


def files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def figures(day):
    return list(
        DailyMetric.objects.filter(day=day).order_by("pk").values("images", "counts", "scored", "flagged", "genuine")
    )


def test_it_deletes_links_and_thumbnails_of_old_days_and_keeps_the_rows(two_days, settings):
    old_images = list(Image.objects.filter(day=OLD).order_by("pk"))
    assert len(old_images) == 4 and all(im.sorted_path for im in old_images)
    inbox_before = files(settings.INBOX_DIR)
    metrics_before = figures(OLD)
    recent_files = {p for p in files(settings.SORTED_DIR) if p.startswith(RECENT.isoformat())}

    result = purge.purge_images(30, today=TODAY)

    assert (result.images, result.links, result.thumbnails, result.originals) == (4, 4, 3, 0)
    assert result.cutoff == TODAY - dt.timedelta(days=30) and result.errors == []
    assert not (settings.SORTED_DIR / OLD.isoformat()).exists()  # links gone, empty folders tidied
    assert files(settings.SORTED_DIR) == recent_files  # the recent day untouched
    for im in Image.objects.filter(day=OLD):
        assert not (settings.THUMBS_DIR / im.thumb_relpath).exists()
        assert im.purged_at is not None and not im.has_thumbnail and im.sorted_path == ""
    for im in Image.objects.filter(day=RECENT):
        assert (settings.THUMBS_DIR / im.thumb_relpath).is_file() and im.purged_at is None
    assert files(settings.INBOX_DIR) == inbox_before  # the inbox is never touched by default
    # the rows keep their scores, labels and quality values; the day's figures are unchanged
    for before, after in zip(old_images, Image.objects.filter(day=OLD).order_by("pk"), strict=True):
        assert (after.score, after.scores, after.label, after.category, after.face_size) == (
            before.score,
            before.scores,
            before.label,
            before.category,
            before.face_size,
        )
    assert metrics_before and figures(OLD) == metrics_before


def test_it_deletes_the_inbox_originals_only_when_asked(two_days, settings):
    result = purge.purge_images(30, include_inbox=True, today=TODAY)

    assert result.originals == 5  # three faces, the duplicate and the broken file
    left = files(settings.INBOX_DIR / OLD.isoformat())
    assert left == {f"phone-01/face{i}.json" for i in range(3)}  # the sidecars (no image) stay
    assert InboxFile.objects.filter(day=OLD).count() == 5  # the records stay: a re-scan finds nothing new
    assert not discovery.has_work(OLD)
    assert files(settings.INBOX_DIR / RECENT.isoformat()) >= {f"phone-01/face{i}.jpg" for i in range(3)}


def test_it_takes_the_inbox_choice_from_the_setting(two_days, settings):
    settings.KOALA_RETENTION_INBOX = True
    assert purge.purge_images(30, today=TODAY).originals == 5


def test_it_only_counts_on_a_dry_run(two_days, settings):
    before = files(settings.DATA_DIR)
    result = purge.purge_images(30, dry_run=True, today=TODAY)
    assert (result.images, result.links, result.thumbnails) == (4, 4, 3)
    assert "would purge 4 images" in result.summary
    assert files(settings.DATA_DIR) == before
    assert not Image.objects.filter(purged_at__isnull=False).exists()


def test_it_purges_each_image_once(two_days):
    assert purge.purge_images(30, today=TODAY).images == 4
    again = purge.purge_images(30, today=TODAY)
    assert (again.images, again.links, again.thumbnails) == (0, 0, 0)
    assert purge.purge_images(1, today=TODAY).images == 3  # the recent day's turn comes


def test_it_keeps_the_cutoff_day(two_days):
    assert purge.purge_images(40, today=TODAY).images == 0  # "older than 40 days": the 40-day-old day stays
    assert purge.purge_images(39, today=TODAY).images == 4


@pytest.mark.parametrize("days", [0, -1, 1.5, "30", True])
def test_it_refuses_a_bad_number_of_days(days, db):
    with pytest.raises(ValueError, match="at least 1"):
        purge.purge_images(days)


def test_it_never_deletes_outside_its_folders(two_days, settings):
    """A tampered row: its stored link path points into the inbox; nothing outside SORTED goes."""
    im = Image.objects.filter(day=OLD).exclude(category="unreadable").first()
    original = settings.INBOX_DIR / im.path
    Image.objects.filter(pk=im.pk).update(sorted_path=f"../inbox/{im.path}")
    purge.purge_images(30, today=TODAY)
    assert original.is_file()


def test_it_leaves_an_image_unmarked_when_a_file_cannot_be_deleted(two_days, settings, monkeypatch):
    stuck = Image.objects.filter(day=OLD, has_thumbnail=True).first()
    real_unlink = Path.unlink

    def unlink(self, *args, **kwargs):
        if self.name == f"{stuck.sha256}.jpg":
            raise PermissionError(13, "Permission denied")
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", unlink)
    result = purge.purge_images(30, today=TODAY)

    assert result.images == 3 and len(result.errors) == 1 and "PermissionError" in result.errors[0][1]
    stuck.refresh_from_db()
    assert stuck.purged_at is None  # tried again next time
    monkeypatch.setattr(Path, "unlink", real_unlink)
    assert purge.purge_images(30, today=TODAY).images == 1


# --- the pages and the file views ---------------------------------------------------------------------


def test_it_shows_purged_images_and_answers_410_for_their_files(two_days, client, personas):
    purge.purge_images(30, today=TODAY)
    im = Image.objects.filter(day=OLD).exclude(category="unreadable").first()
    client.force_login(personas["viewer"])

    for name in ("image-file", "thumb"):
        response = client.get(reverse(name, args=[im.pk]))
        assert response.status_code == 410 and b"purged on" in response.content
    detail = client.get(reverse("image", args=[im.pk])).content.decode()
    assert f"Image purged on {im.purged_at:%Y-%m-%d}" in detail
    assert reverse("image-file", args=[im.pk]) not in detail  # no broken image
    assert f"{im.score:.4f}" in detail  # the scores are still shown
    gallery = client.get(reverse("gallery", args=[OLD])).content.decode()
    assert gallery.count('class="nothumb purged"') == 4
    assert reverse("thumb", args=[im.pk]) not in gallery


# --- the command, the task and the schedule ------------------------------------------------------------------


def run_command(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("purge_images", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_purges_from_the_command_with_a_summary(two_days, settings):
    out, err = run_command("--older-than", "30", "--dry-run")
    assert "would purge 4 images of days before" in out and "inbox originals kept" in out
    assert not Image.objects.filter(purged_at__isnull=False).exists()

    before = purge.cutoff_day(30)
    out, err = run_command("--older-than", "30")
    # the cutoff is today's (the clock's, not the module's TODAY: a run can cross midnight)
    cutoffs = {day.isoformat() for day in (before, purge.cutoff_day(30))}
    assert any(f"purged 4 images of days before {c}:" in out for c in cutoffs), out
    assert "4 links, 3 thumbnails" in out and "scores, labels and metrics kept" in out
    assert "4/4" in err  # the progress bar

    out, _ = run_command("--older-than", "1", "--include-inbox")
    assert "purged 3 images" in out and "3 inbox originals" in out


def test_it_takes_the_days_from_the_setting(two_days, settings):
    settings.KOALA_RETENTION_DAYS = 30
    out, _ = run_command()
    assert "purged 4 images" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--older-than", "0"], "at least 1 day"),
        (["--older-than", "-5"], "at least 1 day"),
        (["--older-than", "a month"], "expected a whole number of days"),
        ([], "give --older-than DAYS"),
    ],
)
def test_it_refuses_bad_arguments(args, message, db):
    with pytest.raises(CommandError, match=message):
        run_command(*args)


def test_it_exits_non_zero_when_files_could_not_be_deleted(two_days, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "unlink", refuse)
    with pytest.raises(CommandError, match="could not be deleted") as caught:
        run_command("--older-than", "30")
    assert caught.value.returncode == 2


def test_it_purges_nightly_only_with_a_retention_period(two_days, settings):
    settings.KOALA_RETENTION_DAYS = 0
    assert tasks.purge_expired_images.delay().get() == {}
    assert not Image.objects.filter(purged_at__isnull=False).exists()

    settings.KOALA_RETENTION_DAYS = 30
    summary = tasks.purge_expired_images.delay().get()
    assert summary["images"] == 4 and summary["errors"] == 0


def test_it_schedules_the_purge_when_a_retention_period_is_set(tmp_path):
    expr = "'purge-images' in s.CELERY_BEAT_SCHEDULE"
    assert settings_in_env({"KOALA_DATA_DIR": str(tmp_path)}, expr).stdout.strip() == "False"
    out = settings_in_env(
        {"KOALA_DATA_DIR": str(tmp_path), "KOALA_RETENTION_DAYS": "90", "KOALA_PURGE_AT": "04:10"},
        "s.CELERY_BEAT_SCHEDULE['purge-images']['task'], s.CELERY_BEAT_SCHEDULE['purge-images']['schedule']",
    )
    assert out.stdout.splitlines()[0] == "monitor.tasks.purge_expired_images"
    assert "10 4 * * *" in out.stdout
    bad = settings_in_env({"KOALA_DATA_DIR": str(tmp_path), "KOALA_RETENTION_DAYS": "-1"}, "s.KOALA_RETENTION_DAYS")
    assert bad.returncode != 0 and "KOALA_RETENTION_DAYS" in bad.stderr


def test_it_does_not_bring_purged_files_back_on_a_rebuild(two_days, settings):
    purge.purge_images(30, today=TODAY)
    folders.rebuild_folders(OLD)
    runs.run_day(OLD, rescore=True)
    assert not (settings.SORTED_DIR / OLD.isoformat()).exists()
    assert all(not (settings.THUMBS_DIR / im.thumb_relpath).exists() for im in Image.objects.filter(day=OLD))


def test_it_purges_rows_without_files(db, settings):
    """Rows whose files never existed (e.g. made by a script) are simply marked."""
    im = f.image(day=OLD)
    result = purge.purge_images(30, today=TODAY)
    assert (result.images, result.links, result.thumbnails) == (1, 0, 0)
    im.refresh_from_db()
    assert im.purged_at is not None
