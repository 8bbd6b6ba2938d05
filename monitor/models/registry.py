"""The model registry: registered model versions, the ensembles built from them and the admins'
changes to what production runs."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class ModelVersion(models.Model):
    """One registered model version: a name and version, its manifest and the ONNX file backing it.
    Identified by (name, version); one stored file (by sha256) may back several versions, e.g. the
    same weights with two crop recipes, so the hash is indexed, not unique."""

    name = models.CharField(max_length=100)
    version = models.CharField(max_length=50, default="1")
    sha256 = models.CharField(max_length=64, db_index=True)
    file = models.CharField(max_length=500, help_text="path of the ONNX file (relative to the models folder)")
    manifest = models.TextField(help_text="the TOML manifest as registered")
    input_shape = models.JSONField(default=list, blank=True)
    output_shape = models.JSONField(default=list, blank=True)
    # speed, measured on this machine (monitor/registry.py measure_model)
    latency_ms = models.FloatField(null=True, blank=True, help_text="ms per image, batch 1, one core")
    throughput = models.FloatField(null=True, blank=True, help_text="images/s at the best batch size, all cores")
    best_batch = models.PositiveIntegerField(null=True, blank=True)
    measured_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="who uploaded it on the models page (empty: registered with the command)",
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="model_name_version_unique")]
        ordering = ["name", "-created_at"]

    def __str__(self):
        return f"{self.name} v{self.version} ({self.sha256[:8]})"

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}:{self.sha256[:8]}"


class Ensemble(models.Model):
    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(ModelVersion, related_name="ensembles")
    threshold = models.FloatField(help_text="live if score > threshold")
    rule = models.CharField(max_length=20, default="mean")
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active_ensemble"),
            models.CheckConstraint(condition=Q(threshold__gte=0) & Q(threshold__lte=1), name="threshold_in_0_1"),
        ]

    def __str__(self):
        return f"{self.name} (t={self.threshold:g}{', active' if self.is_active else ''})"


class EnsembleEvent(models.Model):
    """An admin's change to what production runs: an ensemble activated, or its threshold changed,
    with the note saying why. Shown as markers on the trend charts."""

    ACTIVATED, THRESHOLD, REGISTERED = "activated", "threshold", "registered"
    KIND_CHOICES = [(k, k) for k in (ACTIVATED, THRESHOLD, REGISTERED)]

    ensemble = models.ForeignKey(Ensemble, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=12, choices=KIND_CHOICES)
    old_threshold = models.FloatField(null=True, blank=True)
    new_threshold = models.FloatField(null=True, blank=True)
    note = models.CharField(max_length=500, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.ensemble.name}: {self.kind} at {self.created_at:%Y-%m-%d %H:%M}"
