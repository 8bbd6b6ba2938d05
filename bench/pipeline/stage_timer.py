"""The in-process reference runs of `runs.run_day`, one of them timed per stage by wrapping
library functions from the outside (no production code is changed)."""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections import defaultdict
from contextlib import contextmanager

from bench.pipeline.config import DAY_INPROC, DAY_PROFILE
from bench.pipeline.procs import rusage, rusage_per_image


class StageTimer:
    """Wraps functions from the outside; records time per call path, exclusive of wrapped callees."""

    def __init__(self):
        self.stack: list[list] = []  # [name, time spent in wrapped callees]
        self.excl: dict[tuple, float] = defaultdict(float)
        self.calls: dict[tuple, int] = defaultdict(int)

    def wrap(self, name, fn):
        timer = self

        @functools.wraps(fn)
        def wrapper(*a, **k):
            timer.stack.append([name, 0.0])
            key = tuple(s[0] for s in timer.stack)
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent = time.perf_counter() - t0
                _, inner = timer.stack.pop()
                timer.excl[key] += spent - inner
                timer.calls[key] += 1
                if timer.stack:
                    timer.stack[-1][1] += spent

        return wrapper

    @contextmanager
    def patched(self, targets):
        """targets: (owner, attribute, stage name); a missing attribute is skipped."""
        saved = []
        for owner, attr, name in targets:
            fn = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
            if fn is None:
                continue
            saved.append((owner, attr, fn))
            setattr(owner, attr, self.wrap(name, fn))
        try:
            yield self
        finally:
            for owner, attr, fn in reversed(saved):
                setattr(owner, attr, fn)


class _TimedHashlib:
    """Stands in for `hashlib` in monitor.runs so that its sha256 calls are timed."""

    def __init__(self, timer):
        import hashlib

        self._h = hashlib
        self.sha256 = timer.wrap("sha256", hashlib.sha256)

    def __getattr__(self, name):
        return getattr(self._h, name)


CATEGORY = {
    "read": "read files + sha256",
    "sha256": "read files + sha256",
    "sidecar": "sidecar parse",
    "decode": "decode",
    "thumbnail": "thumbnail (resize in memory)",
    "quality": "quality (blur, pose)",
    "crop": "crop (3 models)",
    "crop_rect": "crop (3 models)",
    "to_tensor": "inference",
    "onnx": "inference",
    "probabilities": "inference",
    "store": "database (rows, claims, labels)",
    "claim": "database (rows, claims, labels)",
    "labels": "database (rows, claims, labels)",
    "sql": "database (rows, claims, labels)",
    "write_files": "file writes (link, thumbnail JPEG)",
    "link": "file writes (link, thumbnail JPEG)",
    "jpeg_save": "file writes (link, thumbnail JPEG)",
    "atomic_write": "file writes (link, thumbnail JPEG)",
}
ORDER = [
    "read files + sha256",
    "sidecar parse",
    "decode",
    "thumbnail (resize in memory)",
    "quality (blur, pose)",
    "crop (3 models)",
    "inference",
    "database (rows, claims, labels)",
    "file writes (link, thumbnail JPEG)",
    "discover",
    "finish_run (metrics, alerts)",
    "other (python glue)",
]


def category(key: tuple) -> str:
    if "finish_run" in key:
        return "finish_run (metrics, alerts)"
    if "discover" in key:
        return "discover"
    leaf = key[-1]
    if leaf == "copy":
        return "decode" if "decode" in key else "thumbnail (resize in memory)"
    if leaf == "sql" and "write_files" in key:
        return "file writes (link, thumbnail JPEG)"  # its UPDATE of sorted_path / has_thumbnail
    return CATEGORY.get(leaf, "other (python glue)")


def _targets() -> list[tuple]:
    """The functions the stage timer wraps: (owner, attribute, stage name)."""
    from PIL import Image as PILImage

    import liveness.pipeline as lp
    from liveness.runtime import LivenessModel
    from monitor import alerts, daily, folders, labels, runs

    # each name where its caller looks it up: run_day and score_batch call them from monitor.runs
    return [
        (runs, "discover", "discover"),
        (runs, "score_batch", "score_batch"),
        (runs, "finish_run", "finish_run"),
        (runs, "claim", "claim"),
        (runs, "_read", "read"),
        (runs, "_store_all", "store"),
        (runs, "_image_fields", "store"),
        (runs, "write_files", "write_files"),
        (folders, "link_or_copy", "link"),
        (folders, "atomic_write", "atomic_write"),
        (labels, "record_sidecar_labels", "labels"),
        (daily, "compute_day", "compute_day"),
        (alerts, "evaluate_day", "evaluate_day"),
        (lp.Pipeline, "analyse", "analyse"),
        (lp, "parse_sidecar", "sidecar"),
        (lp, "decode_image", "decode"),
        (lp, "assess", "quality"),
        (lp, "crop_face", "crop"),
        (lp.Pipeline, "crop_pixels", "crop"),  # the array the OpenCV crops read
        (lp, "crop_rect", "crop_rect"),
        (LivenessModel, "probabilities", "probabilities"),
        (LivenessModel, "to_tensor", "to_tensor"),
        (LivenessModel, "_run", "onnx"),
        (PILImage.Image, "copy", "copy"),
        (lp, "thumbnail", "thumbnail"),
        (PILImage.Image, "save", "jpeg_save"),
    ]


