"""Who may see what: every URL of the project, for every persona. A new URL pattern is picked up
by the walk below, so a page cannot be forgotten."""

import datetime as dt

import pytest
from django.urls import URLPattern, get_resolver, reverse

from monitor.models import Ensemble, Image, ModelVersion, Run
from tests import factories as f
from tests.conftest import PERSONAS, inbox_image

DAY = dt.date(2026, 11, 20)
PUBLIC = {"login"}
# URL names whose <int:pk> is a row of another table than runs and images
PK_OF = {
    "model": ModelVersion,
    "model-measure": ModelVersion,
    "ensemble-activate": Ensemble,
    "ensemble-threshold": Ensemble,
}
# the Django admin: its index and pages of the tables that matter most (models, ensembles,
# images, runs); the row of a change page is the first one of its table
ADMIN_PAGES = {
    "admin:index": None,
    "admin:monitor_modelversion_changelist": None,
    "admin:monitor_modelversion_change": ModelVersion,
    "admin:monitor_ensemble_changelist": None,
    "admin:monitor_ensemble_change": Ensemble,
    "admin:monitor_image_changelist": None,
    "admin:monitor_image_change": Image,
    "admin:monitor_run_changelist": None,
    "admin:monitor_run_add": None,
}


def _patterns(resolver, prefix="", namespace=""):
    """Every URLPattern below `resolver` with its route and full name (the admin left out)."""
    for p in resolver.url_patterns:
        if isinstance(p, URLPattern):
            yield prefix + str(p.pattern), (f"{namespace}:{p.name}" if namespace else p.name)
        elif p.namespace != "admin":
            yield from _patterns(p, prefix + str(p.pattern), p.namespace or namespace)


def admin_urls() -> list[tuple[str, str]]:
    urls = []
    for name, model in ADMIN_PAGES.items():
        args = [model.objects.order_by("pk").values_list("pk", flat=True).first()] if model else []
        urls.append((name, reverse(name, args=args)))
    return urls


def project_urls(run_pk: int, image_pk: int) -> list[tuple[str, str]]:
    """(name, url) for every named pattern of the project, and the pages of the admin above."""
    urls = []
    for route, name in _patterns(get_resolver()):
        kwargs = {}
        if "<day:day>" in route:
            kwargs["day"] = DAY
        if "<int:pk>" in route:
            kwargs["pk"] = run_pk if name.startswith("run") else image_pk
            if name in PK_OF:  # other rows than runs and images: the first one of its table
                kwargs["pk"] = PK_OF[name].objects.order_by("pk").values_list("pk", flat=True).first()
        urls.append((name, reverse(name, kwargs=kwargs)))
    return urls + admin_urls()


@pytest.fixture
def rows(db):
    im = f.image(day=DAY)
    run = Run.objects.create(day=DAY, status=Run.DONE)
    ModelVersion.objects.create(name="m1", sha256="a" * 64, file="m1.onnx", manifest="")
    return run.pk, im.pk


def test_it_knows_every_pattern(rows):
    names = {name for name, _ in project_urls(*rows)}
    assert {"home", "gallery", "image", "image-file", "thumb", "runs", "run", "run-start", "api-days"} <= names
    assert set(ADMIN_PAGES) <= names
    assert "None" not in " ".join(url for _, url in project_urls(*rows))  # every URL has its ids


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
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            assert response.status_code in (302, 403, 405), (method, url, response.status_code)
            if response.status_code == 302:
                assert "login" in response["Location"], (method, url)


POST_ONLY = {
    "run-start",
    "alert-ack",
    "labelling:image",
    "review:verdict",
    "review:skip",
    "review:undo",
    "review:clear-skips",
    "model-measure",
    "model-register",
    "ensemble-activate",
    "ensemble-threshold",
    "ensemble-register",
}
FILES = {"image-file", "thumb"}  # tested with real files in test_gallery.py
# who may open what beyond "every role sees it"
ROLES_OF = {
    "review:": {"reviewer", "admin"},
    "labelling:": {"admin"},
    "admin:": {"admin"},  # the Django admin
    "model-measure": {"admin"},
    "model-register": {"admin"},
    "ensemble-": {"admin"},  # activate, threshold, register
    "access-log": {"admin"},
    "run-start": {"admin"},
    "alert-ack": {"reviewer", "admin"},
}


