"""Issue 13: identical broken files on later days. A readable image is identified by its bytes (a copy
on a later day is a duplicate, SPEC section 4); an unreadable one by its bytes and day, so a day that
received three broken files counts three, even when one of them has the bytes of an earlier day's
broken file (a zero-byte file, the same truncated upload). Real files through the real pipeline
with the demo ensemble, as tests/test_bad_input.py."""

import datetime as dt
import hashlib
import re

import numpy as np
import pytest
from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse

import demo
from liveness.pipeline import Pipeline
from monitor import discovery, label_csv, purge, runs
from monitor.models import Image, InboxFile, Run
from tests import factories
from tests.conftest import jpeg_bytes, put, sidecar_for

DAY1, DAY2 = "2026-11-20", "2026-11-21"
DEV = "cam-1"
EMPTY = hashlib.sha256(b"").hexdigest()


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def sample(rng) -> demo.Sample:
    return demo.render_sample(rng, label="genuine", face_size=200, yaw=0.0, pitch=0.0, blur=0.0)


@pytest.fixture
def two_days(data_root):
    """Day 1: a good image, a zero-byte file and a truncated one. Day 2: three broken files (a
    zero-byte one, byte-identical to day 1's, a text file and another truncation) and a copy of
    day 1's good image."""
    rng, inbox = np.random.default_rng(13), settings.INBOX_DIR
    good = jpeg_bytes(s := sample(rng))
    put(inbox, DAY1, DEV, "good.jpg", good, sidecar_for(s))
    put(inbox, DAY1, DEV, "zero.jpg", b"")
    full = jpeg_bytes(sample(rng))
    put(inbox, DAY1, DEV, "truncated.jpg", full[: len(full) // 2])
    put(inbox, DAY2, DEV, "zero-again.jpg", b"")
    put(inbox, DAY2, DEV, "text.jpg", b"this is a shopping list, not a picture\n")
    put(inbox, DAY2, DEV, "truncated-other.jpg", full[: len(full) // 3])
    put(inbox, DAY2, DEV, "good-copy.jpg", good, sidecar_for(s))
    return {"good": hashlib.sha256(good).hexdigest()}


def unreadable_tab(client, text: str) -> int:
    html = client.get(reverse("gallery", args=[day(text)])).content.decode()
    counts = dict(re.findall(r'data-category="(\w+)">\s*[\w ]+ <span class="count">(\d+)</span>', html))
    return int(counts["unreadable"])


def broken_of(text: str) -> list[str]:
    return sorted(Image.objects.filter(day=day(text), category="unreadable").values_list("path", flat=True))


@pytest.mark.django_db
def test_it_counts_every_broken_file_on_the_day_it_arrived(two_days, demo_ensemble, client, personas):
    run1 = runs.run_day(day(DAY1))
    run2 = runs.run_day(day(DAY2))

    assert (run1.status, run2.status) == (Run.DONE, Run.DONE)
    day2_broken = [f"{DAY2}/{DEV}/{n}" for n in ("text.jpg", "truncated-other.jpg", "zero-again.jpg")]
    assert broken_of(DAY2) == day2_broken
    assert run2.counts.get("unreadable") == 3
    assert (run2.new_images, run2.duplicates) == (3, 1)  # the copy of the good image only
    assert all({"path": p, "reason": Image.objects.get(path=p).reason} in run2.errors for p in day2_broken)
    # the zero-byte file is an image of its own day, with the same bytes as day 1's
    zero = InboxFile.objects.get(path=f"{DAY2}/{DEV}/zero-again.jpg")
    assert (zero.status, zero.image.day, zero.image.sha256) == (InboxFile.DONE, day(DAY2), EMPTY)
    assert sorted(Image.objects.filter(sha256=EMPTY).values_list("day", flat=True)) == [day(DAY1), day(DAY2)]
    # day 1 still shows its own two
    assert broken_of(DAY1) == [f"{DAY1}/{DEV}/truncated.jpg", f"{DAY1}/{DEV}/zero.jpg"]
    assert Run.objects.get(pk=run1.pk).counts.get("unreadable") == 2
    client.force_login(personas["viewer"])
    assert (unreadable_tab(client, DAY1), unreadable_tab(client, DAY2)) == (2, 3)
    # each linked into its own day's folder, by device and file name
    for text, n in ((DAY1, 2), (DAY2, 3)):
        assert len(list((settings.SORTED_DIR / text / "unreadable").iterdir())) == n


@pytest.mark.django_db
def test_it_adds_nothing_when_the_day_of_a_repeated_broken_file_runs_again(two_days, demo_ensemble):
    runs.run_day(day(DAY1))
    runs.run_day(day(DAY2))
    before = sorted(Image.objects.values_list("pk", "sha256", "day", "category"))

    again = runs.run_day(day(DAY2))

    assert (again.status, again.processed, again.new_images, again.duplicates) == (Run.DONE, 0, 0, 0)
    assert sorted(Image.objects.values_list("pk", "sha256", "day", "category")) == before
    assert again.counts.get("unreadable") == 3


@pytest.mark.django_db
def test_it_rescores_a_repeated_broken_file_as_the_image_of_its_own_day(two_days, demo_ensemble):
    runs.run_day(day(DAY1))
    runs.run_day(day(DAY2))
    before = sorted(Image.objects.values_list("pk", "path", "day", "category"))

    rescored = runs.run_day(day(DAY2), rescore=True)

    assert rescored.status == Run.DONE and rescored.counts.get("unreadable") == 3
    assert sorted(Image.objects.values_list("pk", "path", "day", "category")) == before
    zero = InboxFile.objects.get(path=f"{DAY2}/{DEV}/zero-again.jpg")
    assert (zero.status, zero.image.day) == (InboxFile.DONE, day(DAY2))


@pytest.mark.django_db
def test_it_keeps_a_readable_image_copied_to_a_later_day_a_duplicate(two_days, demo_ensemble):
    runs.run_day(day(DAY1))
    runs.run_day(day(DAY2))

    copy = InboxFile.objects.get(path=f"{DAY2}/{DEV}/good-copy.jpg")
    assert copy.status == InboxFile.DUPLICATE
    assert (copy.image.path, copy.image.day) == (f"{DAY1}/{DEV}/good.jpg", day(DAY1))
    assert Image.objects.filter(sha256=two_days["good"]).count() == 1
    assert not Image.objects.filter(day=day(DAY2)).exclude(category="unreadable").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("batch_size", [64, 1], ids=["same-batch", "batch-after-batch"])
def test_it_keeps_a_same_day_copy_of_broken_bytes_a_duplicate(data_root, demo_ensemble, batch_size):
    put(settings.INBOX_DIR, DAY1, DEV, "zero.jpg", b"")
    for name in ("a.jpg", "b.jpg"):
        put(settings.INBOX_DIR, DAY2, DEV, name, b"")
    runs.run_day(day(DAY1))

    run = runs.run_day(day(DAY2), batch_size=batch_size)
    put(settings.INBOX_DIR, DAY2, DEV, "late.jpg", b"")  # and one more in a later run of the day
    late = runs.run_day(day(DAY2))

    first = Image.objects.get(day=day(DAY2))
    assert (first.path, first.category) == (f"{DAY2}/{DEV}/a.jpg", "unreadable")
    assert sorted(InboxFile.objects.filter(day=day(DAY2)).values_list("path", "status", "image")) == [
        (f"{DAY2}/{DEV}/a.jpg", InboxFile.DONE, first.pk),
        (f"{DAY2}/{DEV}/b.jpg", InboxFile.DUPLICATE, first.pk),
        (f"{DAY2}/{DEV}/late.jpg", InboxFile.DUPLICATE, first.pk),
    ]
    assert (run.new_images, run.duplicates, late.new_images, late.duplicates) == (1, 1, 0, 1)
    assert late.counts.get("unreadable") == 1


@pytest.mark.django_db
def test_it_keeps_one_row_when_two_batches_store_the_same_broken_bytes_of_a_day_at_once(
    data_root, demo_ensemble, monkeypatch
):
    """Batch A looks for stored images before batch B stores the same broken bytes (another path)
    of the same day; A's insert then meets B's row: the constraint keeps one, and A records its
    file as a duplicate of B's image, not of day 1's with the same bytes."""
    put(settings.INBOX_DIR, DAY1, DEV, "zero.jpg", b"")
    runs.run_day(day(DAY1))
    for name in ("a.jpg", "b.jpg"):
        put(settings.INBOX_DIR, DAY2, DEV, name, b"")
    run = runs.start_run(day(DAY2))
    a, b = discovery.discover(run)
    analyse, interleaved, started = Pipeline.analyse, [], []

    def b_stores_meanwhile(self, inputs):
        if not started:  # only inside batch A: batch B runs from here, whole
            started.append(b)
            interleaved.append(runs.score_batch(run.pk, [b]))
        return analyse(self, inputs)

    monkeypatch.setattr(Pipeline, "analyse", b_stores_meanwhile)
    batch_a = runs.score_batch(run.pk, [a])
    run = runs.finish_run(run.pk)

    assert (interleaved[0]["stored"], batch_a["stored"], batch_a["duplicates"]) == (1, 0, 1)
    stored = Image.objects.get(day=day(DAY2))
    assert stored.path == f"{DAY2}/{DEV}/b.jpg"
    assert InboxFile.objects.get(pk=a).image_id == stored.pk
    assert InboxFile.objects.get(pk=a).status == InboxFile.DUPLICATE
    assert run.status == Run.DONE and run.counts == {"unreadable": 1}


@pytest.mark.django_db
def test_it_stores_broken_bytes_once_per_day_and_readable_bytes_once(db):
    factories.image(day=DAY1, sha256=EMPTY, category="unreadable", score=None)
    factories.image(day=DAY2, sha256=EMPTY, category="unreadable", score=None)  # another day: allowed
    factories.image(day=DAY1, sha256="f" * 64)

    with pytest.raises(IntegrityError), transaction.atomic():  # the same broken bytes, the same day
        factories.image(day=DAY2, sha256=EMPTY, category="unreadable", score=None)
    with pytest.raises(IntegrityError), transaction.atomic():  # readable bytes: once, whatever the day
        factories.image(day=DAY2, sha256="f" * 64)


@pytest.mark.django_db
def test_it_refuses_to_import_a_label_by_the_sha256_of_unreadable_files_only(two_days, demo_ensemble):
    runs.run_day(day(DAY1))
    runs.run_day(day(DAY2))

    text = f"sha256,label\n{EMPTY},genuine\n{two_days['good']},genuine\n"
    result = label_csv.import_labels(text, user=None, dry_run=True)

    assert result.errors == [(2, f"sha256 {EMPTY!r} is of unreadable files only: no picture to label")]
    assert [r.image_id for r in result.rows] == [Image.objects.get(sha256=two_days["good"]).pk]


@pytest.mark.django_db
def test_it_picks_the_readable_image_when_broken_rows_share_its_bytes(db):
    """Bytes once unreadable and readable later (the decoder changed): the import labels the
    readable image, and purging the old unreadable row keeps its thumbnail, named by those bytes."""
    sha = "e" * 64
    factories.image(day="2026-01-05", sha256=sha, category="unreadable", score=None)
    readable = factories.image(day="2026-11-20", sha256=sha, has_thumbnail=True)
    thumb = settings.THUMBS_DIR / readable.thumb_relpath
    thumb.parent.mkdir(parents=True)
    thumb.write_bytes(b"jpeg")

    result = label_csv.import_labels(f"sha256,label\n{sha},attack\n", user=None, dry_run=True)
    purged = purge.purge_images(30, today=dt.date(2026, 11, 21))

    assert result.errors == [] and [r.image_id for r in result.rows] == [readable.pk]
    assert (purged.images, purged.thumbnails) == (1, 0)
    assert thumb.is_file()
