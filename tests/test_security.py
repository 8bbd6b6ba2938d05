"""Security (issue 8): production settings pass `check --deploy`, cookies are secure there,
security headers and a content security policy on every answer and no inline script a strict
policy would block, CSRF on every POST, login throttling, and image files that no path trick
or tampered row can turn into another file."""

import datetime as dt
import re
import secrets
import subprocess
import sys
from urllib.parse import quote

import pytest
from axes.models import AccessAttempt
from django.db.models import F
from django.test import Client
from django.urls import reverse

from monitor.models import Image, ImageAccess, Run
from tests import factories as f
from tests import test_access
from tests.conftest import ROOT, inbox_image, solid_png
from tests.test_access import project_urls
from tests.test_settings import settings_in_env

DAY = dt.date(2026, 11, 20)
rows = test_access.rows  # the fixture: a row of each table the URLs point at
PASSWORD = "a-long-test-password"


def production_env(tmp_path, **more) -> dict:
    return {
        "KOALA_DATA_DIR": str(tmp_path),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "koala.example.org",
        "KOALA_HTTPS": "1",
        **more,
    }


# --- production settings ------------------------------------------------------------------------


def test_it_passes_check_deploy_with_production_settings(tmp_path):
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **production_env(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "System check identified no issues" in out.stdout


def test_it_fails_check_deploy_with_the_demo_settings(tmp_path):
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "KOALA_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert "SESSION_COOKIE_SECURE" in out.stderr


def test_it_makes_cookies_secure_and_redirects_to_https_in_production(tmp_path):
    names = "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT", "SESSION_COOKIE_HTTPONLY"
    expr = ", ".join(f"s.{n}" for n in names) + ", s.SECURE_HSTS_SECONDS >= 31536000"
    production = settings_in_env(production_env(tmp_path), expr)
    assert production.returncode == 0, production.stderr
    assert production.stdout.split() == ["True"] * 5
    demo = settings_in_env({"KOALA_DATA_DIR": str(tmp_path)}, expr)
    assert demo.stdout.split() == ["False", "False", "False", "True", "False"]


def test_it_trusts_the_proxy_headers_only_when_told(tmp_path):
    expr = "s.SECURE_PROXY_SSL_HEADER"
    assert settings_in_env(production_env(tmp_path), expr).stdout.strip() == "None"
    behind = settings_in_env(production_env(tmp_path, KOALA_PROXY_HEADERS="1"), expr)
    assert behind.stdout.strip() == "('HTTP_X_FORWARDED_PROTO', 'https')"


def test_it_refuses_the_demo_secret_key_in_production(tmp_path):
    env = production_env(tmp_path)
    del env["SECRET_KEY"]
    out = settings_in_env(env, "s.SECRET_KEY")
    assert out.returncode != 0
    assert "needs a SECRET_KEY of its own" in out.stderr


# --- headers and the content security policy ------------------------------------------------------


def test_it_sends_the_security_headers(client, personas):
    for response in (client.get(reverse("login")), client.get(reverse("home"))):  # a page, a redirect
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"
        assert response["Cross-Origin-Opener-Policy"] == "same-origin"
        policy = dict(
            (d.strip().split(" ", 1) + [""])[:2] for d in response["Content-Security-Policy"].split(";") if d.strip()
        )
        assert policy["default-src"] == "'self'"
        assert policy["script-src"] == "'self'"  # no inline script, no eval
        assert policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
        assert policy["form-action"] == "'self'" and policy["base-uri"] == "'self'"


def test_it_sends_hsts_on_https_when_configured(client, settings, db):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    response = client.get(reverse("login"), secure=True)
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.I)
EVENT_HANDLER = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I)


def inline_script_problems(html: str) -> list[str]:
    problems = [
        m.group(0)
        for m in SCRIPT_TAG.finditer(html)
        if "src=" not in m.group(1) and 'type="application/json"' not in m.group(1)
    ]
    problems += [m.group(0) for m in EVENT_HANDLER.finditer(html)]
    problems += re.findall(r"""(?:href|src|action)\s*=\s*["']\s*javascript:""", html, re.I)
    return problems


def test_it_keeps_the_templates_free_of_inline_scripts_and_handlers():
    for path in sorted((ROOT / "templates").rglob("*.html")):
        assert inline_script_problems(path.read_text()) == [], path


def test_it_renders_every_page_without_inline_script(client, rows, personas):
    client.force_login(personas["admin"])
    pages = 0
    for _, url in project_urls(*rows):
        response = client.get(url)
        if response.status_code == 200 and response["Content-Type"].startswith("text/html"):
            pages += 1
            assert inline_script_problems(response.content.decode()) == [], url
    assert pages >= 10


# --- CSRF on every POST -----------------------------------------------------------------------------


