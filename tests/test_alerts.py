"""Alerts (SPEC section 5): control limits on flag rate and FPR, PSI drift, silent devices,
minimum counts, hysteresis, idempotent evaluation, email, and the alerts page."""

import datetime as dt
import math
import statistics

import pytest
from django.core import mail
from django.template.loader import render_to_string
from django.test import Client
from django.urls import reverse

from monitor import alert_email, alerts, daily, tasks
from monitor.models import Alert, DailyMetric, Image
from tests import factories as f

START = dt.date(2026, 11, 1)
SPIKE = START + dt.timedelta(days=14)  # the day after 14 calm days
N = 40  # images per calm day (KOALA_ALERT_MIN_COUNT is 30 here, to keep the tests small)


@pytest.fixture(autouse=True)
def alert_settings(settings):
    settings.KOALA_ALERT_MIN_COUNT = 30
    settings.KOALA_ALERT_MIN_GENUINE = 20
    settings.KOALA_ALERT_MAX_FLAG_RATE = None
    settings.KOALA_ALERT_MAX_FPR = None
    settings.KOALA_ALERT_EMAILS = []
    # email not configured unless a test says so (pytest-django switches to locmem otherwise)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = ""
    return settings


def fill(day, n=N, flagged=3, device="phone-01", label="", live_score=0.8, attack_score=0.2, **fields):
    """n scored images on a device: `flagged` of them decided attack (score 0.2), the rest live."""
    for i in range(n):
        f.image(day=day, device_name=device, score=attack_score if i < flagged else live_score, label=label, **fields)


def finish(day):
    """What the end of a run does: the day's figures, then its alerts."""
    daily.compute_day(day)
    return alerts.evaluate_day(day)


def calm(days=14, start=START, **kw):
    for i in range(days):
        day = start + dt.timedelta(days=i)
        fill(day, flagged=2 + i % 3, **kw)  # 5%, 7.5%, 10% flag rate
        assert finish(day) == []


def active(rule=None):
    qs = Alert.objects.active()
    return qs.filter(rule=rule) if rule else qs


@pytest.mark.django_db
def test_it_opens_a_flag_rate_alert_on_a_spike_after_calm_days():
    calm()
    fill(SPIKE, flagged=20)  # 50%

    opened = finish(SPIKE)

    flag = {a.device.name if a.device else None: a for a in opened if a.rule == Alert.FLAG_RATE}
    assert set(flag) == {None, "phone-01"}  # all devices and the device
    a = flag[None]
    assert (a.status, a.day, a.last_day, a.count) == (Alert.OPEN, SPIKE, SPIKE, N)
    rates = [(2 + i % 3) / N for i in range(14)]  # mean 7.32%; the day's binomial sigma beats their stdev
    mean = statistics.fmean(rates)
    assert statistics.stdev(rates) < math.sqrt(mean * (1 - mean) / N)
    assert a.value == 0.5 and a.limit == pytest.approx(mean + 3 * math.sqrt(mean * (1 - mean) / N))
    assert a.message == (
        "2026-11-15, all devices: flag rate 50.00% (20 / 40) above its limit 19.68% (14-day mean 7.32% + 3 sigma)"
    )
    assert a.ensemble.name == "test"


@pytest.mark.django_db
def test_it_does_not_alert_on_a_day_with_too_few_images():
    calm()
    fill(SPIKE, n=20, flagged=20, label="genuine")  # every image flagged, but 20 < 30 scored

    assert finish(SPIKE) == []
    assert not active().exists()


@pytest.mark.django_db
def test_it_needs_a_baseline_before_a_control_limit():
    calm(days=3)
    fill(START + dt.timedelta(days=3), flagged=30)
    assert finish(START + dt.timedelta(days=3)) == []  # 3 history days < KOALA_ALERT_MIN_HISTORY_DAYS


@pytest.mark.django_db
def test_it_uses_the_admins_absolute_bound_without_a_baseline(settings):
    settings.KOALA_ALERT_MAX_FPR = 0.05
    fill(START, flagged=3, label="genuine")  # FPR 3/40 = 7.5%
    opened = finish(START)
    fpr = [a for a in opened if a.rule == Alert.FPR]
    assert len(fpr) == 2 and fpr[0].limit == 0.05 and "absolute bound" in fpr[0].message
    assert not [a for a in opened if a.rule == Alert.FLAG_RATE]  # no bound, no baseline


