"""Issue 8: a worker killed mid-day loses nothing and a re-run completes the day (the dead run is
marked failed); two overlapping runs never score the same file twice and only one marks the day
done; an interrupted file write leaves nothing behind. The integration tests need PostgreSQL and
Redis (see tests/test_celery_worker.py); skipped without them (failed instead when
KOALA_REQUIRE_SERVICES=1)."""

import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count, Sum
from django.urls import reverse
from django.utils import timezone

import demo
from monitor import claims, discovery, folders, runs, tasks
from monitor.celery import app as celery_app
from monitor.models import DailyMetric, Image, InboxFile, Run
from tests.conftest import ROOT, jpeg_bytes, need_services, put
from tests.test_celery_worker import wait_for_run

DAY = "2026-11-22"
BATCH = 3
CLAIM_SECONDS = 3


def _child_env(data_root, **extra) -> dict:
    """The environment of a worker or helper process: the pytest test database, this test's data root."""
    db_url, broker = need_services()
    parts = urlsplit(db_url)
    env = {
        **os.environ,
        "DATABASE_URL": urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"])),
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": broker,
        "KOALA_DATA_DIR": str(data_root),
        "KOALA_ORT_THREADS": "1",
        "KOALA_SETTLE_SECONDS": "0",
        **extra,
    }
    for key in ("KOALA_INBOX_DIR", "KOALA_SORTED_DIR", "KOALA_THUMBS_DIR", "KOALA_MODELS_DIR"):
        env.pop(key, None)
    return env


def start_worker(data_root, queue: str, log_name: str) -> subprocess.Popen:
    """`celery worker` (1 process, small batches, short claims) in a process group of its own."""
    env = _child_env(data_root, KOALA_QUEUE=queue, KOALA_BATCH_SIZE=str(BATCH), KOALA_CLAIM_SECONDS=str(CLAIM_SECONDS))
    with open(data_root / log_name, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "monitor", "worker", "-Q", queue, "-c", "1"]
            + ["-n", f"{queue}-{log_name}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: os.killpg() takes the pool children too
        )


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


