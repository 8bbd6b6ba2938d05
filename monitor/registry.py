"""Registering ONNX models and ensembles from their TOML manifests (the `register_models`
command, or an upload on the models page), measuring their speed, and the admin's changes to
what production runs (activation, threshold), each kept as an EnsembleEvent with who, when and
why."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import shutil
import tomllib
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from liveness.manifest import (
    EnsembleManifest,
    ManifestError,
    ModelManifest,
    load_manifest,
    parse_model,
    parse_model_text,
)
from liveness.runtime import LivenessModel, file_sha256
from liveness.speed import measure_latency, measure_throughput

from . import folders
from .manifest_diff import manifest_changes
from .models import Ensemble, EnsembleEvent, ModelVersion

NOTE_MAX = EnsembleEvent._meta.get_field("note").max_length


def _dims(shape) -> list:
    """An ONNX shape as JSON: fixed dimensions as ints, symbolic ones (batch) as their names."""
    return [d if isinstance(d, int) else str(d) for d in shape]


class FieldError(ValueError):
    """A problem for the admin with one input of a form: `field` names it (None: the whole)."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field


class UploadError(FieldError, ManifestError):
    """A problem with one of the uploaded files; `field` is "manifest" or "onnx"."""


def _check_note(note: str) -> None:
    if len(note) > NOTE_MAX:
        raise FieldError("note", f"the note is too long: at most {NOTE_MAX} characters")


def _threshold(value) -> float:
    """A threshold as entered, checked: a number in [0, 1] (FieldError, a ValueError, if not)."""
    try:
        new = float(value)
    except (TypeError, ValueError):
        raise FieldError("threshold", f"the threshold must be a number in [0, 1], got {value!r}") from None
    if not (math.isfinite(new) and 0 <= new <= 1):
        raise FieldError("threshold", f"the threshold must be in [0, 1], got {value}")
    return new


def open_model(m: ModelManifest) -> LivenessModel:
    """Load the ONNX file and check the manifest's input and output against it; a file that is
    no ONNX model (or a broken one) is a ManifestError too, not onnxruntime's own exception."""
    try:
        return LivenessModel(m, cached=False)  # checked once: not kept loaded in this (web) process
    except ManifestError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own classes (InvalidProtobuf, Fail, ...)
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ManifestError(f"model.file: not a readable ONNX model: {reason}") from None


@contextlib.contextmanager
def _atomic_with_files():
    """A transaction that also undoes the model files it copied into MODELS_DIR (the list it
    yields) when it fails: nothing half-registered is left behind. A file that a committed
    registration refers to (the same bytes registered at the same moment) is kept."""
    copied: list[Path] = []
    try:
        with transaction.atomic():
            yield copied
    except BaseException:
        for path in copied:
            try:
                if not ModelVersion.objects.filter(file=path.name).exists():
                    path.unlink(missing_ok=True)
            except Exception:  # noqa: BLE001 - the database is gone too: keep the file, raise the cause
                pass
        raise


def _existing(m: ModelManifest, sha: str) -> ModelVersion | None:
    """The version registered as (name, version), if it is this very registration again;
    ManifestError when the name and version stand for another file or other settings."""
    found = ModelVersion.objects.filter(name=m.name, version=m.version).first()
    if found is None:
        return None
    if found.sha256 != sha:
        raise ManifestError(
            f"model.version: {m.name} version {m.version} is already registered with another file; bump the version"
        )
    changes = manifest_changes(found.manifest, m.text)
    if changes:
        # scores are stored per version: another recipe under the same version would mix them
        raise ManifestError(
            f"model.version: {found.label} is registered with another manifest ({'; '.join(changes)}); "
            "a changed manifest changes the scores: register it with a new model.version"
        )
    return found


def _store_file(m: ModelManifest, sha: str, copied: list[Path] | None) -> str:
    """The file's name under MODELS_DIR: the one already stored with these bytes (several
    versions share it), else a copy named by content."""
    for rel in ModelVersion.objects.filter(sha256=sha).values_list("file", flat=True):
        if (settings.MODELS_DIR / rel).is_file():
            return rel
    rel = f"{sha}.onnx"
    settings.MODELS_DIR.mkdir(parents=True, exist_ok=True)
    dst = settings.MODELS_DIR / rel
    if not dst.exists():
        # a temporary name, then a rename: a reader never sees half a model file
        folders.atomic_write(dst, lambda tmp: shutil.copyfile(m.file, tmp))
        if copied is not None:
            copied.append(dst)
    return rel


