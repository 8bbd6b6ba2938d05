"""Koala Monitor settings: everything from environment variables, safe defaults for the demo only.

One data root (KOALA_DATA_DIR, default ./data) holds inbox/, sorted/, thumbs/, models/ and the
SQLite database; each folder can be moved with its own variable.
"""

import datetime as dt
import os
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}: expected a boolean (1/0, true/false), got {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return default if value in (None, "") else int(value)
    except ValueError:
        raise ValueError(f"{name}: expected an integer, got {value!r}") from None


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    try:
        return default if value in (None, "") else float(value)
    except ValueError:
        raise ValueError(f"{name}: expected a number, got {value!r}") from None


def env_optional_float(name: str) -> float | None:
    value = os.environ.get(name)
    return None if value in (None, "") else env_float(name, 0.0)


def env_list(name: str, default: str = "") -> list[str]:
    return [v.strip() for v in env_str(name, default).split(",") if v.strip()]


def env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


DEBUG = env_bool("DEBUG", False)
DEMO_SECRET_KEY = "koala-demo-only-insecure-secret-key-change-me-in-production"
SECRET_KEY = env_str("SECRET_KEY", DEMO_SECRET_KEY)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# --- security (README "Security"). Production sets KOALA_HTTPS=1: the site is served over HTTPS
# only (a proxy terminating TLS in front of gunicorn), so cookies are Secure, plain HTTP is
# redirected and browsers are told to use HTTPS (HSTS). `manage.py check --deploy` is then clean.
KOALA_HTTPS = env_bool("KOALA_HTTPS", False)
# the proxy in front sets X-Forwarded-Proto and appends the client to X-Forwarded-For: trust them
# (only when the app cannot be reached but through that proxy)
KOALA_PROXY_HEADERS = env_bool("KOALA_PROXY_HEADERS", False)
if KOALA_HTTPS and SECRET_KEY == DEMO_SECRET_KEY:
    raise ImproperlyConfigured("KOALA_HTTPS=1 (production) needs a SECRET_KEY of its own, not the demo one")
SESSION_COOKIE_SECURE = KOALA_HTTPS
CSRF_COOKIE_SECURE = KOALA_HTTPS
SESSION_COOKIE_AGE = env_int("KOALA_SESSION_HOURS", 12) * 3600  # biometric images: a working day, not two weeks
SECURE_SSL_REDIRECT = env_bool("KOALA_SSL_REDIRECT", KOALA_HTTPS)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if KOALA_PROXY_HEADERS else None
SECURE_HSTS_SECONDS = env_int("KOALA_HSTS_SECONDS", 365 * 24 * 3600 if KOALA_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("KOALA_HSTS_INCLUDE_SUBDOMAINS", KOALA_HTTPS)
SECURE_HSTS_PRELOAD = env_bool("KOALA_HSTS_PRELOAD", False)
# HSTS preload is the domain owner's decision (a submission to the browsers' list, for the
# registrable domain, not the app's host name): not asked for by default, so its warning is off.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
# Django's defaults, stated: nosniff, X-Frame-Options DENY, Referrer-Policy and COOP same-origin
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# Content security policy (django-csp): scripts only from our static files (no inline script, no
# eval); styles also inline, because Plotly draws its charts with inline styles (style
# attributes and a <style> element it injects). Images from our views and data: URIs (Plotly's
# modebar), nothing framed, forms post only to us.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:", "blob:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
# Login throttling (django-axes): after KOALA_LOGIN_FAILURE_LIMIT failed logins of one user name
# from one address, that pair is locked out for KOALA_LOGIN_COOLOFF_MINUTES (0 = until an admin
# runs `manage.py axes_reset_username NAME`), even with the right password.
AXES_ENABLED = env_bool("KOALA_LOGIN_THROTTLE", True)
AXES_FAILURE_LIMIT = env_int("KOALA_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = dt.timedelta(minutes=env_int("KOALA_LOGIN_COOLOFF_MINUTES", 15)) or None
# "username+ip_address" = the pair; a comma separates alternatives ("ip_address,username": either)
AXES_LOCKOUT_PARAMETERS = [
    p.split("+") if "+" in p else p for p in env_list("KOALA_LOGIN_LOCKOUT_BY", "username+ip_address")
]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False  # no banner on every command; failed logins and lockouts are still logged
AXES_CLIENT_IP_CALLABLE = "monitor.views.access_log.client_ip"  # honours KOALA_PROXY_HEADERS
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out login before the password check
    "django.contrib.auth.backends.ModelBackend",
]

# --- folders: one data root ---
DATA_DIR = env_path("KOALA_DATA_DIR", BASE_DIR / "data")
INBOX_DIR = env_path("KOALA_INBOX_DIR", DATA_DIR / "inbox")
SORTED_DIR = env_path("KOALA_SORTED_DIR", DATA_DIR / "sorted")
THUMBS_DIR = env_path("KOALA_THUMBS_DIR", DATA_DIR / "thumbs")
MODELS_DIR = env_path("KOALA_MODELS_DIR", DATA_DIR / "models")

# nginx serves protected files from internal locations /protected/inbox/ and /protected/thumbs/
KOALA_X_ACCEL_REDIRECT = env_bool("KOALA_X_ACCEL_REDIRECT", False)

# --- scoring ---
KOALA_BATCH_SIZE = env_int("KOALA_BATCH_SIZE", 64)  # files per Celery batch task
KOALA_DRAFT_DECODE = env_bool("KOALA_DRAFT_DECODE", True)  # reduced JPEG decoding (liveness/pipeline.py)
# onnxruntime intra-op threads per process; 0 = onnxruntime's default (all cores). One thread per
# process, and as many worker processes as cores, was fastest (bench/README.md)
KOALA_ORT_THREADS = env_int("KOALA_ORT_THREADS", 1)
# a face detector manifest (liveness/detectors/*.toml) for images without a sidecar box; "" = none
KOALA_FACE_DETECTOR = env_str("KOALA_FACE_DETECTOR", "")
KOALA_MIN_FACE = env_float("KOALA_MIN_FACE", 130)
KOALA_MAX_YAW = env_float("KOALA_MAX_YAW", 30)
KOALA_MAX_PITCH = env_float("KOALA_MAX_PITCH", 30)
KOALA_MAX_BLUR = env_float("KOALA_MAX_BLUR", 0.5)
KOALA_CLAIM_SECONDS = env_int("KOALA_CLAIM_SECONDS", 600)  # a batch claim expires after this
KOALA_SETTLE_SECONDS = env_int("KOALA_SETTLE_SECONDS", 30)  # newer files wait for the next run
KOALA_NIGHTLY_AT = env_str("KOALA_NIGHTLY_AT", "02:30")  # HH:MM, TIME_ZONE; scores yesterday
KOALA_RESCAN_DAYS = env_int("KOALA_RESCAN_DAYS", 3)  # hourly re-scan for late files

# --- privacy (README "Privacy"; monitor/purge.py) ---
# image files of days older than this many days are purged nightly (links, thumbnails; the rows
# with scores, labels and metrics stay); 0 = keep forever
KOALA_RETENTION_DAYS = env_int("KOALA_RETENTION_DAYS", 0)
if KOALA_RETENTION_DAYS < 0:
    raise ImproperlyConfigured(f"KOALA_RETENTION_DAYS: expected 0 (keep forever) or more, got {KOALA_RETENTION_DAYS}")
# also delete the originals in the inbox (the devices' delivery area, otherwise never touched)
KOALA_RETENTION_INBOX = env_bool("KOALA_RETENTION_INBOX", False)
KOALA_PURGE_AT = env_str("KOALA_PURGE_AT", "03:45")  # HH:MM, TIME_ZONE; after the nightly scoring
KOALA_ACCESS_LOG = env_bool("KOALA_ACCESS_LOG", True)  # record who opened which original image, when

# --- "what changed" (monitor/explain.py) and attempts (monitor/attempts.py) ---
KOALA_EXPLAIN_WINDOW_DAYS = env_int("KOALA_EXPLAIN_WINDOW_DAYS", 14)  # the trailing window a day is held against
KOALA_ATTEMPT_GAP_SECONDS = env_int("KOALA_ATTEMPT_GAP_SECONDS", 120)  # longest pause within one user's attempts
KOALA_ATTEMPT_HASH_DISTANCE = env_int("KOALA_ATTEMPT_HASH_DISTANCE", 12)  # bits of 64: near-identical face crops

# --- alerts (monitor/alerts.py): evaluated when a day finishes ---
KOALA_ALERT_WINDOW_DAYS = env_int("KOALA_ALERT_WINDOW_DAYS", 14)  # trailing days of the control limits
KOALA_ALERT_MIN_HISTORY_DAYS = env_int("KOALA_ALERT_MIN_HISTORY_DAYS", 7)  # usable days needed for a limit
KOALA_ALERT_SIGMAS = env_float("KOALA_ALERT_SIGMAS", 3.0)  # control limit = trailing mean + this many sigma
KOALA_ALERT_MIN_COUNT = env_int("KOALA_ALERT_MIN_COUNT", 100)  # scored images for flag rate and PSI
KOALA_ALERT_MIN_GENUINE = env_int("KOALA_ALERT_MIN_GENUINE", 30)  # labelled genuine images for FPR
KOALA_ALERT_MAX_FLAG_RATE = env_optional_float("KOALA_ALERT_MAX_FLAG_RATE")  # absolute bound replacing the limit
KOALA_ALERT_MAX_FPR = env_optional_float("KOALA_ALERT_MAX_FPR")  # absolute bound replacing the limit
KOALA_ALERT_MAX_PSI = env_float("KOALA_ALERT_MAX_PSI", 0.2)
KOALA_ALERT_SILENT_MIN_DAYS = env_int("KOALA_ALERT_SILENT_MIN_DAYS", 8)  # "normally reports": days of the window
KOALA_ALERT_CLEAR_DAYS = env_int("KOALA_ALERT_CLEAR_DAYS", 2)  # days back under the limit before closing
KOALA_ALERT_REARM_DAYS = env_int("KOALA_ALERT_REARM_DAYS", 7)  # firing again within: re-open, no new email
KOALA_ALERT_EMAILS = env_list("KOALA_ALERT_EMAILS")  # recipients; empty = ADMINS (mail_admins)

# --- email: alerts are mailed only when EMAIL_HOST is set or another EMAIL_BACKEND is chosen ---
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "koala-monitor@localhost")
SERVER_EMAIL = env_str("SERVER_EMAIL", DEFAULT_FROM_EMAIL)
EMAIL_SUBJECT_PREFIX = env_str("EMAIL_SUBJECT_PREFIX", "[Koala Monitor] ")
ADMINS = [("admin", a) for a in env_list("KOALA_ADMIN_EMAILS")]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "axes",
    "monitor",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lockout into the 429 answer
]

