"""What-changed benchmark: server time of the explanation of a day (monitor/explain.py) with a
day of 100,000 images against a 14-day window of 1.4 million, and the daily job's share of it,
store_day_slices, per day.

    python -m bench.explain [--images-per-day 100000] [--window-days KOALA_EXPLAIN_WINDOW_DAYS]
                            [--repetitions 7] [--json bench/results/explain.json] [--keep]

SQLite (a fresh file in a temporary folder) by default; PostgreSQL when DATABASE_URL is set: a
fresh database `koala_bench_explain` on that server, dropped at the end (the database of the URL
itself is never touched). What it fills, times and reports: bench/README.md "What changed".
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench._common import (
    close_django_connections,
    command_line,
    configure_environment,
    data_root,
    database_url,
    django_setup,
    migrate,
    remove_scratch,
    run_and_write,
)

TARGET_S = 1.0
DAY = dt.date(2026, 11, 20)
PG_DBNAME = "koala_bench_explain"
N_DEVICES, N_SITES = 40, 8
THRESHOLD = 0.439
CHUNK = 20_000  # rows per executemany
ATTACK_TYPES = ("print", "replay")
RESOLUTIONS = ((640, 480), (480, 640), (1280, 720), (1920, 1080), (800, 600))


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.explain", description=__doc__.split("\n\n")[0])
    p.add_argument("--images-per-day", type=int, default=100_000, help="images on each day (the window's and the day)")
    p.add_argument("--window-days", type=int, default=None, help="days before the day (default the setting, 14)")
    p.add_argument("--repetitions", type=int, default=7, help="timed runs of each request (after one warm-up)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", default=None, help="default bench/results/explain.json (explain-postgres.json)")
    p.add_argument("--keep", action="store_true", help="keep the temporary database (path / name printed)")
    args = p.parse_args(argv)
    if args.images_per_day < 100:
        p.error("--images-per-day must be at least 100")
    if args.json is None:
        pg = os.environ.get("DATABASE_URL", "").startswith("postgres")
        args.json = f"bench/results/explain{'-postgres' if pg else ''}.json"
    return args


# ------------------------------------------------------------------------------------------------
# environment (before django.setup())


def use_own_database(tmp: Path) -> tuple[str, str | None]:
    """A database of our own: (its DATABASE_URL, the PostgreSQL server's URL or None)."""
    given = os.environ.get("DATABASE_URL", "")
    server = given.split("?")[0].rsplit("/", 1)[0] + "/" if given.startswith("postgres") else None
    url = database_url("postgres" if server else "sqlite", server, PG_DBNAME, tmp)
    configure_environment(url, tmp, ALLOWED_HOSTS="testserver")  # the test Client's host
    return url, server


# ------------------------------------------------------------------------------------------------
# the rows


def _columns(n: int, rng: np.random.Generator, hot: int | None) -> dict[str, np.ndarray]:
    """A day's column values; `hot` (a device index) flags three times as many genuine images and
    every attack (1.8 times the flag rate)."""
    w = 1 / np.arange(1, N_DEVICES + 1) ** 0.8  # a few busy devices, many quiet ones
    dev = rng.choice(N_DEVICES, n, p=w / w.sum())
    attack = rng.random(n) < 0.08
    live_p = np.where(attack, 0.05, 0.95)
    if hot is not None:
        live_p = np.where(dev == hot, 1 - 3 * (1 - live_p), live_p)
    live = rng.random(n) < live_p
    score = np.where(live, THRESHOLD + (1 - THRESHOLD) * rng.beta(5, 1.5, n), THRESHOLD * rng.beta(1.5, 3, n))
    return {
        "dev": dev,
        "attack": attack,
        "score": score,
        "disagreement": np.abs(rng.normal(0, 0.06, n)),
        "face": np.exp(rng.normal(np.log(190), 0.35, n)),
        "yaw": rng.normal(0, 11, n),
        "pitch": rng.normal(0, 8, n),
        "blur": rng.beta(2, 7, n),
        "seconds": np.clip(rng.normal(13.5 * 3600, 3.5 * 3600, n), 0, 86399),
        "no_face": rng.random(n) < 0.04,
        "labelled": rng.random(n) < 0.03,
        "png": rng.random(n) < 0.05,
        "retry": rng.random(n) < 0.05,
    }


def _gates(face: float, yaw: float, pitch: float, blur: float) -> list[str]:
    from django.conf import settings as s

    bad = (face < s.KOALA_MIN_FACE, abs(yaw) > s.KOALA_MAX_YAW, abs(pitch) > s.KOALA_MAX_PITCH, blur > s.KOALA_MAX_BLUR)
    return [g for g, b in zip(("face_size", "yaw", "pitch", "blur"), bad, strict=True) if b]


GENERATED = (
    "sha256", "path", "day", "device_id", "site", "captured_at", "file_size", "format", "width", "height",
    "box_x", "box_y", "box_w", "box_h", "box_source", "face_size", "yaw", "pitch", "blur", "failed_gates",
    "score", "disagreement", "attack_guesses", "decision", "category", "reason", "threshold", "label",
    "attack_type", "attempt_index", "scored_at",
)  # fmt: skip


def _constants(connection) -> dict:
    """Every other column of Image at its default, in the database's format."""
    from monitor.models import Image

    return {
        f.column: f.get_db_prep_save(f.get_default(), connection)
        for f in Image._meta.local_concrete_fields
        if not f.primary_key and f.column not in GENERATED
    }


def day_rows(day: dt.date, n: int, rng: np.random.Generator, devices: list, seq0: int, hot: int | None, vendor: str):
    """The rows of one day as tuples of GENERATED columns."""
    c = _columns(n, rng, hot)
    tz = "" if vendor == "sqlite" else "+00"
    for i in range(n):
        (device_id, name), site, (width, height) = devices[c["dev"][i]]
        face, yaw, pitch, blur = float(c["face"][i]), float(c["yaw"][i]), float(c["pitch"][i]), float(c["blur"][i])
        sec = int(c["seconds"][i])
        common = (
            hashlib.sha256(f"bench-explain-{seq0 + i}".encode()).hexdigest(),
            f"{day.isoformat()}/{name}/IMG_{seq0 + i:08d}.{'png' if c['png'][i] else 'jpg'}",
            day.isoformat(), device_id, site,
            f"{day.isoformat()} {sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}{tz}",
            90_000, "PNG" if c["png"][i] else "JPEG", width, height,
        )  # fmt: skip
        stamp = f"{day.isoformat()} 23:59:00{tz}"
        if c["no_face"][i]:
            yield (*common, *[None] * 4, "", *[None] * 4, "[]", None, None, "{}", "", "no_face",
                   "no face found", None, "", "", None, stamp)  # fmt: skip
            continue
        gates = _gates(face, yaw, pitch, blur)
        decision = "live" if c["score"][i] > THRESHOLD else "attack"
        label = ("attack" if c["attack"][i] else "genuine") if c["labelled"][i] else ""
        guess = json.dumps({"fas_b": ATTACK_TYPES[i % 2]}) if decision == "attack" else "{}"
        yield (
            *common, 10.0, 10.0, face, face * 1.25, "sidecar" if i % 5 else "detector",
            face, yaw, pitch, blur, json.dumps(gates), float(c["score"][i]), float(c["disagreement"][i]), guess,
            decision, "low_quality" if gates else decision, "", THRESHOLD, label,
            ATTACK_TYPES[i % 2] if label == "attack" else "", 2 if c["retry"][i] else 1, stamp,
        )  # fmt: skip


def insert_day(connection, rows, constants: dict) -> None:
    """executemany on SQLite, COPY on PostgreSQL: both far faster than bulk_create (bench.gallery)."""
    from django.db import transaction

    from bench.gallery import chunks
    from monitor.models import Image

    columns = [*GENERATED, *constants]
    table, extra = Image._meta.db_table, tuple(constants.values())
    names = ", ".join(connection.ops.quote_name(c) for c in columns)
    connection.ensure_connection()
    with transaction.atomic():
        if connection.vendor == "sqlite":
            sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})"
            for chunk in chunks(rows, CHUNK):
                connection.connection.executemany(sql, [(*r, *extra) for r in chunk])
        else:
            with connection.connection.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row((*r, *extra))


