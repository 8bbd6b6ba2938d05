"""The daily job as service functions. Celery tasks and management commands are thin wrappers.

run = start_run(day)              # a Run row
ids = discover(run)               # new (and left-over pending) inbox files -> InboxFile ids
for batch in chunks(ids): score_batch(run.pk, batch)   # claim, score, store, link
finish_run(run.pk)                # counts, errors, repair missing files, status done
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

import liveness.ensemble
from liveness.decode import UnreadableImage, decode_image
from liveness.detect import FaceDetector, load_detector_manifest
from liveness.manifest import ManifestError, parse_model_text
from liveness.pipeline import THUMB_SIDE, FileInput, ImageResult, Pipeline, thumbnail
from liveness.quality import Gates
from liveness.runtime import LivenessModel

from . import alerts, daily, labels
from .models import Device, Ensemble, Image, InboxFile, Run

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png"}
DEVICE_NAME_MAX = Device._meta.get_field("name").max_length


class JobError(Exception):
    """A problem that stops a run before it starts (no active ensemble, bad day, ...)."""


# --- small helpers --------------------------------------------------------------------------


def parse_day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except (TypeError, ValueError):
        raise JobError(f"not a day: {text!r} (expected YYYY-MM-DD)") from None


def chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def update_rows(model: type[models.Model], objs: list[models.Model], fields: list[str]) -> None:
    """What QuerySet.bulk_update(objs, fields) does, as one executemany of a plain UPDATE per row.
    bulk_update builds a CASE WHEN expression per row and field, which made it the largest cost
    of the daily job after decoding, crops and inference (bench/README.md, stage breakdown)."""
    if not objs:
        return
    meta, qn = model._meta, connection.ops.quote_name
    columns = [meta.get_field(name) for name in fields]
    sql = (
        f"UPDATE {qn(meta.db_table)} SET {', '.join(f'{qn(f.column)} = %s' for f in columns)}"
        f" WHERE {qn(meta.pk.column)} = %s"
    )
    params = [[f.get_db_prep_save(getattr(o, f.attname), connection) for f in columns] + [o.pk] for o in objs]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{8}\.tmp", re.DOTALL)  # the names of `temp_path`
STALE_TEMP_SECONDS = 300  # a write takes milliseconds: a temporary file this old was left by a killed process


def temp_path(dst: Path) -> Path:
    """Where `atomic_write` writes `dst` before the rename: `.<name>.<8 hex>.tmp` beside it."""
    return dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write(dst: Path, write: Callable[[Path], None]) -> None:
    """Write via a temporary name in the same folder, then rename: never a half-written file. A
    process killed in between leaves the temporary file: remove_stale_temp_files() takes it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dst)
    try:
        write(tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temp_files(folders: Iterable[Path], older_than: float | None = None) -> int:
    """Delete the temporary files an interrupted atomic_write left in `folders` (not below them),
    when older than `older_than` seconds (STALE_TEMP_SECONDS): a write in progress is never that
    old. The age is the inode's change time, which a hard link or a copy sets to now (a hard link
    keeps the inbox file's old mtime). Returns how many were deleted."""
    cutoff = time.time() - (STALE_TEMP_SECONDS if older_than is None else older_than)
    removed = 0
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if not TEMP_NAME.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
            if max(st.st_ctime, st.st_mtime) < cutoff:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
    if removed:
        log.info("removed %d temporary files left by interrupted writes", removed)
    return removed


def _link_or_copy(src: Path, tmp: Path) -> None:
    try:
        os.link(src, tmp, follow_symlinks=True)
    except OSError:
        shutil.copy2(src, tmp)


def gates_from_settings() -> Gates:
    return Gates(
        min_face=settings.KOALA_MIN_FACE,
        max_yaw=settings.KOALA_MAX_YAW,
        max_pitch=settings.KOALA_MAX_PITCH,
        max_blur=settings.KOALA_MAX_BLUR,
    )


# --- ensembles ----------------------------------------------------------------------------


def active_ensemble() -> Ensemble:
    ens = Ensemble.objects.filter(is_active=True).first()
    if ens is None:
        raise JobError("no active ensemble: register one with `manage.py register_models MANIFEST --activate`")
    return ens


_loaded: dict[tuple, liveness.ensemble.Ensemble] = {}


def load_ensemble(ens: Ensemble, threshold: float | None = None) -> liveness.ensemble.Ensemble:
    """The ensemble's ONNX models, loaded once per process (sessions are cached). `threshold`:
    the one frozen in the run (an admin may change the ensemble's meanwhile)."""
    members = list(ens.members.order_by("name"))
    threshold = ens.threshold if threshold is None else threshold
    # by version, not file: one file may back several versions with different manifests
    key = (ens.pk, threshold, ens.rule, tuple((m.pk, m.sha256) for m in members))
    if key not in _loaded:
        models = [
            LivenessModel(
                parse_model_text(m.manifest, settings.MODELS_DIR / m.file), threads=settings.KOALA_ORT_THREADS
            )
            for m in members
        ]
        _loaded[key] = liveness.ensemble.Ensemble(name=ens.name, models=models, threshold=threshold, rule=ens.rule)
    return _loaded[key]


_detectors: dict[str, FaceDetector] = {}


def face_detector() -> FaceDetector | None:
    """The configured face detector (KOALA_FACE_DETECTOR, a detector manifest), loaded once per
    process; None when none is configured. A broken manifest or file is a JobError."""
    path = settings.KOALA_FACE_DETECTOR
    if not path:
        return None
    if path not in _detectors:
        try:
            _detectors[path] = FaceDetector(load_detector_manifest(path), threads=settings.KOALA_ORT_THREADS)
        except ManifestError as exc:
            raise JobError(f"KOALA_FACE_DETECTOR: {exc}") from None
    return _detectors[path]


# --- the run ----------------------------------------------------------------------------------


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


def _day_files(day: dt.date) -> Iterator[tuple[str, Path, str | None]]:
    """(device, path, skip reason) for every candidate file in INBOX/<day>/<device>/.

    Files modified less than KOALA_SETTLE_SECONDS ago are left for the next run: a device may
    still be writing them."""
    inbox = settings.INBOX_DIR.resolve()
    day_dir = inbox / day.isoformat()
    if not day_dir.is_dir():
        return
    settled_before = time.time() - settings.KOALA_SETTLE_SECONDS
    for device_dir in sorted(day_dir.iterdir()):
        if not device_dir.is_dir():
            log.info("skipped %s: not a device folder", device_dir)
            continue
        if len(device_dir.name) > DEVICE_NAME_MAX:
            log.warning("skipped %s: device folder name longer than %d characters", device_dir, DEVICE_NAME_MAX)
            continue
        for path in sorted(device_dir.iterdir()):
            suffix = path.suffix.lower()
            if suffix == ".json":
                if not any(path.with_suffix(ext).exists() for ext in (*IMAGE_EXTENSIONS, ".JPG", ".JPEG", ".PNG")):
                    log.info("skipped %s: sidecar without an image", path)
                continue
            if suffix not in IMAGE_EXTENSIONS:
                log.info("skipped %s: not an image file name (.jpg, .jpeg, .png)", path)
                continue
            reason = None
            if not path.resolve().is_relative_to(inbox):
                reason = "the file (or a folder above it) is a link pointing outside the inbox"
            elif not path.is_file():
                reason = "not a regular file"
            elif path.stat().st_mtime > settled_before:
                log.info("left %s for the next run: modified in the last %s s", path, settings.KOALA_SETTLE_SECONDS)
                continue
            yield device_dir.name, path, reason


def _unclaimed(qs):
    return qs.filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=timezone.now()))


