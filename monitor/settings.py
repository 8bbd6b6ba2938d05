"""Koala Monitor settings: everything from environment variables, safe defaults for the demo only.

One data root (KOALA_DATA_DIR, default ./data) holds inbox/, sorted/, thumbs/, models/ and the
SQLite database; each folder can be moved with its own variable.
"""

import os
from pathlib import Path

import dj_database_url
from celery.schedules import crontab

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
SECRET_KEY = env_str("SECRET_KEY", "koala-demo-only-insecure-secret-key-change-me-in-production")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

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
KOALA_ORT_THREADS = env_int("KOALA_ORT_THREADS", 0)  # onnxruntime intra-op threads, 0 = default
KOALA_MIN_FACE = env_float("KOALA_MIN_FACE", 130)
KOALA_MAX_YAW = env_float("KOALA_MAX_YAW", 30)
KOALA_MAX_PITCH = env_float("KOALA_MAX_PITCH", 30)
KOALA_MAX_BLUR = env_float("KOALA_MAX_BLUR", 0.5)
KOALA_CLAIM_SECONDS = env_int("KOALA_CLAIM_SECONDS", 600)  # a batch claim expires after this
KOALA_SETTLE_SECONDS = env_int("KOALA_SETTLE_SECONDS", 30)  # newer files wait for the next run
KOALA_NIGHTLY_AT = env_str("KOALA_NIGHTLY_AT", "02:30")  # HH:MM, TIME_ZONE; scores yesterday
KOALA_RESCAN_DAYS = env_int("KOALA_RESCAN_DAYS", 3)  # hourly re-scan for late files

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
    "monitor",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'koala.sqlite3'}"), conn_max_age=env_int("CONN_MAX_AGE", 0)
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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
