"""Registering ONNX models and ensembles from their TOML manifests."""

from __future__ import annotations

import shutil
from pathlib import Path

from django.conf import settings
from django.db import transaction

from liveness.manifest import EnsembleManifest, ManifestError, ModelManifest, load_manifest
from liveness.runtime import LivenessModel, file_sha256

from .models import Ensemble, ModelVersion


def register_model(m: ModelManifest) -> ModelVersion:
    """Store the ONNX file under MODELS_DIR (by content) and its manifest; idempotent."""
    live = LivenessModel(m)  # raises ManifestError when the manifest does not fit the file
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
    shape = live.session.get_inputs()[0].shape
    return ModelVersion.objects.create(
        name=m.name,
        version=m.version,
        sha256=sha,
        file=rel,
        manifest=m.text,
        input_shape=[d if isinstance(d, int) else str(d) for d in shape],
    )


@transaction.atomic
def register_manifest(
    path: str | Path, *, activate: bool = False, threshold: float | None = None
) -> Ensemble | ModelVersion:
    """Register a model manifest (returns the ModelVersion; with `activate`, a one-model ensemble
    of the same name becomes active) or an ensemble manifest (returns the Ensemble)."""
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
    if not created and threshold is not None:
        ens.threshold = threshold
    if isinstance(manifest, EnsembleManifest):
        ens.rule = manifest.rule
    ens.save()
    ens.members.set(members)
    if activate:
        activate_ensemble(ens)
    return ens


def activate_ensemble(ens: Ensemble) -> None:
    with transaction.atomic():
        Ensemble.objects.filter(is_active=True).exclude(pk=ens.pk).update(is_active=False)
        Ensemble.objects.filter(pk=ens.pk).update(is_active=True)
    ens.is_active = True
