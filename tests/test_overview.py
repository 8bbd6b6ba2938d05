"""The overview: latest day's figures with Wilson intervals, trend series with gaps and change
markers, range and device selectors, last runs; login required; bounded queries."""

import datetime as dt
import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from monitor import daily
from monitor.models import DailyMetric, Ensemble, Image, Run
from tests import factories as f
from tests.conftest import make_user

DAY = dt.date(2026, 11, 20)


@pytest.fixture
def viewer(db):
    return make_user("vera")


@pytest.fixture
def client_in(client, viewer):
    client.force_login(viewer)
    return client


def metric(day, device=None, ensemble=None, threshold=0.5, versions=None, **figures):
    """A DailyMetric row; figures default to 100 scored images, nothing labelled."""
    values = {"images": 100, "counts": {"live": 90, "attack": 10}, "scored": 100, "flagged": 10}
    values.update(figures)
    ensemble = ensemble or f.ensemble()
    versions = {"m1": "m1@1:aaaa"} if versions is None else versions
    decided = {"ensemble": ensemble.name, "ensemble_id": ensemble.pk, "threshold": threshold}
    return DailyMetric.objects.create(
        day=day,
        device=f.device(device) if device else None,
        ensemble=ensemble,
        threshold=threshold,
        model_versions=versions,
        decided_by=[decided | {"model_versions": versions, "images": values["scored"]}] if values["scored"] else [],
        **values,
    )


def trend(response) -> dict:
    match = re.search(
        r'<script id="trend-data" type="application/json">(.*?)</script>', response.content.decode(), re.S
    )
    assert match, "no trend-data JSON on the page"
    return json.loads(match.group(1))


def card(html: str, name: str) -> str:
    """The HTML of one KPI card."""
    match = re.search(rf'<div class="ov-card[^"]*" data-kpi="{name}">.*?<div class="ov-card-meaning">', html, re.S)
    assert match, f"no {name} card"
    return match.group(0)


