"""The scoring library is plain Python: importing it must not pull in Django (workers, scripts)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = [
    "boxes",
    "crop",
    "decode",
    "demo",
    "ensemble",
    "manifest",
    "metrics",
    "pipeline",
    "quality",
    "runtime",
    "scorefile",
    "sidecar",
]


def test_it_imports_the_scoring_library_without_django():
    code = (
        "import sys; "
        + "; ".join(f"import liveness.{m}" for m in MODULES)
        + "; bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'));"
        " assert not bad, bad; print('ok')"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}  # no DJANGO_SETTINGS_MODULE either
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