def fill(args, days: list[dt.date]) -> dict:
    from django.db import connection

    from monitor.models import Device

    rng = np.random.default_rng(args.seed)
    devices = []
    for i in range(N_DEVICES):
        d = Device.objects.create(name=f"cam-{i + 1:02d}", first_day=days[0], last_day=days[-1])
        devices.append(((d.pk, d.name), f"site-{i % N_SITES + 1}", RESOLUTIONS[i % len(RESOLUTIONS)]))
    hot = 3  # a busy device, not the busiest
    constants = _constants(connection)
    t0 = time.perf_counter()
    for k, day in enumerate(days):
        n = args.images_per_day
        rows = day_rows(day, n, rng, devices, k * n, hot if day == DAY else None, connection.vendor)
        insert_day(connection, rows, constants)
        print(f"  {day}: {n:,} images ({time.perf_counter() - t0:.0f} s)", flush=True)
    if connection.vendor == "postgresql":  # what autovacuum does after such a load
        connection.ensure_connection()
        old, connection.connection.autocommit = connection.connection.autocommit, True
        with connection.cursor() as cur:
            cur.execute("VACUUM ANALYZE monitor_image")
        connection.connection.autocommit = old
    seconds = time.perf_counter() - t0
    return {
        "fill_seconds": round(seconds, 1),
        "rows_per_second": round(len(days) * args.images_per_day / seconds),
        "images": len(days) * args.images_per_day,
        "devices": N_DEVICES,
        "sites": N_SITES,
        "hot_device": devices[hot][0][1],
    }


