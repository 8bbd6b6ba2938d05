"""The data: the days and their sizes, the rows around the images (devices, an ensemble, one run
per day, a viewer), the images themselves inserted day by day, and the experiments' indexes."""

from __future__ import annotations

import datetime as dt
import hashlib
import time

import numpy as np

from bench.gallery.config import BIG_DAY, DAYS_AFTER, DAYS_BEFORE, MODELS, N_DEVICES, THRESHOLD
from bench.gallery.rows import RowMaker

CHUNK = 20_000  # rows per executemany / per progress step


def day_plan(total: int, big: int, rng: np.random.Generator) -> list[tuple[dt.date, int]]:
    """(day, images) for the big day and ~30 others, in the order the daily job would insert them."""
    others = [BIG_DAY - dt.timedelta(days=i) for i in range(DAYS_BEFORE, 0, -1)]
    others += [BIG_DAY + dt.timedelta(days=i) for i in range(1, DAYS_AFTER + 1)]
    rest = total - big
    w = rng.uniform(0.7, 1.3, len(others))
    counts = np.floor(w / w.sum() * rest).astype(int)
    counts[: rest - counts.sum()] += 1
    plan = [(d, int(n)) for d, n in zip(others, counts, strict=True)]
    plan.insert(DAYS_BEFORE, (BIG_DAY, big))
    return [(d, n) for d, n in plan if n > 0]


def try_indexes(specs: list[str]) -> None:
    """Extra indexes for experiments (not part of the schema): 'day,score' -> bench_try_0 ON monitor_image(day, score)."""
    from django.db import connection

    from monitor.models import Image

    columns = {f.name: f.column for f in Image._meta.concrete_fields} | {
        f.column: f.column for f in Image._meta.concrete_fields
    }
    for k, spec in enumerate(specs):
        terms = [c.strip().split(None, 1) for c in spec.split(",")]  # "score DESC NULLS LAST" allowed
        cols = [" ".join([columns[t[0]], *t[1:]]) for t in terms]
        with connection.cursor() as cur:
            cur.execute(f"CREATE INDEX bench_try_{k} ON {Image._meta.db_table} ({', '.join(cols)})")
        print(f"experiment: index bench_try_{k} on monitor_image({', '.join(cols)})")


def chunks(it, size):
    buf = []
    for row in it:
        buf.append(row)
        if len(buf) == size:
            yield buf
            buf = []
    if buf:
        yield buf


def fill(args) -> dict:
    """Devices, an ensemble, one run per day and `--days-total` images. Returns what was made."""
    from django.db import connection
    from django.db.models import Count
    from tqdm import tqdm

    from monitor.models import Image

    rng = np.random.default_rng(args.seed)
    plan = day_plan(args.days_total, args.day_images, rng)
    t0 = time.perf_counter()
    devices, ens, versions = _devices_and_ensemble(plan)
    runs = _runs(plan, ens)
    viewer = _viewer()
    maker = RowMaker(connection, [(d.pk, d.name) for d in devices], ens.pk, runs, versions)
    bar = tqdm(total=args.days_total, unit="img", desc=f"fill {connection.vendor}", mininterval=1, smoothing=0.1)
    insert = _insert_sqlite if connection.vendor == "sqlite" else _insert_postgres
    insert(connection, maker, plan, rng, bar)
    bar.close()
    fill_s = time.perf_counter() - t0
    vacuum_s = _vacuum_analyze(connection, Image._meta.db_table)
    counts = dict(Image.objects.filter(day=BIG_DAY).values_list("category").annotate(n=Count("id")).order_by())
    return {
        "fill_seconds": round(fill_s, 1),
        "vacuum_analyze_seconds": round(vacuum_s, 1),
        "days": len(plan),
        "images": args.days_total,
        "big_day": BIG_DAY.isoformat(),
        "big_day_images": args.day_images,
        "big_day_categories": counts,
        "viewer": viewer.pk,
        "devices": [d.name for d in devices],
    }


