"""One run of the benchmark, step by step: a data root and database of its own, the day's images,
the ceilings, the daily job end to end, the in-process runs, the what-ifs, then the result."""

from __future__ import annotations

import multiprocessing as mp
import time
from contextlib import contextmanager
from pathlib import Path

from bench._common import (
    close_django_connections,
    command_line,
    configure_environment,
    data_root,
    database_url,
    django_setup,
    migrate,
    register_demo_models,
    remove_scratch,
)
from bench.pipeline.ceilings import combined_ceilings, decode_ceilings, inference_ceiling
from bench.pipeline.config import DAY_INPROC, DAY_PROFILE, PG_DBNAME, TARGET_RATIO
from bench.pipeline.corpus import copy_day, generate
from bench.pipeline.draft import set_min_sides
from bench.pipeline.end_to_end import end_to_end
from bench.pipeline.machine import code_state, machine
from bench.pipeline.stage_timer import inprocess_runs
from bench.pipeline.whatifs import db_whatif, whatif


@contextmanager
def _step(timings: dict, key: str):
    """Records the step's wall time (s) in timings[key]."""
    t = time.perf_counter()
    yield
    timings[key] = round(time.perf_counter() - t, 1)


def _environment(args, tmp: Path) -> str:
    """DATABASE_URL & co. for this run, before django.setup(); returns the database's URL."""
    url = database_url(args.database, args.pg_url, PG_DBNAME, tmp)
    extra = {"KOALA_SETTLE_SECONDS": "0"}  # the files were written just now
    if args.batch_size:
        extra["KOALA_BATCH_SIZE"] = str(args.batch_size)
    # the in-process run uses the default threads (0: onnxruntime's own)
    configure_environment(url, tmp, unset=("KOALA_ORT_THREADS", "KOALA_FACE_DETECTOR"), **extra)
    return url


def _setup(tmp: Path, timings: dict) -> list:
    """Django, the migrations and the demo models (registered, active); returns their manifests."""
    django_setup()
    from django.db import connection

    with _step(timings, "setup_s"):
        migrate()
        journal = ""
        if connection.vendor == "sqlite":
            with connection.cursor() as cur:
                cur.execute("PRAGMA journal_mode")
                journal = cur.fetchone()[0]
        models = register_demo_models()
    print(f"data root {tmp}; database {connection.vendor} {journal}; migrated + registered in {timings['setup_s']} s")
    return models


def _corpus(args, ctx, models, timings: dict) -> tuple[list[dict], str, str]:
    """The day's files in the inbox, their draft rules, the copies under the in-process days:
    (files, where they came from, Pipeline's draft rule)."""
    from django.conf import settings

    with _step(timings, "generate_s"):
        print(f"generating {args.images} images ({args.big_share:.0%} 1920x1080, rest 640x480) ...", flush=True)
        files, source = generate(args, settings.INBOX_DIR, ctx)
        pipeline_rule = set_min_sides(files, models)
        copy_day(files, settings.INBOX_DIR, DAY_INPROC, args.inprocess_images)
        copy_day(files, settings.INBOX_DIR, DAY_PROFILE, args.inprocess_images)
    mb = sum(Path(f["path"]).stat().st_size for f in files) / 1e6
    print(f"  {len(files)} files, {mb:.0f} MB, {source}, in {timings['generate_s']} s")
    return files, source, pipeline_rule


def _measure(args, ctx, models, files: list[dict], timings: dict) -> dict:
    """Every measurement, one after the other."""
    from django.db import connections

    with _step(timings, "decode_ceiling_s"):
        print("decode ceiling ...", flush=True)
        decode = decode_ceilings(args, ctx, files)
    with _step(timings, "inference_ceiling_s"):
        print("inference ceiling ...", flush=True)
        inf = inference_ceiling(args, ctx, models)
    with _step(timings, "end_to_end_s"):
        print(f"end to end: {args.workers} worker processes ...", flush=True)
        connections.close_all()
        e2e = end_to_end(args, ctx)
    print(f"  {e2e['rate']}/s")
    inproc, profile = {}, {}
    if args.inprocess_images:
        with _step(timings, "inprocess_s"):
            inproc, profile = inprocess_runs(args)
    with _step(timings, "whatif_s"):
        print("what-ifs ...", flush=True)
        wi = whatif(args, files)
        dbw = db_whatif()
    return {
        "decode": decode,
        "inference": inf,
        "end_to_end": e2e,
        "inprocess": inproc,
        "profile": profile,
        "whatif": wi,
        "db_whatif": dbw,
    }


def _result(args, code_at_start: dict, ceilings: dict, m: dict, source: str, timings: dict) -> dict:
    e2e = m["end_to_end"]
    ceiling = ceilings["combined"]
    ratio = round(e2e["rate"] / ceiling, 3)
    return {
        "benchmark": "pipeline",
        "command": command_line("bench.pipeline"),
        "args": {k: v for k, v in vars(args).items() if k not in ("keep",)},
        "machine": machine(),
        "code_at_start": code_at_start,
        "ceilings": ceilings,
        "ceiling_decode": ceilings["decode_used"],
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
        "inprocess": m["inprocess"],
        "profile": m["profile"],
        "whatif": m["whatif"],
        "db_whatif": m["db_whatif"],
        "timings": timings,
    }


def run_pipeline_bench(args) -> dict:
    tmp = data_root("koala-bench-pipeline-")
    ctx = mp.get_context("spawn")  # no fork after onnxruntime / database connections
    url = None
    timings = {}
    code_at_start = code_state()
    try:
        url = _environment(args, tmp)
        models = _setup(tmp, timings)
        files, source, pipeline_rule = _corpus(args, ctx, models, timings)
        m = _measure(args, ctx, models, files, timings)
        ceilings = combined_ceilings(args, m["decode"], m["inference"], files, pipeline_rule)
        result = _result(args, code_at_start, ceilings, m, source, timings)
        close_django_connections()
        return result
    finally:
        if args.keep:
            print(f"kept: {tmp}" + (f" and {url}" if args.database == "postgres" else ""))
        remove_scratch(tmp, args.database, args.pg_url, PG_DBNAME, url, keep_root=args.keep, keep_db=args.keep)