ROOT_URLCONF = "monitor.urls"
WSGI_APPLICATION = "monitor.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'koala.sqlite3'}"),
        # seconds a connection is reused (0: one per request); docker-compose's web service uses 60.
        # A reused connection is checked first, so a restarted PostgreSQL costs no failed request.
        conn_max_age=env_int("CONN_MAX_AGE", 0),
        conn_health_checks=env_bool("CONN_HEALTH_CHECKS", True),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # WAL lets the web server read while a job writes; IMMEDIATE avoids lock-upgrade deadlocks.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }

# Django's cache holds the overview's computed figures (monitor/trends.py), keyed by a
# fingerprint of the rows they come from, so a recomputed day shows at once. Default: each process
# its own (LocMemCache); CACHE_URL=redis://host:6379/1 shares one cache between the web workers.
CACHE_URL = env_str("CACHE_URL")
if CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}
elif CACHE_URL in ("", "locmem://"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "koala"}}
else:
    raise ImproperlyConfigured(f"CACHE_URL: expected redis://, rediss://, unix:// or locmem://, got {CACHE_URL!r}")
# how long one computed set of figures may be reused at most (a safety net: the fingerprint already
# changes with every recomputed day and ensemble event); 0 = compute on every request
KOALA_OVERVIEW_CACHE_SECONDS = env_int("KOALA_OVERVIEW_CACHE_SECONDS", 600)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env_path("STATIC_ROOT", BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "monitor.staticfinders.PlotlyFinder",  # vendor/plotly/plotly.min.js from the pinned plotly package
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if env_bool("KOALA_MANIFEST_STATIC", not DEBUG)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Celery: no broker configured = every job runs in-process (the demo needs no Redis) ---
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", CELERY_BROKER_URL or "cache+memory://")
CELERY_TASK_DEFAULT_QUEUE = env_str("KOALA_QUEUE", "celery")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True  # a killed worker's batch is redelivered
CELERY_TASK_REJECT_ON_WORKER_LOST = False  # a batch that kills its worker fails once, not forever
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
_hour, _minute = (int(v) for v in KOALA_NIGHTLY_AT.split(":"))
CELERY_BEAT_SCHEDULE = {
    "score-yesterday": {"task": "monitor.tasks.score_yesterday", "schedule": crontab(hour=_hour, minute=_minute)},
    "rescan-recent-days": {"task": "monitor.tasks.rescan_recent", "schedule": crontab(minute=17)},
}
if KOALA_RETENTION_DAYS > 0:
    _purge_hour, _purge_minute = (int(v) for v in KOALA_PURGE_AT.split(":"))
    CELERY_BEAT_SCHEDULE["purge-images"] = {
        "task": "monitor.tasks.purge_expired_images",
        "schedule": crontab(hour=_purge_hour, minute=_purge_minute),
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