def discover(run: Run) -> list[int]:
    """Record new files of the run's day as pending InboxFiles; return the ids to process:
    new files, files left pending by an earlier crash (once their claim expired), and on
    --rescore every scored or failed file of the day."""
    t0 = time.monotonic()
    inbox = settings.INBOX_DIR.resolve()
    known = set(InboxFile.objects.filter(day=run.day).values_list("path", flat=True))
    devices: dict[str, Device] = {}
    new = []
    for device_name, path, skip in _day_files(run.day):
        rel = path.relative_to(inbox).as_posix() if path.is_relative_to(inbox) else str(path)
        if rel in known:
            continue
        if device_name not in devices:
            devices[device_name], _ = Device.objects.get_or_create(name=device_name)
        status, reason = (InboxFile.FAILED, skip) if skip else (InboxFile.PENDING, "")
        new.append(InboxFile(path=rel, day=run.day, device=devices[device_name], status=status, reason=reason, run=run))
    InboxFile.objects.bulk_create(new, ignore_conflicts=True, batch_size=1000)
    if run.rescore:
        InboxFile.objects.filter(day=run.day, status__in=[InboxFile.DONE, InboxFile.FAILED]).update(
            status=InboxFile.PENDING, claimed_until=None
        )
    todo = _unclaimed(InboxFile.objects.filter(day=run.day, status=InboxFile.PENDING))
    ids = list(todo.order_by("id").values_list("id", flat=True))
    InboxFile.objects.filter(id__in=ids).update(run=run)
    return mark_started(run, ids, t0)


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