# ------------------------------------------------------------------------------------------------
# the measurements


def _median_of(fn, repetitions: int) -> dict:
    """Median wall time of `fn` after a warm-up, and the CPU share it got: this process's CPU
    seconds over wall seconds (SQLite runs in-process; far below 1 = a machine busy with other work)."""
    fn()  # warm-up: connections, caches, template loading
    wall, cpu = [], []
    for _ in range(repetitions):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {
        "median_s": round(statistics.median(wall), 4),
        "max_s": round(max(wall), 4),
        "cpu_median_s": round(statistics.median(cpu), 4),
        "cpu_share": round(sum(cpu) / sum(wall), 2),
        "n": repetitions,
    }


def store_slices(days: list[dt.date]) -> dict:
    from monitor.explain import store_day_slices
    from monitor.models import DaySlice

    per_day = {}
    for day in days:
        t0 = time.perf_counter()
        rows = store_day_slices(day)
        per_day[day.isoformat()] = {"seconds": round(time.perf_counter() - t0, 2), "rows": rows}
        print(f"  store_day_slices({day}): {per_day[day.isoformat()]['seconds']:.2f} s, {rows:,} rows", flush=True)
    secs = [v["seconds"] for v in per_day.values()]
    return {"per_day": per_day, "median_s": statistics.median(secs), "max_s": max(secs),
            "slice_rows": DaySlice.objects.count()}  # fmt: skip


def _get(client, url: str) -> None:
    resp = client.get(url)
    if resp.status_code != 200:
        raise SystemExit(f"GET {url} answered {resp.status_code}")


