from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django.conf import settings
from django.db import models
from django.db.models import Q, Value
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

import liveness.ensemble
from liveness.metrics import Rate, reported_apcer, wilson

CATEGORIES = list(liveness.ensemble.CATEGORIES)
CATEGORY_CHOICES = [(c, c.replace("_", " ")) for c in CATEGORIES]
LABEL_CHOICES = [("genuine", "genuine"), ("attack", "attack")]
DECISION_CHOICES = [("live", "live"), ("attack", "attack")]


class Device(models.Model):
    name = models.CharField(max_length=100, unique=True)
    first_day = models.DateField(null=True, blank=True)
    last_day = models.DateField(null=True, blank=True)

    def __str__(self):
        return self.name


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


class DailyMetric(models.Model):
    """One day's production figures, per device and for all devices (device = NULL).

    A row covers every production decision of the day, whichever ensemble made it: a day scored
    partly by one ensemble and partly by another after an activation (late files) is one row,
    with `decided_by` saying who decided how many at which threshold. Shadow runs never count.

    Two counts of the same decisions (SPEC section 2, positive = attack):
    - gated (the plain fields): the images that passed the quality gates (`live` and `attack`
      folders): flag rate = attack / (live + attack); on labelled ones FPR = genuine flagged /
      genuine and TPR = attacks flagged / attacks. Alerts judge these.
    - all scored (the `all_` fields): every image with a score and a decision, `low_quality`
      included, as the threshold table's "no filter" row counts them.
    """

    GATED, ALL = "gated", "all"
    COUNTED = {
        GATED: "images that passed the quality gates (live + attack)",
        ALL: "all scored images (live + attack + low quality)",
    }

    day = models.DateField()
    device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.CASCADE)
    ensemble = models.ForeignKey(
        Ensemble,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        help_text="the ensemble that made most of the day's decisions",
    )
    threshold = models.FloatField(null=True, help_text="the threshold of most of the day's decisions")
    model_versions = models.JSONField(default=dict, blank=True)
    decided_by = models.JSONField(
        default=list,
        blank=True,
        help_text='[{"ensemble": name, "ensemble_id": id, "threshold": t, "model_versions": {}, "images": n}] '
        "per (ensemble, threshold) that decided scored images that day, most images first",
    )
    images = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict, blank=True, help_text="images per category")
    scored = models.PositiveIntegerField(default=0, help_text="passed the gates and got a decision")
    flagged = models.PositiveIntegerField(default=0)
    genuine = models.PositiveIntegerField(default=0)
    fp = models.PositiveIntegerField(default=0)
    attacks = models.PositiveIntegerField(default=0)
    tp = models.PositiveIntegerField(default=0)
    attack_types = models.JSONField(
        default=dict,
        blank=True,
        help_text='labelled attacks that passed the gates, per attack type: {"print": {"attacks": n, "tp": k}}; '
        'attacks without a type count as "unknown" (reported apart, never as the worst type)',
    )
    all_scored = models.PositiveIntegerField(default=0, help_text="got a decision, low quality included")
    all_flagged = models.PositiveIntegerField(default=0)
    all_genuine = models.PositiveIntegerField(default=0)
    all_fp = models.PositiveIntegerField(default=0)
    all_attacks = models.PositiveIntegerField(default=0)
    all_tp = models.PositiveIntegerField(default=0)
    all_attack_types = models.JSONField(default=dict, blank=True)
    histogram = models.JSONField(
        default=list,
        blank=True,
        help_text="scores of the scored images (passed the gates) on equal-width bins over [0, 1], "
        "the bins of liveness.metrics.score_histogram; [] = not computed",
    )
    # per user (an attempt group, monitor/attempts.py), over the groups with a decision; the
    # genuine_ ones over groups whose images are all labelled genuine
    users = models.PositiveIntegerField(default=0, help_text="attempt groups with a decision")
    users_rejected = models.PositiveIntegerField(default=0, help_text="flagged on at least one attempt")
    users_always_rejected = models.PositiveIntegerField(default=0, help_text="flagged on every attempt")
    genuine_users = models.PositiveIntegerField(default=0)
    genuine_users_rejected = models.PositiveIntegerField(default=0)
    genuine_users_always_rejected = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["day", "device"])]
        ordering = ["day"]

    def __str__(self):
        return f"{self.day} {self.device or 'all devices'}"

    def figures(self, counted: str = GATED) -> DayFigures:
        """The day's decision figures counted one way (GATED or ALL)."""
        prefix = "all_" if counted == self.ALL else ""
        return DayFigures(
            counted,
            *(getattr(self, prefix + f) for f in ("scored", "flagged", "genuine", "fp", "attacks", "tp")),
            getattr(self, prefix + "attack_types") or {},
        )

    @property
    def mixed(self) -> bool:
        """More than one ensemble or threshold decided the day's images."""
        return len(self.decided_by or []) > 1

    @property
    def decided_text(self) -> str:
        """ "demo at 0.484 (120 images), demo2 at 0.5 (48 images)": who decided the day's images."""
        return ", ".join(
            f"{d['ensemble'] or 'no ensemble'} at {d['threshold']:g} ({d['images']} images)"
            for d in self.decided_by or []
            if d.get("threshold") is not None
        )

    @property
    def thresholds(self) -> list[float]:
        """The thresholds in force for the day's decisions, most images first."""
        return list(dict.fromkeys(d["threshold"] for d in self.decided_by or [] if d.get("threshold") is not None))

    # the gated figures, as the alerts and most pages read them

    @property
    def flag_rate(self) -> Rate:
        return self.figures().flag_rate

    @property
    def fpr(self) -> Rate:
        return self.figures().fpr

    @property
    def tpr(self) -> Rate:
        return self.figures().tpr

    @property
    def apcer_per_type(self) -> dict[str, Rate]:
        return self.figures().apcer_per_type

    @property
    def apcer(self) -> tuple[str, Rate] | None:
        return self.figures().apcer

    @property
    def acer(self) -> float | None:
        return self.figures().acer


