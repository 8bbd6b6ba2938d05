"""The scoring library is plain Python: importing it must not pull in Django (workers, scripts)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import liveness

ROOT = Path(__file__).resolve().parents[2]


def library_modules() -> list[str]:
    """Every module of the package, walked (a new module is checked without being listed here);
    the tests are no part of what workers import."""
    names = [m.name for m in pkgutil.walk_packages(liveness.__path__, "liveness.")]
    return sorted(n for n in names if not n.startswith("liveness.tests"))


def test_it_walks_every_module_of_the_library():
    names = library_modules()
    assert {"liveness.detect", "liveness.speed", "liveness.pipeline", "liveness.metrics"} <= set(names)
    assert len(names) == len(list((ROOT / "liveness").glob("*.py"))) - 1  # every file but __init__


def test_it_imports_the_scoring_library_without_django():
    code = (
        "import sys; "
        + "; ".join(f"import {m}" for m in library_modules())
        + "; bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'));"
        " assert not bad, bad; print('ok')"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}  # no DJANGO_SETTINGS_MODULE either
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