@pytest.mark.django_db
def test_it_redirects_anonymous_visitors_to_login(client):
    response = client.get(reverse("home"), {"days": "90"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_it_shows_the_latest_days_fpr_with_counts_and_wilson_interval(client_in):
    for i in range(40):  # 40 labelled genuine, 4 of them flagged: FPR 10%
        f.image(day=DAY, score=0.2 if i < 4 else 0.9, label="genuine")
    for _ in range(5):  # an earlier day with other figures must not be the one shown
        f.image(day=DAY - dt.timedelta(days=1), score=0.1, label="genuine")
    daily.compute_day(DAY - dt.timedelta(days=1))
    daily.compute_day(DAY)

    html = client_in.get(reverse("home")).content.decode()

    fpr = card(html, "FPR")
    assert "10.0%" in fpr and "4 / 40" in fpr
    assert "95% CI 4.0% – 23.1%" in fpr  # wilson(4, 40) = 0.0396 .. 0.2305
    assert "BPCER" in fpr
    assert "too-few" not in fpr and "too few" not in fpr
    flag = card(html, "Flag rate")
    assert "4 / 40" in flag  # 4 flagged of 40 scored
    assert "2026-11-20" in html and "2026-11-19</a>" not in html


@pytest.mark.django_db
def test_it_greys_out_rates_on_fewer_than_30_images(client_in):
    metric(DAY, genuine=20, fp=3, attacks=30, tp=27)

    html = client_in.get(reverse("home")).content.decode()

    fpr = card(html, "FPR")
    assert 'class="ov-card too-few"' in fpr and "too few" in fpr
    assert "15.0%" in fpr and "3 / 20" in fpr
    tpr = card(html, "TPR")
    assert "too-few" not in tpr and "too few" not in tpr
    assert "90.0%" in tpr and "27 / 30" in tpr


@pytest.mark.django_db
def test_it_carries_per_day_values_and_gaps_in_the_trend_json(client_in):
    metric(DAY - dt.timedelta(days=2), genuine=40, fp=4, counts={"live": 90, "attack": 10})
    # DAY - 1: no data at all
    metric(DAY, scored=50, flagged=5, genuine=0, counts={"live": 45, "attack": 5, "no_face": 3}, images=53)

    data = trend(client_in.get(reverse("home")))

    assert len(data["days"]) == 30 and data["days"][-1] == "2026-11-20" and data["days"][0] == "2026-10-22"
    first, gap, last = -3, -2, -1
    fpr = data["rates"]["fpr"]
    assert fpr["value"][first] == pytest.approx(0.1)
    assert fpr["low"][first] == pytest.approx(0.03958, abs=1e-5)
    assert fpr["high"][first] == pytest.approx(0.23052, abs=1e-5)
    assert (fpr["k"][first], fpr["n"][first]) == (4, 40)
    assert fpr["value"][gap] is None and fpr["low"][gap] is None  # a day without data is a gap
    assert fpr["value"][last] is None  # no labelled genuine that day: a gap, not 0%
    assert data["rates"]["flag_rate"]["value"][last] == pytest.approx(0.1)
    assert data["rates"]["flag_rate"]["value"][gap] is None
    assert data["counts"]["no_face"][last] == 3 and data["counts"]["no_face"][first] == 0
    assert data["counts"]["live"][gap] is None
    assert data["counts"]["live"][0] is None  # nothing before the first row either


@pytest.mark.django_db
def test_it_filters_by_device(client_in):
    metric(DAY, genuine=100, fp=10)  # all devices
    metric(DAY, device="gate-north", genuine=40, fp=8)
    metric(DAY, device="phone-01", genuine=60, fp=2)

    everything = client_in.get(reverse("home"))
    gate = client_in.get(reverse("home"), {"device": "gate-north"})

    assert trend(everything)["rates"]["fpr"]["n"][-1] == 100
    assert trend(gate)["rates"]["fpr"]["n"][-1] == 40
    assert "8 / 40" in card(gate.content.decode(), "FPR")
    assert '<option value="gate-north" selected>' in gate.content.decode()
    assert '<option value="phone-01">' in gate.content.decode()


@pytest.mark.django_db
def test_it_says_so_for_an_unknown_device_and_shows_all_devices(client_in):
    metric(DAY, genuine=100, fp=10)
    response = client_in.get(reverse("home"), {"device": "no-such-device"})
    assert response.status_code == 200
    assert "Unknown device" in response.content.decode()
    assert trend(response)["rates"]["fpr"]["n"][-1] == 100


@pytest.mark.django_db
def test_it_shows_the_range_asked_for(client_in):
    metric(DAY - dt.timedelta(days=60), genuine=50, fp=5)
    metric(DAY)

    short = trend(client_in.get(reverse("home")))
    longer = trend(client_in.get(reverse("home"), {"days": "90"}))
    year = trend(client_in.get(reverse("home"), {"days": "365"}))

    assert len(short["days"]) == 30 and short["rates"]["fpr"]["n"] == [None] * 30
    assert len(longer["days"]) == 90 and longer["rates"]["fpr"]["n"][-61] == 50
    assert len(year["days"]) == 365 and year["days"][-1] == "2026-11-20"


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["abc", "7", "-30", "1e9", "30.5"])
def test_it_falls_back_to_30_days_on_a_bad_range(client_in, bad):
    metric(DAY)
    response = client_in.get(reverse("home"), {"days": bad})
    assert response.status_code == 200
    assert len(trend(response)["days"]) == 30
    assert "Unknown range" in response.content.decode()


@pytest.mark.django_db
def test_it_marks_days_where_the_threshold_or_the_models_change(client_in):
    d = [DAY - dt.timedelta(days=i) for i in range(6, -1, -1)]
    metric(d[0], threshold=0.4)
    metric(d[1], threshold=0.4)
    # d[2]: no data
    metric(d[3], threshold=0.6)  # changed against d[1], the previous day with data
    metric(d[4], threshold=None, versions={}, scored=0, flagged=0)  # nothing scored: not a change
    metric(d[5], threshold=0.6)
    metric(d[6], threshold=0.6, versions={"m1": "m1@2:bbbb"})

    response = client_in.get(reverse("home"))
    markers = trend(response)["markers"]

    assert [m["day"] for m in markers] == [d[3].isoformat(), d[6].isoformat()]
    assert "threshold 0.4 → 0.6" in markers[0]["text"]
    assert "m1@1:aaaa → m1@2:bbbb" in markers[1]["text"]
    assert "threshold 0.4 → 0.6" in response.content.decode()  # listed under the charts too


@pytest.mark.django_db
def test_it_marks_the_first_day_of_the_range_when_it_differs_from_the_day_before_it(client_in):
    metric(DAY - dt.timedelta(days=45), threshold=0.4)
    metric(DAY - dt.timedelta(days=29), threshold=0.7)  # the first day of the 30-day range
    metric(DAY, threshold=0.7)

    markers = trend(client_in.get(reverse("home")))["markers"]

    assert markers == [{"day": (DAY - dt.timedelta(days=29)).isoformat(), "text": "threshold 0.4 → 0.7"}]


@pytest.mark.django_db
def test_it_lists_the_last_ten_runs_newest_first_with_links(client_in):
    runs = [
        Run.objects.create(day=DAY - dt.timedelta(days=i), status=Run.DONE, total=8, processed=8) for i in range(12)
    ]
    running = runs[-1]
    running.status, running.total, running.processed = Run.RUNNING, 10, 3
    running.started_at = timezone.now() - dt.timedelta(seconds=75)
    running.counts = {"live": 2, "attack": 1}
    running.save()

    html = client_in.get(reverse("home")).content.decode()

    shown = re.findall(r'<a href="/runs/(\d+)/">', html)
    assert shown == [str(r.pk) for r in reversed(runs)][:10]  # newest first, ten of them
    assert f'href="{reverse("gallery", args=[running.day])}"' in html
    assert '<progress max="10" value="3"></progress> 3 / 10' in html
    assert "1 min 15 s" in html and "live 2" in html


@pytest.mark.django_db
def test_it_keeps_the_number_of_queries_fixed_whatever_the_data(client_in):
    metric(DAY)
    Run.objects.create(day=DAY)
    with CaptureQueriesContext(connection) as few:
        client_in.get(reverse("home"), {"days": "365"})

    for i in range(1, 300):
        metric(DAY - dt.timedelta(days=i), genuine=50, fp=i % 7)
        metric(DAY - dt.timedelta(days=i), device="gate-north", genuine=10, fp=1)
    for i in range(20):
        Run.objects.create(day=DAY - dt.timedelta(days=i))
    with CaptureQueriesContext(connection) as many:
        response = client_in.get(reverse("home"), {"days": "365"})

    assert len(trend(response)["days"]) == 365
    assert len(many.captured_queries) == len(few.captured_queries)


# --- the cached figures (monitor/trends.py: `cached_figures`, `data_version`) -------------------------


NOON = timezone.make_aware(dt.datetime.combine(DAY, dt.time(12)))  # an event on DAY, in the range


def without_tokens(html: str) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)


