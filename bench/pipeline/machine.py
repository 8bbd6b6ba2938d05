"""What ran where: the machine, the library versions and the state of the daily job's code."""

from __future__ import annotations

import datetime as dt
import os
import platform

from bench._common import ROOT, cpu_model, git

CODE_FILES = [
    "monitor/discovery.py",
    "monitor/claims.py",
    "monitor/runs.py",
    "monitor/folders.py",
    "liveness/pipeline.py",
    "liveness/decode.py",
    "liveness/crop.py",
    "liveness/quality.py",
    "liveness/runtime.py",
]


def code_state() -> dict:
    """The commit and a digest of the files the daily job runs: runs are comparable when these match."""
    import hashlib

    changed = set(git("status", "--porcelain", "--", *CODE_FILES).split())
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "files": {
            f: hashlib.sha256((ROOT / f).read_bytes()).hexdigest()[:12]
            + (" (uncommitted changes)" if f in changed else "")
            for f in CODE_FILES
            if (ROOT / f).is_file()
        },
    }


def machine() -> dict:
    import onnxruntime
    import PIL
    from django.db import connection

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "loadavg_at_end": os.getloadavg(),
        "code": code_state(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "pillow": PIL.__version__,
        "database": connection.vendor,
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
