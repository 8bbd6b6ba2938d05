"""Shadow runs: score a day's stored images with a non-active ensemble.

run = start_shadow_run(day, ensemble)   # a Run with shadow=True
ids = shadow_ids(run)                   # images production scored that day (box and score)
for batch in chunks(ids): shadow_batch(run.pk, batch)   # score with the stored box, upsert ShadowScore
finish_shadow_run(run.pk)               # counts, errors, timings, status done

A shadow run writes ShadowScore rows and its own Run row, nothing else: no Image, InboxFile,
DailyMetric or Alert row and no file of the sorted or thumbs folders changes. Each image is scored
from its inbox file with the face box production stored (`FileInput.box`, box_source "stored"),
so both ensembles look at the same face. Safe to run twice and concurrently: one ShadowScore per
(ensemble, image), written by upsert.

One model alone (`score_day --model NAME[:VERSION]`, "score with one model" on the runs page) is a
shadow run of a hidden one-model ensemble, `model:NAME@VERSION` (one_model_ensemble): shadow scores
are kept per ensemble, so this reuses every page that shows them. Its threshold follows the active
ensemble's (a model manifest has no threshold), so its decisions compare with production's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from liveness.boxes import Box
from liveness.pipeline import FileInput, Pipeline

from .claims import mark_started
from .errors import JobError
from .loading import gates_from_settings, load_ensemble
from .models import Ensemble, EnsembleEvent, Image, ModelVersion, Run, ShadowScore
from .runs import final_timings, run_in_process

log = logging.getLogger(__name__)

SCORE_FIELDS = [
    "run",
    "day",
    "scores",
    "attack_guesses",
    "score",
    "threshold",
    "decision",
    "model_versions",
    "scored_at",
]
MAX_ERRORS = 1000
ONE_MODEL_PREFIX = "model:"  # ':' and '@' are refused in the names admins give ensembles: no clash
NAME_MAX = Ensemble._meta.get_field("name").max_length


def resolve(ensemble: Ensemble | str | int) -> Ensemble:
    """An Ensemble from itself, its name or its id; JobError naming the known ones otherwise."""
    if isinstance(ensemble, Ensemble):
        return ensemble
    found = Ensemble.objects.filter(**({"pk": ensemble} if isinstance(ensemble, int) else {"name": ensemble})).first()
    if found is None:
        raise JobError(f"unknown ensemble {ensemble!r} (ensembles: {known_names()})")
    return found


def known_names() -> str:
    """The ensembles admins made (the hidden one-model ones are named by their models)."""
    names = Ensemble.objects.exclude(name__startswith=ONE_MODEL_PREFIX).order_by("name").values_list("name", flat=True)
    return ", ".join(names) or "none registered"


def is_one_model(ens: Ensemble) -> bool:
    return ens.name.startswith(ONE_MODEL_PREFIX)


def known_models() -> str:
    pairs = ModelVersion.objects.order_by("name", "created_at", "pk").values_list("name", "version")
    return ", ".join(f"{n}:{v}" for n, v in pairs) or "none registered"


def find_model(spec: str) -> ModelVersion:
    """The model version `NAME:VERSION` names, or with `NAME` alone the version of that name
    registered last; JobError listing the registered ones otherwise."""
    name, _, version = spec.strip().partition(":")
    qs = ModelVersion.objects.filter(name=name, **({"version": version} if version else {}))
    found = qs.order_by("-created_at", "-pk").first()
    if found is None:
        raise JobError(f"unknown model {spec!r} (models: {known_models()})")
    return found


def one_model_ensemble(mv: ModelVersion, user=None) -> Ensemble:
    """The hidden, never active one-model ensemble of `mv`, made on first use, its threshold set to
    the active ensemble's (0.5 when none is active); `user`: who asked (None: the command)."""
    name = f"{ONE_MODEL_PREFIX}{mv.name}@{mv.version}"
    if len(name) > NAME_MAX:
        raise JobError(f"{mv.label}: name and version too long for a one-model run ({len(name)} > {NAME_MAX})")
    active = Ensemble.objects.filter(is_active=True).first()
    threshold, source = (active.threshold, f"the active ensemble {active.name}") if active else (0.5, "no active one")
    with transaction.atomic():
        ens, created = Ensemble.objects.get_or_create(name=name, defaults={"threshold": threshold})
        if created:
            ens.members.set([mv])
            note = f"for one-model shadow runs of {mv.label}; threshold from {source}"
            EnsembleEvent.objects.create(
                ensemble=ens, kind=EnsembleEvent.REGISTERED, new_threshold=threshold, note=note, user=user
            )
        elif ens.threshold != threshold:
            _follow(ens, threshold, source, user)
    return ens