def counting_figures(monkeypatch) -> list:
    """Count the computations of the figures (a cache miss each)."""
    from monitor import trends

    calls = []
    real = trends.figures

    def spy(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(trends, "figures", spy)
    return calls


@pytest.mark.django_db
def test_it_reuses_the_figures_while_nothing_changed_and_shows_the_same_page(client_in, monkeypatch, settings):
    for i in range(40):
        f.image(day=DAY, score=0.2 if i < 4 else 0.9, label="genuine")
    daily.compute_day(DAY)
    f.ensemble().events.create(kind="threshold", old_threshold=0.4, new_threshold=0.5, note="tuned", created_at=NOON)
    calls = counting_figures(monkeypatch)

    with CaptureQueriesContext(connection) as first:
        html = client_in.get(reverse("home")).content.decode()
    first_queries = len(first.captured_queries)  # read now: the next request empties the log
    with CaptureQueriesContext(connection) as again:
        cached = client_in.get(reverse("home")).content.decode()
    again_queries = len(again.captured_queries)
    settings.KOALA_OVERVIEW_CACHE_SECONDS = 0  # no cache: computed on every view
    uncached = client_in.get(reverse("home")).content.decode()

    assert len(calls) == 2  # the first view and the uncached one
    assert again_queries == first_queries - 3  # not the last day, the rows nor the events
    assert without_tokens(cached) == without_tokens(html) == without_tokens(uncached)
    assert "4 / 40" in card(cached, "FPR") and "threshold 0.4 → 0.5: tuned" in cached


@pytest.mark.django_db
def test_it_shows_new_figures_right_after_a_day_is_recomputed(client_in, monkeypatch):
    """Recomputing a day (the end of a run, in a worker process) never touches this process's cache:
    the figures' fingerprint in the database changes, so the next view computes them again."""
    images = [f.image(day=DAY, score=0.2 if i < 4 else 0.9, label="genuine") for i in range(40)]
    daily.compute_day(DAY)
    calls = counting_figures(monkeypatch)
    assert "4 / 40" in card(client_in.get(reverse("home")).content.decode(), "FPR")
    client_in.get(reverse("home"))
    assert len(calls) == 1

    Image.objects.filter(pk=images[10].pk).update(score=0.1, category="attack", decision="attack")
    daily.compute_day(DAY)  # the same number of rows, other figures
    html = client_in.get(reverse("home")).content.decode()

    assert len(calls) == 2
    assert "5 / 40" in card(html, "FPR")
    assert trend(client_in.get(reverse("home")))["rates"]["fpr"]["k"][-1] == 5


@pytest.mark.django_db
def test_it_shows_a_new_day_right_after_its_run_finished(client_in):
    metric(DAY - dt.timedelta(days=1), genuine=40, fp=4)
    assert trend(client_in.get(reverse("home")))["days"][-1] == (DAY - dt.timedelta(days=1)).isoformat()

    for _ in range(3):
        f.image(day=DAY, score=0.9)
    daily.compute_day(DAY)
    html = client_in.get(reverse("home")).content.decode()

    assert trend(client_in.get(reverse("home")))["days"][-1] == DAY.isoformat()
    assert f'{reverse("gallery", args=[DAY])}">2026-11-20</a>' in html


@pytest.mark.django_db
def test_it_shows_new_figures_right_after_labels_change(client_in, django_capture_on_commit_callbacks, personas):
    from monitor import labels

    images = [f.image(day=DAY, score=0.2 if i < 4 else 0.9, label="genuine") for i in range(40)]
    daily.compute_day(DAY)
    assert "4 / 40" in card(client_in.get(reverse("home")).content.decode(), "FPR")

    with django_capture_on_commit_callbacks(execute=True):  # the recomputation runs on commit
        labels.set_labels([images[0].pk], "attack", "print", user=personas["admin"], source="labelling")
    html = client_in.get(reverse("home")).content.decode()

    assert "3 / 39" in card(html, "FPR")


@pytest.mark.django_db
def test_it_shows_a_threshold_change_and_an_activation_at_once(client_in):
    prod = f.ensemble("prod", threshold=0.5, active=True)
    candidate = f.ensemble("candidate", threshold=0.3, active=False)
    metric(DAY, ensemble=prod, images=100, genuine=40, fp=4)
    html = client_in.get(reverse("home")).content.decode()
    assert "4 / 40" in card(html, "FPR") and "ensemble prod" in html

    prod.events.create(
        kind="threshold", old_threshold=0.5, new_threshold=0.55, note="fewer false alarms", created_at=NOON
    )
    html = client_in.get(reverse("home")).content.decode()
    assert "threshold 0.5 → 0.55: fewer false alarms" in html

    Ensemble.objects.filter(pk=prod.pk).update(is_active=False)  # no event recorded: the key has the active one
    Ensemble.objects.filter(pk=candidate.pk).update(is_active=True)
    html = client_in.get(reverse("home")).content.decode()
    # the day's figures are what production decided that day, whichever ensemble is active now
    assert "4 / 40" in card(html, "FPR") and "ensemble prod" in html and "Active ensemble now:" in html


@pytest.mark.django_db
def test_it_keeps_the_figures_of_each_range_and_device_apart(client_in, monkeypatch):
    computed = counting_figures(monkeypatch)
    metric(DAY - dt.timedelta(days=60), genuine=50, fp=5)
    metric(DAY, genuine=100, fp=10)
    metric(DAY, device="gate-north", genuine=40, fp=8)

    for _ in range(2):  # the second round comes from the cache
        assert len(trend(client_in.get(reverse("home")))["days"]) == 30
        assert trend(client_in.get(reverse("home"), {"days": "90"}))["rates"]["fpr"]["n"][-61] == 50
        assert trend(client_in.get(reverse("home"), {"device": "gate-north"}))["rates"]["fpr"]["n"][-1] == 40
        assert trend(client_in.get(reverse("home")))["rates"]["fpr"]["n"][-1] == 100
    assert len(computed) == 3  # 30 days, 90 days, one device: computed once each


@pytest.mark.django_db
def test_the_fingerprint_changes_with_every_write_the_figures_come_from():
    from monitor.trends import data_version

    seen = [data_version()]
    for _ in range(3):
        f.image(day=DAY, score=0.9)
    daily.compute_day(DAY)
    seen.append(data_version())
    daily.compute_day(DAY)  # the same rows again: new ids
    seen.append(data_version())
    row = DailyMetric.objects.filter(device=None).get()
    row.fp = 1
    row.save()  # an edit in place: computed_at
    seen.append(data_version())
    DailyMetric.objects.filter(device__isnull=False).delete()
    seen.append(data_version())
    f.ensemble().events.create(kind="activated", created_at=NOON)
    seen.append(data_version())

    assert len(set(seen)) == len(seen)
    assert data_version() == seen[-1]  # and stays put while nothing is written


@pytest.mark.django_db
def test_the_fingerprint_sees_a_day_that_committed_after_a_later_one():
    """Two days recomputed at once on PostgreSQL can commit out of order: the first day's new
    rows then have ids below the second's, and the count, the largest id and the latest
    computed_at stay as they were. The figures must still be computed again."""
    from monitor.trends import data_version

    first, second = DAY - dt.timedelta(days=1), DAY
    for day in (first, second):
        f.image(day=day, score=0.9)
        daily.compute_day(day)
    for i, pk in enumerate(DailyMetric.objects.filter(day=second).values_list("pk", flat=True)):
        DailyMetric.objects.filter(pk=pk).update(id=1000 + i)  # the second day took its ids later
    before = data_version()
    for pk in DailyMetric.objects.filter(day=first).values_list("pk", flat=True):
        DailyMetric.objects.filter(pk=pk).update(id=pk + 500)  # the first day's rows, replaced by new ids

    assert data_version() != before