def _devices_and_ensemble(plan):
    """The devices, the active ensemble and its models; returns (devices, ensemble, {model: label})."""
    from monitor.models import Device, Ensemble, ModelVersion

    devices = [
        Device.objects.create(name=f"kiosk-{i + 1:02d}", first_day=plan[0][0], last_day=plan[-1][0])
        for i in range(N_DEVICES)
    ]
    versions = {}
    ens = Ensemble.objects.create(name="bench", threshold=THRESHOLD, rule="mean", is_active=True)
    for m in MODELS:
        sha = hashlib.sha256(m.encode()).hexdigest()
        mv = ModelVersion.objects.create(
            name=m, version="1", sha256=sha, file=f"{m}.onnx", manifest="", input_shape=[1, 3, 128, 128]
        )
        ens.members.add(mv)
        versions[m] = mv.label
    return devices, ens, versions


def _runs(plan, ens) -> dict:
    """One done nightly run per day; returns {day: run id}."""
    from django.utils import timezone

    from monitor.models import Run

    runs = {}
    for day, n in plan:
        start = timezone.make_aware(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(2, 30)), dt.UTC)
        runs[day] = Run.objects.create(
            day=day,
            ensemble=ens,
            threshold=THRESHOLD,
            status=Run.DONE,
            trigger="nightly",
            total=n,
            processed=n,
            new_images=n,
            started_at=start,
            finished_at=start + dt.timedelta(seconds=n / 200),
        ).pk
    return runs


def _viewer():
    """The user the requests are made as (group viewer)."""
    from django.contrib.auth.models import Group, User

    viewer = User.objects.create_user("bench-viewer", password="bench-viewer-password")
    viewer.groups.add(Group.objects.get(name="viewer"))
    return viewer


def _insert_sqlite(connection, maker, plan, rng, bar) -> None:
    """executemany on the sqlite3 connection, one transaction per day."""
    from django.db import transaction

    from monitor.models import Image

    cols = ", ".join(connection.ops.quote_name(c) for c in maker.columns)
    connection.ensure_connection()
    raw = connection.connection  # the sqlite3 connection
    raw.execute("PRAGMA cache_size = -400000")  # 400 MB while filling (this connection only)
    sql = f"INSERT INTO {Image._meta.db_table} ({cols}) VALUES ({', '.join('?' * len(maker.columns))})"
    seq = 0
    for day, n in plan:
        with transaction.atomic():
            for rows in chunks(maker.day_rows(day, n, rng, seq), CHUNK):
                raw.executemany(sql, rows)
                bar.update(len(rows))
        seq += n


def _insert_postgres(connection, maker, plan, rng, bar) -> None:
    """COPY, one transaction per day."""
    from django.db import transaction

    from monitor.models import Image

    cols = ", ".join(connection.ops.quote_name(c) for c in maker.columns)
    connection.ensure_connection()
    seq = 0
    for day, n in plan:
        with transaction.atomic(), connection.connection.cursor() as cur:
            with cur.copy(f"COPY {Image._meta.db_table} ({cols}) FROM STDIN") as copy:
                for k, row in enumerate(maker.day_rows(day, n, rng, seq), 1):
                    copy.write_row(row)
                    if k % CHUNK == 0:
                        bar.update(CHUNK)
            bar.update(n % CHUNK)
        seq += n


def _vacuum_analyze(connection, table: str) -> float:
    """On PostgreSQL, what autovacuum does after such a load (statistics and the visibility map);
    returns the seconds it took."""
    t1 = time.perf_counter()
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        old = connection.connection.autocommit
        connection.connection.autocommit = True
        with connection.cursor() as cur:
            cur.execute(f"VACUUM ANALYZE {table}")
        connection.connection.autocommit = old
    # SQLite: no ANALYZE, the application never runs one (so the planner works without statistics)
    return time.perf_counter() - t1
