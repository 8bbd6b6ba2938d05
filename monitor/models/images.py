"""What comes in and what scoring made of it: the devices, the inbox files, the scoring runs, the
images and their shadow scores."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .choices import CATEGORIES, CATEGORY_CHOICES, DECISION_CHOICES, LABEL_CHOICES
from .registry import Ensemble


class Device(models.Model):
    name = models.CharField(max_length=100, unique=True)
    first_day = models.DateField(null=True, blank=True)
    last_day = models.DateField(null=True, blank=True)

    def __str__(self):
        return self.name


class Run(models.Model):
    """One scoring run of one day: what it found, how far it got, what went wrong.

    A shadow run scores the day's stored images with a non-active ensemble into ShadowScore rows
    and touches neither the images' categories nor the folders."""

    QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
    SUPERSEDED = "superseded"  # another run of the same day was still scoring: that one finishes the day
    STATUS_CHOICES = [(s, s) for s in (QUEUED, RUNNING, DONE, FAILED, SUPERSEDED)]

    day = models.DateField(db_index=True)
    ensemble = models.ForeignKey(Ensemble, null=True, on_delete=models.SET_NULL)
    threshold = models.FloatField(null=True)
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=QUEUED)
    trigger = models.CharField(max_length=20, default="manual")  # manual | nightly | rescan | command
    rescore = models.BooleanField(default=False)
    shadow = models.BooleanField(default=False, help_text="scores into ShadowScore, leaves images and folders alone")
    detector = models.CharField(max_length=200, blank=True, help_text="the face detector used (name and sha256)")
    total = models.PositiveIntegerField(default=0, help_text="files to process in this run")
    processed = models.PositiveIntegerField(default=0)
    new_images = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    failed_files = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict, blank=True, help_text="images of the day per category")
    errors = models.JSONField(default=list, blank=True, help_text="[{path, reason}] for files not scored")
    timings = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"run {self.pk} of {self.day} ({self.status})"

    @property
    def progress(self) -> float:
        return self.processed / self.total if self.total else (1.0 if self.status == self.DONE else 0.0)

    @property
    def duration_text(self) -> str:
        """ "42 s", "3 min 07 s", "1 h 02 min"; while running, the time so far."""
        if self.started_at is None:
            return ""
        end = self.finished_at or (timezone.now() if self.status == self.RUNNING else None)
        if end is None:
            return ""
        minutes, seconds = divmod(int((end - self.started_at).total_seconds()), 60)
        hours, minutes = divmod(minutes, 60)
        return (
            f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
        )

    @property
    def category_counts(self) -> list[tuple[str, int]]:
        return [(c, self.counts[c]) for c in CATEGORIES if self.counts.get(c)]

    @property
    def note(self) -> str:
        """Why the run ended as it did (its first error about the run itself, not one file)."""
        return next((e.get("reason", "") for e in self.errors if isinstance(e, dict) and not e.get("path")), "")