@pytest.mark.django_db
def test_it_alerts_on_fpr_of_labelled_genuine_images_only():
    calm(label="genuine")
    fill(SPIKE, flagged=3, label="genuine")  # FPR as usual
    fill(SPIKE, n=20, flagged=20, label="attack", device="gate-north")  # attacks flagged: not FPR
    opened = finish(SPIKE)
    assert not [a for a in opened if a.rule == Alert.FPR]

    fill(SPIKE + dt.timedelta(days=1), flagged=15, label="genuine")  # 15 / 40 genuine rejected
    opened = finish(SPIKE + dt.timedelta(days=1))
    fpr = [a for a in opened if a.rule == Alert.FPR and a.device is None]
    assert len(fpr) == 1 and fpr[0].value == 15 / 40 and "FPR 37.50% (15 / 40)" in fpr[0].message


@pytest.mark.django_db
def test_it_closes_only_after_two_good_days_and_keeps_acknowledged_alerts_listed(personas):
    calm()
    fill(SPIKE, flagged=20)
    finish(SPIKE)
    alert = active(Alert.FLAG_RATE).get(device=None)
    assert alerts.acknowledge(alert, personas["reviewer"], "looking at it")

    day1, day2 = SPIKE + dt.timedelta(days=1), SPIKE + dt.timedelta(days=2)
    fill(day1, flagged=3)
    finish(day1)
    alert.refresh_from_db()
    assert alert.status == Alert.ACKNOWLEDGED  # one good day is not enough
    assert alert in alerts.open_alerts()

    fill(day2, flagged=3)
    finish(day2)
    alert.refresh_from_db()
    assert (alert.status, alert.closed_day, alert.last_day) == (Alert.CLOSED, day2, SPIKE)
    assert alert not in alerts.open_alerts()
    assert not active(Alert.FLAG_RATE).exists()
    assert finish(SPIKE) == []  # the spike day again (labels changed, say): its closed alert covers it
    assert not active(Alert.FLAG_RATE).exists()


@pytest.mark.django_db
def test_it_does_not_count_a_day_without_a_verdict_as_a_good_day():
    calm()
    fill(SPIKE, flagged=20)
    finish(SPIKE)
    day1, day2 = SPIKE + dt.timedelta(days=1), SPIKE + dt.timedelta(days=2)
    fill(day1, n=10, flagged=0)  # too few images: no verdict
    finish(day1)
    fill(day2, flagged=3)
    finish(day2)
    assert active(Alert.FLAG_RATE).count() == 2  # still open: only one good day in a row


@pytest.mark.django_db
def test_it_keeps_one_alert_when_the_spike_goes_on():
    calm()
    for back in range(3):
        fill(SPIKE + dt.timedelta(days=back), flagged=25)
        finish(SPIKE + dt.timedelta(days=back))
    a = active(Alert.FLAG_RATE).get(device=None)
    assert (a.day, a.last_day) == (SPIKE, SPIKE + dt.timedelta(days=2))  # spike days stay out of the baseline


@pytest.mark.django_db
def test_it_takes_a_lasting_shift_as_the_new_normal_after_about_a_week():
    calm()
    for back in range(12):
        fill(SPIKE + dt.timedelta(days=back), flagged=25)
        finish(SPIKE + dt.timedelta(days=back))
    a = Alert.objects.get(rule=Alert.FLAG_RATE, device=None)
    # fired while 7 clean days were left in the window, then cleared two days later
    assert (a.status, a.day, a.last_day) == (Alert.CLOSED, SPIKE, SPIKE + dt.timedelta(days=7))
    assert a.closed_day == SPIKE + dt.timedelta(days=9)


