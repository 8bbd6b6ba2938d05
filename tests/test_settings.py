"""Settings come from the environment, with typed helpers and one data root."""

import subprocess
import sys

from tests.conftest import ROOT


def settings_in_env(env: dict, expr: str) -> subprocess.CompletedProcess:
    code = f"import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'monitor.settings'); django.setup(); from django.conf import settings as s; print(*[{expr}], sep=chr(10))"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True
    )


def test_it_derives_every_folder_from_the_data_root(tmp_path):
    out = settings_in_env(
        {"KOALA_DATA_DIR": str(tmp_path)},
        "s.INBOX_DIR, s.SORTED_DIR, s.THUMBS_DIR, s.MODELS_DIR, s.DATABASES['default']['NAME']",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(tmp_path / p) for p in ("inbox", "sorted", "thumbs", "models", "koala.sqlite3")]


def test_it_lets_one_folder_move_on_its_own(tmp_path):
    out = settings_in_env(
        {"KOALA_DATA_DIR": str(tmp_path), "KOALA_INBOX_DIR": "/mnt/inbox"}, "s.INBOX_DIR, s.SORTED_DIR"
    )
    assert out.stdout.split() == ["/mnt/inbox", str(tmp_path / "sorted")]


def test_it_runs_jobs_in_process_without_a_broker():
    assert settings_in_env({}, "s.CELERY_TASK_ALWAYS_EAGER").stdout.strip() == "True"
    with_broker = settings_in_env({"CELERY_BROKER_URL": "redis://localhost:6379/0"}, "s.CELERY_TASK_ALWAYS_EAGER")
    assert with_broker.stdout.strip() == "False"


def test_it_refuses_a_malformed_setting():
    out = settings_in_env({"KOALA_BATCH_SIZE": "many"}, "s.KOALA_BATCH_SIZE")
    assert out.returncode != 0
    assert "KOALA_BATCH_SIZE: expected an integer, got 'many'" in out.stderr


def test_it_caches_in_each_process_unless_a_redis_cache_is_given(tmp_path):
    data = {"KOALA_DATA_DIR": str(tmp_path)}
    backend = "s.CACHES['default']['BACKEND'], s.CACHES['default'].get('LOCATION'), s.KOALA_OVERVIEW_CACHE_SECONDS"
    assert settings_in_env(data, backend).stdout.split() == [
        "django.core.cache.backends.locmem.LocMemCache",
        "koala",
        "600",
    ]
    redis = settings_in_env({**data, "CACHE_URL": "redis://cache:6379/1", "KOALA_OVERVIEW_CACHE_SECONDS": "0"}, backend)
    assert redis.stdout.split() == ["django.core.cache.backends.redis.RedisCache", "redis://cache:6379/1", "0"]
    bad = settings_in_env({**data, "CACHE_URL": "memcached://cache:11211"}, backend)
    assert bad.returncode != 0 and "CACHE_URL" in bad.stderr
