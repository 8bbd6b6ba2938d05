"""Alerts (SPEC section 5): everyone who can view sees them; reviewers and admins acknowledge."""

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from .. import alerts
from ..access import LABEL, VIEW, require
from ..models import Alert

CLOSED_SHOWN = 50


def _bound(value: float | None) -> str | None:
    return None if value is None else f"{100 * value:g}%"


def rule_values() -> dict:
    """The configured values the page states the rules with, read where the rules read them
    (`alerts.Config.from_settings`), so the text cannot drift from what is evaluated."""
    cfg = alerts.Config.from_settings()
    return {
        "window": cfg.window,
        "sigmas": f"{cfg.sigmas:g}",
        "min_history": cfg.min_history,
        "min_count": cfg.min_count,
        "min_genuine": cfg.min_genuine,
        "max_flag_rate": _bound(cfg.max_flag_rate),
        "max_fpr": _bound(cfg.max_fpr),
        "max_psi": f"{cfg.max_psi:g}",
        "silent_min_days": cfg.silent_min_days,
        "clear_days": cfg.clear_days,
        "rearm_days": settings.KOALA_ALERT_REARM_DAYS,
    }


@require(VIEW)
def alert_list(request):
    closed = Alert.objects.filter(status=Alert.CLOSED).select_related("device", "ensemble", "acknowledged_by")
    ctx = {
        "rule": rule_values(),
        "open_alerts": alerts.open_alerts(),
        "closed_alerts": list(closed.order_by("-closed_day", "-last_day", "-pk")[:CLOSED_SHOWN]),
        "closed_shown": CLOSED_SHOWN,
        "can_ack": request.user.has_perm(LABEL),
    }
    return render(request, "monitor/alerts.html", ctx)


@require_POST
@require(LABEL)
def acknowledge(request, pk):
    alert = get_object_or_404(Alert, pk=pk)
    note = request.POST.get("note", "")[:2000]
    if alerts.acknowledge(alert, request.user, note):
        messages.success(request, f"Acknowledged: {alert.get_rule_display()} on {alert.device or 'all devices'}.")
    else:
        messages.error(request, "That alert has already cleared.")
    target = request.POST.get("next", "")
    if target.startswith("/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return HttpResponseRedirect(target)
    return redirect("alerts")