def _plain_run(day: dt.date, threads: int) -> dict:
    from monitor import runs

    t0, c0 = time.perf_counter(), time.process_time()
    run = runs.run_day(day, trigger="bench")
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "images": run.total,
        "seconds": round(secs, 3),
        "rate": round(run.total / secs, 1),
        "threads": threads,
        "cpu_ms_per_image": round(cpu * 1000 / run.total, 2),
    }


def _timed_run(day: dt.date, timer: StageTimer) -> tuple[int, float, float, tuple, tuple]:
    """run_day with every target wrapped, sha256 and SQL statements too: (images, seconds, CPU
    seconds, rusage before, after)."""
    from django.db import connection

    from monitor import runs

    targets = _targets()
    real_hashlib = runs.hashlib
    runs.hashlib = _TimedHashlib(timer)
    sql = timer.wrap("sql", lambda execute, sql, params, many, context: execute(sql, params, many, context))
    try:
        with timer.patched(targets), connection.execute_wrapper(sql):
            t0, c0, r0 = time.perf_counter(), time.process_time(), rusage()
            run = timer.wrap("run_day", runs.run_day)(day, trigger="bench")
            secs, cpu, r1 = time.perf_counter() - t0, time.process_time() - c0, rusage()
    finally:
        runs.hashlib = real_hashlib
    return run.total, secs, cpu, r0, r1


def _profile(day: dt.date, threads: int, timer: StageTimer) -> dict:
    n, secs, cpu, r0, r1 = _timed_run(day, timer)
    cats: dict[str, float] = defaultdict(float)
    for key, s in timer.excl.items():
        cats[category(key)] += s
    sql_calls = sum(
        c for k, c in timer.calls.items() if k[-1] == "sql" and "finish_run" not in k and "discover" not in k
    )
    stages = {c: {"ms_per_image": round(cats[c] * 1000 / n, 2), "share": round(cats[c] / secs, 3)} for c in ORDER}
    paths = sorted(timer.excl.items(), key=lambda kv: -kv[1])
    return {
        "images": n,
        "seconds": round(secs, 3),
        "rate": round(n / secs, 1),
        "threads": threads,
        "cpu_ms_per_image": round(cpu * 1000 / n, 2),
        **rusage_per_image(r0, r1, n),
        "stages": stages,
        "sql_statements_per_image": round(sql_calls / n, 1),
        "top_paths": [
            {"path": "/".join(k[1:]), "ms_per_image": round(s * 1000 / n, 2), "calls": timer.calls[k]}
            for k, s in paths[:25]
        ],
    }


def inprocess(day: dt.date, threads: int, timer: StageTimer | None = None) -> dict:
    """runs.run_day in this process, onnxruntime with `threads` (0 = its default)."""
    from django.conf import settings

    from monitor import loading

    settings.KOALA_ORT_THREADS = threads
    loading.clear_caches()
    loading.load_ensemble(loading.active_ensemble())
    if timer is None:
        return _plain_run(day, threads)
    return _profile(day, threads, timer)


def inprocess_runs(args) -> tuple[dict, dict]:
    """The two reference runs on the copied days: (their rates by ORT threads, the stage profile)."""
    print(f"in-process run_day, {args.inprocess_images} images, onnxruntime default threads ...", flush=True)
    inproc = {"0 (default)": inprocess(DAY_INPROC, 0)}
    print(f"  {inproc['0 (default)']['rate']}/s\nin-process run_day, 1 thread, timed per stage ...", flush=True)
    profile = inprocess(DAY_PROFILE, 1, StageTimer())
    inproc["1 (timed per stage)"] = {
        k: profile[k] for k in ("images", "seconds", "rate", "threads", "cpu_ms_per_image")
    }
    print(f"  {profile['rate']}/s")
    return inproc, profile
