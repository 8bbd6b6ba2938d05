"""What the benchmark commands share: a data root and a database of their own, Django pointed at
them before `django.setup()`, the demo models, what ran where, and writing one run's JSON result."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_DEFAULT = "postgres://postgres@127.0.0.1:5432/"
DEMO_MANIFEST = ROOT / "demo" / "models" / "demo.toml"
# the user's own data folders: a benchmark's files go under its own KOALA_DATA_DIR instead
DATA_DIR_VARIABLES = ("KOALA_INBOX_DIR", "KOALA_SORTED_DIR", "KOALA_THUMBS_DIR", "KOALA_MODELS_DIR")


# ------------------------------------------------------------------------------------------------
# data root and database (everything here runs BEFORE django.setup())


def data_root(prefix: str) -> Path:
    """A fresh temporary folder for one run's data root and SQLite file."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def pg_admin(url: str):
    """An autocommit connection to the `postgres` database of the server at `url`."""
    import psycopg
    from dj_database_url import parse

    cfg = parse(url.rstrip("/") + "/postgres")
    return psycopg.connect(
        dbname="postgres",
        user=cfg["USER"] or None,
        password=cfg["PASSWORD"] or None,
        host=cfg["HOST"] or None,
        port=cfg["PORT"] or None,
        autocommit=True,
    )


def create_pg_database(url: str, dbname: str) -> str:
    """A fresh database `dbname` on the server at `url` (dropped first if left over); its URL."""
    with pg_admin(url) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {dbname}")
    return url.rstrip("/") + "/" + dbname


def drop_pg_database(url: str, dbname: str) -> None:
    with pg_admin(url) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


def database_url(database: str, pg_url: str, dbname: str, tmp: Path) -> str:
    """The DATABASE_URL of a database of our own: a SQLite file in `tmp`, or a fresh PostgreSQL one."""
    if database == "sqlite":
        return f"sqlite:///{tmp / 'bench.sqlite3'}"
    return create_pg_database(pg_url, dbname)


def configure_environment(url: str, tmp: Path, unset: tuple[str, ...] = (), **extra: str) -> None:
    """Point Django at the database `url` and a data root under `tmp`, production-like (no debug,
    no broker); `extra` adds or overrides variables, `unset` removes more of them."""
    warnings.filterwarnings("ignore", message="No directory at")  # no collected static files: not needed
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "monitor.settings",
            "DATABASE_URL": url,
            "KOALA_DATA_DIR": str(tmp / "data"),
            "KOALA_MANIFEST_STATIC": "0",  # no collectstatic needed for {% static %}
            "DEBUG": "0",  # production-like: no query log, no debug templates
            "CELERY_BROKER_URL": "",
            "LOG_LEVEL": "WARNING",
            **extra,
        }
    )
    for name in (*DATA_DIR_VARIABLES, *unset):
        os.environ.pop(name, None)


def remove_scratch(
    tmp: Path, database: str, pg_url: str, dbname: str, url: str | None, keep_root=False, keep_db=False
) -> None:
    """Remove the run's data root (unless `keep_root`) and its PostgreSQL database, if one was made
    (`url` set) and not `keep_db`."""
    close_django_connections()
    if not keep_root:
        shutil.rmtree(tmp, ignore_errors=True)
    if database == "postgres" and url and not keep_db:
        drop_pg_database(pg_url, dbname)


# ------------------------------------------------------------------------------------------------
# Django


def django_setup() -> None:
    import django

    django.setup()


def migrate() -> float:
    """Run the migrations on the (empty) database; returns the seconds they took."""
    from django.core.management import call_command

    t0 = time.perf_counter()
    call_command("migrate", verbosity=0, interactive=False)
    return time.perf_counter() - t0


def register_demo_models() -> list:
    """Register and activate the demo ensemble; returns its models' manifests."""
    from liveness.manifest import load_manifest
    from monitor.registry import register_manifest

    register_manifest(DEMO_MANIFEST, activate=True)
    return list(load_manifest(DEMO_MANIFEST).models)


def close_django_connections() -> None:
    """Close Django's database connections, if Django is set up (a database is dropped without them)."""
    try:
        from django.db import connections

        connections.close_all()
    except Exception:  # noqa: BLE001 - django may not be set up
        pass


# ------------------------------------------------------------------------------------------------
# what ran where


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def command_line(module: str) -> str:
    """How this run was started, as `python -m <module> <its arguments>`, for the result's JSON."""
    return " ".join([Path(sys.executable).name, "-m", module, *sys.argv[1:]])


def git(*args: str) -> str:
    """The output of a read-only git command in the repository ("" without git)."""
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


# ------------------------------------------------------------------------------------------------
# the result


def write_json(result: dict, out: str | Path) -> Path:
    """Write `result` as JSON to `out` (relative to the repository root); returns the path written."""
    out = Path(out)
    if not out.is_absolute():
        out = ROOT / out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return out


def run_and_write(bench: Callable[[], dict], report: Callable[[dict], None], out: str | Path) -> int:
    """Run `bench`, print its `report`, write the result (with its total time) as JSON to `out`
    (relative to the repository root)."""
    t0 = time.perf_counter()
    result = bench()
    result["total_seconds"] = round(time.perf_counter() - t0, 1)
    report(result)
    out = write_json(result, out)
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    print(f"\nwrote {shown} (total {result['total_seconds']:.0f} s)")
    return 0