def test_it_refuses_every_post_without_a_csrf_token(rows, personas):
    client = Client(enforce_csrf_checks=True)
    client.force_login(personas["admin"])
    checked = 0
    for name, url in project_urls(*rows) + [("logout", reverse("logout"))]:
        response = client.post(url, {"day": "2026-11-20"})
        if name.startswith("api-"):  # the JSON API is read-only: no POST reaches a view
            assert response.status_code == 405, url
            continue
        assert response.status_code == 403, (url, response.status_code)
        assert b"CSRF verification failed" in response.content, url
        checked += 1
    assert checked >= 25
    assert not Run.objects.exclude(pk=rows[0]).exists()  # nothing was started


def test_it_accepts_a_post_with_the_csrf_token(rows, personas, demo_ensemble):
    client = Client(enforce_csrf_checks=True)
    client.force_login(personas["admin"])
    client.get(reverse("runs"))
    token = client.cookies["csrftoken"].value
    response = client.post(reverse("run-start"), {"day": "2026-11-20", "csrfmiddlewaretoken": token})
    assert response.status_code == 302


def test_it_refuses_a_login_post_without_a_csrf_token(personas):
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("login"), {"username": "viewer-user", "password": PASSWORD})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


# --- login throttling (django-axes) -------------------------------------------------------------------


def login(client, username: str, password: str):
    return client.post(reverse("login"), {"username": username, "password": password})


def test_it_locks_out_a_login_after_too_many_failures(client, personas, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(2):
        response = login(client, "viewer-user", "wrong password")
        assert response.status_code == 200 and b"Please enter a correct username" in response.content
    assert login(client, "viewer-user", "wrong password").status_code == 429  # the third: locked out

    refused = login(client, "viewer-user", PASSWORD)  # the right password does not help now
    assert refused.status_code == 429 and b"locked" in refused.content.lower()
    assert "_auth_user_id" not in client.session
    assert login(client, "reviewer-user", PASSWORD).status_code == 302  # another user is not locked out

    # after the cool-off the right password works again
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - settings.AXES_COOLOFF_TIME - dt.timedelta(seconds=1))
    client.logout()
    response = login(client, "viewer-user", PASSWORD)
    assert response.status_code == 302 and response["Location"] == reverse("home")


def test_it_forgets_failures_after_a_good_login(client, personas, settings):
    settings.AXES_FAILURE_LIMIT = 3
    login(client, "viewer-user", "wrong password")
    login(client, "viewer-user", "wrong password")
    assert login(client, "viewer-user", PASSWORD).status_code == 302
    client.logout()
    login(client, "viewer-user", "wrong password")
    assert login(client, "viewer-user", PASSWORD).status_code == 302


def test_it_takes_the_throttle_from_the_environment(tmp_path):
    out = settings_in_env(
        {"KOALA_DATA_DIR": str(tmp_path), "KOALA_LOGIN_FAILURE_LIMIT": "7", "KOALA_LOGIN_COOLOFF_MINUTES": "30"},
        "s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME, s.AXES_LOCKOUT_PARAMETERS",
    )
    assert out.stdout.splitlines() == ["7", "0:30:00", "[['username', 'ip_address']]"]
    forever = settings_in_env(
        {"KOALA_DATA_DIR": str(tmp_path), "KOALA_LOGIN_COOLOFF_MINUTES": "0", "KOALA_LOGIN_LOCKOUT_BY": "ip_address"},
        "s.AXES_COOLOFF_TIME, s.AXES_LOCKOUT_PARAMETERS",
    )
    assert forever.stdout.splitlines() == ["None", "['ip_address']"]


# --- image files: ids, never paths -----------------------------------------------------------------------

TRAVERSALS = [
    "/images/../../etc/passwd",
    "/images/%2e%2e/%2e%2e/etc/passwd",
    "/images/..%2f..%2fetc%2fpasswd",
    "/images/%2e%2e%2f%2e%2e%2fetc%2fpasswd/file",
    "/images/{pk}/file/../../../etc/passwd",
    "/images/{pk}/../../monitor/settings.py",
    "/images//etc/passwd/file",
    "/images/%2fetc%2fpasswd/file",
    "/images/{pk}%2f..%2f..%2fsecret.jpg/file",
    "/images/-1/file",
    "/images/{pk}.0/file",
    "/images/{pk}/thumb/..%2f..%2f..%2fsecret.jpg",
    "/static/../monitor/settings.py",
    "/static/%2e%2e/%2e%2e/monitor/settings.py",
    "/static/..%2f..%2fmonitor%2fsettings.py",
    # double-encoded: %25 is "%", so one decoding too many would make these ".." and "/"
    "/images/%252e%252e/%252e%252e/etc/passwd",
    "/images/%252e%252e%252f%252e%252e%252fetc%252fpasswd/file",
    "/images/{pk}/file/%252e%252e%252f%252e%252e%252fsecret.jpg",
    "/images/{pk}/thumb/%252e%252e%252f%252e%252e%252f%252e%252e%252fsecret.jpg",
    "/static/%252e%252e/%252e%252e/monitor/settings.py",
    # backslashes, raw and encoded (a separator on Windows, and to some proxies)
    "/images/..\\..\\etc\\passwd",
    "/images/{pk}/file/..\\..\\..\\secret.jpg",
    "/images/..%5c..%5cetc%5cpasswd/file",
    "/images/{pk}%5c..%5c..%5csecret.jpg/file",
    "/static/..\\..\\monitor\\settings.py",
    "/static/..%5c..%5cmonitor%5csettings.py",
    # characters that Unicode normalisation (NFKC) turns into "." or "/", lookalikes, overlong UTF-8
    "/images/%EF%BC%8E%EF%BC%8E/%EF%BC%8E%EF%BC%8E/etc/passwd",  # fullwidth full stops
    "/images/%EF%BC%8E%EF%BC%8E%EF%BC%8F%EF%BC%8E%EF%BC%8E%EF%BC%8Fsecret.jpg/file",  # ... and solidus
    "/images/%E2%80%A5/%E2%80%A5/etc/passwd",  # two dot leader
    "/images/{pk}/thumb/%E2%80%A5%E2%88%95%E2%80%A5%E2%88%95secret.jpg",  # division slash
    "/images/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",  # overlong "."
    "/static/%EF%BC%8E%EF%BC%8E/%EF%BC%8E%EF%BC%8E/monitor/settings.py",
]


