"""The Celery tasks in-process (eager): the chord path, the nightly job and the hourly re-scan."""

import datetime as dt

import numpy as np
import pytest
from django.conf import settings
from django.utils import timezone

import demo
from monitor import tasks
from monitor.celery import app as celery_app
from monitor.models import Image, Run
from tests.conftest import jpeg_bytes, put, sidecar_for


def drop_faces(day: dt.date, n: int, seed: int = 0, device: str = "phone-01"):
    for i in range(n):
        s = demo.render_sample(np.random.default_rng([seed, i]), label="genuine", face_size=180)
        put(
            settings.INBOX_DIR,
            day.isoformat(),
            device,
            f"f{seed}_{i}.jpg",
            jpeg_bytes(s),
            sidecar_for(s, labelled=False),
        )


@pytest.mark.django_db
def test_it_scores_a_day_through_the_chord(demo_ensemble, settings):
    settings.KOALA_BATCH_SIZE = 2
    day = dt.date(2026, 11, 20)
    drop_faces(day, 5)

    run = Run.objects.get(pk=tasks.score_day.delay(day.isoformat()).get())

    assert run.status == Run.DONE and run.timings["batches"] == 3
    assert run.processed == 5 and Image.objects.filter(day=day).count() == 5


@pytest.mark.django_db
def test_it_scores_yesterday_at_night(demo_ensemble):
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    drop_faces(yesterday, 2)

    run = Run.objects.get(pk=tasks.score_yesterday.delay().get())

    assert (run.day, run.trigger, run.status, run.new_images) == (yesterday, "nightly", Run.DONE, 2)


@pytest.mark.django_db
def test_it_rescans_only_days_that_got_new_files(demo_ensemble):
    today = timezone.localdate()
    for back in (1, 2):
        drop_faces(today - dt.timedelta(days=back), 1, seed=back)
    tasks.rescan_recent.delay().get()
    assert Run.objects.count() == 2

    assert tasks.rescan_recent.delay().get() == []  # nothing new: no run at all
    drop_faces(today - dt.timedelta(days=3), 1, seed=9)  # a late file three days back
    (run_id,) = tasks.rescan_recent.delay().get()

    run = Run.objects.get(pk=run_id)
    assert (run.day, run.trigger, run.new_images) == (today - dt.timedelta(days=3), "rescan", 1)


def test_it_schedules_tasks_that_exist():
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert {entry["task"] for entry in schedule.values()} <= set(celery_app.tasks)
    nightly = schedule["score-yesterday"]["schedule"]
    hour, minute = (int(v) for v in settings.KOALA_NIGHTLY_AT.split(":"))
    assert nightly.hour == {hour} and nightly.minute == {minute}
