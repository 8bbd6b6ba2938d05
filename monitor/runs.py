"""The daily job as service functions. Celery tasks and management commands are thin wrappers.

    run = start_run(day)              # a Run row
    ids = discover(run)               # new (and left-over pending) inbox files -> InboxFile ids
    for batch in chunks(ids): score_batch(run.pk, batch)   # claim, score, store, link
    finish_run(run.pk)                # counts, errors, repair missing files, status done

The steps before and after are their own modules: discovery.py (discover), claims.py, loading.py
(the ensemble, the detector, the gates), folders.py (links and thumbnails), db.py."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Iterable

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

import liveness.ensemble
from liveness.pipeline import FileInput, ImageResult, Pipeline

from . import alerts, daily, labels
from .claims import batch_token, claim, fail_lost_runs, pending_work, superseded_reason
from .db import chunks, update_rows
from .discovery import discover
from .folders import remove_stale_temp_files, temp_folders, write_files
from .loading import active_ensemble, face_detector, gates_from_settings, load_ensemble
from .models import Device, Ensemble, Image, InboxFile, Run

log = logging.getLogger(__name__)


def start_run(day: dt.date, *, trigger: str = "manual", rescore: bool = False, ensemble: Ensemble | None = None) -> Run:
    ensemble = ensemble or active_ensemble()
    detector = face_detector()
    run = Run.objects.create(
        day=day,
        ensemble=ensemble,
        threshold=ensemble.threshold,
        trigger=trigger,
        rescore=rescore,
        detector=detector.label if detector else "",
    )
    fail_lost_runs(run)
    return run


def _read(f: InboxFile) -> tuple[bytes, bytes | None]:
    path = settings.INBOX_DIR / f.path
    data = path.read_bytes()
    sidecar = path.with_suffix(".json")
    return data, (sidecar.read_bytes() if sidecar.is_file() else None)


def _image_fields(r: ImageResult, f: InboxFile, run: Run, ens: liveness.ensemble.Ensemble, versions: dict) -> dict:
    q, box, sc = r.quality, r.box, r.sidecar
    scores = list(r.scores.values())
    return {
        "path": f.path,
        "day": f.day,
        "device": f.device,
        "captured_at": r.captured_at,
        "file_size": r.size,
        "format": r.format,
        "width": r.width,
        "height": r.height,
        "box_x": box.x if box else None,
        "box_y": box.y if box else None,
        "box_w": box.w if box else None,
        "box_h": box.h if box else None,
        "box_source": r.box_source,
        "detection_score": r.detection_score,
        "face_size": q.face_size if q else None,
        "yaw": q.yaw if q else None,
        "pitch": q.pitch if q else None,
        "roll": q.roll if q else None,
        "blur": q.blur if q else None,
        "pose_source": q.pose_source if q else "",
        "blur_source": q.blur_source if q else "",
        "failed_gates": q.failed_gates if q else [],
        "scores": r.scores,
        "attack_guesses": r.attack_guesses,
        "crop_rects": r.crop_rects,
        "score": r.score,
        "disagreement": (max(scores) - min(scores)) if scores else None,
        "decision": r.decision or "",
        "category": r.category,
        "reason": r.reason[:500],
        "notes": r.notes,
        "ensemble": run.ensemble,
        "threshold": ens.threshold if r.score is not None else None,
        "model_versions": versions if r.score is not None else {},
        "label": (sc.label or "") if sc else "",
        "attack_type": (sc.attack_type or "") if sc and sc.label == "attack" else "",
        "sidecar": sc.raw if sc else None,
        "site": ((sc.site or "") if sc else "")[:100],
        "subject": ((sc.subject or "") if sc else "")[:100],
        "face_hash": r.face_hash,
        "run": run,
    }


def identified(shas: Iterable[str], day: dt.date, *, full: bool = True) -> dict[str, Image]:
    """{sha256: the stored image that a file of `day` with those bytes is}, for the stored ones of
    `shas`. A readable image is identified by its bytes alone (a copy on a later day is a
    duplicate), an unreadable one by its bytes and day: the same broken bytes (a zero-byte file,
    one truncated upload) on another day are an image of that day, so each day's counts of what
    arrived broken stay true. Should both exist (the decoder's verdict on those bytes changed
    between runs), the readable one is the image. `full=False`: only the fields the batch's
    checks read."""
    rows = Image.objects.filter(~Q(category="unreadable") | Q(day=day), sha256__in=set(shas))
    if not full:
        rows = rows.only("sha256", "category", "path", "run_id")
    found: dict[str, Image] = {}
    for im in rows:
        if im.sha256 not in found or found[im.sha256].category == "unreadable":
            found[im.sha256] = im
    return found


def score_batch(run_id: int, file_ids: list[int]) -> dict:
    """Score one batch of inbox files of a run. Safe to run twice and concurrently: files are
    claimed first, each status change requires the claim, and an image is stored once (see
    `identified`; the constraints on Image keep it so for concurrent batches)."""
    t0 = time.monotonic()
    run = Run.objects.select_related("ensemble").get(pk=run_id)
    ens = load_ensemble(run.ensemble, run.threshold)
    versions = {m.name: m.label for m in run.ensemble.members.all()}
    token = batch_token(run_id, file_ids) if file_ids else ""
    files = claim(file_ids, token) if file_ids else []

    payload, failed = _read_all(files)
    shas = {pk: hashlib.sha256(data).hexdigest() for pk, (data, _) in payload.items()}
    existing = identified(shas.values(), run.day)  # a batch holds files of its run's day only
    to_score, duplicate_of = _sort_out(files, shas, existing)

    pipeline = Pipeline(ens, gates_from_settings(), detector=face_detector(), draft=settings.KOALA_DRAFT_DECODE)
    results = pipeline.analyse(
        [FileInput(*payload[f.pk], sha256=shas[f.pk]) for f in to_score]  # hashed once, above
    )
    t_score = time.monotonic()

    mine = InboxFile.objects.filter(claimed_by=token, status=InboxFile.PENDING)
    with transaction.atomic():
        # the files this batch still holds (a claim that expired may have gone to another batch);
        # locked until the end of the transaction on PostgreSQL
        held = set(mine.filter(pk__in=[f.pk for f in files]).select_for_update().values_list("pk", flat=True))
        pairs = [(f, r) for f, r in zip(to_score, results, strict=True) if f.pk in held]
        stored, lost = _store_all(pairs, run, ens, versions, existing)
        duplicate_of.update({f.pk: sha for f, sha in lost})
        updates = _file_statuses(stored, duplicate_of, failed, held, run.day)
        update_rows(InboxFile, updates, ["status", "image", "reason", "claimed_by", "claimed_until"])
        labels.record_sidecar_labels([im for _, im, _ in stored])  # the audit trail starts with the sidecar
        # count only the files this batch settled: a file whose claim went to another batch is
        # counted there (else an expired claim or a redelivery counts a file twice)
        n_dup = sum(u.status == InboxFile.DUPLICATE for u in updates)
        n_failed = sum(u.status == InboxFile.FAILED for u in updates)
        Run.objects.filter(pk=run_id).update(
            processed=F("processed") + len(updates),
            new_images=F("new_images") + len(stored),
            duplicates=F("duplicates") + n_dup,
            failed_files=F("failed_files") + n_failed,
        )

    changed = [im for _, im, r in stored if write_files(im, r.thumbnail, save=False)]
    update_rows(Image, changed, ["sorted_path", "has_thumbnail"])  # one executemany, not a save per image
    return {
        "files": len(files),
        "stored": len(stored),
        "duplicates": n_dup,
        "failed": n_failed,
        "score_s": round(t_score - t0, 3),
        "total_s": round(time.monotonic() - t0, 3),
    }


def _read_all(files: list[InboxFile]) -> tuple[dict[int, tuple[bytes, bytes | None]], dict[int, str]]:
    """(file id -> (image bytes, sidecar bytes), file id -> why it cannot be read)."""
    payload, failed = {}, {}
    for f in files:
        try:
            payload[f.pk] = _read(f)
        except OSError as exc:
            failed[f.pk] = f"cannot read the file: {exc.strerror or exc}"
    return payload, failed


def _sort_out(files: list[InboxFile], shas: dict[int, str], existing: dict[str, Image]):
    """(the files to score, file id -> sha256 of the files that copy a stored image or an earlier
    file of the batch)."""
    to_score: list[InboxFile] = []
    duplicate_of: dict[int, str] = {}
    first_in_batch: set[str] = set()
    for f in files:
        sha = shas.get(f.pk)
        if sha is None:
            continue
        own = existing.get(sha)
        if (own is not None and own.path != f.path) or sha in first_in_batch:
            duplicate_of[f.pk] = sha
        else:
            to_score.append(f)
            first_in_batch.add(sha)
    return to_score, duplicate_of


def _file_statuses(
    stored, duplicate_of: dict[int, str], failed: dict[int, str], held: set[int], day
) -> list[InboxFile]:
    """The new status of every file this batch still holds: done (its image), duplicate (of the
    image stored first), failed (with the reason). Claims are released with it."""
    done = {"claimed_by": "", "claimed_until": None}
    firsts = identified(duplicate_of.values(), day, full=False)
    shas_to_ids = {sha: im.pk for sha, im in firsts.items()}
    updates = [InboxFile(pk=f.pk, status=InboxFile.DONE, image_id=im.pk, reason="", **done) for f, im, _ in stored]
    updates += [
        InboxFile(pk=pk, status=InboxFile.DUPLICATE, image_id=shas_to_ids[sha], reason="", **done)
        for pk, sha in duplicate_of.items()
        if pk in held and sha in shas_to_ids  # else its first copy was lost too: it stays pending
    ]
    updates += [
        InboxFile(pk=pk, status=InboxFile.FAILED, image_id=None, reason=reason[:500], **done)
        for pk, reason in failed.items()
        if pk in held
    ]
    return updates


LABEL_FIELDS = ("label", "attack_type")


def _store_all(
    pairs: list[tuple[InboxFile, ImageResult]],
    run: Run,
    ens: liveness.ensemble.Ensemble,
    versions: dict,
    existing: dict,
) -> tuple[list[tuple[InboxFile, Image, ImageResult]], list[tuple[InboxFile, str]]]:
    """Write a batch's image rows in bulk: new images inserted (one statement), re-scored ones
    updated (keeping their labels: people may have reviewed them since). Returns the stored
    (file, image, result) and the (file, sha256) that another worker stored first."""
    now = timezone.now()
    new: dict[str, tuple[InboxFile, Image, ImageResult]] = {}
    updated, kept = [], []
    for f, r in pairs:
        fields = _image_fields(r, f, run, ens, versions)
        im = existing.get(r.sha256)
        if im is None:
            new[r.sha256] = (f, Image(sha256=r.sha256, scored_at=now, **fields), r)
            continue
        # every row has the same keys: the fields to write are those of any one of them
        kept = kept or [k for k in fields if k not in LABEL_FIELDS]
        for k in kept:
            setattr(im, k, fields[k])
        im.scored_at = now
        updated.append((f, im, r))
    if updated:
        update_rows(Image, [im for _, im, _ in updated], [*kept, "scored_at"])
    Image.objects.bulk_create([im for _, im, _ in new.values()], ignore_conflicts=True)
    # which inserts were ours: another worker may have stored the same bytes (another path) first.
    # Asked as `identified` asks: another day's unreadable row with these bytes is no lost race
    rows = identified(new, run.day, full=False)
    stored, lost = list(updated), []
    for sha, (f, im, r) in new.items():
        row = rows.get(sha)
        if row is not None and row.path == f.path and row.run_id == run.pk:
            im.pk = row.pk
            stored.append((f, im, r))
        else:
            lost.append((f, sha))
    return stored, lost


def finish_run(run_id: int, batch_results: list[dict] | None = None) -> Run:
    """Close a run: repair missing thumbnails/links, count the day per category, list errors."""
    run = Run.objects.get(pk=run_id)
    repair = list(
        Image.objects.filter(day=run.day).filter(
            Q(has_thumbnail=False, category__in=[*liveness.ensemble.SCORED, "no_face"]) | Q(sorted_path="")
        )
    )
    remove_stale_temp_files(temp_folders(run.day, repair))
    for im in repair:
        write_files(im)
    counts = dict(Image.objects.filter(day=run.day).values_list("category").annotate(n=Count("id")).order_by())
    errors = [
        {"path": p, "reason": r}
        for p, r in InboxFile.objects.filter(run=run, status=InboxFile.FAILED).values_list("path", "reason")
    ]
    errors += [
        {"path": p, "reason": r}
        for p, r in Image.objects.filter(run=run, category="unreadable").values_list("path", "reason")
    ]
    timings = final_timings(run, batch_results)
    # two UPDATEs for all of the day's devices, not two per device
    seen = Device.objects.filter(pk__in=InboxFile.objects.filter(day=run.day).values("device_id"))
    seen.filter(Q(first_day__isnull=True) | Q(first_day__gt=run.day)).update(first_day=run.day)
    seen.filter(Q(last_day__isnull=True) | Q(last_day__lt=run.day)).update(last_day=run.day)
    with transaction.atomic():  # two runs finishing at once decide one after the other: never both superseded
        daily.lock_day(run.day)
        others, left = pending_work(run)
        if left:  # nobody is working on them (a batch died, a claim expired): not done, re-run the day later
            errors.insert(0, {"path": "", "reason": f"{left} files are still pending; re-run the day to finish them"})
        if others:  # only the last run of overlapping ones marks the day done, with the whole day's figures
            errors.insert(0, {"path": "", "reason": superseded_reason(others)})
        status = Run.SUPERSEDED if others else Run.FAILED if left else Run.DONE
        Run.objects.filter(pk=run_id).update(
            status=status,
            counts=counts,
            errors=errors[:1000],
            timings=timings,
            finished_at=timezone.now(),
        )
    if status != Run.SUPERSEDED:  # else the day is not complete yet: the other run computes it
        daily.compute_day(run.day)
        try:
            alerts.evaluate_day(run.day)
        except Exception:  # the run is done; a failing alert rule must not undo that
            log.exception("alert evaluation failed for %s", run.day)
    run.refresh_from_db()
    log.info("run %s of %s %s: %s", run.pk, run.day, run.status, counts)
    return run


def final_timings(run: Run, batch_results: list[dict] | None) -> dict:
    """The run's timings at its end: total time, batches and their scoring time."""
    timings = dict(run.timings)
    if run.started_at:
        timings["total_s"] = round((timezone.now() - run.started_at).total_seconds(), 3)
    if batch_results:
        timings["batches"] = len(batch_results)
        timings["score_s"] = round(sum(b.get("score_s", 0) for b in batch_results), 3)
    return timings


