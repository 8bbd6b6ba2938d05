"""Claims: which worker holds which inbox files. A batch claims its files first (a conditional
UPDATE with a token naming its run), every status change requires the claim, and an expired claim
frees the files for the next run, so two workers never score one file and a crash loses nothing."""

from __future__ import annotations

import datetime as dt
import logging
import re
import time

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from .models import InboxFile, Run

log = logging.getLogger(__name__)


def fail_lost_runs(run: Run) -> list[int]:
    """Mark the earlier runs of `run`'s day that still say running but hold no live claim as
    failed: their worker died (a SIGKILL never reaches the finish). A run marked so by mistake
    (its batches were only waiting in the queue) still ends as its finish decides. Returns the
    runs marked."""
    lost = Run.objects.filter(day=run.day, shadow=False, status=Run.RUNNING, pk__lt=run.pk)
    holding = [pk for pk in live_claims(run.day) if pk is not None]
    ids = list(lost.exclude(pk__in=holding).values_list("pk", flat=True))
    if ids:
        reason = f"worker lost: superseded by run {run.pk}, which scores what is left (no live claim on any file)"
        Run.objects.filter(pk__in=ids, status=Run.RUNNING).update(
            status=Run.FAILED, finished_at=timezone.now(), errors=[{"path": "", "reason": reason}]
        )
        log.warning("runs %s of %s: worker lost, superseded by run %s", ids, run.day, run.pk)
    return ids


def unclaimed(qs):
    return qs.filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=timezone.now()))


def mark_started(run: Run, ids: list[int], t0: float) -> list[int]:
    """The run is running with `ids` to do; its discovery took since `t0` (time.monotonic())."""
    Run.objects.filter(pk=run.pk).update(
        total=len(ids),
        status=Run.RUNNING,
        started_at=timezone.now(),
        timings={"discover_s": round(time.monotonic() - t0, 3)},
    )
    return ids


def batch_token(run_id: int, file_ids: list[int]) -> str:
    """The claim token of a batch: the same for a retry or a redelivery of that batch, different
    for any other batch or run."""
    return f"run{run_id}:{min(file_ids)}:{len(file_ids)}"


TOKEN_RUN = re.compile(r"run(\d+):")


def live_claims(day: dt.date) -> dict[int | None, int]:
    """{run id: pending files of the day its batches hold by a claim that has not expired}; None
    for a claim that names no run."""
    rows = (
        InboxFile.objects.filter(day=day, status=InboxFile.PENDING, claimed_until__gte=timezone.now())
        .values_list("claimed_by")
        .annotate(n=Count("id"))
        .order_by()
    )
    held: dict[int | None, int] = {}
    for token, n in rows:
        run_id = int(m[1]) if (m := TOKEN_RUN.match(token)) else None
        held[run_id] = held.get(run_id, 0) + n
    return held


def claim(file_ids: list[int], token: str) -> list[InboxFile]:
    """Claim pending files for this batch. A claim expires (KOALA_CLAIM_SECONDS), so the files
    of a worker that died come back; a retry of the same batch (same token) takes them again."""
    now = timezone.now()
    InboxFile.objects.filter(id__in=file_ids, status=InboxFile.PENDING).filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now) | Q(claimed_by=token)
    ).update(claimed_by=token, claimed_until=now + dt.timedelta(seconds=settings.KOALA_CLAIM_SECONDS))
    return list(
        InboxFile.objects.filter(id__in=file_ids, claimed_by=token, status=InboxFile.PENDING)
        .select_related("device")
        .order_by("id")
    )


def pending_work(run: Run) -> tuple[dict[int, int], int]:
    """The day's files still pending as `run` finishes: ({other run id: files it is scoring (held
    by its live claim, or its own while it is queued or running)}, files nobody is working on).
    A file discovered by a later run belongs to that run (discover takes over unclaimed files)."""
    held = live_claims(run.day)
    left = held.pop(run.pk, 0) + held.pop(None, 0)  # its own batch that died or runs twice, or unknown: pending
    busy = Run.objects.filter(day=run.day, shadow=False, status__in=[Run.QUEUED, Run.RUNNING]).exclude(pk=run.pk)
    active = set(busy.values_list("pk", flat=True))
    idle = unclaimed(InboxFile.objects.filter(day=run.day, status=InboxFile.PENDING))
    for run_id, n in idle.values_list("run_id").annotate(n=Count("id")).order_by():
        if run_id in active:
            held[run_id] = held.get(run_id, 0) + n
        else:
            left += n
    return held, left


def superseded_reason(others: dict[int, int]) -> str:
    """Why a run did not mark its day done: {run id: files that run was still scoring}."""
    runs = ", ".join(str(pk) for pk in sorted(others))
    which = f"another run of this day (run {runs}) was" if len(others) == 1 else f"other runs ({runs}) were"
    return (
        f"superseded: {which} still scoring {sum(others.values())} files; "
        "the last run to finish marks the day done (if that one fails, re-run the day)"
    )