@pytest.mark.django_db
def test_it_evaluates_a_day_again_without_duplicates(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.KOALA_ALERT_EMAILS = ["oncall@example.org"]
    calm()
    fill(SPIKE, flagged=20)
    first = finish(SPIKE)
    before = list(Alert.objects.order_by("pk").values_list("pk", "rule", "device_id", "status", "day", "last_day"))

    assert finish(SPIKE) == []
    assert tasks.recompute_day.delay(SPIKE.isoformat()).get() == 0

    assert first and before == list(
        Alert.objects.order_by("pk").values_list("pk", "rule", "device_id", "status", "day", "last_day")
    )
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_it_alerts_on_a_shifted_score_distribution():
    for i in range(14):  # live scores spread over 0.55 .. 0.95, nothing flagged
        day = START + dt.timedelta(days=i)
        for k in range(N):
            f.image(day=day, score=0.55 + 0.4 * ((k + i) % N) / N)
        assert finish(day) == []
    for k in range(N):  # still all live, but bunched up at the top
        f.image(day=SPIKE, score=0.96 + 0.03 * k / N)

    opened = finish(SPIKE)

    assert {a.rule for a in opened} == {Alert.PSI}
    a = next(a for a in opened if a.device is None)
    # 40 scores a day: chance alone passes 0.2 often, so the limit is what chance reaches 1 day in 741
    assert a.value > a.limit > 0.2
    assert f"above {a.limit:.3f}, what chance reaches one day in 741 at these counts" in a.message
    metric = DailyMetric.objects.get(day=SPIKE, device=None)
    assert metric.histogram == [0] * 9 + [N]


def bin_scores(day, counts):
    """Images whose scores fall in the given histogram bins (bin b holds scores near (b + 0.5) / 10)."""
    for b, k in enumerate(counts):
        for _ in range(k):
            f.image(day=day, score=(b + 0.5) / 10)


@pytest.mark.django_db
def test_it_holds_a_small_days_sampling_noise_below_the_psi_alert():
    window = [3, 0, 0, 0, 0, 0, 1, 2, 4, 30]  # every calm day: live near 1, attacks near 0
    for i in range(14):
        bin_scores(START + dt.timedelta(days=i), window)
        assert finish(START + dt.timedelta(days=i)) == []
    today = [3, 1, 0, 0, 0, 0, 0, 1, 2, 33]  # as a day of 40 drawn from the same scores comes out
    bin_scores(SPIKE, today)

    assert finish(SPIKE) == []

    h = alerts.History(SPIKE, alerts.Config.from_settings())
    verdict = alerts.RULES[Alert.PSI](h, None, SPIKE)
    assert DailyMetric.objects.get(day=SPIKE, device=None).histogram == today
    assert verdict.fired is False and 0.3 < verdict.value < verdict.limit
    assert "within" in verdict.text and "what chance reaches one day in 741" in verdict.text


@pytest.mark.django_db
def test_it_alerts_when_a_device_that_normally_reports_goes_silent():
    calm()
    for i in range(14):
        day = START + dt.timedelta(days=i)
        fill(day, n=5, flagged=0, device="gate-north")  # every day, a few images
        if i % 5 == 0:
            fill(day, n=5, flagged=0, device="pad-rare")  # 3 days of 14: not "normally"
        finish(day)
    assert not active().exists()
    fill(SPIKE, flagged=3)  # only phone-01 today

    opened = finish(SPIKE)

    assert [(a.rule, a.device.name) for a in opened] == [(Alert.SILENT, "gate-north")]
    assert opened[0].limit == 14 and "no images; it reported on 14 of the previous 14 days" in opened[0].message

    for back in (1, 2):  # back for two days: cleared
        day = SPIKE + dt.timedelta(days=back)
        fill(day, flagged=3)
        fill(day, n=5, flagged=0, device="gate-north")
        finish(day)
        assert active(Alert.SILENT).exists() == (back == 1)


@pytest.mark.django_db
def test_it_emails_when_an_alert_opens_and_email_is_configured(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.KOALA_ALERT_EMAILS = ["oncall@example.org"]
    calm()
    assert mail.outbox == []
    fill(SPIKE, flagged=20)

    finish(SPIKE)

    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == ["oncall@example.org"]
    assert f"for {SPIKE.isoformat()}" in email.subject and "new alerts" in email.subject
    assert "flag rate 50.00% (20 / 40)" in email.body


@pytest.mark.django_db
def test_it_says_in_the_email_which_device_made_the_day_odd(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.KOALA_ALERT_EMAILS = ["oncall@example.org"]
    for i in range(14):
        day = START + dt.timedelta(days=i)
        for device in ("phone-01", "phone-02", "phone-03"):
            fill(day, flagged=1 + i % 2, device=device)
        assert finish(day) == []
    for device, flagged in (("phone-01", 1), ("phone-02", 12), ("phone-03", 2)):
        fill(SPIKE, flagged=flagged, device=device)

    opened = finish(SPIKE)

    everywhere = next(a for a in opened if a.device is None)
    body = mail.outbox[0].body.splitlines()
    at = body.index(f"- flag rate above limit: {everywhere.message}")
    assert body[at + 1] == "    device = phone-02: flag rate 30.00% (12 / 40), 3.75% (21 / 560) in the window"
    assert body[at + 2] == f"    What changed: {everywhere.explain_url()}"
    assert not any("phone-01" in line or "phone-03" in line for line in body)


@pytest.mark.django_db
def test_it_does_not_email_when_email_is_not_configured(settings, monkeypatch):
    settings.KOALA_ALERT_EMAILS = ["oncall@example.org"]  # a recipient, but no EMAIL_HOST / backend
    assert not alert_email.email_configured()  # the SMTP default without EMAIL_HOST
    # catch anything sent anyway in the outbox, while the configuration still says "no email"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    monkeypatch.setattr(alert_email, "email_configured", lambda: False)
    calm()
    fill(SPIKE, flagged=20)
    assert finish(SPIKE)
    assert mail.outbox == []


@pytest.mark.django_db
def test_it_recomputes_a_day_when_labels_change(settings):
    settings.KOALA_ALERT_MAX_FPR = 0.1
    fill(START, flagged=10)  # unlabelled: no FPR yet
    assert finish(START) == []
    Image.objects.filter(day=START).update(label="genuine")

    assert tasks.recompute_day.delay(START.isoformat()).get() == 2  # FPR 25%: all devices and phone-01

    assert DailyMetric.objects.get(day=START, device=None).fp == 10
    assert active(Alert.FPR).count() == 2


# --- pages -----------------------------------------------------------------------------------------


@pytest.fixture
def spike_alert(db):
    calm(days=7)
    day = START + dt.timedelta(days=7)
    fill(day, flagged=25)
    finish(day)
    return active(Alert.FLAG_RATE).get(device=None)


def login(client, personas, role):
    client.force_login(personas[role])
    return client


@pytest.mark.django_db
def test_it_lets_a_reviewer_acknowledge_with_a_note(client, personas, spike_alert):
    login(client, personas, "reviewer")
    page = client.get(reverse("alerts")).content.decode()
    assert spike_alert.message in page and reverse("alert-ack", args=[spike_alert.pk]) in page

    response = client.post(reverse("alert-ack", args=[spike_alert.pk]), {"note": "new phone model, checking"})

    assert response.status_code == 302 and response["Location"] == reverse("alerts")
    spike_alert.refresh_from_db()
    assert spike_alert.status == Alert.ACKNOWLEDGED
    assert spike_alert.acknowledged_by == personas["reviewer"] and spike_alert.acknowledged_at
    assert spike_alert.note == "new phone model, checking"
    page = client.get(reverse("alerts")).content.decode()
    assert "acknowledged" in page and "new phone model, checking" in page and "reviewer-user" in page


@pytest.mark.django_db
def test_it_refuses_acknowledgement_from_a_viewer(client, personas, spike_alert):
    login(client, personas, "viewer")
    page = client.get(reverse("alerts"))
    assert page.status_code == 200 and spike_alert.message in page.content.decode()
    assert reverse("alert-ack", args=[spike_alert.pk]) not in page.content.decode()

    assert client.post(reverse("alert-ack", args=[spike_alert.pk]), {"note": "x"}).status_code == 403
    spike_alert.refresh_from_db()
    assert spike_alert.status == Alert.OPEN


@pytest.mark.django_db
def test_it_requires_post_csrf_and_login_to_acknowledge(personas, spike_alert):
    url = reverse("alert-ack", args=[spike_alert.pk])
    assert Client().post(url).status_code == 302  # anonymous: to the login page
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(personas["admin"])
    assert strict.get(url).status_code == 405
    assert strict.post(url).status_code == 403  # no CSRF token
    spike_alert.refresh_from_db()
    assert spike_alert.status == Alert.OPEN


@pytest.mark.django_db
def test_it_renders_the_overview_include(rf, personas, spike_alert):
    request = rf.get("/")
    request.user = personas["viewer"]
    html = render_to_string("monitor/_alerts.html", {"open_alerts": alerts.open_alerts()}, request=request)
    assert spike_alert.message in html and reverse("alerts") in html
    assert reverse("alert-ack", args=[spike_alert.pk]) not in html  # viewers cannot acknowledge
    request.user = personas["reviewer"]
    html = render_to_string("monitor/_alerts.html", {"open_alerts": alerts.open_alerts()}, request=request)
    assert reverse("alert-ack", args=[spike_alert.pk]) in html
    empty = render_to_string("monitor/_alerts.html", {"open_alerts": []}, request=request)
    assert "No open alerts" in empty


@pytest.mark.django_db
@pytest.mark.parametrize("target", ["image", "logout", "https://evil.example/", "//evil.example/x"])
def test_it_returns_to_the_alerts_page_after_an_odd_next(client, personas, spike_alert, target):
    login(client, personas, "reviewer")
    response = client.post(reverse("alert-ack", args=[spike_alert.pk]), {"next": target})
    assert response.status_code == 302 and response["Location"] == reverse("alerts")


@pytest.mark.django_db
def test_it_reopens_a_recently_closed_alert_instead_of_mailing_again(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.KOALA_ALERT_EMAILS = ["oncall@example.org"]
    calm()
    fill(SPIKE, flagged=20)
    finish(SPIKE)
    for back in (1, 2):  # two good days close it
        fill(SPIKE + dt.timedelta(days=back), flagged=3)
        finish(SPIKE + dt.timedelta(days=back))
    assert not active(Alert.FLAG_RATE).exists() and len(mail.outbox) == 1

    again = SPIKE + dt.timedelta(days=3)
    fill(again, flagged=20)
    assert finish(again) == []  # nothing newly opened ...

    reopened = active(Alert.FLAG_RATE).get(device=None)
    assert (reopened.status, reopened.day, reopened.last_day) == (Alert.OPEN, SPIKE, again)  # ... the same alert
    assert Alert.objects.filter(rule=Alert.FLAG_RATE, device=None).count() == 1
    assert len(mail.outbox) == 1  # and no second email
