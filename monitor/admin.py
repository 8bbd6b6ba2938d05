from django.contrib import admin

from .models import (
    Alert,
    AttackType,
    Device,
    Ensemble,
    EnsembleEvent,
    Image,
    ImageAccess,
    InboxFile,
    LabelEvent,
    ModelVersion,
    Run,
    ShadowScore,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records the system writes (audit trails, logs, shadow scores, the model registry): shown,
    never edited here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ("name", "first_day", "last_day")


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    """Registered models: shown, never edited here. A model's name, version, file, sha256 and
    manifest are what its scores mean; they come from `register_models` or the models page,
    which check the manifest against the ONNX file; deleting one would change its ensembles'
    members without an EnsembleEvent."""

    list_display = ("name", "version", "sha256", "created_at")


@admin.register(Ensemble)
class EnsembleAdmin(ReadOnlyAdmin):
    """Ensembles: shown, never edited here. Members come from `register_models` or the models
    page; activation and threshold changes go through the models page (monitor/views/registry.py),
    which records each one as an EnsembleEvent with who and why (deleting one would delete that
    history)."""

    list_display = ("name", "threshold", "rule", "is_active", "created_at")


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("pk", "day", "status", "trigger", "processed", "total", "new_images", "created_at")
    list_filter = ("status", "trigger")


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ("path", "day", "device", "category", "score", "label")
    list_filter = ("category", "label", "device")
    date_hierarchy = "day"
    search_fields = ("path", "sha256")
    raw_id_fields = ("run", "ensemble", "reviewed_by", "review_claimed_by")
    # labels change through the review queue and the labelling pages, which keep the audit trail
    readonly_fields = ("label", "attack_type")


@admin.register(InboxFile)
class InboxFileAdmin(admin.ModelAdmin):
    list_display = ("path", "day", "status", "reason")
    list_filter = ("status",)
    raw_id_fields = ("image", "run")


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ("rule", "day", "device", "status", "value", "limit", "opened_at")
    list_filter = ("rule", "status")


@admin.register(AttackType)
class AttackTypeAdmin(admin.ModelAdmin):
    list_display = ("name", "description", "position")
    list_editable = ("position",)
    ordering = ("position", "name")


@admin.register(LabelEvent)
class LabelEventAdmin(ReadOnlyAdmin):
    """The audit trail: read-only (label changes go through monitor/labels.py)."""

    list_display = (
        "created_at",
        "image",
        "old_label",
        "old_attack_type",
        "new_label",
        "new_attack_type",
        "user",
        "source",
        "undone",
    )
    list_filter = ("source", "undone", "new_label")
    search_fields = ("image__path", "image__sha256", "user__username", "note")
    date_hierarchy = "created_at"
    list_select_related = ("image", "user")


@admin.register(EnsembleEvent)
class EnsembleEventAdmin(ReadOnlyAdmin):
    """Who activated an ensemble or changed its threshold, and why: read-only (the changes go
    through the models page, monitor/registry.py)."""

    list_display = ("created_at", "ensemble", "kind", "old_threshold", "new_threshold", "user", "note")
    list_filter = ("kind", "ensemble")
    search_fields = ("ensemble__name", "user__username", "note")
    date_hierarchy = "created_at"
    list_select_related = ("ensemble", "user")


@admin.register(ShadowScore)
class ShadowScoreAdmin(ReadOnlyAdmin):
    """Scores of shadow runs: written by the runs, read here."""

    list_display = ("day", "ensemble", "image", "score", "threshold", "decision", "scored_at")
    list_filter = ("ensemble", "decision")
    date_hierarchy = "day"
    raw_id_fields = ("image", "run")
    list_select_related = ("ensemble", "image")


@admin.register(ImageAccess)
class ImageAccessAdmin(ReadOnlyAdmin):
    """The access log (who opened which original image): read-only, written by the image file view."""

    list_display = ("at", "username", "image_path", "kind", "ip")
    list_filter = ("kind",)
    search_fields = ("username", "image_path", "image__sha256")
    date_hierarchy = "at"
    raw_id_fields = ("user", "image")