@dataclass(frozen=True)
class DayFigures:
    """One day's decisions counted one way: rates with counts and Wilson intervals (SPEC section 2)."""

    counted: str
    scored: int
    flagged: int
    genuine: int
    fp: int
    attacks: int
    tp: int
    attack_types: dict

    @property
    def counted_text(self) -> str:
        return DailyMetric.COUNTED[self.counted]

    @property
    def flag_rate(self) -> Rate:
        return wilson(self.flagged, self.scored)

    @property
    def fpr(self) -> Rate:
        """FPR = BPCER: genuine flagged / labelled genuine."""
        return wilson(self.fp, self.genuine)

    @property
    def tpr(self) -> Rate:
        return wilson(self.tp, self.attacks)

    @property
    def apcer_per_type(self) -> dict[str, Rate]:
        """APCER of each attack type present (untyped attacks as "unknown"): attacks of that type
        decided live (FN) / attacks of that type."""
        out = {}
        for name in sorted(self.attack_types):
            c = self.attack_types[name]
            if c.get("attacks"):
                out[name] = wilson(c["attacks"] - c.get("tp", 0), c["attacks"])
        return out

    @property
    def apcer(self) -> tuple[str, Rate] | None:
        """Reported APCER (ISO/IEC 30107-3): (attack type, rate) of the worst named type; untyped
        attacks never set it (liveness.metrics.reported_apcer). None without typed attacks."""
        return reported_apcer(self.apcer_per_type)

    @property
    def acer(self) -> float | None:
        """(APCER + BPCER) / 2; None without typed attacks or without labelled genuine images."""
        worst = self.apcer
        if worst is None or not self.genuine:
            return None
        return (worst[1].value + self.fpr.value) / 2

    @property
    def acer_too_few(self) -> bool:
        """ACER greys out like its parts: when the reported APCER's or the BPCER's count is too few."""
        worst = self.apcer
        return worst is None or worst[1].too_few or self.fpr.too_few


class AlertQuerySet(models.QuerySet):
    def active(self):
        """Not yet cleared: open or acknowledged."""
        return self.filter(status__in=Alert.ACTIVE)


