"""The overview page: the latest day's figures and the trends (monitor/trends.py), the open
alerts and the last runs, for all devices or one, counted gated or over all scored images. The
runs and alerts are read on every view; the figures come from the cache while their rows stay.
"""

from __future__ import annotations

from django.shortcuts import render

from .. import alerts, trends
from ..access import VIEW, require
from ..models import DailyMetric, Device, Ensemble, Run

RANGES = (30, 90, 365)
DEFAULT_RANGE = 30
RUNS_SHOWN = 10
COUNTED_CHOICES = [(DailyMetric.GATED, "passed the quality gates"), (DailyMetric.ALL, "all scored")]


def _range(value: str | None) -> tuple[int, str]:
    """The number of days to show and an error to display (invalid values fall back to 30)."""
    if value in (None, ""):
        return DEFAULT_RANGE, ""
    try:
        days = int(value)
    except ValueError:
        days = None
    if days in RANGES:
        return days, ""
    return DEFAULT_RANGE, f"Unknown range “{value}”: showing {DEFAULT_RANGE} days (choose 30, 90 or 365)."


def _counted(value: str | None) -> tuple[str, str]:
    """Which images the rates count (DailyMetric.GATED or ALL) and an error to display."""
    if value in (None, "", DailyMetric.GATED, DailyMetric.ALL):
        return value or DailyMetric.GATED, ""
    return DailyMetric.GATED, f"Unknown count “{value}”: counting the images that passed the quality gates."


@require(VIEW)
def overview(request):
    errors = []
    range_days, error = _range(request.GET.get("days"))
    counted, counted_error = _counted(request.GET.get("count"))
    errors += [e for e in (error, counted_error) if e]

    devices = list(Device.objects.order_by("name").values_list("id", "name"))
    device_name = request.GET.get("device", "")
    device_id = dict((name, pk) for pk, name in devices).get(device_name)
    if device_name and device_id is None:
        errors.append(f"Unknown device “{device_name}”: showing all devices.")
        device_name = ""

    active = Ensemble.objects.filter(is_active=True).first()
    ctx = {
        "errors": errors,
        "ranges": RANGES,
        "range_days": range_days,
        "devices": [name for _, name in devices],
        "device": device_name,
        "counted": counted,
        "counted_choices": COUNTED_CHOICES,
        "counted_text": DailyMetric.COUNTED[counted],
        "ensemble": active,
        **trends.cached_figures(range_days, device_id, active.pk if active else None, counted),
        "runs": list(Run.objects.select_related("ensemble").order_by("-created_at")[:RUNS_SHOWN]),
        "open_alerts": alerts.open_alerts(),
    }
    return render(request, "monitor/overview.html", ctx)