def test_it_answers_404_to_paths_under_the_file_urls(client, personas, settings):
    (settings.DATA_DIR / "secret.jpg").write_bytes(b"SECRET-BYTES")
    im = scored_file(settings)
    client.force_login(personas["admin"])
    served = client.get(f"/images/{im.pk}/file")
    assert served.status_code == 200 and b"".join(served.streaming_content) == solid_png()  # the id itself
    fullwidth = quote("".join(chr(0xFF10 + int(d)) for d in str(im.pk)))  # NFKC turns these into the id
    for url in [*TRAVERSALS, f"/images/{fullwidth}/file", f"/images/{fullwidth}/thumb"]:
        url = url.replace("{pk}", str(im.pk))
        response = client.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert response.status_code == 404, (url, response.status_code)
        assert b"root:" not in body and b"SECRET" not in body and b"SECRET_KEY" not in body, url


def scored_file(settings, name="face.png") -> Image:
    return inbox_image(settings, DAY.isoformat(), name=name)


@pytest.mark.parametrize(
    "stored_path",
    ["../secret.jpg", "../../secret.jpg", "/etc/passwd", "SECRET_ABSOLUTE", "2026-11-20/../../secret.jpg"],
)
def test_it_refuses_a_stored_path_that_escapes_the_inbox(client, personas, settings, stored_path):
    """A tampered row: the path is resolved and must stay inside the inbox."""
    secret = settings.DATA_DIR / "secret.jpg"
    secret.write_bytes(b"SECRET-BYTES")
    if stored_path == "SECRET_ABSOLUTE":
        stored_path = str(secret)
    im = f.image(day=DAY, path=stored_path, format="JPEG")
    client.force_login(personas["viewer"])
    response = client.get(reverse("image-file", args=[im.pk]))
    assert response.status_code == 404
    assert not ImageAccess.objects.exists()


def test_it_refuses_a_link_in_the_inbox_that_points_outside(client, personas, settings):
    secret = settings.DATA_DIR / "secret.jpg"
    secret.write_bytes(b"SECRET-BYTES")
    folder = settings.INBOX_DIR / DAY.isoformat() / "phone-01"
    folder.mkdir(parents=True)
    (folder / "link.jpg").symlink_to(secret)
    im = f.image(day=DAY, path=f"{DAY.isoformat()}/phone-01/link.jpg", format="JPEG")
    client.force_login(personas["viewer"])
    assert client.get(reverse("image-file", args=[im.pk])).status_code == 404


def test_it_refuses_a_thumbnail_whose_stored_hash_escapes_the_thumbnail_folder(client, personas, settings):
    # thumbnails live at THUMBS/<sha[:2]>/<sha>.jpg: a tampered sha256 "../secret" points at DATA/../secret.jpg
    secret = settings.DATA_DIR.parent / "secret.jpg"
    secret.write_bytes(b"SECRET-BYTES")
    im = f.image(day=DAY, sha256="../secret", has_thumbnail=True)
    assert (settings.THUMBS_DIR / im.thumb_relpath).resolve() == secret.resolve()
    client.force_login(personas["viewer"])
    assert client.get(reverse("thumb", args=[im.pk])).status_code == 404


def test_it_serves_a_file_of_the_inbox_to_every_role_and_no_one_else(client, personas, settings):
    im = scored_file(settings)
    url = reverse("image-file", args=[im.pk])
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and reverse("login") in anonymous["Location"]
    for role in ("viewer", "reviewer", "admin"):
        client.force_login(personas[role])
        response = client.get(url)
        assert response.status_code == 200 and b"".join(response.streaming_content) == solid_png()
    client.force_login(personas["nobody"])  # logged in without a role: no image of any day
    for pk in (im.pk, im.pk + 1000):
        assert client.get(reverse("image-file", args=[pk])).status_code == 403
        assert client.get(reverse("thumb", args=[pk])).status_code == 403
    client.force_login(personas["viewer"])
    assert client.get(reverse("image-file", args=[im.pk + 1000])).status_code == 404  # no such id
    assert client.post(url).status_code == 405  # files are read, never posted to