def _claim(file_ids: list[int], token: str) -> list[InboxFile]:
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
    files = _claim(file_ids, token) if file_ids else []

    failed: dict[int, str] = {}
    payload: dict[int, tuple[bytes, bytes | None]] = {}
    for f in files:
        try:
            payload[f.pk] = _read(f)
        except OSError as exc:
            failed[f.pk] = f"cannot read the file: {exc.strerror or exc}"

    shas = {pk: hashlib.sha256(data).hexdigest() for pk, (data, _) in payload.items()}
    existing = identified(shas.values(), run.day)  # a batch holds files of its run's day only
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

    pipeline = Pipeline(ens, gates_from_settings(), detector=face_detector(), draft=settings.KOALA_DRAFT_DECODE)
    results = pipeline.analyse(
        [FileInput(*payload[f.pk], sha256=shas[f.pk]) for f in to_score]  # hashed once, above
    )
    t_score = time.monotonic()

    mine = InboxFile.objects.filter(claimed_by=token, status=InboxFile.PENDING)
    done = {"claimed_by": "", "claimed_until": None}
    with transaction.atomic():
        # the files this batch still holds (a claim that expired may have gone to another batch);
        # locked until the end of the transaction on PostgreSQL
        held = set(mine.filter(pk__in=[f.pk for f in files]).select_for_update().values_list("pk", flat=True))
        pairs = [(f, r) for f, r in zip(to_score, results, strict=True) if f.pk in held]
        stored, lost = _store_all(pairs, run, ens, versions, existing)
        duplicate_of.update({f.pk: sha for f, sha in lost})
        firsts = identified(duplicate_of.values(), run.day, full=False)
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
        kept = [k for k in fields if k not in LABEL_FIELDS]
        im = existing.get(r.sha256)
        if im is None:
            new[r.sha256] = (f, Image(sha256=r.sha256, scored_at=now, **fields), r)
            continue
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
    remove_stale_temp_files(_temp_folders(run.day, repair))
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
    for device_id in InboxFile.objects.filter(day=run.day).values_list("device_id", flat=True).distinct():
        Device.objects.filter(Q(first_day__isnull=True) | Q(first_day__gt=run.day), pk=device_id).update(
            first_day=run.day
        )
        Device.objects.filter(Q(last_day__isnull=True) | Q(last_day__lt=run.day), pk=device_id).update(last_day=run.day)
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


def pending_work(run: Run) -> tuple[dict[int, int], int]:
    """The day's files still pending as `run` finishes: ({other run id: files it is scoring (held
    by its live claim, or its own while it is queued or running)}, files nobody is working on).
    A file discovered by a later run belongs to that run (discover takes over unclaimed files)."""
    held = live_claims(run.day)
    left = held.pop(run.pk, 0) + held.pop(None, 0)  # its own batch that died or runs twice, or unknown: pending
    busy = Run.objects.filter(day=run.day, shadow=False, status__in=[Run.QUEUED, Run.RUNNING]).exclude(pk=run.pk)
    active = set(busy.values_list("pk", flat=True))
    idle = _unclaimed(InboxFile.objects.filter(day=run.day, status=InboxFile.PENDING))
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