def fail_run(run_id: int, reason: str) -> None:
    Run.objects.filter(pk=run_id).exclude(status=Run.DONE).update(
        status=Run.FAILED, finished_at=timezone.now(), errors=[{"path": "", "reason": reason[:500]}]
    )


def run_day(
    day: dt.date,
    *,
    trigger: str = "command",
    rescore: bool = False,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    total: Callable[[int], None] | None = None,
) -> Run:
    """The whole day in this process, batch after batch (what the Celery chord does in parallel)."""
    run = start_run(day, trigger=trigger, rescore=rescore)
    return run_in_process(run, discover, score_batch, finish_run, batch_size=batch_size, progress=progress, total=total)


def run_in_process(
    run: Run,
    find_ids: Callable[[Run], list[int]],
    batch: Callable[[int, list[int]], dict],
    finish: Callable[[int, list[dict]], Run],
    *,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    total: Callable[[int], None] | None = None,
) -> Run:
    """A run's work ids, batch after batch in this process, then its finish; a failure marks the run failed."""
    ids = find_ids(run)
    if total:
        total(len(ids))
    results = []
    try:
        for ids_of_batch in chunks(ids, batch_size or settings.KOALA_BATCH_SIZE):
            results.append(batch(run.pk, ids_of_batch))
            if progress:
                progress(len(ids_of_batch))
    except Exception as exc:
        fail_run(run.pk, f"{exc.__class__.__name__}: {exc}")
        raise
    return finish(run.pk, results)