def _register(
    m: ModelManifest, copied: list[Path] | None = None, user=None, live: LivenessModel | None = None
) -> tuple[ModelVersion, bool]:
    """(the model version, whether it is new); the files copied go into `copied`; `user`: who
    registered it (None: the command); `live`: the model, if the caller opened (and so checked) it."""
    if live is None:
        try:
            live = open_model(m)  # checks the manifest's input and output against the ONNX file
        except ManifestError as exc:
            raise ManifestError(f"model {m.name} ({m.file}): {exc}") from None
    sha = file_sha256(m.file)
    found = _existing(m, sha)
    if found:
        return found, False
    rel = _store_file(m, sha, copied)
    inputs = {i.name: i.shape for i in live.session.get_inputs()}
    outputs = {o.name: o.shape for o in live.session.get_outputs()}
    mv = ModelVersion.objects.create(
        name=m.name,
        version=m.version,
        sha256=sha,
        file=rel,
        manifest=m.text,
        input_shape=_dims(inputs[live.input_name]),
        output_shape=_dims(outputs[live.output_name]),
        registered_by=user,
    )
    return mv, True


def register_model(m: ModelManifest, copied: list[Path] | None = None) -> ModelVersion:
    """Store the ONNX file under MODELS_DIR (by content, once for every version it backs) and
    its manifest as the version (name, version); registering the same again changes nothing."""
    return _register(m, copied)[0]


def register_upload(
    manifest_text: str, onnx_path: str | Path, *, onnx_name: str = "", user=None
) -> tuple[ModelVersion, bool]:
    """Register a model from the text of its manifest and its ONNX file as uploaded on the
    models page (`onnx_path`: where the upload was saved, e.g. a temporary file; `onnx_name`:
    the name it was uploaded under, which must be the manifest's `model.file`).

    The same checks as `register_models`: the manifest's keys and values, then the manifest
    against the file's real input and output shapes, then name and version. Returns (the model
    version, whether it is new: the same name, version, file and manifest are registered once).
    Raises UploadError naming the upload at fault; nothing is stored then."""
    onnx_path = Path(onnx_path)
    onnx_name = onnx_name or onnx_path.name
    try:
        doc = tomllib.loads(manifest_text)
    except tomllib.TOMLDecodeError as exc:
        raise UploadError("manifest", f"not valid TOML: {exc}") from None
    if "ensemble" in doc:
        raise UploadError(
            "manifest",
            "[ensemble]: this is an ensemble manifest; upload each model's manifest with its ONNX file, "
            "then make the ensemble from the registered models",
        )
    try:
        m = parse_model(doc, onnx_path.parent, manifest_text)
    except ManifestError as exc:
        raise UploadError("manifest", str(exc)) from None
    named = Path(m.file).name
    if named != Path(onnx_name).name:
        raise UploadError(
            "onnx",
            f"model.file: the manifest names {named}, the uploaded file is {Path(onnx_name).name}: "
            "upload the file the manifest describes (or correct model.file)",
        )
    m = dataclasses.replace(m, file=onnx_path)
    try:
        live = open_model(m)
    except ManifestError as exc:
        raise UploadError("onnx", str(exc).replace(str(onnx_path), onnx_name)) from None
    try:
        with _atomic_with_files() as copied:
            return _register(m, copied, user, live)
    except ManifestError as exc:  # name and version taken by another file or another manifest
        raise UploadError("manifest", str(exc)) from None
    except IntegrityError:  # registered by someone else at the same moment
        raise UploadError(
            "manifest", f"model.version: {m.name} version {m.version} was registered at the same moment; reload"
        ) from None


ENSEMBLE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def register_ensemble(
    name: str, members, threshold: float, *, user=None, note: str = "", rule: str = "mean"
) -> Ensemble:
    """A new ensemble of registered model versions (not active: activating is a change of
    production of its own), with a "registered" event saying who made it, when and why.
    Raises FieldError (a ValueError) naming the input at fault: a name taken or malformed, no members,
    two members of the same model name (scores are stored by model name), a threshold outside
    [0, 1], a note too long."""
    name = (name or "").strip()
    note = (note or "").strip()
    members = list(members)
    if not ENSEMBLE_NAME.match(name):
        raise FieldError("name", f"use letters, digits, '_', '-', '.' for the name, got {name!r}")
    if not members:
        raise FieldError("members", "pick at least one model version")
    names = [mv.name for mv in members]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise FieldError("members", f"two versions of {', '.join(twice)}: an ensemble has one version of each model")
    threshold = _threshold(threshold)
    _check_note(note)
    if Ensemble.objects.filter(name=name).exists():
        raise FieldError("name", f"an ensemble named {name} already exists")
    labels = ", ".join(mv.label for mv in sorted(members, key=lambda mv: mv.name))
    try:
        with transaction.atomic():
            ens = Ensemble.objects.create(name=name, threshold=threshold, rule=rule)
            ens.members.set(members)
            EnsembleEvent.objects.create(
                ensemble=ens,
                kind=EnsembleEvent.REGISTERED,
                new_threshold=threshold,
                note=(note or f"made on the models page: {labels}")[:NOTE_MAX],
                user=user,
            )
    except IntegrityError:  # the same name made at the same moment
        raise FieldError("name", f"an ensemble named {name} already exists") from None
    return ens


def model_manifest(mv: ModelVersion) -> ModelManifest:
    """The stored manifest of a registered model, pointing at its file under MODELS_DIR."""
    return parse_model_text(mv.manifest, settings.MODELS_DIR / mv.file)


