"""Who may see what: every URL of the project, for every persona. A new URL pattern is picked up
by the walk below, so a page cannot be forgotten."""

import datetime as dt

import pytest
from django.urls import URLPattern, get_resolver, reverse

from monitor.models import Run
from tests import factories as f

DAY = dt.date(2026, 11, 20)
PUBLIC = {"login"}


def project_urls(run_pk: int, image_pk: int) -> list[tuple[str, str]]:
    """(name, url) for every named pattern of the project (the admin is checked by its index)."""
    urls = []
    for p in get_resolver().url_patterns:
        if not isinstance(p, URLPattern):
            continue  # the admin include
        name = p.name
        kwargs = {}
        if "<day:day>" in str(p.pattern):
            kwargs["day"] = DAY
        if "<int:pk>" in str(p.pattern):
            kwargs["pk"] = run_pk if name.startswith("run") else image_pk
        urls.append((name, reverse(name, kwargs=kwargs)))
    return urls + [("admin", reverse("admin:index"))]


@pytest.fixture
def rows(db):
    im = f.image(day=DAY)
    run = Run.objects.create(day=DAY, status=Run.DONE)
    return run.pk, im.pk


def test_it_knows_every_pattern(rows):
    names = {name for name, _ in project_urls(*rows)}
    assert {"home", "gallery", "image", "image-file", "thumb", "runs", "run", "run-start", "api-days"} <= names


def test_it_refuses_anonymous_visitors_on_every_url(client, rows):
    for name, url in project_urls(*rows):
        if name in PUBLIC:
            continue
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            if name.startswith("api"):
                assert response.status_code in (401, 405), (method, url, response.status_code)
            else:
                assert response.status_code in (302, 405), (method, url, response.status_code)
                if response.status_code == 302:
                    assert "login" in response["Location"], url
            assert response.status_code != 200


def test_it_refuses_a_user_without_a_role_on_every_url(client, rows, personas):
    client.force_login(personas["nobody"])
    for name, url in project_urls(*rows):
        if name in PUBLIC or name in ("logout",):
            continue
        response = client.get(url)
        assert response.status_code in (302, 403, 405), (url, response.status_code)
        if response.status_code == 302:
            assert "login" in response["Location"], url


@pytest.mark.parametrize("role", ["viewer", "reviewer", "admin"])
def test_it_shows_every_page_to_every_role(client, rows, personas, role, settings):
    client.force_login(personas[role])
    for name, url in project_urls(*rows):
        if name in ("login", "logout", "run-start", "alert-ack", "image-file", "thumb"):  # POST-only, files
            continue
        if name == "admin" and role != "admin":
            continue
        response = client.get(url)
        assert response.status_code == 200, (role, url, response.status_code)


@pytest.mark.parametrize("role", ["viewer", "reviewer", "nobody"])
def test_it_lets_only_admins_start_a_run(client, personas, role):
    client.force_login(personas[role])
    response = client.post(reverse("run-start"), {"day": "2026-11-20"})
    assert response.status_code == 403
    assert not Run.objects.exists()
