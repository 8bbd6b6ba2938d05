"""One run of the benchmark, step by step: a database of its own, the fill, the requests, the
result (and, with --explain, the plans of the slowest queries)."""

from __future__ import annotations

from bench._common import (
    close_django_connections,
    command_line,
    data_root,
    django_setup,
    migrate,
    remove_scratch,
)
from bench.gallery.cli import configure_environment
from bench.gallery.config import PG_DBNAME, TARGET_P95_MS
from bench.gallery.corpus import fill, try_indexes
from bench.gallery.meter import explain, measure
from bench.gallery.report import machine


def run_gallery_bench(args) -> dict:
    """Set up the database, fill it, measure; returns the result dict (also for bench harnesses)."""
    tmp = data_root("koala-bench-")
    url = None
    try:
        url = configure_environment(args, tmp)
        django_setup()
        migrate_s = migrate()
        print(f"database: {url.split('@')[-1]}, migrated in {migrate_s:.1f} s")
        try_indexes(args.try_index)
        made = fill(args)
        print(
            f"fill: {made['images']:,} images in {made['fill_seconds']:.1f} s "
            f"({made['images'] / made['fill_seconds']:,.0f} rows/s)"
        )
        results = measure(args, made)
        result = {
            "benchmark": "gallery",
            "command": command_line("bench.gallery"),
            "args": {k: v for k, v in vars(args).items() if k not in ("keep",)},
            "machine": machine(url),
            "fill": made,
            "results": results,
            "target_p95_ms": TARGET_P95_MS,
            "gallery_p95_ok": results["gallery"]["p95"] < TARGET_P95_MS,
        }
        if args.explain:
            print_plans(results)
        close_django_connections()
        return result
    finally:
        keep_root = args.keep and args.database == "sqlite"
        if keep_root:
            print(f"kept: {tmp}")
        if args.keep and args.database == "postgres":
            print(f"kept: {url} (drop it with: DROP DATABASE {PG_DBNAME})")
        remove_scratch(tmp, args.database, args.pg_url, PG_DBNAME, url, keep_root=keep_root, keep_db=args.keep)


def print_plans(results: dict) -> None:
    """The slowest request of each type: its queries' times and the plan of the slowest one."""
    for group, r in results["slowest_request_per_type"].items():
        q = r["queries"][0]
        print(f"\n--- slowest request of '{group}': {r['ms']} ms, {r['url']}")
        print("    its queries (ms, re-run with fetch): " + ", ".join(str(x["ms"]) for x in r["queries"]))
        print(f"{q['sql']}\n{explain(q['sql'])}")
