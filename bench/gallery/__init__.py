"""Day gallery benchmark: server time of the gallery and image detail pages at 100k images in one
day and 1M in the database (issue 3; issue 7 item 5 reuses `run_gallery_bench`).

    python -m bench.gallery [--days-total 1000000] [--day-images 100000] [--requests 200]
                            [--database sqlite|postgres] [--out bench/results/gallery.json]

It never touches the user's database: SQLite gets a fresh file in a temporary folder, PostgreSQL a
fresh database `koala_bench` (created, dropped at the end). DATABASE_URL, KOALA_DATA_DIR & co. are
set before `django.setup()`, then the migrations run, the rows are generated (executemany on
SQLite, COPY on PostgreSQL: both far faster than bulk_create) and the pages are requested with
Django's test Client as a logged-in viewer. Times are wall-clock around `Client.get` (middleware,
session, permission checks, queries and template rendering: the server's share of a page view).

Modules: `cli` (the command line and the environment), `driver` (the steps, in order), `corpus`
(the days and the fill), `rows` (the generated Image rows), `plan` (the requests), `meter` (the
timed requests and their percentiles), `report` (what ran where, the printed tables), `config`
(the day, the database, the target, the shape of the data). `bench.load` and `bench.explain` reuse
`configure_environment`, `fill`, `day_plan`, `chunks` and `machine` from here.
"""

from __future__ import annotations

from bench._common import run_and_write
from bench.gallery.cli import configure_environment, parse_args
from bench.gallery.config import BIG_DAY, PG_DBNAME, TARGET_P95_MS
from bench.gallery.corpus import chunks, day_plan, fill, try_indexes
from bench.gallery.driver import run_gallery_bench
from bench.gallery.report import machine, report

__all__ = [
    "BIG_DAY",
    "PG_DBNAME",
    "TARGET_P95_MS",
    "chunks",
    "configure_environment",
    "day_plan",
    "fill",
    "machine",
    "main",
    "parse_args",
    "report",
    "run_gallery_bench",
    "try_indexes",
]


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_and_write(lambda: run_gallery_bench(args), report, args.out)