class Image(models.Model):
    """One distinct image and everything the pipeline found. A readable image is identified by
    the sha256 of its bytes; an unreadable one by its sha256 and day, so that identical broken
    files (a zero-byte file, the same truncated upload) count on every day they arrive."""

    sha256 = models.CharField(max_length=64)
    path = models.CharField(max_length=1000, help_text="relative to the inbox, of the first file with these bytes")
    day = models.DateField()
    device = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="images")
    captured_at = models.DateTimeField(null=True, blank=True)
    file_size = models.PositiveIntegerField()
    format = models.CharField(max_length=10, blank=True)
    width = models.PositiveIntegerField(null=True)
    height = models.PositiveIntegerField(null=True)
    # face box, full-resolution pixels of the upright image
    box_x = models.FloatField(null=True)
    box_y = models.FloatField(null=True)
    box_w = models.FloatField(null=True)
    box_h = models.FloatField(null=True)
    box_source = models.CharField(max_length=10, blank=True)
    detection_score = models.FloatField(null=True)
    # quality
    face_size = models.FloatField(null=True)
    yaw = models.FloatField(null=True)
    pitch = models.FloatField(null=True)
    roll = models.FloatField(null=True)
    blur = models.FloatField(null=True)
    pose_source = models.CharField(max_length=10, blank=True)
    blur_source = models.CharField(max_length=10, blank=True)
    failed_gates = models.JSONField(default=list, blank=True)
    # scores
    scores = models.JSONField(default=dict, blank=True, help_text="model name -> live probability")
    attack_guesses = models.JSONField(default=dict, blank=True)
    crop_rects = models.JSONField(default=dict, blank=True)
    score = models.FloatField(null=True)
    disagreement = models.FloatField(null=True, help_text="max - min of the per-model scores")
    decision = models.CharField(max_length=10, choices=DECISION_CHOICES, blank=True)
    category = models.CharField(max_length=12, choices=CATEGORY_CHOICES)
    reason = models.CharField(max_length=500, blank=True)
    notes = models.JSONField(default=list, blank=True)
    ensemble = models.ForeignKey(Ensemble, null=True, on_delete=models.SET_NULL)
    threshold = models.FloatField(null=True)
    model_versions = models.JSONField(default=dict, blank=True, help_text="model name -> name@version:sha")
    # labels
    label = models.CharField(max_length=10, choices=LABEL_CHOICES, blank=True)
    attack_type = models.CharField(max_length=50, blank=True)
    sidecar = models.JSONField(null=True, blank=True)
    # from the sidecar, as columns: the slices of "what changed" and the attempt groups read them
    site = models.CharField(max_length=100, blank=True)
    subject = models.CharField(max_length=100, blank=True)
    # attempts (monitor/attempts.py): the images of one user trying again on one device. face_hash
    # is a 64-bit perceptual hash of the face crop (hex); attempt_group the id of the group's
    # first image, attempt_index the 1-based place in it, attempt_size the group's image count
    face_hash = models.CharField(max_length=16, blank=True)
    attempt_group = models.BigIntegerField(null=True, blank=True)
    attempt_index = models.PositiveIntegerField(null=True, blank=True)
    attempt_size = models.PositiveIntegerField(null=True, blank=True)
    # review (monitor/labels.py): the on-call verdict and the short claim of the reviewer showing it
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    review_claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    review_claim_until = models.DateTimeField(null=True, blank=True)
    # files
    sorted_path = models.CharField(max_length=1000, blank=True, help_text="relative to the sorted folder")
    has_thumbnail = models.BooleanField(default=False)
    purged_at = models.DateTimeField(
        null=True, blank=True, help_text="when retention deleted its files (monitor/purge.py); the row stays"
    )
    run = models.ForeignKey(Run, null=True, on_delete=models.SET_NULL, related_name="images")
    scored_at = models.DateTimeField(auto_now=True)

    class Meta:
        # The gallery reads one day in (value, id) order from where its cursor points
        # (monitor/browse.py); the counts per category come from the covering last one.
        # Measured with `make bench` (bench/README.md).
        indexes = [
            models.Index(fields=["day", "category", "score", "id"], name="image_day_cat_score"),
            models.Index(fields=["day", "score", "id"], name="image_day_score"),
            models.Index(fields=["day", "disagreement", "id"], name="image_day_disagreement"),
            models.Index(fields=["day", "captured_at", "id"], name="image_day_captured"),
            models.Index(fields=["day", "device", "category"], name="image_day_device_cat"),
            models.Index(fields=["day", "category", "label", "disagreement"], name="image_day_counts"),
            # the review queue (monitor/labels.py): flagged, not yet reviewed, newest day first and
            # highest score first; partial, so it holds only the images still waiting
            models.Index(
                fields=["day", "score", "id"],
                condition=Q(decision="attack", reviewed_at__isnull=True),
                name="image_review_queue",
            ),
            models.Index(
                fields=["device", "day", "score", "id"],
                condition=Q(decision="attack", reviewed_at__isnull=True),
                name="image_review_queue_device",
            ),
            # "reviewed today" of the review progress; partial, so it is no candidate for the queue
            models.Index(fields=["reviewed_at"], condition=Q(reviewed_at__isnull=False), name="image_reviewed_at"),
            models.Index(fields=["sha256"], name="image_sha256"),
            models.Index(fields=["day", "attempt_group"], name="image_day_attempt"),
        ]
        # an image is stored once: by its bytes, or by its bytes and day for an unreadable one
        # (monitor/runs.py `identified`); score_batch relies on these for concurrent batches
        constraints = [
            models.UniqueConstraint(
                fields=["sha256"], condition=~Q(category="unreadable"), name="image_sha256_readable_unique"
            ),
            models.UniqueConstraint(
                fields=["sha256", "day"], condition=Q(category="unreadable"), name="image_sha256_day_unreadable_unique"
            ),
        ]

    def __str__(self):
        return self.path

    @property
    def thumb_relpath(self) -> str:
        return f"{self.sha256[:2]}/{self.sha256}.jpg"


class ShadowScore(models.Model):
    """One image scored by a non-active ensemble (a shadow run): its scores and the decision it
    would have made. The image's own category, score and folder stay those of production."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="shadow_scores")
    ensemble = models.ForeignKey(Ensemble, on_delete=models.CASCADE, related_name="shadow_scores")
    run = models.ForeignKey(Run, null=True, on_delete=models.SET_NULL, related_name="shadow_scores")
    day = models.DateField()
    scores = models.JSONField(default=dict, blank=True, help_text="model name -> live probability")
    attack_guesses = models.JSONField(default=dict, blank=True)
    score = models.FloatField()
    threshold = models.FloatField()
    decision = models.CharField(max_length=10, choices=DECISION_CHOICES)
    model_versions = models.JSONField(default=dict, blank=True)
    scored_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["ensemble", "image"], name="one_shadow_score_per_image")]
        indexes = [models.Index(fields=["ensemble", "day"], name="shadow_ensemble_day")]

    def __str__(self):
        return f"{self.ensemble.name} on image {self.image_id}: {self.score:.3f}"


class InboxFile(models.Model):
    """Every file seen in the inbox. Several files may hold the same bytes (one Image)."""

    PENDING, DONE, DUPLICATE, FAILED = "pending", "done", "duplicate", "failed"
    STATUS_CHOICES = [(s, s) for s in (PENDING, DONE, DUPLICATE, FAILED)]

    path = models.CharField(max_length=1000, unique=True, help_text="relative to the inbox")
    day = models.DateField()
    device = models.ForeignKey(Device, on_delete=models.PROTECT)
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=PENDING)
    image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.SET_NULL, related_name="files")
    reason = models.CharField(max_length=500, blank=True)
    run = models.ForeignKey(Run, null=True, on_delete=models.SET_NULL, related_name="files")
    claimed_by = models.CharField(max_length=64, blank=True)
    claimed_until = models.DateTimeField(null=True)
    seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["day", "status"])]

    def __str__(self):
        return self.path
