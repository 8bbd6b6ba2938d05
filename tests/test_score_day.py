"""The daily job end to end, in-process: real demo inbox, real ONNX demo ensemble, SQLite or
PostgreSQL (whatever DATABASE_URL says), real folders."""

import datetime as dt
import hashlib
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.utils import timezone

import demo
from monitor import claims, db, discovery, errors, folders, runs, tasks
from monitor.models import Image, InboxFile, Run
from tests.conftest import jpeg_bytes, put, sidecar_for

DAYS = ["2026-11-20", "2026-11-21"]
IMAGE_EXT = {".jpg", ".jpeg", ".png"}


@pytest.fixture(scope="session")
def demo_inbox(tmp_path_factory):
    """A small generated inbox (2 days x ~40 files), made once and copied into each test."""
    out = tmp_path_factory.mktemp("demo_inbox")
    demo.generate_inbox(out, days=2, per_day=40, seed=7, end_day=dt.date(2026, 11, 21))
    return out


@pytest.fixture
def inbox(demo_inbox, data_root):
    shutil.copytree(demo_inbox, settings.INBOX_DIR, dirs_exist_ok=True)
    return settings.INBOX_DIR


def inbox_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXT)


def snapshot(root: Path) -> dict:
    return {
        p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in root.rglob("*") if p.is_file()
    }


def score(*days: str, **kw) -> list[Run]:
    return [runs.run_day(dt.date.fromisoformat(d), **kw) for d in days]


def folder_counts() -> Counter:
    return Counter((p.parent.parent.name, p.parent.name) for p in settings.SORTED_DIR.rglob("*") if p.is_file())


def db_counts() -> Counter:
    return Counter((im.day.isoformat(), im.category) for im in Image.objects.all())


