"""Pages need a login; the overview shows the days and the runs."""

import datetime as dt

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from monitor import runs
from tests.conftest import make_user, put


@pytest.fixture
def viewer(db):
    return make_user("vera")


@pytest.mark.django_db
def test_it_sends_anonymous_visitors_to_the_login_page(client):
    response = client.get(reverse("home"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_it_creates_the_three_roles():
    assert set(Group.objects.values_list("name", flat=True)) >= {"viewer", "reviewer", "admin"}
    assert Group.objects.get(name="reviewer").permissions.filter(codename="change_image").exists()
    assert not Group.objects.get(name="viewer").permissions.filter(codename="change_image").exists()


@pytest.mark.django_db
def test_it_shows_days_and_runs_on_the_overview(client, viewer, demo_ensemble, settings):
    put(settings.INBOX_DIR, "2026-11-20", "phone-01", "broken.jpg", b"not an image")
    runs.run_day(dt.date(2026, 11, 20))
    client.force_login(viewer)

    html = client.get(reverse("home")).content.decode()

    assert "2026-11-20" in html and "unreadable" in html
    assert demo_ensemble.name in html
    assert "1 / 1" in html  # the run's progress