def time_explanation(args, hot_device: str) -> dict:
    from django.contrib.auth.models import Group, User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from monitor.explain import MEASURES, explain_day

    viewer = User.objects.create_user("bench-viewer", password="bench-viewer-password")
    viewer.groups.add(Group.objects.get(name="viewer"))
    client = Client()
    client.force_login(viewer)
    window = args.window_days
    page, api = reverse("day-explain", args=[DAY]), reverse("api-day-explain", args=[DAY])
    query = f"?window={window}"
    out = {f"service {m}": _median_of(lambda m=m: explain_day(DAY, m, "", window), args.repetitions) for m in MEASURES}
    out["service flag_rate, one device"] = _median_of(
        lambda: explain_day(DAY, "flag_rate", hot_device, window), args.repetitions
    )
    out["page"] = _median_of(lambda: _get(client, page + query), args.repetitions)
    out["page, one device"] = _median_of(lambda: _get(client, f"{page}{query}&device={hot_device}"), args.repetitions)
    out["api"] = _median_of(lambda: _get(client, api + query), args.repetitions)
    with CaptureQueriesContext(connection) as ctx:
        _get(client, page + query)
    out["page"]["queries"] = len(ctx.captured_queries)
    top = explain_day(DAY, "flag_rate", "", window).result.slices[0]
    out["top slice"] = {"dims": top.dims, "value": top.value, "share": top.share, "significant": top.significant}
    return out


def run_bench(args) -> dict:
    tmp = data_root("koala-bench-explain-")
    url = server = None
    try:
        url, server = use_own_database(tmp)
        django_setup()
        from django.conf import settings

        from bench.gallery import machine

        migrate()
        window = args.window_days = args.window_days or settings.KOALA_EXPLAIN_WINDOW_DAYS
        days = [DAY - dt.timedelta(days=window - k) for k in range(window + 1)]
        print(f"database {url.split('@')[-1]}: {len(days)} days x {args.images_per_day:,} images", flush=True)
        made = fill(args, days)
        slices = store_slices(days)
        timings = time_explanation(args, made["hot_device"])
        result = {
            "benchmark": "explain",
            "command": command_line("bench.explain"),
            "args": vars(args),
            "machine": machine(url),
            "fill": made,
            "window_days": window,
            "day_images": args.images_per_day,
            "window_images": window * args.images_per_day,
            "store_day_slices": slices,
            "explanation": timings,
            "target_s": TARGET_S,
            "page_ok": timings["page"]["median_s"] < TARGET_S,
        }
        close_django_connections()
        return result
    finally:
        if args.keep:
            print(f"kept: {tmp if server is None else url}")
        database = "sqlite" if server is None else "postgres"
        remove_scratch(tmp, database, server, PG_DBNAME, url, keep_root=args.keep, keep_db=args.keep)


def report(result: dict) -> None:
    m, s, e = result["machine"], result["store_day_slices"], result["explanation"]
    print(f"\nKoala Monitor what-changed benchmark: {m['database']}, {m['nproc']} cores {m['cpu']}")
    print(
        f"  {result['day_images']:,} images on the day, {result['window_images']:,} in its {result['window_days']}-day"
        f" window; filled in {result['fill']['fill_seconds']:.0f} s ({result['fill']['rows_per_second']:,} rows/s)"
    )
    print(
        f"  store_day_slices per day: median {s['median_s']:.2f} s, max {s['max_s']:.2f} s ({s['slice_rows']:,} rows)"
    )
    for name, t in e.items():
        if "median_s" in t:
            print(
                f"  {name:34s} median {t['median_s'] * 1000:8.1f} ms   max {t['max_s'] * 1000:8.1f} ms"
                f"   cpu {t['cpu_median_s'] * 1000:8.1f} ms ({t['cpu_share']:.0%})"
            )
    top = e["top slice"]
    print(f"  top slice: {top['dims']}={top['value']} (share {top['share']:.2f}, significant {top['significant']})")
    print(
        f"  page: {e['page']['queries']} queries; target < {TARGET_S:.0f} s: {'PASS' if result['page_ok'] else 'FAIL'}"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_and_write(lambda: run_bench(args), report, args.json)


if __name__ == "__main__":
    sys.exit(main())