def allowed(name: str, role: str) -> bool:
    return next((role in roles for prefix, roles in ROLES_OF.items() if name.startswith(prefix)), True)


@pytest.mark.parametrize("role", ["viewer", "reviewer", "admin"])
def test_it_holds_the_role_matrix_on_every_url(client, rows, personas, role):
    client.force_login(personas[role])
    for name, url in project_urls(*rows):
        if name in PUBLIC or name == "logout" or name in FILES:
            continue
        response = client.get(url)
        if not allowed(name, role):
            if name in POST_ONLY:  # a GET may be refused for its method first; the POST for the role
                assert response.status_code in (403, 405), (role, url, response.status_code)
                assert client.post(url).status_code == 403, (role, url)
            else:
                expected = 302 if name.startswith("admin:") else 403  # the admin site sends non-staff to its login
                assert response.status_code == expected, (role, url, response.status_code)
                if expected == 302:
                    assert response["Location"].startswith(reverse("admin:login")), (role, url)
        elif name in POST_ONLY:
            assert response.status_code == 405, (role, url, response.status_code)
        else:
            assert response.status_code == 200, (role, url, response.status_code)


@pytest.mark.parametrize("role", ["viewer", "reviewer", "nobody"])
def test_it_lets_only_admins_start_a_run(client, personas, role):
    client.force_login(personas[role])
    response = client.post(reverse("run-start"), {"day": "2026-11-20"})
    assert response.status_code == 403
    assert not Run.objects.exists()


@pytest.mark.parametrize("role", ["viewer", "reviewer", "admin"])
def test_it_holds_the_role_matrix_on_every_url_for_post(client, rows, personas, role):
    """A POST is refused for the role exactly where a GET is: 403 before any work (the admin
    site: its login). Where the role is allowed, the view answers for itself (a redirect, a form
    error, 405 for a read-only view), never 403."""
    client.force_login(personas[role])
    for name, url in project_urls(*rows):
        if name in PUBLIC or name == "logout":
            continue
        response = client.post(url)
        if not allowed(name, role):
            expected = 302 if name.startswith("admin:") else 403
            assert response.status_code == expected, (role, url, response.status_code)
        elif name.startswith("admin:"):  # the admin's own rules: a read-only table refuses every change
            assert response.status_code < 500, (role, url, response.status_code)
        else:
            assert response.status_code != 403, (role, url, response.status_code)
            assert response.status_code < 500, (role, url, response.status_code)


# --- no scoping by day or device: every role sees every image (README, Security) ---------------------

IMAGE_VIEWS = ["image", "image-file", "thumb", "api-image"]


@pytest.fixture
def images_of_days(settings):
    """An image, with its file and thumbnail, on each of three days and devices."""
    days = [("2026-10-01", "gate-a"), ("2026-11-20", "phone-01"), ("2026-11-21", "pad-7")]
    return [inbox_image(settings, day, device, thumbnail=True) for day, device in days]


@pytest.mark.parametrize("role", PERSONAS)
def test_it_shows_every_role_the_images_of_every_day_and_device(client, personas, images_of_days, role):
    client.force_login(personas[role])
    for im in images_of_days:
        for name in IMAGE_VIEWS:
            response = client.get(reverse(name, args=[im.pk]))
            assert response.status_code == 200, (role, name, im.day, response.status_code)
            if response.streaming:  # read to the end: that closes the file
                b"".join(response.streaming_content)


def test_it_refuses_every_image_view_to_a_user_without_a_role(client, personas, images_of_days):
    client.force_login(personas["nobody"])
    for im in images_of_days:
        for name in IMAGE_VIEWS:
            for method in ("get", "post"):
                response = getattr(client, method)(reverse(name, args=[im.pk]))
                refused = {403, 405} if method == "post" and name.startswith("api") else {403}  # a read-only API
                assert response.status_code in refused, (method, name, im.day, response.status_code)
                assert b"PNG" not in b"".join(response) and b"face.png" not in b"".join(response), (method, name)
        assert client.post(reverse("labelling:image", args=[im.pk]), {"label": "genuine"}).status_code == 403
    assert not Image.objects.exclude(label="").exists()
