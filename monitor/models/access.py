"""Access: the API tokens of scripts and the log of who opened which original image."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from .images import Image


class ApiToken(models.Model):
    """A token for scripts: `Authorization: Bearer <token>`. Only its sha256 is stored."""

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    token_sha256 = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.name} ({self.user})"


class ImageAccess(models.Model):
    """Who opened which original image file, when and from where (KOALA_ACCESS_LOG). Written by
    the image file view (monitor/views/media.py); listed on /access-log/ for admins. User and
    image are also kept as text, so the record outlives a deleted user or image row."""

    ORIGINAL = "original"
    KIND_CHOICES = [(ORIGINAL, "original image")]

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="image_accesses"
    )
    username = models.CharField(max_length=150)
    image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.SET_NULL, related_name="accesses")
    image_path = models.CharField(max_length=1000, help_text="the image's inbox path when it was opened")
    kind = models.CharField(max_length=10, choices=KIND_CHOICES, default=ORIGINAL)
    at = models.DateTimeField(default=timezone.now)
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["at"], name="imageaccess_at"),
            models.Index(fields=["username", "at"], name="imageaccess_username_at"),
            models.Index(fields=["image", "at"], name="imageaccess_image_at"),
        ]

    def __str__(self):
        return f"{self.username} opened {self.image_path} at {self.at:%Y-%m-%d %H:%M:%S}"