def _temp_folders(day: dt.date, images: list[Image]) -> set[Path]:
    """Where a killed write of the day may have left a temporary file: the day's category folders,
    and the thumbnail folders of `images` (those whose files are missing: the thumbnail folders
    are shared by all days, too large to list at every finish)."""
    day_dir = settings.SORTED_DIR / day.isoformat()
    folders = {p for p in day_dir.iterdir() if p.is_dir()} if day_dir.is_dir() else set()
    return folders | {(settings.THUMBS_DIR / im.thumb_relpath).parent for im in images}


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


# --- folders ---------------------------------------------------------------------------------


def sorted_relpath(im: Image) -> str:
    device, name = Path(im.path).parts[-2:]
    return f"{im.day.isoformat()}/{im.category}/{device}__{name}"


def write_files(im: Image, decoded=None, *, save: bool = True) -> bool:
    """Link the image into SORTED/<day>/<category>/ and write its thumbnail (both atomic).
    `decoded`: an already reduced PIL image to make the thumbnail from (else the file is read).
    Sets `sorted_path` / `has_thumbnail` on `im` and saves them unless `save` is False (a batch
    saves its images in one statement). Returns whether they changed."""
    if im.purged_at is not None:  # retention deleted its files (monitor/purge.py): do not bring them back
        return False
    src = settings.INBOX_DIR / im.path
    rel = sorted_relpath(im)
    updates = {}
    if im.sorted_path and im.sorted_path != rel:
        (settings.SORTED_DIR / im.sorted_path).unlink(missing_ok=True)
    if src.exists():
        atomic_write(settings.SORTED_DIR / rel, lambda tmp: _link_or_copy(src, tmp))
        updates["sorted_path"] = rel
    if im.category != "unreadable" and not (im.has_thumbnail and decoded is None):
        thumb = decoded
        if thumb is None and src.exists():
            try:
                thumb = thumbnail(decode_image(src.read_bytes()).image, THUMB_SIDE)
            except (OSError, UnreadableImage):
                thumb = None
        if thumb is not None:
            atomic_write(settings.THUMBS_DIR / im.thumb_relpath, lambda tmp: thumb.save(tmp, "JPEG", quality=85))
            updates["has_thumbnail"] = True
    if updates and save:
        Image.objects.filter(pk=im.pk).update(**updates)
    for k, v in updates.items():
        setattr(im, k, v)
    return bool(updates)


def rebuild_folders(day: dt.date | None = None, progress: Callable[[int], None] | None = None) -> int:
    """Recreate SORTED/<day>/ (all days if None) and missing thumbnails from the database."""
    images = Image.objects.all() if day is None else Image.objects.filter(day=day)
    days = images.values_list("day", flat=True).distinct()
    for d in days:
        shutil.rmtree(settings.SORTED_DIR / d.isoformat(), ignore_errors=True)
    if day is None:
        thumb_folders = settings.THUMBS_DIR.glob("??") if settings.THUMBS_DIR.is_dir() else []
    else:
        thumb_folders = {settings.THUMBS_DIR / sha[:2] for sha in images.values_list("sha256", flat=True)}
    remove_stale_temp_files(thumb_folders)
    images.update(sorted_path="")
    n = 0
    for im in images.iterator(chunk_size=500):
        if im.has_thumbnail and not (settings.THUMBS_DIR / im.thumb_relpath).exists():
            im.has_thumbnail = False
        write_files(im)
        n += 1
        if progress:
            progress(1)
    return n


def has_work(day: dt.date) -> bool:
    """True if the day has files not yet recorded, or pending files nobody is working on."""
    inbox = settings.INBOX_DIR.resolve()
    if _unclaimed(InboxFile.objects.filter(day=day, status=InboxFile.PENDING)).exists():
        return True
    known = set(InboxFile.objects.filter(day=day).values_list("path", flat=True))
    return any(path.relative_to(inbox).as_posix() not in known for _, path, _ in _day_files(day))


def inbox_days() -> list[dt.date]:
    """Every folder of the inbox named like a day."""
    if not settings.INBOX_DIR.is_dir():
        return []
    days = []
    for p in settings.INBOX_DIR.iterdir():
        try:
            days.append(dt.date.fromisoformat(p.name))
        except ValueError:
            log.info("skipped %s: not a day folder (YYYY-MM-DD)", p)
    return sorted(days)
