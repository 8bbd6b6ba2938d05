"""What ran where, and the printed report of a result."""

from __future__ import annotations

import datetime as dt
import os
import platform

from bench._common import cpu_model, git
from bench.gallery.config import TARGET_P95_MS

TYPE_ORDER = [
    "first page, tab",
    "first page, sort",
    "first page, filter",
    "next page 2-19",
    "deep page 20-50",
    "image detail",
]


def machine(url: str) -> dict:
    from django.db import connection

    if connection.vendor == "sqlite":
        import sqlite3

        db = f"SQLite {sqlite3.sqlite_version}"
    else:
        with connection.cursor() as cur:
            cur.execute("SHOW server_version")
            db = f"PostgreSQL {cur.fetchone()[0]}"
    import django

    commit, dirty = git("rev-parse", "--short", "HEAD"), bool(git("status", "--porcelain"))
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "database": db,
        "database_url": url.split("@")[-1] if "@" in url else "sqlite (temporary file)",
        "conn_max_age": connection.settings_dict.get("CONN_MAX_AGE"),
        "platform": platform.platform(),
        "git": commit + ("-dirty" if dirty else ""),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def print_table(title: str, rows: dict) -> None:
    print(f"\n{title}")
    print(f"  {'':34} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'exec p50':>8} {'queries':>8}")
    for name, r in rows.items():
        print(
            f"  {name:34} {r['n']:>4} {r['p50']:>8.1f} {r['p95']:>8.1f} {r['max']:>8.1f} {r['sql_p50']:>8.1f} {r['queries']!s:>8}"
        )


def report(result: dict) -> None:
    m, f, r = result["machine"], result["fill"], result["results"]
    print(f"\nKoala Monitor gallery benchmark: {m['database']}, {m['nproc']} cores {m['cpu']}, Python {m['python']}")
    print(
        f"  {f['images']:,} images over {f['days']} days, {f['big_day_images']:,} on {f['big_day']}; "
        f"filled in {f['fill_seconds']:.1f} s (+{f['vacuum_analyze_seconds']:.1f} s vacuum/analyze)"
    )
    print(f"  categories of the day: {f['big_day_categories']}")
    by_type = {k: r["by_type"][k] for k in TYPE_ORDER if k in r["by_type"]}
    print_table("per request type (server time, ms):", by_type)
    print_table("per variant:", dict(sorted(r["by_variant"].items())))
    g, d, o = r["gallery"], r["image_detail"], r["overall"]
    verdict = "PASS" if g["p95"] < TARGET_P95_MS else "FAIL"
    print(f"\n  gallery pages   p50 {g['p50']:.1f} ms  p95 {g['p95']:.1f} ms  max {g['max']:.1f} ms  (n={g['n']})")
    print(f"  image detail    p50 {d['p50']:.1f} ms  p95 {d['p95']:.1f} ms  max {d['max']:.1f} ms  (n={d['n']})")
    print(f"  all requests    p50 {o['p50']:.1f} ms  p95 {o['p95']:.1f} ms  max {o['max']:.1f} ms  (n={o['n']})")
    print("  (exec p50: time inside cursor.execute(); SQLite computes rows while fetching too: a lower bound)")
    print(f"  gallery p95 target {TARGET_P95_MS:.0f} ms: {verdict}")
