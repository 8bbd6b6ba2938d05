"""Celery tasks: thin wrappers that take dates and ids and call the service functions (monitor/runs.py, monitor/shadow.py, ...)."""

import datetime as dt
import logging

from celery import chord, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from . import alerts, daily, db, discovery, purge, registry, runs, shadow
from .models import ModelVersion, Run

log = logging.getLogger(__name__)

# Only these are worth retrying: the database or shared storage being briefly unavailable.
TRANSIENT = (OperationalError, InterfaceError, TimeoutError, ConnectionError)


def _fan_out(run, find_ids, batch_task, finish_task) -> int:
    """The run's work ids in parallel batch tasks, the finish as the chord's callback; a failed
    batch marks the run failed."""
    try:
        ids = find_ids(run)
        batches = [batch_task.si(run.pk, b) for b in db.chunks(ids, settings.KOALA_BATCH_SIZE)]
        if not batches:
            finish_task.delay(None, run.pk)
        else:
            chord(batches)(finish_task.s(run.pk).on_error(run_failed.si(run.pk)))
    except Exception as exc:  # in-process (eager) runs raise here; on a worker on_error handles batches
        runs.fail_run(run.pk, f"{exc.__class__.__name__}: {exc}")
        raise
    return run.pk


@shared_task
def score_day(day: str, trigger: str = "manual", rescore: bool = False, run_id: int | None = None) -> int:
    """Discover the day's new files, score them in parallel batches, finish in a chord callback."""
    if run_id is None:
        run = runs.start_run(discovery.parse_day(day), trigger=trigger, rescore=rescore)
    else:
        run = Run.objects.get(pk=run_id)
    return _fan_out(run, discovery.discover, score_batch, finish_run)


@shared_task(bind=True, autoretry_for=TRANSIENT, retry_backoff=2, retry_backoff_max=120, max_retries=6, acks_late=True)
def score_batch(self, run_id: int, file_ids: list[int]) -> dict:
    return runs.score_batch(run_id, file_ids)


@shared_task(autoretry_for=TRANSIENT, retry_backoff=2, max_retries=6)
def finish_run(batch_results: list[dict] | None, run_id: int) -> int:
    runs.finish_run(run_id, batch_results)
    return run_id


@shared_task
def run_failed(run_id: int) -> None:
    runs.fail_run(run_id, "a batch failed; see the worker log, then re-run the day")


@shared_task
def score_yesterday() -> int:
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    return score_day(yesterday.isoformat(), trigger="nightly")


@shared_task
def rescan_recent() -> list[int]:
    """Late files: re-scan the last KOALA_RESCAN_DAYS days; a day with nothing new costs a listing."""
    today = timezone.localdate()
    run_ids = []
    for back in range(1, settings.KOALA_RESCAN_DAYS + 1):
        day = today - dt.timedelta(days=back)
        if discovery.has_work(day):
            run_ids.append(score_day(day.isoformat(), trigger="rescan"))
    return run_ids


@shared_task(autoretry_for=TRANSIENT, retry_backoff=2, max_retries=6)
def recompute_day(day: str) -> int:
    """A day's figures and alerts again (e.g. after its labels changed). Returns the alerts opened."""
    day = day if isinstance(day, dt.date) else discovery.parse_day(day)
    daily.compute_day(day)
    return len(alerts.evaluate_day(day))


# --- shadow runs (monitor/shadow.py): a non-active ensemble scores a day into ShadowScore ----------


@shared_task
def shadow_day(
    day: str, ensemble_id: int, run_id: int | None = None, rescore: bool = False, trigger: str = "manual"
) -> int:
    """Score the day's stored images with a non-active ensemble in parallel batches; finish in a chord callback."""
    if run_id is None:
        run = shadow.start_shadow_run(discovery.parse_day(day), ensemble_id, trigger=trigger, rescore=rescore)
    else:
        run = Run.objects.get(pk=run_id)
    return _fan_out(run, shadow.shadow_ids, shadow_batch, finish_shadow_run)


@shared_task(bind=True, autoretry_for=TRANSIENT, retry_backoff=2, retry_backoff_max=120, max_retries=6, acks_late=True)
def shadow_batch(self, run_id: int, image_ids: list[int]) -> dict:
    return shadow.shadow_batch(run_id, image_ids)


@shared_task(autoretry_for=TRANSIENT, retry_backoff=2, max_retries=6)
def finish_shadow_run(batch_results: list[dict] | None, run_id: int) -> int:
    shadow.finish_shadow_run(run_id, batch_results)
    return run_id


# --- retention (monitor/purge.py): nightly on beat when KOALA_RETENTION_DAYS > 0 ----------------


@shared_task
def purge_expired_images() -> dict:
    """Delete the image files of the days past KOALA_RETENTION_DAYS (rows, scores and metrics stay)."""
    if settings.KOALA_RETENTION_DAYS <= 0:  # 0 = keep forever (a beat entry left from an earlier setting)
        return {}
    result = purge.purge_images(settings.KOALA_RETENTION_DAYS)
    return {"cutoff": result.cutoff.isoformat(), "images": result.images, "errors": len(result.errors)}


# --- the model registry (monitor/registry.py) ------------------------------------------------------


@shared_task
def measure_model(model_version_id: int) -> dict:
    """Measure a newly uploaded model's speed (a few seconds; longer for a big model) on the
    machine that scores: a worker, or in-process without a broker."""
    mv = registry.measure_model(ModelVersion.objects.get(pk=model_version_id))
    return {"latency_ms": mv.latency_ms, "throughput": mv.throughput, "best_batch": mv.best_batch}
