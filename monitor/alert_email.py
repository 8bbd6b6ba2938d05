"""The email that tells on-call about new alerts: each alert's message, then what changed on its
day (the first slices of "what changed" for its device and measure), so the first question, why,
is answered in the email itself; the page's link for the rest."""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.core import mail

from . import explain
from .models import Alert

log = logging.getLogger(__name__)

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
CAUSES_SHOWN = 3


def email_configured() -> bool:
    """Django's email settings are configured: EMAIL_HOST set, or an EMAIL_BACKEND other than SMTP."""
    return bool(getattr(settings, "EMAIL_HOST", "")) or settings.EMAIL_BACKEND != SMTP_BACKEND


def question(alert: Alert) -> tuple[dt.date, str, str]:
    """(day, measure, device) of the explanation of an alert: its last day, its rate's measure (the
    flag rate for a score drift), the alert's device or all devices ("")."""
    return alert.last_day, alert.explain_measure, alert.device.name if alert.device_id else ""


def causes(day: dt.date, measure: str, device: str) -> list[str]:
    """What changed on the day for the measure and device, in a few lines."""
    e = explain.explain_day(day, measure, device=device)
    lines = explain.summary(e, CAUSES_SHOWN)
    return lines or [f"no slice stands out in the {e.measure.label}"]


def body(opened: list[Alert]) -> str:
    lines = []
    explained: dict[tuple, list[str]] = {}  # a device's flag rate and PSI alerts share one explanation
    for a in opened:
        q = question(a)
        if q not in explained:
            explained[q] = causes(*q)
        lines.append(f"- {a.get_rule_display()}: {a.message}")
        lines += [f"    {line}" for line in explained[q]]
        lines.append(f"    What changed: {a.explain_url()}")
    return "\n".join([*lines, "", "See the Alerts page of Koala Monitor (/alerts/) to acknowledge them."])


def send(day: dt.date, opened: list[Alert]) -> None:
    if not email_configured():
        return
    subject = f"{len(opened)} new alert{'s' if len(opened) > 1 else ''} for {day.isoformat()}"
    recipients = list(getattr(settings, "KOALA_ALERT_EMAILS", []))
    try:
        text = body(opened)
        if recipients:
            mail.send_mail(settings.EMAIL_SUBJECT_PREFIX + subject, text, settings.DEFAULT_FROM_EMAIL, recipients)
        elif settings.ADMINS:
            mail.mail_admins(subject, text)
        else:
            log.warning("alerts opened for %s but no recipient: set KOALA_ALERT_EMAILS", day)
    except Exception:  # a mail server down (or any part of the email failing) must not fail the day
        log.exception("could not email the alerts of %s", day)