def _follow(ens: Ensemble, threshold: float, source: str, user) -> None:
    """The one-model ensemble takes the active threshold again, recorded as every change is."""
    EnsembleEvent.objects.create(
        ensemble=ens,
        kind=EnsembleEvent.THRESHOLD,
        old_threshold=ens.threshold,
        new_threshold=threshold,
        note=f"follows {source}",
        user=user,
    )
    Ensemble.objects.filter(pk=ens.pk).update(threshold=threshold)
    ens.threshold = threshold


def start_shadow_run(
    day: dt.date, ensemble: Ensemble | str | int, *, trigger: str = "manual", rescore: bool = False
) -> Run:
    """A queued shadow Run of the day for a non-active ensemble (the active one is a normal run)."""
    ens = resolve(ensemble)
    if ens.is_active:
        raise JobError(f"{ens.name} is the active ensemble: score the day with a normal run, not a shadow run")
    if not ens.members.exists():
        raise JobError(f"ensemble {ens.name} has no models")
    return Run.objects.create(
        day=day, ensemble=ens, threshold=ens.threshold, trigger=trigger, rescore=rescore, shadow=True
    )


def shadow_ids(run: Run) -> list[int]:
    """Ids of the day's images that production scored (a face box and a score), minus those the
    run's ensemble already has a shadow score for (unless the run re-scores). Starts the run."""
    t0 = time.monotonic()
    qs = Image.objects.filter(day=run.day, score__isnull=False, box_w__isnull=False, box_h__isnull=False)
    if not run.rescore:
        qs = qs.exclude(shadow_scores__ensemble_id=run.ensemble_id)
    return mark_started(run, list(qs.order_by("id").values_list("id", flat=True)), t0)


def _read(im: Image) -> tuple[bytes, bytes | None]:
    path = settings.INBOX_DIR / im.path
    data = path.read_bytes()
    sidecar = path.with_suffix(".json")
    return data, (sidecar.read_bytes() if sidecar.is_file() else None)


def stored_box(im: Image) -> Box:
    return Box(im.box_x, im.box_y, im.box_w, im.box_h)


def shadow_batch(run_id: int, image_ids: list[int]) -> dict:
    """Score one batch of a shadow run and upsert its ShadowScore rows. A file that is gone,
    unreadable or changed since production scored it goes to the run's errors, with its reason."""
    t0 = time.monotonic()
    run = Run.objects.select_related("ensemble").get(pk=run_id)
    if not run.shadow or run.ensemble is None:
        raise JobError(f"run {run_id} is not a shadow run of an ensemble")
    ens = load_ensemble(run.ensemble, run.threshold)
    versions = {m.name: m.label for m in run.ensemble.members.all()}
    images = list(Image.objects.filter(pk__in=image_ids).order_by("id"))
    todo, errors = _inputs(images)
    results = Pipeline(ens, gates_from_settings(), draft=settings.KOALA_DRAFT_DECODE).analyse([f for _, f in todo])
    t_score = time.monotonic()
    rows = _shadow_scores(run, ens.threshold, versions, todo, results, errors)
    _store(run_id, rows, errors, processed=len(image_ids))
    return {
        "images": len(image_ids),
        "scored": len(rows),
        "flagged": sum(r.decision == "attack" for r in rows),
        "failed": len(errors),
        "score_s": round(t_score - t0, 3),
        "total_s": round(time.monotonic() - t0, 3),
    }


