import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image as PILImage

import demo
from liveness.manifest import load_manifest
from monitor.celery import app as celery_app

ROOT = Path(__file__).resolve().parent.parent
DEMO_MANIFEST = ROOT / "demo" / "models" / "demo.toml"
SHARED = ROOT.parent / "shared"
# the shipped demo models' version and threshold: retraining them bumps both
DEMO_VERSION = load_manifest(DEMO_MANIFEST.with_name("fas_a.toml")).version
NEXT_VERSION = str(int(DEMO_VERSION) + 1)
DEMO_T = load_manifest(DEMO_MANIFEST).threshold


@pytest.fixture(autouse=True)
def data_root(tmp_path, settings):
    """Every test gets its own data root: inbox, sorted, thumbs and models under tmp_path."""
    root = tmp_path / "data"
    settings.DATA_DIR = root
    settings.INBOX_DIR = root / "inbox"
    settings.SORTED_DIR = root / "sorted"
    settings.THUMBS_DIR = root / "thumbs"
    settings.MODELS_DIR = root / "models"
    settings.INBOX_DIR.mkdir(parents=True)
    settings.KOALA_SETTLE_SECONDS = 0  # tests write files and score them at once
    # no collectstatic in tests: plain static storage instead of whitenoise's manifest
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    return root


@pytest.fixture(autouse=True)
def empty_cache():
    """Django's cache (the overview's figures) starts empty in every test: the database is rolled
    back between tests, so ids and counts repeat."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def eager_celery():
    """Tests run jobs in-process unless they start a real worker (tests/test_celery_worker.py)."""
    old = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = old


@pytest.fixture
def demo_ensemble(db):
    from monitor.registry import register_manifest

    return register_manifest(DEMO_MANIFEST, activate=True)


def jpeg_bytes(sample: demo.Sample, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    sample.image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def sidecar_for(sample: demo.Sample, *, labelled: bool = True) -> dict:
    b = sample.box
    out = {"face": {"x": round(b.x), "y": round(b.y), "w": round(b.w), "h": round(b.h)}, "pose": sample.pose}
    if labelled:
        out["label"] = sample.label
        if sample.attack_type:
            out["attack_type"] = sample.attack_type
    return out


def put(inbox: Path, day: str, device: str, name: str, data: bytes, sidecar: dict | str | None = None) -> Path:
    """Drop a file (and its sidecar) into INBOX/<day>/<device>/."""
    folder = inbox / day / device
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    if sidecar is not None:
        text = sidecar if isinstance(sidecar, str) else json.dumps(sidecar)
        path.with_suffix(".json").write_text(text)
    return path


def _unreachable(db: str, broker: str) -> str:
    import psycopg
    import redis

    try:
        redis.Redis.from_url(broker, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        return f"Redis at {broker} is unreachable ({exc})"
    try:
        psycopg.connect(db.replace("postgres://", "postgresql://", 1), connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at {db} is unreachable ({exc})"
    return ""


def need_services() -> tuple[str, str]:
    """(database url, broker url) when PostgreSQL and Redis are configured and answer, else skip
    (or fail when KOALA_REQUIRE_SERVICES=1, as in CI)."""
    db, broker = os.environ.get("DATABASE_URL", ""), os.environ.get("CELERY_BROKER_URL", "")
    if db.startswith("postgres") and broker.startswith("redis"):
        reason = _unreachable(db, broker)
        if not reason:
            return db, broker
    else:
        reason = "needs PostgreSQL and Redis: set DATABASE_URL=postgres://... and CELERY_BROKER_URL=redis://..."
    if os.environ.get("KOALA_REQUIRE_SERVICES") == "1":
        pytest.fail(reason + " (KOALA_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def solid_png(color=(128, 128, 128), size=(64, 64)) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def inbox_image(settings, day: str, device: str = "phone-01", name: str = "face.png", *, thumbnail: bool = False):
    """A stored Image whose file is in the inbox (a grey PNG), with its thumbnail if asked."""
    from monitor.models import Image
    from tests import factories

    data = solid_png()
    put(settings.INBOX_DIR, day, device, name, data)
    im = factories.image(day=day, device_name=device, path=f"{day}/{device}/{name}", format="PNG", file_size=len(data))
    if thumbnail:
        thumb = settings.THUMBS_DIR / im.thumb_relpath
        thumb.parent.mkdir(parents=True, exist_ok=True)
        thumb.write_bytes(data)
        Image.objects.filter(pk=im.pk).update(has_thumbnail=True)
        im.has_thumbnail = True
    return im


PERSONAS = ("viewer", "reviewer", "admin")


PASSWORD = "a-long-test-password"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Test users' passwords are hashed with MD5: Django's PBKDF2 costs a quarter of a second each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_user(username: str, group: str | None = "viewer", **fields):
    """A user in one role's group (None: in no group), with the test password."""
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user(username, password=PASSWORD, **fields)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def personas(db):
    """One user per role (and `nobody`: logged in, in no group), keyed by role. Log them in with
    `client.force_login(user)`: `client.login()` calls authenticate() without a request, which
    django-axes (login throttling) refuses; a test of the login itself posts to the login page."""
    users = {role: make_user(f"{role}-user", role, is_staff=role == "admin") for role in PERSONAS}
    users["nobody"] = make_user("nobody", None)
    return users


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser_page():
    """A page in Debian's headless chromium driven by Playwright (never a downloaded browser).
    Skipped without /usr/bin/chromium, failed instead when KOALA_REQUIRE_SERVICES=1."""
    if not CHROMIUM.exists():
        reason = "needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
        if os.environ.get("KOALA_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs an event loop
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(20_000)
            try:
                yield page
            finally:
                browser.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture(scope="session", autouse=True)
def _end_stray_database_sessions(django_db_setup, django_db_blocker):
    """Before the test database is dropped, end the PostgreSQL sessions that the live server's
    request threads may still hold (depending on django_db_setup makes this teardown run first)."""
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql" and connection.settings_dict["NAME"].startswith("test"):
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


def log_in(page, username: str, password: str = "a-long-test-password") -> None:
    """Fill and send the login form the browser `page` shows."""
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def wait_for_trend_chart(page) -> None:
    """Wait until Plotly has drawn a trend chart with at least two days."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('.js-plotly-plot')].some("
        "el => (el.data || []).some(t => (t.x || []).length >= 2))"
    )
