"""Registering ONNX models and ensembles from their TOML manifests, measuring their speed, and
the admin's changes to what production runs (activation, threshold), each kept as an
EnsembleEvent with who, when and why."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from liveness.manifest import EnsembleManifest, ManifestError, ModelManifest, load_manifest, parse_model_text
from liveness.runtime import LivenessModel, file_sha256
from liveness.speed import measure_latency, measure_throughput

from .models import Ensemble, EnsembleEvent, ModelVersion

NOTE_MAX = EnsembleEvent._meta.get_field("note").max_length


def _dims(shape) -> list:
    """An ONNX shape as JSON: fixed dimensions as ints, symbolic ones (batch) as their names."""
    return [d if isinstance(d, int) else str(d) for d in shape]


def register_model(m: ModelManifest) -> ModelVersion:
    """Store the ONNX file under MODELS_DIR (by content) and its manifest; idempotent."""
    try:
        live = LivenessModel(m)  # checks the manifest's input and output against the ONNX file
    except ManifestError as exc:
        raise ManifestError(f"model {m.name} ({m.file}): {exc}") from None
    sha = file_sha256(m.file)
    found = ModelVersion.objects.filter(sha256=sha).first()
    if found:
        if found.manifest.strip() != m.text.strip():
            raise ManifestError(
                f"model.version: this ONNX file is registered as {found.label} with another manifest; "
                "a changed manifest changes the scores: register the file with a new model.version"
            )
        return found
    if ModelVersion.objects.filter(name=m.name, version=m.version).exists():
        raise ManifestError(
            f"model.version: {m.name} version {m.version} is already registered with another file; bump the version"
        )
    rel = f"{m.name}-{sha[:12]}.onnx"
    settings.MODELS_DIR.mkdir(parents=True, exist_ok=True)
    dst = settings.MODELS_DIR / rel
    if not dst.exists():
        shutil.copyfile(m.file, dst)
    inputs = {i.name: i.shape for i in live.session.get_inputs()}
    outputs = {o.name: o.shape for o in live.session.get_outputs()}
    return ModelVersion.objects.create(
        name=m.name,
        version=m.version,
        sha256=sha,
        file=rel,
        manifest=m.text,
        input_shape=_dims(inputs[live.input_name]),
        output_shape=_dims(outputs[live.output_name]),
    )


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


@transaction.atomic
def register_manifest(
    path: str | Path, *, activate: bool = False, threshold: float | None = None, user=None, note: str = ""
) -> Ensemble | ModelVersion:
    """Register a model manifest (returns the ModelVersion; with `activate`, a one-model ensemble
    of the same name becomes active) or an ensemble manifest (returns the Ensemble).

    A new ensemble gets a "registered" event; a changed threshold of an existing one a
    "threshold" event; an activation an "activated" event (`note` on each, or a default)."""
    manifest = load_manifest(path)
    if threshold is not None and not 0 <= threshold <= 1:
        raise ManifestError(f"threshold: must be in [0, 1], got {threshold}")
    if isinstance(manifest, ModelManifest):
        mv = register_model(manifest)
        if not activate and threshold is None:
            return mv
        name, members, default_threshold = manifest.name, [mv], 0.5
    else:
        assert isinstance(manifest, EnsembleManifest)
        members = [register_model(m) for m in manifest.models]
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
    if len(note) > NOTE_MAX:
        raise ValueError(f"the note is too long: at most {NOTE_MAX} characters")
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
    if len(note) > NOTE_MAX:
        raise ValueError(f"the note is too long: at most {NOTE_MAX} characters")
    try:
        new = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"the threshold must be a number in [0, 1], got {value!r}") from None
    if not (math.isfinite(new) and 0 <= new <= 1):
        raise ValueError(f"the threshold must be in [0, 1], got {value}")
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
