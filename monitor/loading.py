"""What a run scores with, loaded once per process: the active ensemble's models, the face detector
and the quality gates from the settings."""

from __future__ import annotations

from django.conf import settings

import liveness.ensemble
from liveness.detect import FaceDetector, load_detector_manifest
from liveness.manifest import ManifestError, parse_model_text
from liveness.quality import Gates
from liveness.runtime import LivenessModel

from .errors import JobError
from .models import Ensemble


def gates_from_settings() -> Gates:
    return Gates(
        min_face=settings.KOALA_MIN_FACE,
        max_yaw=settings.KOALA_MAX_YAW,
        max_pitch=settings.KOALA_MAX_PITCH,
        max_blur=settings.KOALA_MAX_BLUR,
    )


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


def clear_caches() -> None:
    """Forget the loaded ensembles and face detectors: after a setting changed (tests, benchmarks)."""
    _loaded.clear()
    _detectors.clear()
