"""The runs pages: history, progress, and "score this day now" for admins."""

import datetime as dt

import numpy as np
import pytest
from django.urls import reverse

import demo
from monitor.models import Image, Run
from tests.conftest import jpeg_bytes, put, sidecar_for

DAY = dt.date(2026, 11, 20)


@pytest.fixture
def admin_client(client, personas):
    client.force_login(personas["admin"])
    return client


def drop(settings, n=3):
    for i in range(n):
        s = demo.render_sample(np.random.default_rng(i), label="genuine", face_size=180)
        put(settings.INBOX_DIR, DAY.isoformat(), "pad-01", f"{i}.jpg", jpeg_bytes(s), sidecar_for(s))
    put(settings.INBOX_DIR, DAY.isoformat(), "pad-01", "broken.jpg", b"\xff\xd8\xff not really")


@pytest.mark.django_db
def test_it_scores_a_day_when_an_admin_asks(admin_client, demo_ensemble, settings):
    drop(settings)

    response = admin_client.post(reverse("run-start"), {"day": DAY.isoformat()})

    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("run", args=[run.pk])
    assert (run.status, run.trigger, run.processed, run.total) == (Run.DONE, "manual", 4, 4)
    assert Image.objects.filter(day=DAY).count() == 4
    page = admin_client.get(response["Location"]).content.decode()
    broken = Image.objects.get(path__endswith="broken.jpg")
    assert broken.category == "unreadable" and broken.reason
    assert broken.path in page and broken.reason in page  # each image's error, with its reason
    status = admin_client.get(reverse("run-status", args=[run.pk])).json()
    assert status["status"] == "done" and status["progress"] == 1.0 and status["counts"] == run.counts


@pytest.mark.django_db
@pytest.mark.parametrize(
    "day, message", [("not-a-day", "Enter a valid date"), ("2999-01-01", "that day has not happened yet")]
)
def test_it_shows_a_bad_day_to_the_admin(admin_client, demo_ensemble, day, message):
    response = admin_client.post(reverse("run-start"), {"day": day})
    assert response.status_code == 400 and message in response.content.decode()
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_it_says_when_no_ensemble_is_active(admin_client):
    response = admin_client.post(reverse("run-start"), {"day": DAY.isoformat()}, follow=True)
    assert "no active ensemble" in response.content.decode()
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_it_offers_the_run_button_to_admins_only(client, personas):
    client.force_login(personas["admin"])
    assert "Score this day now" in client.get(reverse("runs")).content.decode()
    client.force_login(personas["viewer"])
    assert "Score this day now" not in client.get(reverse("runs")).content.decode()
