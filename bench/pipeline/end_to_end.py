"""The daily job end to end: a pool of worker processes like `celery worker --concurrency N`
scoring the day's batches, and each worker's memory along the way."""

from __future__ import annotations

import math
import os
import statistics
import time
import warnings

import numpy as np

from bench._common import django_setup
from bench.pipeline.config import DAY_E2E
from bench.pipeline.procs import proc_mem, rusage, rusage_per_image, spawn_pool

FLAT_GROWTH = 0.10  # worker RSS may grow at most 10 % from 20 % of the batches to the end


def _worker_init(threads: int):
    warnings.filterwarnings("ignore")
    os.environ["KOALA_ORT_THREADS"] = str(threads)
    django_setup()
    from monitor import loading

    loading.load_ensemble(loading.active_ensemble())  # sessions loaded before the clock starts


def _worker_ready(_):
    time.sleep(0.3)
    return os.getpid(), proc_mem()


def _worker_batch(job):
    from django.db import OperationalError

    from monitor import runs

    run_id, ids = job
    t0, c0, r0 = time.time(), time.process_time(), rusage()
    retries, error = 0, ""
    while True:
        try:
            res = runs.score_batch(run_id, ids)
            break
        except OperationalError as exc:  # Celery retries these (tasks.TRANSIENT) with a backoff
            error = str(exc)
            if not ("locked" in error or "busy" in error) or retries >= 6:
                res = {"files": 0, "stored": 0}
                break
            retries += 1
            time.sleep(0.2 * 2**retries)
    return {
        **res,
        "pid": os.getpid(),
        "t0": t0,
        "t1": time.time(),
        "cpu_s": time.process_time() - c0,
        "rusage": [b - a for a, b in zip(r0, rusage(), strict=True)],
        "retries": retries,
        "error": error,
        **proc_mem(),
    }


def _score_day(args, ctx, batch_size: int) -> tuple[dict, list[dict], int, dict]:
    """start_run + discover, the batches in the pool, finish_run: (worker memory when ready, the
    batches' results, images, clock marks)."""
    from monitor import db, discovery, runs

    with spawn_pool(ctx, args.workers, args.worker_env, _worker_init, (args.ort_threads,)) as pool:
        ready = dict(pool.map(_worker_ready, range(args.workers * 2), chunksize=1))
        t_run = time.perf_counter()
        run = runs.start_run(DAY_E2E, trigger="bench")
        ids = discovery.discover(run)
        t0 = time.perf_counter()
        results = []
        done = 0
        for res in pool.imap_unordered(_worker_batch, [(run.pk, b) for b in db.chunks(ids, batch_size)]):
            results.append(res)
            done += res.get("files", 0)
            if len(results) % 5 == 0:
                print(f"  {done}/{len(ids)} images ({time.perf_counter() - t0:.0f} s)", flush=True)
        t_batches = time.perf_counter()
        runs.finish_run(run.pk, [{k: r[k] for k in ("score_s",) if k in r} for r in results])
        t_end = time.perf_counter()
    results.sort(key=lambda r: r["t1"])
    return ready, results, len(ids), {"run": t_run, "start": t0, "batches": t_batches, "end": t_end}


def _worker_memory(ready: dict, results: list[dict]) -> dict:
    """Each worker after its warm-up, after 20 % of the batches, at the end; its peak."""
    k20 = max(1, math.ceil(0.2 * len(results)))
    workers = {}
    for pid, mem in ready.items():
        mine = [(k, r) for k, r in enumerate(results, 1) if r["pid"] == pid]
        if not mine:
            continue
        early = [r for k, r in mine if k <= k20] or [mine[0][1]]
        imgs = np.cumsum([r["files"] for _, r in mine])
        # the slope after the first 20 %: the first batches grow the heap and onnxruntime's arena once
        tail = [(n_, r["rss_mb"]) for n_, (k, r) in zip(imgs, mine, strict=True) if k >= k20]
        slope = float(np.polyfit(*zip(*tail, strict=True), 1)[0]) * 1000 if len(tail) >= 3 else 0.0
        workers[str(pid)] = {
            "batches": len(mine),
            "images": int(imgs[-1]),
            "rss_ready_mb": mem["rss_mb"],
            "rss_at_20pct_mb": early[-1]["rss_mb"],
            "rss_end_mb": mine[-1][1]["rss_mb"],
            "peak_mb": max(r["hwm_mb"] for _, r in mine),
            "growth_mb": round(mine[-1][1]["rss_mb"] - early[-1]["rss_mb"], 1),
            "mb_per_1000_images": round(slope, 2),
            "rss_after_each_batch_mb": [r["rss_mb"] for _, r in mine],
        }
    flat = all(w["growth_mb"] <= FLAT_GROWTH * w["rss_at_20pct_mb"] for w in workers.values())
    return {"workers": workers, "flat": flat, "rule": f"growth (end - at 20 % of batches) <= {FLAT_GROWTH:.0%}"}


def _stored() -> tuple[dict, dict]:
    """What the run left: (inbox statuses, the check of rows, categories, thumbnails and links)."""
    from django.conf import settings
    from django.db.models import Count

    from monitor.models import Image, InboxFile

    statuses = dict(InboxFile.objects.filter(day=DAY_E2E).values_list("status").annotate(n=Count("id")).order_by())
    stored = Image.objects.filter(day=DAY_E2E)
    thumbs = sum(1 for p in settings.THUMBS_DIR.rglob("*.jpg"))
    links = sum(1 for p in (settings.SORTED_DIR / DAY_E2E.isoformat()).rglob("*") if p.is_file())
    return statuses, {
        "inbox_status": statuses,
        "rows": stored.count(),
        "categories": dict(stored.values_list("category").annotate(n=Count("id")).order_by()),
        "thumbnails": thumbs,
        "sorted_links": links,
    }


def end_to_end(args, ctx) -> dict:
    from django.conf import settings

    from monitor.models import InboxFile

    batch_size = settings.KOALA_BATCH_SIZE
    ready, results, n, t = _score_day(args, ctx, batch_size)
    memory = _worker_memory(ready, results)
    statuses, check = _stored()
    busy = [r["t1"] - r["t0"] for r in results]
    cpu = sum(r["cpu_s"] for r in results)
    return {
        "valid": check["rows"] == n and not statuses.get(InboxFile.PENDING),
        "images": n,
        "batches": len(results),
        "batch_size": batch_size,
        "workers": args.workers,
        "ort_threads": args.ort_threads,
        "discover_s": round(t["start"] - t["run"], 3),
        "batches_s": round(t["batches"] - t["start"], 3),
        "finish_s": round(t["end"] - t["batches"], 3),
        "seconds": round(t["end"] - t["start"], 3),
        "rate": round(n / (t["end"] - t["start"]), 1),
        "rate_with_discover": round(n / (t["end"] - t["run"]), 1),
        "rate_batches_only": round(n / (t["batches"] - t["start"]), 1),
        "batch_s_median": round(statistics.median(busy), 3),
        "cpu_s": round(cpu, 3),
        "cpu_share": round(cpu / ((t["batches"] - t["start"]) * args.workers), 2),
        "rate_cpu": round(n / cpu * args.workers, 1) if cpu else None,
        **rusage_per_image((0, 0, 0), [sum(r["rusage"][j] for r in results) for j in range(3)], n),
        "retries": sum(r["retries"] for r in results),
        "errors": sorted({r["error"] for r in results if r["error"]}),
        "check": check,
        "memory": memory,
    }
