"""The alerts page states the alert rules with the values configured in the settings."""

import html
import re

import pytest
from django.urls import reverse


def rules_text(client) -> str:
    page = client.get(reverse("alerts")).content.decode()
    section = re.search(r'<section class="ov-note" id="alert-rules">(.*?)</section>', page, re.S).group(1)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", section))).strip()


@pytest.fixture
def viewer(client, personas):
    client.force_login(personas["viewer"])
    return client


@pytest.mark.django_db
def test_it_states_the_control_limit_with_the_default_values(viewer):
    text = rules_text(viewer)
    assert "the mean + 3 sigma of the daily rates on the usable days among the previous 14 days" in text
    assert "with at least 100 scored images (flag rate) or 30 labelled genuine images (FPR)" in text
    assert "floored at the day's binomial sigma √(p(1 − p) / n) with p = max(mean, 1 / n) and n the day's count" in text
    assert (
        "Days on which the rule fired are left out of the baseline (unless fewer than 7 usable days would remain)"
        in text
    )
    assert "above 0.2; needs 100 scores" in text
    assert "reported on at least 8 of the previous 14 days" in text
    assert "fine on 2 days with a verdict in a row after the last day it fired" in text
    assert "days without a verdict (too few images) are skipped, not counted" in text
    assert "Firing again within 7 days of closing re-opens the alert" in text
    assert "absolute bound" not in text


@pytest.mark.django_db
def test_it_follows_the_settings(viewer, settings):
    settings.KOALA_ALERT_WINDOW_DAYS = 21
    settings.KOALA_ALERT_SIGMAS = 2.5
    settings.KOALA_ALERT_MIN_COUNT = 250
    settings.KOALA_ALERT_MIN_GENUINE = 40
    settings.KOALA_ALERT_MIN_HISTORY_DAYS = 10
    settings.KOALA_ALERT_CLEAR_DAYS = 1
    settings.KOALA_ALERT_MAX_FPR = 0.02

    text = rules_text(viewer)

    assert "the mean + 2.5 sigma of the daily rates on the usable days among the previous 21 days" in text
    assert "with at least 250 scored images (flag rate) or 40 labelled genuine images (FPR)" in text
    assert "No verdict on a day with fewer than 250 scored images (flag rate) or 40 labelled genuine (FPR)" in text
    assert "fewer than 10 usable days would remain" in text
    assert "fine on 1 day with a verdict in a row" in text
    assert "The FPR uses the absolute bound 2% instead of its control limit." in text
    assert "flag rate uses the absolute bound" not in text
    assert "3 sigma" not in text and "previous 14 days" not in text