@pytest.mark.django_db
def test_it_accounts_for_every_inbox_file(inbox, demo_ensemble):
    files = inbox_files(inbox)
    distinct = {hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    runs = score(*DAYS)

    assert all(r.status == Run.DONE for r in runs)
    assert Image.objects.count() == len(distinct)
    assert InboxFile.objects.count() == len(files)
    assert not InboxFile.objects.filter(status=InboxFile.PENDING).exists()
    assert InboxFile.objects.filter(status=InboxFile.DUPLICATE).count() == len(files) - len(distinct)
    assert folder_counts() == db_counts()
    assert set(Image.objects.values_list("category", flat=True)) >= {"live", "attack", "unreadable", "no_face"}
    # every category folder entry is the inbox file's own bytes (a link or a copy)
    for im in Image.objects.all():
        assert (settings.SORTED_DIR / im.sorted_path).read_bytes() == (inbox / im.path).read_bytes()


@pytest.mark.django_db
def test_it_records_why_a_file_is_unreadable_and_keeps_scoring(inbox, demo_ensemble):
    put(inbox, DAYS[0], "phone-01", "zero.jpg", b"")
    put(inbox, DAYS[0], "phone-01", "text.jpg", b"hello, not a picture")

    (run,) = score(DAYS[0])

    zero = InboxFile.objects.get(path=f"{DAYS[0]}/phone-01/zero.jpg").image  # maybe a duplicate of another empty file
    text = Image.objects.get(path=f"{DAYS[0]}/phone-01/text.jpg")
    assert zero.category == text.category == "unreadable"
    assert "empty" in zero.reason and "not an image" in text.reason
    assert {"path": text.path, "reason": text.reason} in run.errors
    assert Image.objects.filter(day=DAYS[0], category__in=["live", "attack", "low_quality"]).count() > 20


@pytest.mark.django_db
def test_it_adds_nothing_when_a_day_runs_again(inbox, demo_ensemble):
    score(*DAYS)
    before = list(Image.objects.order_by("sha256").values_list("sha256", "score", "category", "scored_at"))

    (again,) = score(DAYS[0])

    assert again.total == 0 and again.new_images == 0
    assert list(Image.objects.order_by("sha256").values_list("sha256", "score", "category", "scored_at")) == before


@pytest.mark.django_db
def test_it_picks_up_a_file_that_arrives_late(inbox, demo_ensemble):
    score(DAYS[0])
    n = Image.objects.filter(day=DAYS[0]).count()
    s = demo.render_sample(np.random.default_rng(99), label="genuine", face_size=200)
    put(inbox, DAYS[0], "phone-02", "late.jpg", jpeg_bytes(s), sidecar_for(s))

    assert discovery.has_work(dt.date.fromisoformat(DAYS[0]))
    (run,) = score(DAYS[0])

    assert run.total == 1 and run.new_images == 1
    assert Image.objects.filter(day=DAYS[0]).count() == n + 1
    late = Image.objects.get(path=f"{DAYS[0]}/phone-02/late.jpg")
    assert late.label == "genuine" and late.score is not None
    assert not discovery.has_work(dt.date.fromisoformat(DAYS[0]))


@pytest.mark.django_db
def test_it_stores_the_same_bytes_once(inbox, demo_ensemble):
    s = demo.render_sample(np.random.default_rng(5), label="attack", attack_type="print", face_size=180)
    data = jpeg_bytes(s)
    put(inbox, DAYS[0], "pad-01", "a.jpg", data, sidecar_for(s))
    put(inbox, DAYS[0], "gate-north", "b.jpg", data, sidecar_for(s))
    put(inbox, DAYS[1], "pad-01", "c.jpg", data)

    score(*DAYS)

    im = Image.objects.get(sha256=hashlib.sha256(data).hexdigest())
    # the first file found (devices in name order) is the image; the others point to it
    assert sorted(im.files.values_list("path", "status")) == [
        (f"{DAYS[0]}/gate-north/b.jpg", "done"),
        (f"{DAYS[0]}/pad-01/a.jpg", "duplicate"),
        (f"{DAYS[1]}/pad-01/c.jpg", "duplicate"),
    ]
    assert im.path == f"{DAYS[0]}/gate-north/b.jpg" and im.day.isoformat() == DAYS[0]
    assert im.label == "attack" and im.attack_type == "print"


@pytest.mark.django_db
def test_it_stores_real_model_scores_and_their_mean(inbox, demo_ensemble):
    score(*DAYS)
    scored = Image.objects.filter(score__isnull=False)
    assert scored.count() > 20
    names = set(demo_ensemble.members.values_list("name", flat=True))
    for im in scored:
        assert set(im.scores) == names
        assert im.score == pytest.approx(np.mean(list(im.scores.values())), abs=1e-9)
        assert im.decision == ("live" if im.score > im.threshold else "attack")
        assert im.category == ("low_quality" if im.failed_gates else im.decision)
        assert im.threshold == demo_ensemble.threshold
        assert set(im.model_versions) == names
        assert (settings.THUMBS_DIR / im.thumb_relpath).is_file()
    # real inference: on the labelled share, attacks are flagged and genuine images pass
    labelled = [im for im in scored if im.label and not im.failed_gates]
    genuine = [im.decision for im in labelled if im.label == "genuine"]
    attacks = [im.decision for im in labelled if im.label == "attack"]
    assert len(genuine) >= 5 and attacks
    assert attacks.count("attack") >= 0.8 * len(attacks)
    assert genuine.count("live") >= 0.8 * len(genuine)


@pytest.mark.django_db
def test_it_scores_deterministically(inbox, demo_ensemble):
    score(DAYS[0])
    first = dict(Image.objects.filter(day=DAYS[0]).values_list("sha256", "scores"))

    (rerun,) = score(DAYS[0], rescore=True)

    assert rerun.total == InboxFile.objects.filter(day=DAYS[0], status=InboxFile.DONE).count() > 0
    assert dict(Image.objects.filter(day=DAYS[0]).values_list("sha256", "scores")) == first
    assert folder_counts() == db_counts()


@pytest.mark.django_db
def test_it_never_modifies_the_inbox(inbox, demo_ensemble):
    before = snapshot(inbox)
    score(*DAYS)
    folders.rebuild_folders()
    assert snapshot(inbox) == before


@pytest.mark.django_db
def test_it_rebuilds_the_folders_from_the_database(inbox, demo_ensemble):
    score(*DAYS)
    expected = folder_counts()
    shutil.rmtree(settings.SORTED_DIR)
    shutil.rmtree(settings.THUMBS_DIR)

    folders.rebuild_folders()

    assert folder_counts() == expected == db_counts()
    assert all((settings.THUMBS_DIR / im.thumb_relpath).is_file() for im in Image.objects.filter(has_thumbnail=True))


@pytest.mark.django_db
def test_it_gates_low_quality_faces_but_still_scores_them(inbox, demo_ensemble):
    s = demo.render_sample(np.random.default_rng(3), label="genuine", face_size=90)
    put(inbox, DAYS[0], "phone-01", "small.jpg", jpeg_bytes(s), sidecar_for(s))
    big = demo.render_sample(np.random.default_rng(4), label="genuine", face_size=220)
    put(inbox, DAYS[0], "phone-01", "turned.jpg", jpeg_bytes(big), {**sidecar_for(big), "pose": {"yaw": 45.0}})

    score(DAYS[0])

    small = Image.objects.get(path=f"{DAYS[0]}/phone-01/small.jpg")
    turned = Image.objects.get(path=f"{DAYS[0]}/phone-01/turned.jpg")
    assert small.category == "low_quality" and small.failed_gates == ["face_size"] and small.score is not None
    assert turned.category == "low_quality" and turned.failed_gates == ["yaw"] and turned.yaw == 45.0


@pytest.mark.django_db
def test_it_leaves_files_claimed_by_another_batch_alone(inbox, demo_ensemble):
    run = runs.start_run(dt.date.fromisoformat(DAYS[0]))
    ids = discovery.discover(run)
    other = claims.claim(ids[:10], "another-worker")
    assert len(other) == 10

    mine = runs.score_batch(run.pk, ids[:15])

    assert mine["files"] == 5  # only the five nobody had claimed
    assert InboxFile.objects.filter(pk__in=ids[:10], status=InboxFile.PENDING).count() == 10
    # the other worker died: once its claim expires, the files come back
    InboxFile.objects.filter(claimed_by="another-worker").update(claimed_until=timezone.now() - dt.timedelta(seconds=1))
    assert runs.score_batch(run.pk, ids[:10])["files"] == 10
    assert not InboxFile.objects.filter(pk__in=ids[:15], status=InboxFile.PENDING).exists()


@pytest.mark.django_db
def test_it_lets_a_retried_batch_take_its_own_files_again(inbox, demo_ensemble):
    run = runs.start_run(dt.date.fromisoformat(DAYS[0]))
    ids = discovery.discover(run)[:8]
    claims.claim(ids, claims.batch_token(run.pk, ids))  # the first attempt claimed, then failed

    assert runs.score_batch(run.pk, ids)["files"] == 8


@pytest.mark.django_db
def test_it_reports_a_run_whose_files_are_still_claimed_as_not_done(inbox, demo_ensemble):
    run = runs.start_run(dt.date.fromisoformat(DAYS[0]))
    ids = discovery.discover(run)
    claims.claim(ids[:3], "a-worker-that-died")

    for batch in db.chunks(ids, 20):
        runs.score_batch(run.pk, batch)
    run = runs.finish_run(run.pk)

    assert run.status == Run.FAILED
    assert run.errors[0]["reason"] == "3 files are still pending; re-run the day to finish them"


@pytest.mark.django_db
def test_it_keeps_labels_when_a_day_is_scored_again(inbox, demo_ensemble):
    score(DAYS[0])
    im = Image.objects.filter(day=DAYS[0], label="").exclude(score=None).first()
    Image.objects.filter(pk=im.pk).update(label="attack", attack_type="replay")  # a reviewer's verdict

    score(DAYS[0], rescore=True)

    im.refresh_from_db()
    assert (im.label, im.attack_type) == ("attack", "replay")


@pytest.mark.django_db
def test_it_never_reads_through_a_link_out_of_the_inbox(inbox, demo_ensemble, tmp_path):
    secret = tmp_path / "elsewhere"
    secret.mkdir()
    s = demo.render_sample(np.random.default_rng(8), label="genuine", face_size=200)
    (secret / "private.jpg").write_bytes(jpeg_bytes(s))
    (inbox / DAYS[0] / "linked-device").symlink_to(secret, target_is_directory=True)

    score(DAYS[0])

    f = InboxFile.objects.get(path=f"{DAYS[0]}/linked-device/private.jpg")
    assert f.status == InboxFile.FAILED and "outside the inbox" in f.reason
    assert f.image is None and not list(settings.SORTED_DIR.rglob("*private*"))


@pytest.mark.django_db
def test_it_waits_for_a_file_that_is_still_being_written(inbox, demo_ensemble, settings):
    settings.KOALA_SETTLE_SECONDS = 60
    old = time.time() - 120
    for p in (inbox / DAYS[0]).rglob("*"):
        os.utime(p, (old, old))
    s = demo.render_sample(np.random.default_rng(2), label="genuine", face_size=200)
    fresh = put(inbox, DAYS[0], "phone-01", "arriving.jpg", jpeg_bytes(s)[:5000])  # half copied

    score(DAYS[0])
    assert not InboxFile.objects.filter(path__endswith="arriving.jpg").exists()

    fresh.write_bytes(jpeg_bytes(s))  # the copy finished a while ago
    os.utime(fresh, (old, old))
    score(DAYS[0])
    assert InboxFile.objects.get(path__endswith="arriving.jpg").image.category != "unreadable"


@pytest.mark.django_db
def test_it_keeps_scoring_through_hostile_sidecars(inbox, demo_ensemble):
    s = demo.render_sample(np.random.default_rng(6), label="attack", attack_type="print", face_size=200)
    box = sidecar_for(s)["face"]
    put(inbox, DAYS[0], "phone-01", "nan.jpg", jpeg_bytes(s, 80), f'{{"face": {json.dumps(box)}, "blur": NaN}}')
    put(
        inbox,
        DAYS[0],
        "phone-01",
        "nul.jpg",
        jpeg_bytes(s, 81),
        {"face": box, "subject": "a\u0000b", "site": "x" * 5000},
    )
    put(
        inbox,
        DAYS[0],
        "phone-01",
        "type.jpg",
        jpeg_bytes(s, 82),
        {"face": box, "label": "attack", "attack_type": "p" * 80},
    )

    (run,) = score(DAYS[0])

    assert run.status == Run.DONE
    for name in ("nan", "nul", "type"):
        im = Image.objects.get(path=f"{DAYS[0]}/phone-01/{name}.jpg")
        assert im.score is not None and im.box_w == box["w"]
    assert Image.objects.get(path__endswith="nan.jpg").blur_source == "measured"
    assert any("attack_type" in n for n in Image.objects.get(path__endswith="type.jpg").notes)


@pytest.mark.django_db
def test_it_marks_the_run_failed_when_scoring_breaks(inbox, demo_ensemble, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("model file vanished")

    monkeypatch.setattr(runs, "load_ensemble", broken)
    with pytest.raises(RuntimeError):
        tasks.score_day.delay(DAYS[0])

    run = Run.objects.get()
    assert run.status == Run.FAILED and "model file vanished" in run.errors[0]["reason"]


@pytest.mark.django_db
def test_it_refuses_to_run_without_an_active_ensemble(inbox):
    with pytest.raises(errors.JobError, match="no active ensemble"):
        runs.run_day(dt.date.fromisoformat(DAYS[0]))


@pytest.mark.django_db
def test_it_starts_the_audit_trail_with_the_sidecar_label(inbox, demo_ensemble):
    from monitor.models import LabelEvent

    score(DAYS[0])
    labelled = Image.objects.filter(day=DAYS[0]).exclude(label="")
    assert labelled.exists()
    events = LabelEvent.objects.filter(source="sidecar")
    assert sorted(events.values_list("image_id", "new_label")) == sorted(labelled.values_list("id", "label"))
