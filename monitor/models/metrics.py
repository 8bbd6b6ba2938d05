"""The figures of each day (per device, and per slice for "what changed") and the alerts raised
on them."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django.conf import settings
from django.db import models
from django.db.models import Q, Value
from django.db.models.functions import Coalesce
from django.urls import reverse

from liveness.iso import reported_apcer
from liveness.metrics import Rate, wilson

from .images import Device
from .registry import Ensemble


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
        "the bins of liveness.drift.score_histogram; [] = not computed",
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
        attacks never set it (liveness.iso.reported_apcer). None without typed attacks."""
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

    @property
    def explain_measure(self) -> str:
        """The measure "what changed" ranks the slices by for this alert: a rate rule's own, else
        the page's default, the flag rate."""
        return self.rule if self.rule in (self.FLAG_RATE, self.FPR) else "flag_rate"

    def explain_url(self) -> str:
        """ "What changed" on the latest day the rule fired, for its device and (a rate rule) its
        measure: where a user looks for the reason."""
        query = {"device": self.device.name} if self.device_id else {}
        if self.explain_measure == self.rule:
            query["measure"] = self.rule
        return f"{reverse('day-explain', args=[self.last_day])}?{urlencode(query)}"


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
