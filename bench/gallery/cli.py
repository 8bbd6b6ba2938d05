"""The command line of `python -m bench.gallery`, and the environment it sets up (everything here
runs BEFORE django.setup())."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import _common
from bench._common import PG_DEFAULT, database_url
from bench.gallery.config import PG_DBNAME


def parse_args(argv=None):
    from bench import gallery  # its docstring describes the command

    p = argparse.ArgumentParser(prog="python -m bench.gallery", description=gallery.__doc__.split("\n\n")[0])
    p.add_argument("--days-total", type=int, default=1_000_000, help="images in the database (all days)")
    p.add_argument("--day-images", type=int, default=100_000, help="images on the benchmarked day")
    p.add_argument("--requests", type=int, default=200, help="measured requests (after the warm-up)")
    p.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--pg-url", default=PG_DEFAULT, help=f"PostgreSQL server (default {PG_DEFAULT})")
    p.add_argument(
        "--out",
        default=None,
        help="JSON file (default bench/results/gallery.json, "
        "bench/results/gallery-postgres.json for --database postgres)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--explain", action="store_true", help="print the plan of the slowest query per request type")
    p.add_argument("--keep", action="store_true", help="keep the temporary database (path / name printed)")
    p.add_argument(
        "--try-index",
        action="append",
        default=[],
        metavar="COLS",
        help="experiment: also create an index on monitor_image(COLS), e.g. 'day,score DESC NULLS LAST,id DESC' (repeatable; "
        "created after the migrations, before the fill; recorded in the JSON)",
    )
    args = p.parse_args(argv)
    if args.day_images > args.days_total:
        p.error("--day-images cannot exceed --days-total")
    if args.out is None:
        args.out = "bench/results/gallery.json" if args.database == "sqlite" else "bench/results/gallery-postgres.json"
    return args


def configure_environment(args, tmp: Path) -> str:
    """Point Django at a database and data root of our own. Returns the DATABASE_URL."""
    url = database_url(args.database, args.pg_url, PG_DBNAME, tmp)
    _common.configure_environment(url, tmp, ALLOWED_HOSTS="testserver")  # the test Client's host
    return url
