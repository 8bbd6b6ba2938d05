from django.contrib import admin

from .models import Alert, Device, Ensemble, Image, InboxFile, ModelVersion, Run


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ("name", "first_day", "last_day")


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "sha256", "created_at")
    readonly_fields = ("sha256", "file", "input_shape", "created_at")


@admin.register(Ensemble)
class EnsembleAdmin(admin.ModelAdmin):
    list_display = ("name", "threshold", "rule", "is_active", "created_at")
    filter_horizontal = ("members",)


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
    raw_id_fields = ("run", "ensemble")


@admin.register(InboxFile)
class InboxFileAdmin(admin.ModelAdmin):
    list_display = ("path", "day", "status", "reason")
    list_filter = ("status",)
    raw_id_fields = ("image", "run")


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ("rule", "day", "device", "status", "value", "limit", "opened_at")
    list_filter = ("rule", "status")
