"""A day's production figures cover every production decision of the day, whichever ensemble and
threshold made it; past days keep the threshold they were decided at; the rates say which images
they count, and can count them both ways."""

import datetime as dt
import re

import pytest
from django.urls import reverse

import demo
from monitor import alerts, daily, runs
from monitor.models import Alert, DailyMetric, Image, Run
from monitor.registry import activate_ensemble, register_manifest, set_threshold
from tests import factories as f
from tests.conftest import DEMO_MANIFEST

DAY = dt.date(2026, 11, 20)
FAS_A = DEMO_MANIFEST.parent / "fas_a.toml"


def card(html: str, name: str) -> str:
    match = re.search(rf'<div class="ov-card[^"]*" data-kpi="{name}">.*?<div class="ov-card-meaning">', html, re.S)
    assert match, f"no {name} card"
    return match.group(0)


def independent_counts(day) -> dict:
    """The day's production decisions counted from the image rows, apart from monitor/daily.py."""
    rows = list(Image.objects.filter(day=day).values("category", "ensemble__name", "threshold", "score"))
    decided = [r for r in rows if r["category"] in ("live", "attack")]
    per = {}
    for r in rows:
        if r["score"] is not None:
            key = (r["ensemble__name"], r["threshold"])
            per[key] = per.get(key, 0) + 1
    return {
        "images": len(rows),
        "scored": len(decided),
        "flagged": sum(r["category"] == "attack" for r in decided),
        "per_ensemble": per,
    }


@pytest.fixture
def two_ensemble_day(demo_ensemble, personas, settings):
    """A day scored by the demo ensemble, then, after fas_a alone was activated, its late files
    scored by fas_a: the hourly rescan's situation."""
    demo.generate_inbox(settings.INBOX_DIR, days=1, per_day=30, seed=13, end_day=DAY)
    assert runs.run_day(DAY).status == Run.DONE
    second = register_manifest(FAS_A, threshold=0.3)
    activate_ensemble(second, user=personas["admin"], note="try fas_a alone")
    demo.generate_inbox(settings.INBOX_DIR, days=1, per_day=30, seed=14, end_day=DAY)  # late files
    assert runs.run_day(DAY, trigger="rescan").status == Run.DONE
    return demo_ensemble, second


@pytest.mark.django_db
def test_it_counts_a_day_scored_by_two_ensembles_the_same_everywhere(two_ensemble_day, client, personas, settings):
    first, second = two_ensemble_day
    truth = independent_counts(DAY)
    assert {name for name, _ in truth["per_ensemble"]} == {first.name, second.name}  # really two

    row = DailyMetric.objects.get(day=DAY, device=None)
    assert (row.images, row.scored, row.flagged) == (truth["images"], truth["scored"], truth["flagged"])
    assert row.mixed
    assert {(d["ensemble"], d["threshold"]): d["images"] for d in row.decided_by} == truth["per_ensemble"]

    client.force_login(personas["viewer"])
    html = client.get(reverse("home")).content.decode()
    assert f"{truth['flagged']} / {truth['scored']}" in card(html, "Flag rate")
    assert "Mixed day:" in html and f"{first.name} at {first.threshold:g}" in html
    assert f"{second.name} at 0.3" in html

    [api_day] = client.get("/api/metrics").json()["days"]
    assert api_day["images"] == truth["images"]
    assert (api_day["flag_rate"]["k"], api_day["flag_rate"]["n"]) == (truth["flagged"], truth["scored"])
    assert api_day["mixed"] and sorted(api_day["ensembles"]) == sorted([first.name, second.name])

    gallery = client.get(reverse("gallery", args=[DAY])).content.decode()
    all_tab = re.search(r"all\s*<span[^>]*>\s*(\d+)", gallery) or re.search(r">\s*all\s*\((\d+)\)", gallery)
    assert all_tab and int(all_tab.group(1)) == truth["images"]
    assert "Mixed day:" in gallery

    # the alert rules judge the same decisions: a bound below any rate fires on the day's counts
    settings.KOALA_ALERT_MAX_FLAG_RATE = 0.0
    settings.KOALA_ALERT_MIN_COUNT = 1
    opened = alerts.evaluate_day(DAY)
    [flag] = [a for a in opened if a.rule == Alert.FLAG_RATE and a.device is None]
    assert flag.count == truth["scored"]
    assert f"({truth['flagged']} / {truth['scored']})" in flag.message and "decided by" in flag.message


@pytest.mark.django_db
def test_it_shows_a_past_day_at_the_threshold_it_was_decided_at(client, personas):
    ens = f.ensemble(threshold=0.5)
    for score in (0.1, 0.45, 0.55, 0.9):
        f.image(score=score)
    daily.compute_day(DAY)
    set_threshold(ens, 0.6, user=personas["admin"], note="fewer missed attacks")

    client.force_login(personas["viewer"])
    html = client.get(reverse("home")).content.decode()
    assert "Decided at threshold 0.5 by test (the threshold now is 0.6)" in html
    assert "2 / 4" in card(html, "Flag rate")  # as decided then, not 3 / 4 at today's 0.6
    gallery = client.get(reverse("gallery", args=[DAY])).content.decode()
    assert "Decided at threshold 0.5 by test" in gallery


@pytest.mark.django_db
def test_it_counts_the_rates_on_gated_or_on_all_scored_images(client, personas):
    f.image(score=0.2, label="genuine")  # FP
    f.image(score=0.9, label="genuine")
    f.image(score=0.3, label="genuine", category="low_quality", failed_gates=["blur"])  # FP of all scored
    daily.compute_day(DAY)
    client.force_login(personas["viewer"])

    gated = client.get(reverse("home")).content.decode()
    assert "1 / 2" in card(gated, "FPR") and "passed the quality gates" in gated
    every = client.get(reverse("home"), {"count": "all"}).content.decode()
    assert "2 / 3" in card(every, "FPR") and "Rates count all scored images" in every
    bad = client.get(reverse("home"), {"count": "most"}).content.decode()
    assert "Unknown count “most”" in bad and "1 / 2" in card(bad, "FPR")

    [day] = client.get("/api/metrics").json()["days"]
    assert (day["fpr"]["k"], day["fpr"]["n"]) == (1, 2) and "quality gates" in day["counted"]
    all_scored = day["all_scored"]
    assert (all_scored["fpr"]["k"], all_scored["fpr"]["n"]) == (2, 3) and "all scored" in all_scored["counted"]


@pytest.mark.django_db
def test_it_closes_an_alert_after_two_good_days_around_a_day_without_a_verdict(settings):
    settings.KOALA_ALERT_MAX_FLAG_RATE = 0.2
    settings.KOALA_ALERT_MIN_COUNT = 30
    settings.KOALA_ALERT_CLEAR_DAYS = 2
    days = [DAY + dt.timedelta(days=i) for i in range(4)]
    for day, (n, flagged) in zip(days, [(40, 20), (40, 2), (5, 0), (40, 2)], strict=True):
        for i in range(n):
            f.image(day=day, score=0.2 if i < flagged else 0.8)
        daily.compute_day(day)
        alerts.evaluate_day(day)
        alert = Alert.objects.get(rule=Alert.FLAG_RATE, device=None)
        if day == days[2]:
            assert alert.is_active  # one good day so far; the small day neither counts nor breaks it
    assert alert.status == Alert.CLOSED and alert.closed_day == days[3]
