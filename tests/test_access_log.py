"""The access log (issue 8, privacy): every opening of an original image file is recorded (who,
which image, when, from where) and admins read it on /access-log/, filtered and paginated, and
in the Django admin, read-only."""

import datetime as dt

import pytest
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from monitor.models import ImageAccess
from monitor.views import access_log
from monitor.views.access_log import client_ip
from tests import factories as f
from tests.conftest import inbox_image

DAY = dt.date(2026, 11, 20)


@pytest.fixture
def image(settings, db):
    return inbox_image(settings, DAY.isoformat(), thumbnail=True)


def test_it_records_who_opened_an_original_and_when(client, personas, image):
    client.force_login(personas["reviewer"])
    before = timezone.now()
    assert client.get(reverse("image-file", args=[image.pk])).status_code == 200

    access = ImageAccess.objects.get()
    assert (access.user, access.username, access.image, access.image_path) == (
        personas["reviewer"],
        "reviewer-user",
        image,
        image.path,
    )
    assert access.kind == "original" and access.ip == "127.0.0.1" and before <= access.at <= timezone.now()


def test_it_records_neither_thumbnails_nor_refused_requests(client, personas, image):
    client.force_login(personas["viewer"])
    assert client.get(reverse("thumb", args=[image.pk])).status_code == 200
    assert client.get(reverse("image", args=[image.pk])).status_code == 200  # the page; the browser asks for the file
    client.force_login(personas["nobody"])
    assert client.get(reverse("image-file", args=[image.pk])).status_code == 403
    broken = f.image(day=DAY, path="2026-11-20/phone-01/missing.jpg")
    client.force_login(personas["viewer"])
    assert client.get(reverse("image-file", args=[broken.pk])).status_code == 404
    assert not ImageAccess.objects.exists()


def test_it_records_nothing_when_switched_off(client, personas, image, settings):
    settings.KOALA_ACCESS_LOG = False
    client.force_login(personas["viewer"])
    assert client.get(reverse("image-file", args=[image.pk])).status_code == 200
    assert not ImageAccess.objects.exists()


def test_it_keeps_the_record_when_the_user_is_deleted(client, personas, image):
    client.force_login(personas["viewer"])
    client.get(reverse("image-file", args=[image.pk]))
    personas["viewer"].delete()
    access = ImageAccess.objects.get()
    assert access.user is None and access.username == "viewer-user"


def test_it_takes_the_address_from_the_proxy_only_when_told(settings):
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9")
    assert client_ip(request) == "10.0.0.2"
    settings.KOALA_PROXY_HEADERS = True
    assert client_ip(request) == "203.0.113.9"  # the entry our proxy appended, not the client's own
    assert client_ip(RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="junk")) == "10.0.0.2"


# --- the page -----------------------------------------------------------------------------------------


def log_rows(image, personas):
    """Three openings: viewer on DAY 09:00 and DAY+1 10:00, reviewer on DAY 11:00."""
    at = dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)
    for user, when in (
        (personas["viewer"], at),
        (personas["viewer"], at + dt.timedelta(days=1, hours=1)),
        (personas["reviewer"], at + dt.timedelta(hours=2)),
    ):
        ImageAccess.objects.create(user=user, username=user.username, image=image, image_path=image.path, at=when)


@pytest.mark.parametrize("role", ["viewer", "reviewer", "nobody"])
def test_it_shows_the_log_to_admins_only(client, personas, role):
    client.force_login(personas[role])
    assert client.get(reverse("access-log")).status_code == 403
    client.logout()
    assert client.get(reverse("access-log")).status_code == 302


def test_it_lists_who_opened_which_image_when(client, personas, image):
    log_rows(image, personas)
    client.force_login(personas["admin"])
    html = client.get(reverse("access-log")).content.decode()
    assert "3 openings" in html
    assert html.index("2026-11-21 10:00:00") < html.index("2026-11-20 11:00:00") < html.index("2026-11-20 09:00:00")
    assert html.count(image.path) == 3 and reverse("image", args=[image.pk]) in html
    assert f'href="{reverse("access-log")}"' in client.get(reverse("home")).content.decode()  # in the menu


def test_it_filters_by_user_day_and_image(client, personas, image):
    log_rows(image, personas)
    other = f.image(day=DAY)
    ImageAccess.objects.create(user=personas["admin"], username="admin-user", image=other, image_path=other.path)
    client.force_login(personas["admin"])
    url = reverse("access-log")

    by_user = client.get(url, {"user": "viewer-user"}).content.decode()
    assert "2 openings match the filter" in by_user and "11:00:00" not in by_user
    by_day = client.get(url, {"day": "2026-11-20"}).content.decode()
    assert "2 openings match" in by_day and "2026-11-21 10:00:00" not in by_day
    both = client.get(url, {"user": "viewer-user", "day": "2026-11-21"}).content.decode()
    assert "1 opening match" in both
    by_image = client.get(url, {"image": other.pk}).content.decode()
    assert "1 opening match" in by_image and "admin-user" in by_image
    bad = client.get(url, {"day": "yesterday"})
    assert bad.status_code == 200 and "Enter a valid date" in bad.content.decode()


def test_it_pages_through_the_log(client, personas, image, monkeypatch):
    monkeypatch.setattr(access_log, "PER_PAGE", 2)
    log_rows(image, personas)
    client.force_login(personas["admin"])
    first = client.get(reverse("access-log"), {"user": "viewer-user"}).content.decode()
    assert "page 1 of 1" not in first and "next page" not in first  # two rows: one page
    html = client.get(reverse("access-log")).content.decode()
    assert "page 1 of 2" in html and 'href="?page=2"' in html
    second = client.get(reverse("access-log"), {"page": 2}).content.decode()
    assert "page 2 of 2" in second and "2026-11-20 09:00:00" in second and "11:00:00" not in second


def test_it_shows_the_log_read_only_in_the_django_admin(client, personas, image):
    log_rows(image, personas)
    client.force_login(personas["admin"])  # staff in the admin group, not a superuser
    changelist = client.get(reverse("admin:monitor_imageaccess_changelist"))
    assert changelist.status_code == 200 and "viewer-user" in changelist.content.decode()
    assert client.get(reverse("admin:monitor_imageaccess_add")).status_code == 403
    access = ImageAccess.objects.first()
    assert (
        client.post(reverse("admin:monitor_imageaccess_delete", args=[access.pk]), {"post": "yes"}).status_code == 403
    )
    assert ImageAccess.objects.count() == 3
    client.force_login(personas["reviewer"])
    assert client.get(reverse("admin:monitor_imageaccess_changelist")).status_code == 302  # not staff
