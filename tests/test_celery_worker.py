"""Integration: a real Celery worker process on Redis with PostgreSQL scores a day through the
chord (discover -> batches in parallel -> finish). Needs DATABASE_URL=postgres://... and
CELERY_BROKER_URL=redis://...; skipped without them (failed instead when KOALA_REQUIRE_SERVICES=1)."""

import datetime as dt
import hashlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection

import demo
from monitor import tasks
from monitor.celery import app as celery_app
from monitor.models import Image, InboxFile, Run
from tests.conftest import ROOT, need_services

DAY = "2026-11-21"


@pytest.fixture
def worker(data_root):
    """Start `celery worker` (2 processes) on a queue of its own, pointed at the test database."""
    db_url, broker = need_services()
    test_db = connection.settings_dict["NAME"]  # pytest-django's test database
    parts = urlsplit(db_url)
    worker_db = urlunsplit(parts._replace(path="/" + test_db))
    queue = f"test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DATABASE_URL": worker_db,
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": broker,
        "KOALA_DATA_DIR": str(data_root),
        "KOALA_QUEUE": queue,
        "KOALA_BATCH_SIZE": "10",
        "KOALA_ORT_THREADS": "1",
        "KOALA_SETTLE_SECONDS": "0",
    }
    for key in ("KOALA_INBOX_DIR", "KOALA_SORTED_DIR", "KOALA_THUMBS_DIR", "KOALA_MODELS_DIR"):
        env.pop(key, None)
    log = open(data_root / "worker.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "monitor",
            "worker",
            "-Q",
            queue,
            "-c",
            "2",
            "-n",
            f"{queue}@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    old = celery_app.conf.task_default_queue, celery_app.conf.task_always_eager
    celery_app.conf.task_default_queue, celery_app.conf.task_always_eager = queue, False
    try:
        yield proc
    finally:
        celery_app.conf.task_default_queue, celery_app.conf.task_always_eager = old
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def wait_for_run(run_id: int, proc, log_path, timeout: float = 240) -> Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = Run.objects.get(pk=run_id)
        if run.status not in (Run.QUEUED, Run.RUNNING):  # done, failed or superseded
            return run
        if proc.poll() is not None:
            pytest.fail(f"the worker exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"run {run_id} not finished after {timeout} s:\n{log_path.read_text()[-3000:]}")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_scores_a_day_in_batches_on_a_real_worker(demo_ensemble, worker, data_root, tmp_path):
    out = tmp_path / "gen"
    demo.generate_inbox(out, days=1, per_day=45, seed=11, end_day=dt.date.fromisoformat(DAY))
    shutil.copytree(out, settings.INBOX_DIR, dirs_exist_ok=True)
    files = [p for p in settings.INBOX_DIR.rglob("*") if p.suffix in (".jpg", ".png")]
    distinct = {hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    run_id = tasks.score_day.delay(DAY).get(timeout=120)
    run = wait_for_run(run_id, worker, data_root / "worker.log")

    assert run.status == Run.DONE, run.errors
    assert run.timings["batches"] == -(-len(files) // 10) >= 3
    assert run.processed == run.total == len(files)
    assert Image.objects.count() == len(distinct)
    assert not InboxFile.objects.filter(status=InboxFile.PENDING).exists()
    assert sum(run.counts.values()) == len(distinct)
    scored = Image.objects.exclude(score=None)
    assert scored.exists() and all(len(im.scores) == demo_ensemble.members.count() for im in scored)
    sorted_files = [p for p in settings.SORTED_DIR.rglob("*") if p.is_file()]
    assert len(sorted_files) == len(distinct)