@pytest.fixture
def queue():
    """Route this test's tasks to a queue of its own, on the real broker."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    old = celery_app.conf.task_default_queue, celery_app.conf.task_always_eager
    celery_app.conf.task_default_queue, celery_app.conf.task_always_eager = name, False
    yield name
    celery_app.conf.task_default_queue, celery_app.conf.task_always_eager = old


def make_day(tmp_path, per_day: int) -> tuple[list, set]:
    out = tmp_path / "gen"
    demo.generate_inbox(out, days=1, per_day=per_day, seed=8, end_day=dt.date.fromisoformat(DAY))
    shutil.copytree(out, settings.INBOX_DIR, dirs_exist_ok=True)
    files = [p for p in settings.INBOX_DIR.rglob("*") if p.suffix in (".jpg", ".png")]
    return files, {hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def assert_day_complete(files: list, distinct: set) -> None:
    """Every file recorded once, every distinct image stored once, linked and thumbnailed."""
    day = dt.date.fromisoformat(DAY)
    assert InboxFile.objects.filter(day=day).count() == len(files)
    assert set(InboxFile.objects.values_list("status", flat=True)) <= {InboxFile.DONE, InboxFile.DUPLICATE}
    assert InboxFile.objects.filter(status=InboxFile.DONE).count() == len(distinct)
    assert InboxFile.objects.filter(status=InboxFile.DUPLICATE).count() == len(files) - len(distinct)
    assert not InboxFile.objects.filter(image=None).exists()
    assert Image.objects.count() == len(distinct)
    assert set(Image.objects.values_list("sha256", flat=True)) == distinct
    # each stored image belongs to exactly one `done` file
    per_image = InboxFile.objects.filter(status=InboxFile.DONE).values("image").annotate(n=Count("id"))
    assert {row["n"] for row in per_image} == {1}
    for im in Image.objects.all():
        assert im.sorted_path and (settings.SORTED_DIR / im.sorted_path).is_file(), im.path
        if im.category != "unreadable":
            assert im.has_thumbnail and (settings.THUMBS_DIR / im.thumb_relpath).is_file(), im.path
    sorted_files = [p for p in settings.SORTED_DIR.rglob("*") if p.is_file()]
    assert len(sorted_files) == len(distinct)
    leftovers = [*settings.SORTED_DIR.rglob(".*.tmp"), *settings.THUMBS_DIR.rglob(".*.tmp")]
    assert leftovers == []


@pytest.mark.integration
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_killed_worker_loses_nothing_and_a_rerun_completes_the_day(demo_ensemble, data_root, tmp_path, queue):
    need_services()
    files, distinct = make_day(tmp_path, per_day=45)
    assert len(files) >= 4 * BATCH
    day = dt.date.fromisoformat(DAY)

    first = start_worker(data_root, queue, "worker1.log")
    try:
        run1 = tasks.score_day.delay(DAY).get(timeout=120)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # some batches done, not all: then the crash
            finished = InboxFile.objects.filter(day=day).exclude(status=InboxFile.PENDING).count()
            if finished >= 2 * BATCH:
                break
            if first.poll() is not None:
                pytest.fail(f"the worker exited early:\n{(data_root / 'worker1.log').read_text()[-3000:]}")
            time.sleep(0.05)
        kill_group(first)
    finally:
        if first.poll() is None:
            kill_group(first)
    finished = InboxFile.objects.filter(day=day).exclude(status=InboxFile.PENDING).count()
    assert 2 * BATCH <= finished < len(files), "the crash must come mid-day"
    assert Run.objects.get(pk=run1).status == Run.RUNNING  # its chord never finishes

    # the broker lost the first run's queued batches (else the new worker would just finish them);
    # the dead worker's claims expire, then a new worker re-runs the day
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)
    while InboxFile.objects.filter(status=InboxFile.PENDING, claimed_until__gte=timezone.now()).exists():
        time.sleep(0.2)
    second = start_worker(data_root, queue, "worker2.log")
    try:
        run2 = tasks.score_day.delay(DAY).get(timeout=120)
        run = wait_for_run(run2, second, data_root / "worker2.log")
    finally:
        kill_group(second)

    assert run.status == Run.DONE, run.errors
    # the first run never finished: the second one's start marked it failed, saying why
    lost = Run.objects.get(pk=run1)
    assert lost.status == Run.FAILED and lost.finished_at is not None
    assert lost.note.startswith(f"worker lost: superseded by run {run2}"), lost.errors
    # the dead worker's batch in flight may be redelivered to the new one: it takes its files
    # (the same claim token), the new run then finds the rest
    assert len(files) - finished - BATCH <= run.total <= len(files) - finished
    assert run.processed == run.total == run.new_images + run.duplicates + run.failed_files
    totals = Run.objects.aggregate(p=Sum("processed"), n=Sum("new_images"), d=Sum("duplicates"))
    assert totals == {"p": len(files), "n": len(distinct), "d": len(files) - len(distinct)}
    assert sum(run.counts.values()) == len(distinct)
    assert_day_complete(files, distinct)


SCORER = textwrap.dedent(
    """
    import json, sys
    import django
    django.setup()
    from monitor import claims, loading, runs
    from monitor.models import Run
    run_id, ids = int(sys.argv[1]), json.loads(sys.argv[2])
    loading.load_ensemble(Run.objects.get(pk=run_id).ensemble)  # warm up before the start signal
    claim = claims.claim

    def claim_and_wait(file_ids, token):  # the batch holds its claim until the test says go on
        files = claim(file_ids, token)
        print("claimed", len(files), flush=True)
        sys.stdin.readline()
        return files

    runs.claim = claim_and_wait  # where score_batch looks it up
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps(runs.score_batch(run_id, ids)), flush=True)
    """
)


def step(proc, expect: str) -> str:
    """Let a paused scorer go on; its next line that starts with `expect`."""
    proc.stdin.write("go\n")
    proc.stdin.flush()
    while line := proc.stdout.readline():
        if line.startswith(expect):
            return line.strip()
    pytest.fail(f"the scorer ended without {expect!r}:\n{proc.stderr.read()[-3000:]}")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("claim_seconds", [600, 0], ids=["claims-held", "claims-expired"])
def test_two_overlapping_runs_score_each_file_once(demo_ensemble, data_root, tmp_path, claim_seconds):
    """Two runs of the same day, both discovered before either scores; two processes then score
    the same files, the second starting once the first holds its claim. With the claim held, the
    second gets nothing; with a claim that already expired (a batch slower than
    KOALA_CLAIM_SECONDS), the second takes the files over and the first stores and counts none.
    The run that finishes while the other one still works on the day's files does not mark the
    day done: it says it was superseded, and the other one, finishing last, marks it done."""
    need_services()
    files, distinct = make_day(tmp_path, per_day=16)
    day = dt.date.fromisoformat(DAY)
    both = [runs.start_run(day), runs.start_run(day)]
    ids = discovery.discover(both[0])
    assert discovery.discover(both[1]) == ids and len(ids) == len(files)  # nothing claimed yet: both see all

    env = {
        **_child_env(data_root, KOALA_CLAIM_SECONDS=str(claim_seconds)),
        "DJANGO_SETTINGS_MODULE": "monitor.settings",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCORER, str(run.pk), json.dumps(ids)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for run in both
    ]
    first_token = claims.batch_token(both[0].pk, ids)
    # who scores: the first with its claim held, the second when the first's claim expired
    winner, loser = (both[0], both[1]) if claim_seconds else (both[1], both[0])
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        step(procs[0], f"claimed {len(ids)}")  # the first claims every file, then waits
        assert InboxFile.objects.filter(claimed_by=first_token).count() == len(ids)
        step(procs[1], f"claimed {0 if claim_seconds else len(ids)}")  # the second claims: nothing, or all
        if claim_seconds:
            second = json.loads(step(procs[1], "{"))  # it scores nothing ...
            superseded = runs.finish_run(loser.pk)  # ... and finishes while the first holds every file
            first = json.loads(step(procs[0], "{"))
        else:
            first = json.loads(step(procs[0], "{"))  # its claim went to the second: it stores nothing ...
            superseded = runs.finish_run(loser.pk)  # ... and finishes while the second holds every file
            second = json.loads(step(procs[1], "{"))
        outs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err

    if claim_seconds:
        assert (first["files"], first["stored"], second["files"]) == (len(ids), len(distinct), 0)
    else:
        assert (first["files"], first["stored"], first["duplicates"]) == (len(ids), 0, 0)
        assert (second["files"], second["stored"]) == (len(ids), len(distinct))
    # exactly one run marks the day done; the other says why it did not
    assert superseded.status == Run.SUPERSEDED
    assert superseded.note.startswith(
        f"superseded: another run of this day (run {winner.pk}) was still scoring {len(ids)} files"
    ), superseded.errors
    assert runs.finish_run(winner.pk).status == Run.DONE
    assert list(Run.objects.filter(day=day).values_list("status", flat=True).order_by("pk")) == [
        Run.DONE if run == winner else Run.SUPERSEDED for run in both
    ]
    # nothing scored or counted twice: the two runs' counts add up to the day's files
    totals = Run.objects.aggregate(p=Sum("processed"), n=Sum("new_images"), d=Sum("duplicates"))
    assert totals == {"p": len(files), "n": len(distinct), "d": len(files) - len(distinct)}
    assert Image.objects.filter(run=winner).count() == len(distinct)
    assert set(InboxFile.objects.values_list("claimed_by", flat=True)) == {""}
    assert_day_complete(files, distinct)


# --- overlapping runs and lost workers, in one process ----------------------------------------------


def scoring(run: Run, ids: list[int]) -> None:
    """What a worker in the middle of a batch of `run` holds: a live claim on its files."""
    assert len(claims.claim(ids, claims.batch_token(run.pk, ids))) == len(ids)


def score_all(run: Run, ids: list[int]) -> Run:
    """Score `ids` for `run` in this process, batch after batch, then finish the run."""
    return runs.run_in_process(run, lambda _: ids, runs.score_batch, runs.finish_run, batch_size=BATCH)


@pytest.mark.django_db
def test_it_does_not_mark_the_day_done_while_another_run_scores_it(demo_ensemble, tmp_path, client, personas):
    files, distinct = make_day(tmp_path, per_day=6)
    day = dt.date.fromisoformat(DAY)
    first = runs.start_run(day)
    ids = discovery.discover(first)
    scoring(first, ids)

    second = runs.start_run(day)
    assert discovery.discover(second) == []  # every file is claimed by the first
    second = runs.finish_run(second.pk)

    assert second.status == Run.SUPERSEDED
    assert second.note == (
        f"superseded: another run of this day (run {first.pk}) was still scoring {len(files)} files; "
        "the last run to finish marks the day done (if that one fails, re-run the day)"
    )
    assert not DailyMetric.objects.filter(day=day).exists()  # no figures of half a day
    client.force_login(personas["viewer"])
    for url in (reverse("runs"), reverse("run", args=[second.pk])):
        page = client.get(url).content.decode()
        assert 'class="status-superseded"' in page and f"(run {first.pk}) was still scoring" in page, url

    runs.score_batch(first.pk, ids)  # the first run's batch ends
    first = runs.finish_run(first.pk)
    assert first.status == Run.DONE and first.note == ""
    assert DailyMetric.objects.get(day=day, device=None).images == len(distinct)
    assert Run.objects.get(pk=second.pk).status == Run.SUPERSEDED


@pytest.mark.django_db
def test_it_leaves_the_day_to_a_later_run_that_found_more_files(demo_ensemble, tmp_path):
    """A late file found by a second run while the first is still going: the first one, finishing
    first, is superseded; the second finishes the day."""
    make_day(tmp_path, per_day=4)
    day = dt.date.fromisoformat(DAY)
    first = runs.start_run(day)
    first_ids = discovery.discover(first)
    sample = demo.render_sample(np.random.default_rng(3), label="genuine", face_size=200, yaw=0, pitch=0, blur=0)
    put(settings.INBOX_DIR, DAY, "late-device", "late.jpg", jpeg_bytes(sample))
    second = runs.start_run(day)
    second_ids = discovery.discover(second)
    assert len(second_ids) == len(first_ids) + 1  # nothing claimed yet: it sees the first one's files too

    assert score_all(first, first_ids).status == Run.SUPERSEDED  # the late file waits for the second
    assert f"(run {second.pk}) was still scoring 1 files" in Run.objects.get(pk=first.pk).note
    assert score_all(second, second_ids).status == Run.DONE


@pytest.mark.django_db
def test_it_marks_a_run_whose_worker_died_as_failed_when_the_day_runs_again(demo_ensemble, tmp_path):
    make_day(tmp_path, per_day=6)
    day = dt.date.fromisoformat(DAY)
    dead, alive, done = (runs.start_run(day) for _ in range(3))
    ids = discovery.discover(dead)
    scoring(dead, ids[:BATCH])
    scoring(alive, ids[BATCH:])
    InboxFile.objects.filter(claimed_by__startswith=f"run{dead.pk}:").update(  # its worker was killed
        claimed_until=timezone.now() - dt.timedelta(seconds=1)
    )
    Run.objects.filter(pk__in=[dead.pk, alive.pk]).update(status=Run.RUNNING)
    Run.objects.filter(pk=done.pk).update(status=Run.DONE)

    new = runs.start_run(day)

    dead.refresh_from_db()
    assert dead.status == Run.FAILED and dead.finished_at is not None
    assert (
        dead.note == f"worker lost: superseded by run {new.pk}, which scores what is left (no live claim on any file)"
    )
    assert Run.objects.get(pk=alive.pk).status == Run.RUNNING  # its batch still holds its files
    assert Run.objects.get(pk=done.pk).status == Run.DONE
    assert discovery.discover(new) == ids[:BATCH]  # the dead run's files come back


# --- interrupted writes ------------------------------------------------------------------------------


def test_it_leaves_no_file_behind_when_a_write_fails(tmp_path):
    dst = tmp_path / "sorted" / "live" / "cam__a.jpg"

    def half_a_write(tmp):
        tmp.write_bytes(b"half a thumbn")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        folders.atomic_write(dst, half_a_write)
    assert list(dst.parent.iterdir()) == []  # neither the file nor its temporary

    dst.write_bytes(b"the earlier version")
    with pytest.raises(OSError):
        folders.atomic_write(dst, half_a_write)
    assert list(dst.parent.iterdir()) == [dst] and dst.read_bytes() == b"the earlier version"


def test_it_removes_only_stale_temporary_files(tmp_path):
    folder = tmp_path / "thumbs" / "ab"
    folder.mkdir(parents=True)
    temp = folders.temp_path(folder / f"ab{'0' * 62}.jpg")
    keep = [folder / f"ab{'0' * 62}.jpg", folder / ".hidden", folder / ".x.jpg.tmp", folder / ".x.jpg.NOTHEX12.tmp"]
    for p in [temp, *keep]:
        p.write_bytes(b"x")

    assert folders.remove_stale_temp_files([folder, tmp_path / "missing"]) == 0  # just written: maybe in progress
    assert temp.exists()
    time.sleep(0.02)
    assert folders.remove_stale_temp_files([folder], older_than=0.01) == 1
    assert sorted(folder.iterdir()) == sorted(keep)


@pytest.mark.django_db
def test_it_removes_temporary_files_a_killed_write_left_at_the_end_of_the_run(demo_ensemble, tmp_path, monkeypatch):
    make_day(tmp_path, per_day=4)
    run = runs.run_day(dt.date.fromisoformat(DAY))
    im = Image.objects.exclude(category="unreadable").first()
    # killed while writing this image's link and thumbnail: temporaries, no thumbnail recorded
    thumb = settings.THUMBS_DIR / im.thumb_relpath
    thumb.unlink()
    Image.objects.filter(pk=im.pk).update(has_thumbnail=False)
    stale = [folders.temp_path(settings.SORTED_DIR / im.sorted_path), folders.temp_path(thumb)]
    for p in stale:
        p.write_bytes(b"half")
    monkeypatch.setattr(folders, "STALE_TEMP_SECONDS", 0)
    time.sleep(0.02)

    assert runs.finish_run(run.pk).status == Run.DONE
    assert not any(p.exists() for p in stale)
    assert thumb.is_file() and Image.objects.get(pk=im.pk).has_thumbnail

    thumb_temp = folders.temp_path(thumb)
    thumb_temp.write_bytes(b"half")
    time.sleep(0.02)
    folders.rebuild_folders(dt.date.fromisoformat(DAY))
    assert not thumb_temp.exists()