class Alert(models.Model):
    """A rule that fired (monitor/alerts.py). At most one active (open or acknowledged) alert per
    (rule, device); it closes once the rule has been fine for KOALA_ALERT_CLEAR_DAYS days in a row."""

    FLAG_RATE, FPR, PSI, SILENT = "flag_rate", "fpr", "psi", "silent"
    RULE_CHOICES = [
        (FLAG_RATE, "flag rate above limit"),
        (FPR, "FPR above limit"),
        (PSI, "score distribution drift (PSI)"),
        (SILENT, "device silent"),
    ]
    OPEN, ACKNOWLEDGED, CLOSED = "open", "acknowledged", "closed"
    STATUS_CHOICES = [(s, s) for s in (OPEN, ACKNOWLEDGED, CLOSED)]
    ACTIVE = (OPEN, ACKNOWLEDGED)

    rule = models.CharField(max_length=20, choices=RULE_CHOICES)
    day = models.DateField(help_text="the day the rule first fired")
    last_day = models.DateField(help_text="the latest day the rule fired")
    device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.CASCADE, help_text="empty = all devices")
    ensemble = models.ForeignKey(Ensemble, null=True, blank=True, on_delete=models.SET_NULL)
    value = models.FloatField(help_text="the value on last_day (a rate, a PSI, or images for a silent device)")
    limit = models.FloatField(help_text="the limit it went above (silent: days reported in the window)")
    count = models.PositiveIntegerField(default=0, help_text="the images the value was computed on")
    message = models.CharField(max_length=500)
    status = models.CharField(max_length=14, choices=STATUS_CHOICES, default=OPEN)
    opened_at = models.DateTimeField(auto_now_add=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)
    closed_day = models.DateField(null=True, blank=True, help_text="the day evaluation found it cleared")
    closed_at = models.DateTimeField(null=True, blank=True)

    objects = AlertQuerySet.as_manager()

    class Meta:
        ordering = ["-day", "rule"]
        constraints = [
            # NULL device = all devices: coalesced so two all-device alerts of one rule also collide
            models.UniqueConstraint(
                "rule",
                Coalesce("device", Value(0)),
                condition=Q(status__in=["open", "acknowledged"]),
                name="one_active_alert_per_rule_device",
            )
        ]
        indexes = [models.Index(fields=["status", "rule"])]

    def __str__(self):
        return f"{self.get_rule_display()} on {self.device or 'all devices'} since {self.day}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    def explain_url(self) -> str:
        """ "What changed" on the latest day the rule fired, for its device and (a rate rule) its
        measure: where a user looks for the reason."""
        query = {"device": self.device.name} if self.device_id else {}
        if self.rule in (self.FLAG_RATE, self.FPR):
            query["measure"] = self.rule
        return f"{reverse('day-explain', args=[self.last_day])}?{urlencode(query)}"


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


class DaySlice(models.Model):
    """One slice of one day's images (monitor/slices.py): counts for "what changed"
    (monitor/explain.py). `dims` names the slice's dimensions ("device", or "device|face_size"
    for a combination), `value` its values joined the same way. Written by compute_day for
    every slice that holds images; the explanation of a day reads its rows and sums the rows of
    its trailing window, never the images."""

    day = models.DateField()
    dims = models.CharField(max_length=60)
    value = models.CharField(max_length=300)
    images = models.PositiveIntegerField(default=0, help_text="every image of the slice, of any category")
    scored = models.PositiveIntegerField(default=0, help_text="got a decision, low quality included")
    flagged = models.PositiveIntegerField(default=0, help_text="decided attack")
    low_quality = models.PositiveIntegerField(default=0)
    genuine = models.PositiveIntegerField(default=0, help_text="scored and labelled genuine")
    fp = models.PositiveIntegerField(default=0)
    attacks = models.PositiveIntegerField(default=0, help_text="scored and labelled attack")
    tp = models.PositiveIntegerField(default=0)
    histogram = models.JSONField(default=list, blank=True, help_text="scores on the bins of score_histogram")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "dims", "value"], name="day_slice_unique")]
        indexes = [models.Index(fields=["dims", "day"], name="day_slice_dims_day")]

    def __str__(self):
        return f"{self.day} {self.dims}={self.value}"
