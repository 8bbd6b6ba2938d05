"""Integration (issue 8): a worker killed mid-day loses nothing and a re-run completes the day;
two overlapping runs never score the same file twice. Needs PostgreSQL and Redis (see
tests/test_celery_worker.py); skipped without them (failed instead when KOALA_REQUIRE_SERVICES=1)."""

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

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count, Sum
from django.utils import timezone

from liveness import demo
from monitor import services, tasks
from monitor.celery import app as celery_app
from monitor.models import Image, InboxFile, Run
from tests.conftest import ROOT, need_services
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
    from monitor import services
    from monitor.models import Run
    run_id, ids = int(sys.argv[1]), json.loads(sys.argv[2])
    services.load_ensemble(Run.objects.get(pk=run_id).ensemble)  # warm up before the start signal
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps(services.score_batch(run_id, ids)), flush=True)
    """
)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("claim_seconds", [600, 0], ids=["claims-held", "claims-expired"])
def test_two_overlapping_runs_score_each_file_once(demo_ensemble, data_root, tmp_path, claim_seconds):
    """Two runs of the same day, both discovered before either scores; two processes then score
    the same files, the second starting once the first holds its claim. With the claim held, the
    second gets nothing; with a claim that already expired (a batch slower than
    KOALA_CLAIM_SECONDS), the second takes the files over and the first stores and counts none."""
    need_services()
    files, distinct = make_day(tmp_path, per_day=16)
    day = dt.date.fromisoformat(DAY)
    runs = [services.start_run(day), services.start_run(day)]
    ids = services.discover(runs[0])
    assert services.discover(runs[1]) == ids and len(ids) == len(files)  # nothing claimed yet: both see all

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
        for run in runs
    ]
    first_token = services.batch_token(runs[0].pk, ids)
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        procs[0].stdin.write("go\n")
        procs[0].stdin.flush()
        deadline = time.monotonic() + 60
        while InboxFile.objects.filter(claimed_by=first_token).count() < len(ids):
            assert time.monotonic() < deadline and procs[0].poll() is None, "the first process never claimed"
            time.sleep(0.005)
        procs[1].stdin.write("go\n")  # while the first is still scoring (about a second)
        procs[1].stdin.flush()
        outs = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    first, second = (json.loads(out.strip().splitlines()[-1]) for out, _ in outs)

    if claim_seconds:
        assert (first["files"], first["stored"], second["files"]) == (len(ids), len(distinct), 0)
    else:
        assert (first["files"], first["stored"], first["duplicates"]) == (len(ids), 0, 0)
        assert (second["files"], second["stored"]) == (len(ids), len(distinct))
    for run in runs:
        assert services.finish_run(run.pk).status == Run.DONE
    # nothing scored or counted twice: the two runs' counts add up to the day's files
    totals = Run.objects.aggregate(p=Sum("processed"), n=Sum("new_images"), d=Sum("duplicates"))
    assert totals == {"p": len(files), "n": len(distinct), "d": len(files) - len(distinct)}
    winner = runs[0] if claim_seconds else runs[1]
    assert Image.objects.filter(run=winner).count() == len(distinct)
    assert set(InboxFile.objects.values_list("claimed_by", flat=True)) == {""}
    assert_day_complete(files, distinct)
