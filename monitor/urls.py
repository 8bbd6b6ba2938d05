from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, register_converter

from .converters import DayConverter
from .views import (
    access_log,
    alerts,
    api,
    compare,
    devices,
    explain,
    gallery,
    media,
    overview,
    registry,
    runs,
    thresholds,
)

register_converter(DayConverter, "day")

urlpatterns = [
    path("", overview.overview, name="home"),
    path("days/<day:day>/", gallery.day_gallery, name="gallery"),
    path("days/<day:day>/explain", explain.day_explain, name="day-explain"),
    path("devices/", devices.device_list, name="devices"),
    path("images/<int:pk>/", gallery.image_detail, name="image"),
    path("images/<int:pk>/file", media.image_file, name="image-file"),
    path("images/<int:pk>/thumb", media.thumbnail, name="thumb"),
    path("access-log/", access_log.access_log, name="access-log"),
    path("runs/", runs.run_list, name="runs"),
    path("runs/start", runs.start, name="run-start"),
    path("runs/<int:pk>/", runs.run_detail, name="run"),
    path("runs/<int:pk>/status", runs.status, name="run-status"),
    path("thresholds/", thresholds.table, name="thresholds"),
    path("compare/", compare.compare, name="compare"),
    path("alerts/", alerts.alert_list, name="alerts"),
    path("alerts/<int:pk>/acknowledge", alerts.acknowledge, name="alert-ack"),
    path("models/", registry.model_list, name="models"),
    path("models/register", registry.register_model, name="model-register"),
    path("models/<int:pk>/", registry.model_detail, name="model"),
    path("models/<int:pk>/measure", registry.measure, name="model-measure"),
    path("ensembles/register", registry.register_ensemble, name="ensemble-register"),
    path("ensembles/<int:pk>/activate", registry.activate, name="ensemble-activate"),
    path("ensembles/<int:pk>/threshold", registry.threshold, name="ensemble-threshold"),
    path("review/", include("monitor.urls_review")),
    path("labelling/", include("monitor.urls_labelling")),
    path("api/days", api.days, name="api-days"),
    path("api/days/<day:day>/images", api.day_images, name="api-day-images"),
    path("api/days/<day:day>/explain", explain.api_day_explain, name="api-day-explain"),
    path("api/images/<int:pk>", api.image, name="api-image"),
    path("api/metrics", api.metrics, name="api-metrics"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]