def measure_model(mv: ModelVersion) -> ModelVersion:
    """Measure the model's speed on this machine (liveness/speed.py) and store it: latency in ms
    per image (batch 1, one core), throughput in images/s at the best batch size (all cores)."""
    manifest = model_manifest(mv)
    latency = measure_latency(manifest)
    throughput, best_batch = measure_throughput(manifest)
    mv.latency_ms, mv.throughput, mv.best_batch, mv.measured_at = latency, throughput, best_batch, timezone.now()
    mv.save(update_fields=["latency_ms", "throughput", "best_batch", "measured_at"])
    return mv


def register_manifest(
    path: str | Path, *, activate: bool = False, threshold: float | None = None, user=None, note: str = ""
) -> Ensemble | ModelVersion:
    """Register a model manifest (returns the ModelVersion; with `activate`, a one-model ensemble
    of the same name becomes active) or an ensemble manifest (returns the Ensemble).

    A new ensemble gets a "registered" event; a changed threshold of an existing one a
    "threshold" event; an activation an "activated" event (`note` on each, or a default).
    All or nothing: when a member fails, the members before it are not left registered."""
    with _atomic_with_files() as copied:
        return _register_manifest(path, copied, activate=activate, threshold=threshold, user=user, note=note)


def _register_manifest(path, copied, *, activate, threshold, user, note) -> Ensemble | ModelVersion:
    manifest = load_manifest(path)
    if threshold is not None and not 0 <= threshold <= 1:
        raise ManifestError(f"threshold: must be in [0, 1], got {threshold}")
    if isinstance(manifest, ModelManifest):
        mv = register_model(manifest, copied)
        if not activate and threshold is None:
            return mv
        name, members, default_threshold = manifest.name, [mv], 0.5
    else:
        assert isinstance(manifest, EnsembleManifest)
        members = [register_model(m, copied) for m in manifest.models]
        name, default_threshold = manifest.name, manifest.threshold
    ens, created = Ensemble.objects.get_or_create(
        name=name, defaults={"threshold": threshold if threshold is not None else default_threshold}
    )
    source = f"registered from {Path(path).name}"
    old_threshold = ens.threshold
    if not created and threshold is not None:
        ens.threshold = threshold
    if isinstance(manifest, EnsembleManifest):
        ens.rule = manifest.rule
    ens.save()
    ens.members.set(members)
    if created:
        labels = ", ".join(m.label for m in sorted(members, key=lambda m: m.name))
        EnsembleEvent.objects.create(
            ensemble=ens,
            kind=EnsembleEvent.REGISTERED,
            new_threshold=ens.threshold,
            note=(note or f"from {Path(path).name}: {labels}")[:NOTE_MAX],
            user=user,
        )
    elif ens.threshold != old_threshold:
        EnsembleEvent.objects.create(
            ensemble=ens,
            kind=EnsembleEvent.THRESHOLD,
            old_threshold=old_threshold,
            new_threshold=ens.threshold,
            note=(note or source)[:NOTE_MAX],
            user=user,
        )
    if activate:
        activate_ensemble(ens, user=user, note=(note or source)[:NOTE_MAX])
    return ens


def activate_ensemble(ens: Ensemble, *, user=None, note: str = "") -> bool:
    """Make `ens` the one active ensemble and record an "activated" event; False (and no event)
    when it already was the active one."""
    note = (note or "").strip()
    _check_note(note)
    with transaction.atomic():
        # lock the ensemble rows, so two admins activating at once leave one event each in order
        active = set(Ensemble.objects.select_for_update().filter(is_active=True).values_list("pk", flat=True))
        if active == {ens.pk}:
            ens.is_active = True
            return False
        Ensemble.objects.filter(is_active=True).exclude(pk=ens.pk).update(is_active=False)
        Ensemble.objects.filter(pk=ens.pk).update(is_active=True)
        EnsembleEvent.objects.create(ensemble=ens, kind=EnsembleEvent.ACTIVATED, note=note, user=user)
    ens.is_active = True
    return True


def set_threshold(ens: Ensemble, value, *, user, note: str) -> EnsembleEvent:
    """Change the ensemble's threshold (live if score > threshold) and record a "threshold"
    event with the old and new values. A note saying why is required. Raises ValueError with a
    message for the admin on a blank note, a value outside [0, 1] or an unchanged threshold."""
    note = (note or "").strip()
    if not note:
        raise ValueError("a note is required: say why the threshold changes")
    _check_note(note)
    new = _threshold(value)
    with transaction.atomic():
        locked = Ensemble.objects.select_for_update().get(pk=ens.pk)
        old = locked.threshold
        if new == old:
            raise ValueError(f"the threshold of {locked.name} is already {old:g}")
        Ensemble.objects.filter(pk=ens.pk).update(threshold=new)
        event = EnsembleEvent.objects.create(
            ensemble=ens, kind=EnsembleEvent.THRESHOLD, old_threshold=old, new_threshold=new, note=note, user=user
        )
    ens.threshold = new
    return event
