"""Daily-job throughput benchmark (issue 7, items 1-4): the decode ceiling, the inference ceiling
of the active ensemble, their combined ceiling, the daily job end to end on all cores, the worker
processes' memory, and where the time of one image goes.

    python -m bench.pipeline [--images 1500] [--json bench/results/pipeline.json]
                             [--big-share 0.3] [--workers N] [--batch-size 64] [--ort-threads 1]
                             [--database sqlite|postgres] [--inprocess-images 400] [--keep]

It never touches the user's data: a temporary data root (inbox, sorted, thumbs, models) and a
temporary SQLite file (or a fresh PostgreSQL database `koala_bench_pipeline`). Steps:

1. generate an inbox day of N JPEGs (a mix of 640x480 and 1920x1080, `liveness.demo.render_sample`;
   each capture rendered once and written 6 times, as rendered and mirrored, at three JPEG
   qualities; kept in a cache folder for the next run) with sidecars (face box, landmarks, capture time; 30 % labelled; no blur and no
   pose: the blur is measured, the pose estimated from the landmarks);
2. decode ceiling: `decode_image` on those files (read + decode) in one process per core, as the
   pipeline does now (full size) and with a draft (reduced) JPEG decode chosen per image so that
   every crop and the thumbnail keep at least their output size in pixels;
3. inference ceiling: the ensemble's models (`LivenessModel.probabilities`) on uint8 crops at batch
   1, 8, 32, 64, as N processes x 1 onnxruntime thread, 1 process x N threads and N x N;
4. end to end: `services.start_run` + `discover`, then a pool of N worker processes (like
   `celery worker --concurrency N` with KOALA_ORT_THREADS=1, docker-compose) each calling
   `services.score_batch` on KOALA_BATCH_SIZE ids, then `finish_run`; the rate is images / (first
   batch sent .. finish_run done); each worker's VmRSS / VmHWM after every batch;
5. in-process reference runs (`services.run_day` on copies of the first images, bytes changed by a
   trailer after the JPEG end so they are new images): onnxruntime default threads (what
   `manage.py score_day` does) and 1 thread (a worker's share), the latter timed per stage by
   wrapping library functions from the outside (no production code is changed);
6. what-ifs on a sample of the files, one process: per-stage cost of the full-size path vs the
   draft path, with the score differences, and row-by-row vs bulk SQL.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import io
import json
import math
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bench._common import ROOT, close_django_connections, run_and_write
from liveness.pipeline import THUMB_SIDE, thumbnail
from liveness.quality import BLUR_SIDE  # the face region is resized to this for the blur measure

warnings.filterwarnings("ignore", message="No directory at")

MANIFEST = ROOT / "liveness" / "demo_models" / "demo.toml"
PG_DEFAULT = "postgres://postgres@127.0.0.1:5432/"
PG_DBNAME = "koala_bench_pipeline"
TARGET_RATIO = 0.85  # end to end / combined ceiling (issue 7)
FLAT_GROWTH = 0.10  # worker RSS may grow at most 10 % from 20 % of the batches to the end

DAY_E2E = dt.date(2026, 11, 10)  # the big day, scored by the worker pool
DAY_INPROC = dt.date(2026, 11, 11)  # copies, scored in-process with onnxruntime's default threads
DAY_PROFILE = dt.date(2026, 11, 12)  # copies, scored in-process with 1 thread, timed per stage
BATCH_SIZES = (1, 8, 32, 64)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1500, help="images of the generated day (default 1500)")
    p.add_argument("--big-share", type=float, default=0.3, help="share of 1920x1080 images (the rest 640x480)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    p.add_argument("--batch-size", type=int, default=None, help="files per score_batch (default KOALA_BATCH_SIZE)")
    p.add_argument(
        "--ort-threads", type=int, default=1, help="onnxruntime threads per worker process (default 1, docker-compose)"
    )
    p.add_argument(
        "--inprocess-images",
        type=int,
        default=300,
        help="images of each in-process reference run (copies of the first ones; default 300)",
    )
    p.add_argument("--whatif-images", type=int, default=40, help="images per size in the what-if sample")
    p.add_argument("--seconds", type=float, default=1.5, help="measuring window per inference configuration")
    p.add_argument(
        "--ceiling-decode",
        choices=["pipeline", "best", "full", "draft"],
        default="pipeline",
        help="decode of the combined ceiling: as Pipeline decodes (its own draft rule; default), the best"
        " variant measured, full size, or the looser draft rule (crops >= 1x the model input)",
    )
    p.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--pg-url", default=PG_DEFAULT, help=f"PostgreSQL server (default {PG_DEFAULT})")
    p.add_argument("--json", default="bench/results/pipeline.json", help="result file")
    p.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="experiment: an environment variable for the end-to-end worker processes only, e.g."
        " PILLOW_BLOCKS_MAX=16 or MALLOC_MMAP_THRESHOLD_=67108864 (repeatable; recorded in the JSON)",
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--cache",
        default=str(Path(tempfile.gettempdir()) / "koala-bench-images"),
        help="folder keeping the generated images for the next run (default: <temp>/koala-bench-images)",
    )
    p.add_argument("--no-cache", action="store_true", help="render the images again, keep nothing")
    p.add_argument("--keep", action="store_true", help="keep the temporary data root / database (path printed)")
    args = p.parse_args(argv)
    if args.images < 20:
        p.error("--images must be at least 20")
    args.inprocess_images = max(0, min(args.inprocess_images, args.images))
    args.workers = max(1, args.workers)
    try:
        args.worker_env = dict(kv.split("=", 1) for kv in args.worker_env)
    except ValueError:
        p.error("--worker-env takes NAME=VALUE")
    return args


# ------------------------------------------------------------------------------------------------
# environment (before django.setup())


def _pg_admin(url: str):
    from bench.gallery import _pg_admin as admin

    return admin(url)


def configure_environment(args, tmp: Path) -> str:
    if args.database == "sqlite":
        url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    else:
        with _pg_admin(args.pg_url) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_DBNAME} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {PG_DBNAME}")
        url = args.pg_url.rstrip("/") + "/" + PG_DBNAME
    os.environ.update(
        DJANGO_SETTINGS_MODULE="monitor.settings",
        DATABASE_URL=url,
        KOALA_DATA_DIR=str(tmp / "data"),
        KOALA_SETTLE_SECONDS="0",  # the files were written just now
        KOALA_MANIFEST_STATIC="0",
        DEBUG="0",
        CELERY_BROKER_URL="",
        LOG_LEVEL="WARNING",
    )
    if args.batch_size:
        os.environ["KOALA_BATCH_SIZE"] = str(args.batch_size)
    for name in (
        "KOALA_INBOX_DIR",
        "KOALA_SORTED_DIR",
        "KOALA_THUMBS_DIR",
        "KOALA_MODELS_DIR",
        "KOALA_ORT_THREADS",
        "KOALA_FACE_DETECTOR",
    ):
        os.environ.pop(name, None)  # the in-process run uses the default threads (0: onnxruntime's own)
    return url


def drop_pg_database(url: str) -> None:
    with _pg_admin(url) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DBNAME} WITH (FORCE)")


def rusage() -> tuple[float, float, int]:
    """(user s, system s, minor page faults) of this process so far."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt


