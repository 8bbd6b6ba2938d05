"""The command line of `python -m bench.pipeline`."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench._common import PG_DEFAULT


def parse_args(argv=None):
    from bench import pipeline  # its docstring describes the command

    p = argparse.ArgumentParser(prog="python -m bench.pipeline", description=pipeline.__doc__.split("\n\n")[0])
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
