"""Labels: the attack types and the audit trail of every label change."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from .images import Image


class AttackType(models.Model):
    """A presentation attack instrument species (SPEC section 2); data, managed by the admin."""

    name = models.SlugField(max_length=50, unique=True)
    description = models.CharField(max_length=200, blank=True)
    position = models.IntegerField(default=0, help_text="order in menus and keys 1-9")

    class Meta:
        ordering = ["position", "name"]

    def __str__(self):
        return self.name


class LabelEvent(models.Model):
    """One label change of one image (the audit trail): who, when, from what to what, and why."""

    REVIEW, LABELLING, IMPORT, SIDECAR = "review", "labelling", "import", "sidecar"
    SOURCE_CHOICES = [(s, s) for s in (REVIEW, LABELLING, IMPORT, SIDECAR)]

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="label_events")
    old_label = models.CharField(max_length=10, blank=True)
    old_attack_type = models.CharField(max_length=50, blank=True)
    new_label = models.CharField(max_length=10, blank=True)
    new_attack_type = models.CharField(max_length=50, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="label_events"
    )
    source = models.CharField(max_length=10, choices=SOURCE_CHOICES)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    undone = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["image", "created_at"], name="labelevent_image"),
            models.Index(fields=["user", "source", "created_at"], name="labelevent_user_source"),
        ]

    def __str__(self):
        return f"{self.image_id}: {self.old_text} -> {self.new_text} ({self.source})"

    @staticmethod
    def _text(label: str, attack_type: str) -> str:
        return f"{label} ({attack_type})" if label and attack_type else (label or "unlabelled")

    @property
    def old_text(self) -> str:
        return self._text(self.old_label, self.old_attack_type)

    @property
    def new_text(self) -> str:
        return self._text(self.new_label, self.new_attack_type)