def rusage_per_image(before, after, images: int) -> dict:
    if not images:
        return {}
    return {
        "user_ms_per_image": round((after[0] - before[0]) * 1000 / images, 2),
        "sys_ms_per_image": round((after[1] - before[1]) * 1000 / images, 2),
        "minor_faults_per_image": round((after[2] - before[2]) / images),
    }


def proc_mem() -> dict:
    """This process's resident memory now and at its peak (MB), from /proc/self/status."""
    vals = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":", 1)
                    vals[k] = int(v.split()[0]) / 1024
    except OSError:
        import resource

        vals["VmHWM"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rss_mb": round(vals.get("VmRSS", 0.0), 1), "hwm_mb": round(vals.get("VmHWM", 0.0), 1)}


# ------------------------------------------------------------------------------------------------
# the images


VARIANTS = 6  # files per rendered capture: as rendered / mirrored, each at three JPEG qualities


def _render(job):
    """One capture, rendered once, as VARIANTS files (mirrored or not, other JPEG qualities: other
    bytes, the same decoding and inference work). Runs in a pool; returns
    [(index, big, jpeg bytes, sidecar bytes, box)]."""
    from PIL import ImageOps

    from liveness.demo import render_sample

    base, seed, big, count = job
    rng = np.random.default_rng([seed, base, 0x7B])
    size = (1920, 1080) if big else (640, 480)
    W = size[0]
    attack = rng.random() < 0.12
    face = rng.uniform(110, 340) if big else rng.uniform(120, 300)  # some faces below the 130 px gate
    s = render_sample(rng, label="attack" if attack else "genuine", size=size, face_size=face)
    out = []
    for v in range(count):
        mirror = v % 2 == 1
        img = ImageOps.mirror(s.image) if mirror else s.image
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=(84, 88, 92)[v // 2 % 3])
        x = W - s.box.x - s.box.w if mirror else s.box.x
        lms = [(W - px if mirror else px, py) for px, py in s.landmarks]
        if mirror:  # image-left eye / mouth corner first
            lms = [lms[1], lms[0], lms[2], lms[4], lms[3]]
        t = dt.datetime.combine(DAY_E2E, dt.time(7), dt.UTC) + dt.timedelta(seconds=int(rng.integers(15 * 3600)))
        face_box = {"x": round(x), "y": round(s.box.y), "w": round(s.box.w), "h": round(s.box.h)}
        side = {
            "captured_at": t.isoformat(),
            "face": face_box,
            "landmarks": [[round(px, 1), round(py, 1)] for px, py in lms],
        }
        if rng.random() < 0.3:
            side["label"] = s.label
            if s.attack_type:
                side["attack_type"] = s.attack_type
        box = (face_box["x"], face_box["y"], face_box["w"], face_box["h"])
        out.append((base * VARIANTS + v, big, buf.getvalue(), (json.dumps(side, indent=1) + "\n").encode(), box))
    return out


def _init_quiet():
    warnings.filterwarnings("ignore")


# Pillow frees the memory of every image (PILLOW_BLOCKS_MAX=0): a decode loop then page-faults fresh
# memory for each image; with a few cached blocks it reuses them (read by Pillow when it is imported)
BLOCK_CACHE_ENV = {"PILLOW_BLOCKS_MAX": "16"}


def spawn_pool(ctx, processes: int, env: dict, initializer=_init_quiet, initargs=()):
    """A pool whose processes start with `env` added to the environment (glibc and Pillow read
    theirs at start / import)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return ctx.Pool(processes, initializer=initializer, initargs=initargs)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def generate(args, inbox: Path, ctx) -> tuple[list[dict], str]:
    """Write the day's files into the inbox (from the cache when it has them); returns one dict
    per image (path, size, box) and where they came from."""
    cache = None if args.no_cache else Path(args.cache) / f"seed{args.seed}-n{args.images}-big{args.big_share:g}"
    listing = cache / f"files-v{VARIANTS}.json" if cache else None
    if listing and listing.is_file():
        files = json.loads(listing.read_text())
        for f in files:
            for suffix in (".jpg", ".json"):
                src, dst = (cache / f["rel"]).with_suffix(suffix), (inbox / f["rel"]).with_suffix(suffix)
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
            f["path"] = str(inbox / f["rel"])
        return files, f"from the cache {cache}"
    files = render_files(args, inbox, ctx)
    if cache:
        for f in files:
            for suffix in (".jpg", ".json"):
                src, dst = (inbox / f["rel"]).with_suffix(suffix), (cache / f["rel"]).with_suffix(suffix)
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.unlink(missing_ok=True)
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
        listing.write_text(json.dumps([{k: v for k, v in f.items() if k != "path"} for f in files]))
        return files, f"rendered, kept in {cache}"
    return files, "rendered"


def render_files(args, inbox: Path, ctx) -> list[dict]:
    rng = np.random.default_rng(args.seed)
    n_base = math.ceil(args.images / VARIANTS)
    big = rng.random(n_base) < args.big_share
    jobs = [(b, args.seed, bool(big[b]), min(VARIANTS, args.images - b * VARIANTS)) for b in range(n_base)]
    files: list[dict] = [None] * args.images  # type: ignore[list-item]
    t0 = time.perf_counter()
    n = 0
    with ctx.Pool(args.workers, initializer=_init_quiet) as pool:
        for rendered in pool.imap_unordered(_render, jobs):
            for i, is_big, data, side, box in rendered:
                device = f"gate-{i % 2 + 1:02d}" if is_big else f"cam-{i % 4 + 1:02d}"
                rel = Path(DAY_E2E.isoformat()) / device / f"IMG_{i:06d}.jpg"
                path = inbox / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                path.with_suffix(".json").write_bytes(side)
                w, h = (1920, 1080) if is_big else (640, 480)
                files[i] = {"path": str(path), "rel": rel.as_posix(), "big": is_big, "w": w, "h": h, "box": box}
                n += 1
                if n % 300 == 0 or n == args.images:
                    print(f"  generated {n}/{args.images} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return files


def copy_day(files: list[dict], inbox: Path, day: dt.date, n: int) -> None:
    """The first n files again under another day, each with a trailer after the JPEG end marker:
    decoders ignore it, the sha256 differs, so they are new images to the job."""
    for f in files[:n]:
        src = Path(f["path"])
        dst = inbox / day.isoformat() / Path(f["rel"]).relative_to(DAY_E2E.isoformat())
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes() + f"koala-bench-{day.isoformat()}".encode())
        shutil.copyfile(src.with_suffix(".json"), dst.with_suffix(".json"))


def draft_min_side(models, box, w: int, h: int) -> int | None:
    """`decode_image(min_side=...)` for the largest JPEG reduction (1/2, 1/4, 1/8) that keeps every
    model's crop at least its input size in pixels, the face region at least BLUR_SIDE px (the
    blur measure resizes it to that) and the thumbnail THUMB_SIDE px. None: decode at full size."""
    from liveness.boxes import Box
    from liveness.crop import crop_rect

    b = Box(*box)
    limit = min(max(w, h) / THUMB_SIDE, b.w / BLUR_SIDE, b.h / BLUR_SIDE)
    for m in models:
        x0, y0, x1, y1 = crop_rect(m.crop, b, w, h)
        ih, iw = m.size
        limit = min(limit, (x1 - x0) / iw, (y1 - y0) / ih)
    r = 1
    while r < 8 and r * 2 <= limit:
        r *= 2
    return min(w, h) // r if r > 1 else None


def pipeline_min_sides(files: list[dict]) -> str:
    """files[i]["min_side_pipeline"]: the reduction `Pipeline` itself chooses for the file (its
    `max_reduction` rule, from the sidecar box), as a `decode_image(min_side=...)`. Returns a note."""
    from liveness.boxes import Box
    from liveness.ensemble import Ensemble
    from liveness.manifest import load_manifest
    from liveness.pipeline import Pipeline
    from liveness.runtime import LivenessModel

    em = load_manifest(MANIFEST)
    ens = Ensemble(
        name=em.name, models=[LivenessModel(m, threads=1) for m in em.models], threshold=em.threshold, rule=em.rule
    )
    pipe = Pipeline(ens)
    rule = getattr(pipe, "max_reduction", None) if getattr(pipe, "draft", False) else None
    for f in files:
        r = 1
        if rule is not None:
            limit = rule(Box(*f["box"]))(f["w"], f["h"])
            while r < 8 and r * 2 <= limit:
                r *= 2
        f["min_side_pipeline"] = min(f["w"], f["h"]) // r if r > 1 else None
    return "Pipeline.max_reduction" if rule is not None else "full size (Pipeline has no draft rule)"


def reductions(files: list[dict], key: str) -> dict:
    out: dict[str, int] = defaultdict(int)
    for f in files:
        ms = f[key]
        out[f"{f['w']}x{f['h']} 1/{min(f['w'], f['h']) // ms if ms else 1}"] += 1
    return dict(sorted(out.items()))


# ------------------------------------------------------------------------------------------------
# ceilings (pool workers: no Django)


def _decode_chunk(job):
    from liveness.decode import decode_image

    c0, r0 = time.process_time(), rusage()
    for path, min_side in job:
        decode_image(Path(path).read_bytes(), min_side=min_side)
    r1 = rusage()
    return len(job), time.process_time() - c0, [b - a for a, b in zip(r0, r1, strict=True)]


def _ping(_):
    time.sleep(0.2)
    return os.getpid()


DECODE_RULE = {"pipeline": "min_side_pipeline", "full": None, "draft": "min_side"}


def decode_ceiling(pool, cores: int, files: list[dict], rule: str) -> dict:
    key = DECODE_RULE[rule]
    items = [(f["path"], f[key] if key else None) for f in files]
    pool.map(_decode_chunk, [items[i : i + 4] for i in range(0, min(len(items), 16), 4)])  # warm the page cache
    chunks = [items[i : i + 8] for i in range(0, len(items), 8)]
    t0 = time.perf_counter()
    res = list(pool.imap_unordered(_decode_chunk, chunks))
    wall = time.perf_counter() - t0
    cpu = sum(r[1] for r in res)
    use = [sum(r[2][k] for r in res) for k in range(3)]
    return {
        **rusage_per_image((0, 0, 0), use, len(items)),
        "images": len(items),
        "seconds": round(wall, 3),
        "rate": round(len(items) / wall, 1),
        "cpu_s": round(cpu, 3),
        "cpu_share": round(cpu / (wall * cores), 2),
        "rate_cpu": round(len(items) / cpu * cores, 1),
    }


def _infer_window(job):
    """Run the ensemble's models on random uint8 crops from start_at for `seconds`."""
    from liveness.manifest import load_manifest
    from liveness.runtime import LivenessModel

    manifest, batch, threads, start_at, seconds = job
    if (manifest, threads) not in _MODELS:  # loaded once per process
        _MODELS[(manifest, threads)] = [LivenessModel(m, threads=threads) for m in load_manifest(manifest).models]
    models = _MODELS[(manifest, threads)]
    rng = np.random.default_rng(os.getpid())
    crops = [rng.integers(0, 256, (batch, *m.manifest.size, 3), dtype=np.uint8) for m in models]
    per_model = [0.0] * len(models)
    for m, c in zip(models, crops, strict=True):  # warm-up: first runs allocate
        m.probabilities(c)
    time.sleep(max(0.0, start_at - time.time()))
    t_start, c0 = time.time(), time.process_time()
    n = 0
    while time.time() < t_start + seconds:
        for k, (m, c) in enumerate(zip(models, crops, strict=True)):
            t = time.perf_counter()
            m.probabilities(c)
            per_model[k] += time.perf_counter() - t
        n += batch
    end = time.time()
    return {
        "images": n,
        "start": t_start,
        "end": end,
        "cpu_s": time.process_time() - c0,
        "per_model_s": per_model,
        **proc_mem(),
    }


_MODELS: dict = {}


def inference_ceiling(args, ctx, models) -> dict:
    p = args.workers
    configs = [(f"{p} proc x 1 thread", p, 1)]
    if p > 1:
        configs.append((f"1 proc x {p} threads", 1, p))
        configs.append((f"{p} proc x {p} threads (oversubscribed)", p, p))
    table = {}
    names = [m.name for m in models]
    for label, procs, threads in configs:
        row = {}
        with ctx.Pool(procs, initializer=_init_quiet) as pool:
            pool.map(_ping, range(procs))
            for k, batch in enumerate(BATCH_SIZES):
                start_at = time.time() + (1.5 if k == 0 else 0.4)  # every process loaded and warmed up by then
                jobs = [(str(MANIFEST), batch, threads, start_at, args.seconds)] * procs
                res = pool.map(_infer_window, jobs, chunksize=1)
                rate = sum(r["images"] / (r["end"] - r["start"]) for r in res)
                imgs = sum(r["images"] for r in res)
                cpu = sum(r["cpu_s"] for r in res)
                wall = max(r["end"] for r in res) - min(r["start"] for r in res)
                share = {n: round(sum(r["per_model_s"][j] for r in res) * 1000 / imgs, 3) for j, n in enumerate(names)}
                row[batch] = {
                    "rate": round(rate, 1),
                    "cpu_share": round(cpu / (wall * p), 2),
                    "rate_cpu": round(imgs / cpu * p, 1),
                    "ms_per_image_per_model": share,
                    "rss_mb": max(r["rss_mb"] for r in res),  # batch sizes run in increasing order
                }
        table[label] = row
        print(f"  {label:38s} " + "  ".join(f"b{b}: {row[b]['rate']:6.1f}/s" for b in BATCH_SIZES), flush=True)
    best_label, best_batch = max(
        ((lbl, b) for lbl, row in table.items() for b in row), key=lambda k: table[k[0]][k[1]]["rate"]
    )
    return {
        "configs": {k: {str(b): v for b, v in row.items()} for k, row in table.items()},
        "best": {"config": best_label, "batch": best_batch, **table[best_label][best_batch]},
        "rate": table[best_label][best_batch]["rate"],
        "rate_cpu": table[best_label][best_batch]["rate_cpu"],
    }


# ------------------------------------------------------------------------------------------------
# end to end: a pool of worker processes like `celery worker --concurrency N`


def _worker_init(threads: int):
    warnings.filterwarnings("ignore")
    os.environ["KOALA_ORT_THREADS"] = str(threads)
    import django

    django.setup()
    from monitor import services

    services.load_ensemble(services.active_ensemble())  # sessions loaded before the clock starts


def _worker_ready(_):
    time.sleep(0.3)
    return os.getpid(), proc_mem()


def _worker_batch(job):
    from django.db import OperationalError

    from monitor import services

    run_id, ids = job
    t0, c0, r0 = time.time(), time.process_time(), rusage()
    retries, error = 0, ""
    while True:
        try:
            res = services.score_batch(run_id, ids)
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


def end_to_end(args, ctx) -> dict:
    from django.conf import settings
    from django.db.models import Count

    from monitor import services
    from monitor.models import Image, InboxFile

    batch_size = settings.KOALA_BATCH_SIZE
    with spawn_pool(ctx, args.workers, args.worker_env, _worker_init, (args.ort_threads,)) as pool:
        ready = dict(pool.map(_worker_ready, range(args.workers * 2), chunksize=1))
        t_run = time.perf_counter()
        run = services.start_run(DAY_E2E, trigger="bench")
        ids = services.discover(run)
        t0 = time.perf_counter()
        results = []
        done = 0
        for res in pool.imap_unordered(_worker_batch, [(run.pk, b) for b in services.chunks(ids, batch_size)]):
            results.append(res)
            done += res.get("files", 0)
            if len(results) % 5 == 0:
                print(f"  {done}/{len(ids)} images ({time.perf_counter() - t0:.0f} s)", flush=True)
        t_batches = time.perf_counter()
        services.finish_run(run.pk, [{k: r[k] for k in ("score_s",) if k in r} for r in results])
        t_end = time.perf_counter()
    n = len(ids)
    results.sort(key=lambda r: r["t1"])
    # memory: each worker after its warm-up, after 20 % of the batches, at the end; peak
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
    statuses = dict(InboxFile.objects.filter(day=DAY_E2E).values_list("status").annotate(n=Count("id")).order_by())
    stored = Image.objects.filter(day=DAY_E2E)
    thumbs = sum(1 for p in settings.THUMBS_DIR.rglob("*.jpg"))
    links = sum(1 for p in (settings.SORTED_DIR / DAY_E2E.isoformat()).rglob("*") if p.is_file())
    busy = [r["t1"] - r["t0"] for r in results]
    cpu = sum(r["cpu_s"] for r in results)

    rows = stored.count()
    return {
        "valid": rows == n and not statuses.get(InboxFile.PENDING),
        "images": n,
        "batches": len(results),
        "batch_size": batch_size,
        "workers": args.workers,
        "ort_threads": args.ort_threads,
        "discover_s": round(t0 - t_run, 3),
        "batches_s": round(t_batches - t0, 3),
        "finish_s": round(t_end - t_batches, 3),
        "seconds": round(t_end - t0, 3),
        "rate": round(n / (t_end - t0), 1),
        "rate_with_discover": round(n / (t_end - t_run), 1),
        "rate_batches_only": round(n / (t_batches - t0), 1),
        "batch_s_median": round(statistics.median(busy), 3),
        "cpu_s": round(cpu, 3),
        "cpu_share": round(cpu / ((t_batches - t0) * args.workers), 2),
        "rate_cpu": round(n / cpu * args.workers, 1) if cpu else None,
        **rusage_per_image((0, 0, 0), [sum(r["rusage"][j] for r in results) for j in range(3)], n),
        "retries": sum(r["retries"] for r in results),
        "errors": sorted({r["error"] for r in results if r["error"]}),
        "check": {
            "inbox_status": statuses,
            "rows": rows,
            "categories": dict(stored.values_list("category").annotate(n=Count("id")).order_by()),
            "thumbnails": thumbs,
            "sorted_links": links,
        },
        "memory": {"workers": workers, "flat": flat, "rule": f"growth (end - at 20 % of batches) <= {FLAT_GROWTH:.0%}"},
    }


# ------------------------------------------------------------------------------------------------
# in-process runs and the stage timer


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
    """Stands in for `hashlib` in monitor.services so that its sha256 calls are timed."""

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


def inprocess(day: dt.date, threads: int, timer: StageTimer | None = None) -> dict:
    """services.run_day in this process, onnxruntime with `threads` (0 = its default)."""
    from django.conf import settings
    from django.db import connection
    from PIL import Image as PILImage

    import liveness.pipeline as lp
    from liveness.runtime import LivenessModel
    from monitor import alerts, daily, labels, services

    settings.KOALA_ORT_THREADS = threads
    services._loaded.clear()
    services.load_ensemble(services.active_ensemble())
    if timer is None:
        t0, c0 = time.perf_counter(), time.process_time()
        run = services.run_day(day, trigger="bench")
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        return {
            "images": run.total,
            "seconds": round(secs, 3),
            "rate": round(run.total / secs, 1),
            "threads": threads,
            "cpu_ms_per_image": round(cpu * 1000 / run.total, 2),
        }

    targets = [
        (services, "discover", "discover"),
        (services, "score_batch", "score_batch"),
        (services, "finish_run", "finish_run"),
        (services, "_claim", "claim"),
        (services, "_read", "read"),
        (services, "_store", "store"),
        (services, "_store_all", "store"),
        (services, "_image_fields", "store"),
        (services, "write_files", "write_files"),
        (services, "_link_or_copy", "link"),
        (services, "atomic_write", "atomic_write"),
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
    real_hashlib = services.hashlib
    services.hashlib = _TimedHashlib(timer)
    sql = timer.wrap("sql", lambda execute, sql, params, many, context: execute(sql, params, many, context))
    try:
        with timer.patched(targets), connection.execute_wrapper(sql):
            t0, c0, r0 = time.perf_counter(), time.process_time(), rusage()
            run = timer.wrap("run_day", services.run_day)(day, trigger="bench")
            secs, cpu, r1 = time.perf_counter() - t0, time.process_time() - c0, rusage()
    finally:
        services.hashlib = real_hashlib
    n = run.total
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


# ------------------------------------------------------------------------------------------------
# what-ifs: the same images through the full-size path and the draft path, one process


def affine_crop(img, recipe, box, size) -> np.ndarray:
    """The `opencv_linear` crop before issue 14 (commit d5b63e0): OpenCV's INTER_LINEAR taps
    sampled by Pillow's affine transform, within one grey level of cv2.resize. For the what-ifs."""
    from PIL import Image as PILImage

    from liveness.crop import source_rect

    def resize(w, h):
        x0, y0, x1, y1 = rect
        rw, rh, src = x1 - x0, y1 - y0, img
        if x0 < 0 or y0 < 0 or x1 > img.width or y1 > img.height or rw < w or rh < h:
            src, x0, y0 = img.crop(rect), 0, 0
        affine = (rw / w, 0, x0, 0, rh / h, y0)
        return src.transform((w, h), PILImage.Transform.AFFINE, affine, PILImage.Resampling.BILINEAR)

    (h, w), rect = size, source_rect(img, recipe, box)
    if recipe.resize == "stretch":
        return np.asarray(resize(w, h))
    rw, rh = rect[2] - rect[0], rect[3] - rect[1]
    f = min(w / rw, h / rh)
    nw, nh = max(1, round(rw * f)), max(1, round(rh * f))
    out = PILImage.new("RGB", (w, h))
    out.paste(resize(nw, nh), ((w - nw) // 2, (h - nh) // 2))
    return np.asarray(out)


def crops_as_pipeline(pipeline, img, box, scale: float):
    """The array the OpenCV crops read and every model's crop, as `Pipeline._prepare` makes them."""
    from liveness.crop import crop_face

    pixels = pipeline.crop_pixels(img, box, scale)
    crops = []
    for m in pipeline.ensemble.models:
        c = m.manifest.crop
        crops.append(
            crop_face(pixels if c.interpolation == "opencv_linear" else img, c, box, m.manifest.size, scale=scale)
        )
    return pixels, crops


def tally(counts: dict, key: str, identical: bool) -> None:
    counts[key] = [counts.get(key, [0, 0])[0] + bool(identical), counts.get(key, [0, 0])[1] + 1]


def opencv_whatifs(timed, size: str, data: bytes, img, models, box, same: dict) -> None:
    """OpenCV against Pillow on one full-size image: the decode (cv2.imdecode, not used: see
    liveness/decode.py), the thumbnail's box reduction and the crops as before issue 14; `same`
    counts, per comparison, the images whose OpenCV result is identical and all images."""
    import cv2

    with timed(size, "decode full, cv2.imdecode (not used)"):
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
    pixels = np.asarray(img)
    tally(same, "decode cv2.imdecode", arr is not None and np.array_equal(arr, pixels))
    k = math.ceil(max(img.size) / THUMB_SIDE)
    with timed(size, "thumbnail, Pillow reduce alone"):
        reduced = img.reduce(k)
    with timed(size, "thumbnail, cv2 INTER_AREA of the array"):
        area = cv2.resize(pixels, (img.width // k, img.height // k), interpolation=cv2.INTER_AREA)
    tally(same, f"thumbnail cv2 INTER_AREA, factor {k}", np.array_equal(area, np.asarray(reduced)))
    with timed(size, "crops: np.asarray(whole image)"):
        np.asarray(img)
    with timed(size, "crops from full, Pillow affine (before)"):
        for m in models:
            affine_crop(img, m.manifest.crop, box, m.manifest.size)


def whatif(args, files: list[dict]) -> dict:
    from PIL import Image as PILImage

    from liveness.boxes import Box
    from liveness.decode import decode_image
    from liveness.pipeline import Pipeline
    from liveness.quality import Gates, assess
    from monitor import services

    ens = services.load_ensemble(services.active_ensemble())  # 1 thread (set by the profiled run)
    models = ens.models
    pipeline = Pipeline(ens)
    same: dict[str, list[int]] = {}  # OpenCV results identical to Pillow's: [images, of all]
    sample = [f for f in files if not f["big"]][: args.whatif_images] + [f for f in files if f["big"]][
        : args.whatif_images
    ]
    t: dict[tuple[str, str], list[float]] = defaultdict(list)
    crops = {"full": {m.name: [] for m in models}, "draft": {m.name: [] for m in models}}
    blur = {"full": [], "draft": []}
    reductions = defaultdict(int)

    @contextmanager
    def timed(size, name):  # CPU time of this process: steadier than wall time on a busy machine
        t0 = time.process_time()
        yield
        t[(size, name)].append(time.process_time() - t0)

    for f in sample:
        size = "1920x1080" if f["big"] else "640x480"
        data = Path(f["path"]).read_bytes()
        side = json.loads(Path(f["path"]).with_suffix(".json").read_bytes())
        lms = [tuple(p) for p in side["landmarks"]]
        box = Box(*f["box"])
        with timed(size, "pillow open+load only"):
            PILImage.open(io.BytesIO(data)).load()
        with timed(size, "decode full"):
            full = decode_image(data)
        with timed(size, "decode as Pipeline (its draft rule)"):
            decode_image(data, min_side=f["min_side_pipeline"])
        with timed(size, "decode draft (crops >= 1x input)"):
            draft = decode_image(data, min_side=f["min_side"])
        r = draft.reduction
        reductions[f"{size} 1/{r}"] += 1
        for mode, img, sc in (("full", full.image, 1), ("draft", draft.image, r)):
            with timed(size, f"crops from {mode}"):
                pixels, cs = crops_as_pipeline(pipeline, img, box, sc)
            with timed(size, f"thumbnail from {mode} (box reduction, as Pipeline)"):
                th = thumbnail(img, THUMB_SIDE, pixels)
            if mode == "full":
                with timed(size, "thumbnail from full, bilinear resize (before)"):
                    f_ = THUMB_SIDE / max(img.size)
                    img.resize(
                        (round(img.width * f_), round(img.height * f_)), PILImage.Resampling.BILINEAR, reducing_gap=2.0
                    )
                opencv_whatifs(timed, size, data, img, models, box, same)
            for m, c in zip(models, cs, strict=True):
                crops[mode][m.name].append(c)
            with timed(size, f"quality from {mode}"):
                q = assess(img, box, landmarks=lms, gates=Gates(), scale=sc)
            blur[mode].append(q.blur)
        with timed(size, "thumbnail JPEG encode"):
            th.save(io.BytesIO(), "JPEG", quality=85)

    scores = {}
    for mode in ("full", "draft"):
        per_model = {m.name: m.live_probability(m.probabilities(np.stack(crops[mode][m.name]))) for m in models}
        scores[mode] = ens.combine(per_model)
    diff = np.abs(scores["full"] - scores["draft"])
    flips = int(np.sum((scores["full"] > ens.threshold) != (scores["draft"] > ens.threshold)))
    dblur = np.abs(np.asarray(blur["full"], float) - np.asarray(blur["draft"], float))
    per_size = defaultdict(dict)
    for (size, name), v in t.items():
        per_size[size][name] = round(1000 * statistics.median(v), 2)
    big_share = args.big_share
    mixed = {
        name: round(
            (1 - big_share) * per_size["640x480"].get(name, 0) + big_share * per_size["1920x1080"].get(name, 0), 2
        )
        for name in per_size["640x480"]
    }
    return {
        "sample": len(sample),
        "ms_median": dict(per_size),
        "ms_mixed": mixed,
        "reductions": dict(reductions),
        "score_abs_diff_max": round(float(diff.max()), 4),
        "score_abs_diff_mean": round(float(diff.mean()), 4),
        "decision_flips": flips,
        "blur_abs_diff_max": round(float(dblur.max()), 4),
        "opencv_identical": {k: f"{v[0]}/{v[1]}" for k, v in sorted(same.items())},
    }


def db_whatif(n: int = 64, repeat: int = 3) -> dict:
    """Row-by-row (what score_batch does now) vs bulk statements, on copies of n stored rows, rolled back."""
    import uuid

    from django.db import transaction

    from monitor.models import Image, InboxFile

    base = list(Image.objects.filter(day=DAY_PROFILE).order_by("id")[:n])
    inbox = list(InboxFile.objects.filter(day=DAY_PROFILE).order_by("id")[:n])
    if not base:
        return {}
    n = len(base)

    def clones():
        out = []
        for im in base:
            c = Image(**{f.attname: getattr(im, f.attname) for f in Image._meta.concrete_fields if not f.primary_key})
            c.sha256 = uuid.uuid4().hex * 2
            out.append(c)
        return out

    def measure(fn) -> float:
        best = []
        for _ in range(repeat):
            rows = clones()
            with transaction.atomic():
                t0 = time.perf_counter()
                fn(rows)
                best.append(time.perf_counter() - t0)
                transaction.set_rollback(True)
        return round(1000 * statistics.median(best) / n, 3)

    def one_by_one(rows):
        for c in rows:
            with transaction.atomic():  # services._store: a savepoint per row
                c.save(force_insert=True)

    def per_file_updates(_rows):
        for f in inbox:  # score_batch: exists() + update() per file
            q = InboxFile.objects.filter(pk=f.pk)
            q.exists()
            q.update(reason="")

    def bulk_updates(_rows):
        InboxFile.objects.filter(pk__in=[f.pk for f in inbox]).update(reason="")

    return {
        "rows": n,
        "insert_one_by_one_ms_per_row": measure(one_by_one),
        "insert_bulk_create_ms_per_row": measure(lambda rows: Image.objects.bulk_create(rows)),
        "inbox_update_per_file_ms_per_row": measure(per_file_updates),
        "inbox_update_bulk_ms_per_row": measure(bulk_updates),
    }


# ------------------------------------------------------------------------------------------------
# report


CODE_FILES = [
    "monitor/services.py",
    "liveness/pipeline.py",
    "liveness/decode.py",
    "liveness/crop.py",
    "liveness/quality.py",
    "liveness/runtime.py",
]


def code_state() -> dict:
    """The commit and a digest of the files the daily job runs: runs are comparable when these match."""
    import hashlib
    import subprocess

    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""

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
    from django.db import connection

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime
    import PIL

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "loadavg_at_end": os.getloadavg(),
        "code": code_state(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "pillow": PIL.__version__,
        "database": connection.vendor,
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def report(r: dict) -> None:
    c, e, args = r["ceilings"], r["end_to_end"], r["args"]
    b = c["inference"]["best"]
    code = r["machine"]["code"]
    print(f"\ncode: commit {code['commit']}; " + ", ".join(f"{k} {v}" for k, v in code["files"].items()))
    if code != r["code_at_start"]:
        print("  WARNING: the daily job's code changed while the benchmark ran: its figures mix two versions")

    def line(label, rate, share=None, rate_cpu=None, extra=""):
        cols = f"{rate:8.1f}"
        cols += f" {share:6.0%}" if share is not None else " " * 7
        cols += f" {rate_cpu:9.1f}" if rate_cpu is not None else " " * 10
        print(f"  {label:60s} {cols}{extra}")

    print(
        f"\nDaily job throughput, {args['images']} images ({args['big_share']:.0%} 1920x1080, rest 640x480),"
        f" all cores = {args['workers']} processes"
    )
    print(f"  {'':60s} {'images/s':>8s} {'cpu':>6s} {'cpu-rate':>9s}")
    names = {
        "pipeline": "as Pipeline decodes (its draft rule)",
        "full": "full size",
        "draft": "draft, crops >= 1x model input",
        "pipeline + block cache": "as Pipeline, + Pillow block cache",
        "draft + block cache": "draft >= 1x, + Pillow block cache",
    }
    for k, d in c["decode"].items():
        mark = " *" if k == c["decode_used"] else ""
        line(f"1. decode ceiling, {names.get(k, k)}{mark}", d["rate"], d["cpu_share"], d["rate_cpu"])
    line(
        f"2. inference ceiling ({b['config']}, batch {b['batch']})",
        c["inference"]["rate"],
        b["cpu_share"],
        b["rate_cpu"],
    )
    line("3. combined ceiling 1/(1/decode* + 1/inference)", c["combined"], rate_cpu=c["combined_cpu"])
    line(
        f"   combined ceiling with the best decode ({c['decode_best']})",
        c["combined_best"],
        rate_cpu=c["combined_best_cpu"],
    )
    label = f"3. end to end, {e['workers']} workers x {e['ort_threads']} ORT thread, batches of {e['batch_size']}"
    line(label, e["rate"], e["cpu_share"], e["rate_cpu"])
    verdict = "PASS" if r["ratio_ok"] else "FAIL"
    print(f"  {'3. end to end / combined ceiling':60s} {r['ratio']:8.2f}   target >= {TARGET_RATIO}: {verdict}")
    if r.get("ratio_cpu") is not None:
        print(f"  {'   same on CPU-normalised rates (cpu-rate column)':60s} {r['ratio_cpu']:8.2f}")
    print(
        f"  {'   end to end / combined ceiling with the best decode':60s} {r['ratio_best']:8.2f}"
        f"   (CPU-normalised {r['ratio_best_cpu']})"
    )
    print(
        f"  draft reductions: Pipeline's rule {c['decode_reductions']['pipeline']} ({c['pipeline_rule']});"
        f" >= 1x rule {c['decode_reductions']['draft']}"
    )
    for k, v in r["inprocess"].items():
        line(
            f"   in-process run_day (one process), ORT threads {k}",
            v["rate"],
            extra=f"  {v['cpu_ms_per_image']} ms CPU/image",
        )
    print(
        "  (cpu = CPU time the benchmark's processes got / (wall x cores): below ~0.9 the machine was busy with"
        " other work;\n   cpu-rate = images per CPU second x cores, the rate with the cores to ourselves)"
    )
    if not e["valid"]:
        print(f"  END TO END INVALID: not every file was stored; errors: {e['errors']}")
    print(
        f"  end to end: discover {e['discover_s']:.1f} s, batches {e['batches_s']:.1f} s, finish_run {e['finish_s']:.1f} s,"
        f" batch median {e['batch_s_median']:.1f} s; {e['retries']} retries on 'database is locked'"
    )
    print(
        f"  end to end per image: user {e.get('user_ms_per_image')} ms, system {e.get('sys_ms_per_image')} ms,"
        f" {e.get('minor_faults_per_image')} minor page faults"
        + (f" (worker env {args['worker_env']})" if args["worker_env"] else "")
        + "; decode ceiling: "
        + ", ".join(
            f"{k} system {d.get('sys_ms_per_image')} ms / {d.get('minor_faults_per_image')} faults"
            for k, d in c["decode"].items()
        )
    )
    ck = e["check"]
    print(
        f"  check: {ck['rows']} rows {ck['categories']}, {ck['thumbnails']} thumbnails, {ck['sorted_links']} links,"
        f" inbox {ck['inbox_status']}"
    )
    print("\n  inference images/s (cpu share) by configuration and batch size:")
    for label, row in c["inference"]["configs"].items():
        print(f"    {label:38s} " + "  ".join(f"b{k}: {v['rate']:6.1f} ({v['cpu_share']:.0%})" for k, v in row.items()))
    print(f"    ms per image per model at the best: {b['ms_per_image_per_model']}")
    first = next(iter(c["inference"]["configs"].values()))
    print(
        "    RSS of one process after each batch size (MB): "
        + ", ".join(f"b{k} {v['rss_mb']:.0f}" for k, v in first.items())
    )

    print("\n4. Worker memory (MB): ready / after 20 % of batches / end / peak (VmHWM)")
    for pid, w in e["memory"]["workers"].items():
        print(
            f"  pid {pid}: {w['rss_ready_mb']:.0f} / {w['rss_at_20pct_mb']:.0f} / {w['rss_end_mb']:.0f} / "
            f"{w['peak_mb']:.0f}; growth {w['growth_mb']:+.1f} MB, slope after 20 % {w['mb_per_1000_images']:+.1f} MB"
            f" per 1000 images ({w['batches']} batches, {w['images']} images)"
        )
    print(f"  flat ({e['memory']['rule']}): {'PASS' if r['memory_flat'] else 'FAIL'}")

    p = r["profile"]
    if p:
        print(
            f"\nStage breakdown: in-process run_day, 1 ORT thread (one worker's cost), {p['images']} images,"
            f" {p['rate']:.1f} images/s, {p['cpu_ms_per_image']} ms CPU/image,"
            f" {p['sql_statements_per_image']} SQL statements per image; user {p.get('user_ms_per_image')} ms,"
            f" system {p.get('sys_ms_per_image')} ms, {p.get('minor_faults_per_image')} minor page faults per image"
        )
        print(f"  {'stage':40s} {'ms/image':>9s} {'share':>7s}")
        for name, st in p["stages"].items():
            print(f"  {name:40s} {st['ms_per_image']:9.2f} {st['share']:7.1%}")
        print("  top call paths (exclusive ms/image):")
        for tp in p["top_paths"][:16]:
            print(f"    {tp['ms_per_image']:7.2f}  {tp['path']}")

    w = r["whatif"]
    print(
        f"\nWhat-if, one process, median CPU ms per image ({w['sample']} images; mixed = {args['big_share']:.0%} 1080p):"
    )
    sizes = list(w["ms_median"])
    print(f"  {'':38s} " + " ".join(f"{sz:>10s}" for sz in sizes) + f" {'mixed':>8s}")
    for name in w["ms_mixed"]:
        print(
            f"  {name:38s} "
            + " ".join(f"{w['ms_median'][sz].get(name, 0):10.2f}" for sz in sizes)
            + f" {w['ms_mixed'][name]:8.2f}"
        )
    print(
        f"  draft reductions {w['reductions']}; |score full - draft| max {w['score_abs_diff_max']}, mean "
        f"{w['score_abs_diff_mean']}, decisions changed {w['decision_flips']}; |blur diff| max {w['blur_abs_diff_max']}"
    )
    if w.get("opencv_identical"):
        print(
            "  OpenCV identical to Pillow (images): " + ", ".join(f"{k} {v}" for k, v in w["opencv_identical"].items())
        )
    d = r["db_whatif"]
    if d:
        print(
            f"  database, ms per row ({d['rows']} rows, rolled back): insert one by one (savepoint each)"
            f" {d['insert_one_by_one_ms_per_row']}, bulk_create {d['insert_bulk_create_ms_per_row']};"
            f" inbox exists()+update() per file {d['inbox_update_per_file_ms_per_row']},"
            f" one update for all {d['inbox_update_bulk_ms_per_row']}"
        )


# ------------------------------------------------------------------------------------------------


def run_pipeline_bench(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="koala-bench-pipeline-"))
    ctx = mp.get_context("spawn")  # no fork after onnxruntime / database connections
    url = None
    timings = {}
    code_at_start = code_state()
    try:
        url = configure_environment(args, tmp)
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection, connections

        from liveness.manifest import load_manifest
        from monitor.registry import register_manifest

        t = time.perf_counter()
        call_command("migrate", verbosity=0, interactive=False)
        if connection.vendor == "sqlite":
            with connection.cursor() as cur:
                cur.execute("PRAGMA journal_mode")
                journal = cur.fetchone()[0]
        else:
            journal = ""
        register_manifest(MANIFEST, activate=True)
        models = list(load_manifest(MANIFEST).models)
        timings["setup_s"] = round(time.perf_counter() - t, 1)
        print(
            f"data root {tmp}; database {connection.vendor} {journal}; migrated + registered in {timings['setup_s']} s"
        )

        t = time.perf_counter()
        print(f"generating {args.images} images ({args.big_share:.0%} 1920x1080, rest 640x480) ...", flush=True)
        files, source = generate(args, settings.INBOX_DIR, ctx)
        for f in files:
            f["min_side"] = draft_min_side(models, f["box"], f["w"], f["h"])
        pipeline_rule = pipeline_min_sides(files)
        copy_day(files, settings.INBOX_DIR, DAY_INPROC, args.inprocess_images)
        copy_day(files, settings.INBOX_DIR, DAY_PROFILE, args.inprocess_images)
        timings["generate_s"] = round(time.perf_counter() - t, 1)
        mb = sum(Path(f["path"]).stat().st_size for f in files) / 1e6
        print(f"  {len(files)} files, {mb:.0f} MB, {source}, in {timings['generate_s']} s")

        t = time.perf_counter()
        print("decode ceiling ...", flush=True)
        decode = {}
        for mem, env, rules in (
            ("", {}, ("pipeline", "full", "draft")),
            (" + block cache", BLOCK_CACHE_ENV, ("pipeline", "draft")),
        ):
            with spawn_pool(ctx, args.workers, env) as pool:
                pool.map(_ping, range(args.workers))
                for rule in rules:
                    decode[rule + mem] = decode_ceiling(pool, args.workers, files, rule)
                    print(f"  {rule + mem}: {decode[rule + mem]['rate']}/s", flush=True)
        timings["decode_ceiling_s"] = round(time.perf_counter() - t, 1)

        t = time.perf_counter()
        print("inference ceiling ...", flush=True)
        inf = inference_ceiling(args, ctx, models)
        timings["inference_ceiling_s"] = round(time.perf_counter() - t, 1)

        t = time.perf_counter()
        print(f"end to end: {args.workers} worker processes ...", flush=True)
        connections.close_all()
        e2e = end_to_end(args, ctx)
        timings["end_to_end_s"] = round(time.perf_counter() - t, 1)
        print(f"  {e2e['rate']}/s")

        inproc = {}
        profile = {}
        if args.inprocess_images:
            t = time.perf_counter()
            print(f"in-process run_day, {args.inprocess_images} images, onnxruntime default threads ...", flush=True)
            inproc["0 (default)"] = inprocess(DAY_INPROC, 0)
            print(f"  {inproc['0 (default)']['rate']}/s\nin-process run_day, 1 thread, timed per stage ...", flush=True)
            profile = inprocess(DAY_PROFILE, 1, StageTimer())
            inproc["1 (timed per stage)"] = {
                k: profile[k] for k in ("images", "seconds", "rate", "threads", "cpu_ms_per_image")
            }
            print(f"  {profile['rate']}/s")
            timings["inprocess_s"] = round(time.perf_counter() - t, 1)

        t = time.perf_counter()
        print("what-ifs ...", flush=True)
        wi = whatif(args, files)
        dbw = db_whatif()
        timings["whatif_s"] = round(time.perf_counter() - t, 1)

        def combined(d, i):
            return round(1 / (1 / d + 1 / i), 1)

        # best: by CPU cost (wall rates of different phases are not comparable on a busy machine)
        best = max(decode, key=lambda k: decode[k]["rate_cpu"])
        used = best if args.ceiling_decode == "best" else args.ceiling_decode
        ceilings = {
            "decode": decode,
            "decode_used": used,
            "decode_best": best,
            "decode_reductions": {
                "pipeline": reductions(files, "min_side_pipeline"),
                "draft": reductions(files, "min_side"),
            },
            "pipeline_rule": pipeline_rule,
            "inference": inf,
            "combined": combined(decode[used]["rate"], inf["rate"]),
            "combined_cpu": combined(decode[used]["rate_cpu"], inf["rate_cpu"]),
            "combined_best": combined(decode[best]["rate"], inf["rate"]),
            "combined_best_cpu": combined(decode[best]["rate_cpu"], inf["rate_cpu"]),
        }
        ceiling = ceilings["combined"]
        ratio = round(e2e["rate"] / ceiling, 3)
        result = {
            "benchmark": "pipeline",
            "command": " ".join([Path(sys.executable).name, "-m", "bench.pipeline", *sys.argv[1:]]),
            "args": {k: v for k, v in vars(args).items() if k not in ("keep",)},
            "machine": machine(),
            "code_at_start": code_at_start,
            "ceilings": ceilings,
            "ceiling_decode": used,
            "combined_ceiling": ceiling,
            "end_to_end": e2e,
            "ratio": ratio,
            "ratio_best": round(e2e["rate"] / ceilings["combined_best"], 3),
            "ratio_best_cpu": round(e2e["rate_cpu"] / ceilings["combined_best_cpu"], 3) if e2e["rate_cpu"] else None,
            "ratio_ok": e2e["valid"] and ratio >= TARGET_RATIO,
            "ratio_cpu": round(e2e["rate_cpu"] / ceilings["combined_cpu"], 3) if e2e["rate_cpu"] else None,
            "images_source": source,
            "target_ratio": TARGET_RATIO,
            "memory_flat": e2e["valid"] and e2e["memory"]["flat"],
            "worker_peak_mb": max((w["peak_mb"] for w in e2e["memory"]["workers"].values()), default=None),
            "inprocess": inproc,
            "profile": profile,
            "whatif": wi,
            "db_whatif": dbw,
            "timings": timings,
        }
        connections.close_all()
        return result
    finally:
        if args.keep:
            print(f"kept: {tmp}" + (f" and {url}" if args.database == "postgres" else ""))
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            if args.database == "postgres" and url:
                close_django_connections()
                drop_pg_database(args.pg_url)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_and_write(lambda: run_pipeline_bench(args), report, args.json)


if __name__ == "__main__":
    sys.exit(main())