def _inputs(images: list[Image]) -> tuple[list[tuple[Image, FileInput]], list[dict]]:
    """(each image with its file to score at the stored box, the errors of the files that are gone,
    unreadable or whose bytes are no longer the ones production scored)."""
    errors: list[dict] = []
    todo: list[tuple[Image, FileInput]] = []
    for im in images:
        try:
            data, sidecar = _read(im)
        except OSError as exc:
            errors.append({"path": im.path, "reason": f"cannot read the file: {exc.strerror or exc}"})
            continue
        sha = hashlib.sha256(data).hexdigest()
        if sha != im.sha256:
            errors.append({"path": im.path, "reason": "the file's bytes changed since production scored it"})
            continue
        todo.append((im, FileInput(data, sidecar, sha256=sha, box=stored_box(im))))
    return todo, errors


def _shadow_scores(run: Run, threshold: float, versions: dict, todo, results, errors: list[dict]) -> list[ShadowScore]:
    """The ShadowScore rows of the scored images; an image left unscored goes to `errors`."""
    now = timezone.now()
    rows = []
    for (im, _), r in zip(todo, results, strict=True):
        if r.score is None:
            errors.append({"path": im.path, "reason": r.reason or f"not scored ({r.category})"})
            continue
        rows.append(
            ShadowScore(
                image=im,
                ensemble=run.ensemble,
                run=run,
                day=im.day,
                scores=r.scores,
                attack_guesses=r.attack_guesses,
                score=r.score,
                threshold=threshold,
                decision=r.decision,
                model_versions=versions,
                scored_at=now,
            )
        )
    return rows


def _store(run_id: int, rows: list[ShadowScore], errors: list[dict], *, processed: int) -> None:
    """Upsert the rows and add the batch's counts and errors to the run, in one transaction."""
    with transaction.atomic():
        ShadowScore.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["ensemble", "image"], update_fields=SCORE_FIELDS
        )
        locked = Run.objects.select_for_update().get(pk=run_id)  # errors are appended by concurrent batches
        Run.objects.filter(pk=run_id).update(
            processed=F("processed") + processed,
            new_images=F("new_images") + len(rows),
            failed_files=F("failed_files") + len(errors),
            errors=(locked.errors + errors)[:MAX_ERRORS],
        )


def finish_shadow_run(run_id: int, batch_results: list[dict] | None = None) -> Run:
    """Close a shadow run: its counts (scored and flagged by this run, and the ensemble's shadow
    scores of the day), timings, status done. Nothing of the day's images or figures changes."""
    run = Run.objects.get(pk=run_id)
    mine = ShadowScore.objects.filter(run=run)
    counts = {
        "scored": mine.count(),
        "flagged": mine.filter(decision="attack").count(),
        "day_total": ShadowScore.objects.filter(ensemble_id=run.ensemble_id, day=run.day).count(),
    }
    timings = final_timings(run, batch_results)
    Run.objects.filter(pk=run_id).update(status=Run.DONE, counts=counts, timings=timings, finished_at=timezone.now())
    run.refresh_from_db()
    log.info("shadow run %s of %s with %s %s: %s", run.pk, run.day, run.ensemble, run.status, counts)
    return run


def run_shadow_day(
    day: dt.date,
    ensemble: Ensemble | str | int,
    *,
    trigger: str = "command",
    rescore: bool = False,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    total: Callable[[int], None] | None = None,
) -> Run:
    """A whole shadow day in this process, batch after batch (what the Celery chord does in parallel)."""
    run = start_shadow_run(day, ensemble, trigger=trigger, rescore=rescore)
    return run_in_process(
        run, shadow_ids, shadow_batch, finish_shadow_run, batch_size=batch_size, progress=progress, total=total
    )
