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
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import html
import json
import os
import platform
import random
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench import _common
from bench._common import (
    PG_DEFAULT,
    close_django_connections,
    cpu_model,
    data_root,
    database_url,
    django_setup,
    git,
    migrate,
    remove_scratch,
    run_and_write,
)

PG_DBNAME = "koala_bench"
TARGET_P95_MS = 150.0

BIG_DAY = dt.date(2026, 11, 20)
DAYS_BEFORE, DAYS_AFTER = 25, 5  # the other ~30 days around the big one
MODELS = ["fas_a", "fas_b", "fas_c"]  # a 3-model mean ensemble, like the demo
CROP_SCALE = {"fas_a": 1.0, "fas_b": 1.6, "fas_c": 2.7}
THRESHOLD = 0.484
GATES = ["face_size", "yaw", "pitch", "blur"]
ATTACK_TYPES = ["print", "replay", "mask", "cutout"]
N_DEVICES = 12

# ------------------------------------------------------------------------------------------------
# command line and environment (everything here runs BEFORE django.setup())


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.gallery", description=__doc__.split("\n\n")[0])
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


# ------------------------------------------------------------------------------------------------
# the data


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


class RowMaker:
    """Realistic Image rows, column by column, in the database's own formats."""

    def __init__(self, connection, devices, ensemble_id, runs, model_versions):
        from monitor.models import Image

        self.vendor = connection.vendor
        self.devices = devices  # [(id, name)]
        w = 1 / np.arange(1, len(devices) + 1) ** 0.8  # a few busy devices, many quiet ones
        self.device_p = w / w.sum()
        self.ensemble_id = ensemble_id
        self.runs = runs  # day -> run id
        self.versions_json = json.dumps(model_versions)
        self.generated = [
            "sha256",
            "path",
            "day",
            "device_id",
            "captured_at",
            "file_size",
            "format",
            "width",
            "height",
            "box_x",
            "box_y",
            "box_w",
            "box_h",
            "box_source",
            "detection_score",
            "face_size",
            "yaw",
            "pitch",
            "roll",
            "blur",
            "pose_source",
            "blur_source",
            "failed_gates",
            "scores",
            "attack_guesses",
            "crop_rects",
            "score",
            "disagreement",
            "decision",
            "category",
            "reason",
            "notes",
            "ensemble_id",
            "threshold",
            "model_versions",
            "label",
            "attack_type",
            "sidecar",
            "sorted_path",
            "has_thumbnail",
            "run_id",
            "scored_at",
        ]
        # columns added to Image later get their default, the same in every row
        self.constant = {}
        for f in Image._meta.local_concrete_fields:
            if f.primary_key or f.column in self.generated:
                continue
            self.constant[f.column] = f.get_db_prep_save(f.get_default(), connection)
        self.columns = self.generated + list(self.constant)

    def _dt(self, day: dt.date, seconds) -> str | None:
        if seconds is None:
            return None
        s = int(seconds)
        us = int((seconds - s) * 1e6)
        text = f"{day.isoformat()} {s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{us:06d}"
        return text if self.vendor == "sqlite" else text + "+00"

    def _bool(self, v: bool):
        return int(v) if self.vendor == "sqlite" else v

    def day_rows(self, day: dt.date, n: int, rng: np.random.Generator, seq0: int):
        """The rows of one day, sorted as the job finds the files (device folder, then time)."""
        dev = rng.choice(len(self.devices), n, p=self.device_p)
        t = np.clip(rng.normal(13.5 * 3600, 3.5 * 3600, n), 0, 86399.999)
        order = np.lexsort((t, dev))
        dev, t = dev[order], t[order]
        no_exif = rng.random(n) < 0.03

        u = rng.random(n)  # category: unreadable 0.4%, no face 12%, low quality 25%, else by score
        unreadable = u < 0.004
        no_face = (u >= 0.004) & (u < 0.124)
        low_q = (u >= 0.124) & (u < 0.374)
        faced = ~(unreadable | no_face)

        is_attack = rng.random(n) < 0.115  # ground truth, shows in labels and in the scores
        base = np.where(is_attack, rng.beta(1.5, 6.0, n), rng.beta(8.0, 1.6, n))
        logit = np.log(np.clip(base, 1e-4, 1 - 1e-4) / np.clip(1 - base, 1e-4, 1))
        sd = np.where(rng.random(n) < 0.07, 1.8, 0.35)  # most models agree, some images split them
        per_model = 1 / (
            1 + np.exp(-(logit[:, None] + rng.normal(0, 1, (n, 3)) * sd[:, None] + np.array([0.1, -0.05, 0.0])))
        )
        score = per_model.mean(axis=1)
        disagreement = per_model.max(axis=1) - per_model.min(axis=1)
        live = score > THRESHOLD

        big_img = rng.random(n) < 0.3
        width = np.where(big_img, 1920, 640)
        height = np.where(big_img, 1080, 480)
        file_size = np.where(big_img, rng.lognormal(np.log(420e3), 0.3, n), rng.lognormal(np.log(95e3), 0.3, n))

        # quality: failing values only for the failed gates of low-quality images
        gate_pick = rng.choice(4, n, p=[0.45, 0.17, 0.08, 0.30])  # face_size, yaw, pitch, blur
        second = np.where(rng.random(n) < 0.2, rng.integers(0, 4, n), -1)
        face_size = np.where(big_img, rng.lognormal(np.log(420), 0.25, n), rng.lognormal(np.log(220), 0.2, n))
        face_size = np.maximum(face_size, 131)
        yaw = np.clip(rng.normal(0, 9, n), -29.5, 29.5)
        pitch = np.clip(rng.normal(0, 7, n), -29.5, 29.5)
        roll = rng.normal(0, 6, n)
        blur = rng.beta(2, 7, n) * 0.5
        det = 0.85 + 0.15 * rng.beta(6, 1.5, n)
        cx, cy = rng.uniform(0.35, 0.65, n), rng.uniform(0.35, 0.6, n)
        from_sidecar_box = rng.random(n) < 0.15

        labelled = rng.random(n) < 0.30
        atype = rng.integers(0, len(ATTACK_TYPES), n)
        fmt_png = rng.random(n) < 0.04
        for i in range(n):
            seq = seq0 + i
            device_id, device_name = self.devices[dev[i]]
            name = f"IMG_{seq:07d}.{'png' if fmt_png[i] else 'jpg'}"
            path = f"{day.isoformat()}/{device_name}/{name}"
            gates: list[str] = []
            fs, y, p_, b = float(face_size[i]), float(yaw[i]), float(pitch[i]), float(blur[i])
            if unreadable[i]:
                category = "unreadable"
            elif no_face[i]:
                category = "no_face"
            elif low_q[i]:
                category = "low_quality"
                for g in {int(gate_pick[i]), int(second[i])} - {-1}:
                    gates.append(GATES[g])
                gates.sort(key=GATES.index)
                if "face_size" in gates:
                    fs = float(rng.uniform(50, 129.9))
                if "yaw" in gates:
                    y = float(np.sign(y or 1) * rng.uniform(30.5, 70))
                if "pitch" in gates:
                    p_ = float(np.sign(p_ or 1) * rng.uniform(30.5, 55))
                if "blur" in gates:
                    b = float(rng.uniform(0.51, 0.95))
            else:
                category = "live" if live[i] else "attack"
            has_face = bool(faced[i])
            scored = has_face
            if has_face:
                bw, bh = fs, fs * 1.25
                bx = max(0.0, min(width[i] - bw, cx[i] * width[i] - bw / 2))
                by = max(0.0, min(height[i] - bh, cy[i] * height[i] - bh / 2))
                box = (round(bx, 1), round(by, 1), round(bw, 1), round(bh, 1))
                crops = {}
                for m in MODELS:
                    s = CROP_SCALE[m]
                    x0, y0 = max(0.0, bx + bw / 2 - bw * s / 2), max(0.0, by + bh / 2 - bh * s / 2)
                    x1, y1 = min(width[i], bx + bw / 2 + bw * s / 2), min(height[i], by + bh / 2 + bh * s / 2)
                    crops[m] = f'"{m}": [{x0:.1f}, {y0:.1f}, {x1:.1f}, {y1:.1f}]'
                crop_json = "{" + ", ".join(crops.values()) + "}"
            else:
                box, crop_json = (None, None, None, None), "{}"
            truth_attack = bool(is_attack[i])
            label = ("attack" if truth_attack else "genuine") if labelled[i] else ""
            attack_type = ATTACK_TYPES[atype[i]] if label == "attack" else ""
            if scored:
                ms = per_model[i]
                scores_json = "{" + ", ".join(f'"{m}": {v:.6f}' for m, v in zip(MODELS, ms, strict=True)) + "}"
                guesses = [
                    f'"{m}": "{ATTACK_TYPES[(atype[i] + k) % 4]}"'
                    for k, (m, v) in enumerate(zip(MODELS, ms, strict=True))
                    if v <= 0.5
                ]
                guesses_json = "{" + ", ".join(guesses) + "}"
                sc, dis = round(float(score[i]), 6), round(float(disagreement[i]), 6)
                decision = "live" if live[i] else "attack"
            else:
                scores_json = guesses_json = "{}"
                sc = dis = None
                decision = ""
            sidecar = None
            if labelled[i]:
                side = {"label": label}
                if attack_type:
                    side["attack_type"] = attack_type
                if from_sidecar_box[i] and box[0] is not None:
                    side["face"] = {"x": round(box[0]), "y": round(box[1]), "w": round(box[2]), "h": round(box[3])}
                sidecar = json.dumps(side)
            reason = ""
            if category == "unreadable":
                reason = (
                    "truncated file: image file is truncated"
                    if i % 3
                    else "corrupt image data: cannot identify image file"
                )
            elif category == "no_face":
                reason = "no face found"
            yield (
                hashlib.sha256(f"bench-{seq}".encode()).hexdigest(),
                path,
                day.isoformat(),
                device_id,
                None if no_exif[i] or category == "unreadable" else self._dt(day, float(t[i])),
                int(file_size[i]),
                "" if category == "unreadable" else ("PNG" if fmt_png[i] else "JPEG"),
                None if category == "unreadable" else int(width[i]),
                None if category == "unreadable" else int(height[i]),
                *box,
                ("sidecar" if from_sidecar_box[i] and labelled[i] else "detector") if has_face else "",
                round(float(det[i]), 4) if has_face and not (from_sidecar_box[i] and labelled[i]) else None,
                round(fs, 1) if has_face else None,
                round(y, 2) if has_face else None,
                round(p_, 2) if has_face else None,
                round(float(roll[i]), 2) if has_face else None,
                round(b, 3) if has_face else None,
                "landmarks" if has_face else "",
                "measured" if has_face else "",
                json.dumps(gates),
                scores_json,
                guesses_json,
                crop_json,
                sc,
                dis,
                decision,
                category,
                reason,
                "[]",
                self.ensemble_id,
                THRESHOLD if scored else None,
                self.versions_json if scored else "{}",
                label,
                attack_type,
                sidecar,
                f"{day.isoformat()}/{category}/{device_name}__{name}",
                self._bool(category != "unreadable"),
                self.runs[day],
                self._dt(day + dt.timedelta(days=1), 2.5 * 3600 + (seq % 3_000_000) / 100),
                *self.constant.values(),
            )


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


def _chunks(it, size):
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
    from django.contrib.auth.models import Group, User
    from django.db import connection, transaction
    from django.db.models import Count
    from django.utils import timezone
    from tqdm import tqdm

    from monitor.models import Device, Ensemble, Image, ModelVersion, Run

    rng = np.random.default_rng(args.seed)
    plan = day_plan(args.days_total, args.day_images, rng)
    t0 = time.perf_counter()
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
    viewer = User.objects.create_user("bench-viewer", password="bench-viewer-password")
    viewer.groups.add(Group.objects.get(name="viewer"))

    maker = RowMaker(connection, [(d.pk, d.name) for d in devices], ens.pk, runs, versions)
    table = Image._meta.db_table
    cols = ", ".join(connection.ops.quote_name(c) for c in maker.columns)
    bar = tqdm(total=args.days_total, unit="img", desc=f"fill {connection.vendor}", mininterval=1, smoothing=0.1)
    seq = 0
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        raw = connection.connection  # the sqlite3 connection
        raw.execute("PRAGMA cache_size = -400000")  # 400 MB while filling (this connection only)
        sql = f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(maker.columns))})"
        for day, n in plan:
            with transaction.atomic():
                for rows in _chunks(maker.day_rows(day, n, rng, seq), 20_000):
                    raw.executemany(sql, rows)
                    bar.update(len(rows))
            seq += n
    else:
        connection.ensure_connection()
        for day, n in plan:
            with transaction.atomic(), connection.connection.cursor() as cur:
                with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                    for k, row in enumerate(maker.day_rows(day, n, rng, seq), 1):
                        copy.write_row(row)
                        if k % 20_000 == 0:
                            bar.update(20_000)
                bar.update(n % 20_000)
            seq += n
    bar.close()
    fill_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    if connection.vendor == "postgresql":
        # what autovacuum does after such a load: statistics and the visibility map
        connection.ensure_connection()
        old = connection.connection.autocommit
        connection.connection.autocommit = True
        with connection.cursor() as cur:
            cur.execute(f"VACUUM ANALYZE {table}")
        connection.connection.autocommit = old
    # SQLite: no ANALYZE, the application never runs one (so the planner works without statistics)
    vacuum_s = time.perf_counter() - t1
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


# ------------------------------------------------------------------------------------------------
# the requests

NEXT_RE = re.compile(r'<a href="(\?[^"]*)" rel="next">')


def request_plan(total: int, rnd: random.Random, image_ids, device_names):
    """The measured requests: [(group, variant, kind, payload)] where kind is 'get' or 'chain'."""
    from monitor.browse import SORTS
    from monitor.models import CATEGORIES

    def device():
        return rnd.choices(device_names, weights=[1 / (i + 1) ** 0.8 for i in range(len(device_names))])[0]

    def score_range():
        lo = rnd.choice([0.2, 0.3, 0.4, 0.6])
        return {"min_score": f"{lo:.1f}", "max_score": f"{lo + 0.3:.1f}"}

    tabs = [("tab " + (c or "all"), {"category": c} if c else {}) for c in [""] + CATEGORIES]
    sorts = [(f"sort {s}", {"sort": s}) for s in SORTS]
    filters = [
        ("filter device", lambda: {"device": device()}),
        ("filter score range", score_range),
        ("filter label genuine", lambda: {"label": "genuine"}),
        ("filter label attack", lambda: {"label": "attack"}),
        ("filter unlabelled", lambda: {"label": "none"}),
        (
            "filter failed gate",
            lambda: {"category": "low_quality", "gate": rnd.choice(["face_size", "yaw", "pitch", "blur"])},
        ),
        ("filter failed gate, all tab", lambda: {"gate": rnd.choice(["face_size", "yaw", "pitch", "blur"])}),
        ("filter disagreement", lambda: {"min_disagreement": rnd.choice(["0.3", "0.5"]), "sort": "disagreement"}),
        ("filter combined", lambda: {"category": "attack", "label": "none", "device": device(), "sort": "-score"}),
    ]
    chains = [  # (variant, query) walked 20-50 pages deep
        ("all, score", lambda: {}),
        ("all, -time", lambda: {"sort": "-time"}),
        ("live, -score", lambda: {"category": "live", "sort": "-score"}),
        ("low_quality, disagreement", lambda: {"category": "low_quality", "sort": "disagreement"}),
        ("all, time, unlabelled", lambda: {"label": "none", "sort": "time"}),
        ("device, score", lambda: {"device": device_names[0]}),
    ]

    def detail_query(cat, dev):
        return rnd.choice(
            [
                {},
                {"category": cat},
                {"category": cat, "sort": "-time"},
                {"label": "none"},
                {"device": dev, "sort": "disagreement"},
            ]
        )

    jobs = []
    n_first = round(total * 0.35)
    n_chain = round(total * 0.35)
    n_detail = total - n_first - n_chain
    first_pages = tabs + sorts + [(name, None) for name, _ in filters]
    fmap = dict(filters)
    for k in range(n_first):
        name, q = first_pages[k % len(first_pages)]
        group = name.split(" ")[0]
        jobs.append(
            (
                {"tab": "first page, tab", "sort": "first page, sort", "filter": "first page, filter"}[group],
                name,
                "get",
                ("gallery", q if q is not None else fmap[name]()),
            )
        )
    used, c = 0, 0
    while used < n_chain:
        name, q = chains[c % len(chains)]
        depth = rnd.randint(20, 50)
        jobs.append(("chain", name, "chain", (q(), depth)))
        used += depth - 1
        c += 1
    for _ in range(n_detail):
        pk, cat, dev = rnd.choice(image_ids)
        jobs.append(("image detail", "detail", "get", ("image", pk, detail_query(cat, dev))))
    rnd.shuffle(jobs)
    warm = [(name, "get", ("gallery", q if q is not None else fmap[name]())) for name, q in first_pages]
    for _ in range(5):
        pk, cat, dev = rnd.choice(image_ids)
        warm.append(("detail", "get", ("image", pk, detail_query(cat, dev))))
    return jobs, warm


class Meter:
    def __init__(self, client, connection):
        from django.urls import reverse

        self.client, self.connection, self.reverse = client, connection, reverse
        self.samples = []  # dicts

    def url(self, payload):
        from urllib.parse import urlencode

        if payload[0] == "gallery":
            return self.reverse("gallery", args=[BIG_DAY]) + ("?" + urlencode(payload[1]) if payload[1] else "")
        _, pk, q = payload
        return self.reverse("image", args=[pk]) + ("?" + urlencode(q) if q else "")

    def get(self, url, group, variant, record=True):
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(self.connection) as ctx:
            t0 = time.perf_counter()
            resp = self.client.get(url)
            ms = (time.perf_counter() - t0) * 1000
        if resp.status_code != 200:
            raise SystemExit(f"GET {url} answered {resp.status_code}")
        if record:
            queries = [(float(q["time"]) * 1000, q["sql"]) for q in ctx.captured_queries]
            self.samples.append(
                {
                    "group": group,
                    "variant": variant,
                    "url": url,
                    "ms": ms,
                    "queries": len(queries),
                    "sql_ms": sum(t for t, _ in queries),
                    "sql": [q for _, q in queries],
                }
            )
        return resp

    def chain(self, query, depth, variant, record=True):
        from urllib.parse import urlencode

        base = self.reverse("gallery", args=[BIG_DAY])
        url = base + ("?" + urlencode(query) if query else "")
        resp = self.get(url, "first page, chain", variant, record=False)  # first pages are measured elsewhere
        page = 1
        while page < depth:
            m = NEXT_RE.search(resp.content.decode())
            if not m:
                break
            url = base + html.unescape(m.group(1))
            page += 1
            resp = self.get(url, "next page 2-19" if page < 20 else "deep page 20-50", variant, record)
        return page


def stats(values):
    a = np.asarray(values, dtype=float)
    return {
        "n": int(a.size),
        "p50": round(float(np.percentile(a, 50)), 1),
        "p95": round(float(np.percentile(a, 95)), 1),
        "max": round(float(a.max()), 1),
        "mean": round(float(a.mean()), 1),
    }


def summarise(samples, key):
    by = defaultdict(list)
    for s in samples:
        by[s[key]].append(s)
    out = {}
    for name, rows in by.items():
        q = [r["queries"] for r in rows]
        out[name] = {
            **stats([r["ms"] for r in rows]),
            "sql_p50": round(float(np.percentile([r["sql_ms"] for r in rows], 50)), 1),
            "queries": min(q) if min(q) == max(q) else f"{min(q)}-{max(q)}",
        }
    return out


def measure(args, made) -> dict:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    from monitor.models import Image

    rnd = random.Random(args.seed)
    client = Client()
    client.force_login(User.objects.get(pk=made["viewer"]))
    ids = list(Image.objects.filter(day=BIG_DAY).values_list("id", "category", "device__name"))
    jobs, warm = request_plan(args.requests, rnd, ids, made["devices"])
    meter = Meter(client, connection)
    t0 = time.perf_counter()
    for variant, _kind, payload in warm:
        meter.get(meter.url(payload), "warm-up", variant, record=False)
    meter.chain({}, 3, "warm-up", record=False)
    warm_s = time.perf_counter() - t0
    from tqdm import tqdm

    t0 = time.perf_counter()
    for group, variant, kind, payload in tqdm(jobs, desc="requests", unit="job", mininterval=1):
        if kind == "get":
            meter.get(meter.url(payload), group, variant)
        else:
            meter.chain(payload[0], payload[1], variant)
    run_s = time.perf_counter() - t0
    samples = meter.samples
    gallery = [s for s in samples if s["group"] != "image detail"]
    slowest = {}  # the slowest request of each type, its queries re-run and timed with their fetch
    for s in samples:
        if s["group"] not in slowest or s["ms"] > slowest[s["group"]]["ms"]:
            slowest[s["group"]] = s
    slowest = {g: {"ms": round(s["ms"], 1), "url": s["url"], "queries": timed(s["sql"])} for g, s in slowest.items()}
    for s in samples:
        del s["sql"]
    return {
        "warmup_seconds": round(warm_s, 1),
        "measure_seconds": round(run_s, 1),
        "overall": {**stats([s["ms"] for s in samples])},
        "gallery": {**stats([s["ms"] for s in gallery])},
        "image_detail": {**stats([s["ms"] for s in samples if s["group"] == "image detail"])},
        "by_type": summarise(samples, "group"),
        "by_variant": summarise(samples, "variant"),
        "slowest_request_per_type": slowest,
    }


def timed(sqls: list[str]) -> list[dict]:
    """Each query run again, timed with its rows fetched (on SQLite execute() alone does part of the work)."""
    from django.db import connection

    out = []
    with connection.cursor() as cur:
        for sql in sqls:
            t0 = time.perf_counter()
            cur.execute(sql)
            cur.fetchall()
            out.append({"ms": round((time.perf_counter() - t0) * 1000, 1), "sql": sql})
    return sorted(out, key=lambda q: -q["ms"])


def explain(sql: str) -> str:
    from django.db import connection

    prefix = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) "
    with connection.cursor() as cur:
        cur.execute(prefix + sql)
        rows = cur.fetchall()
    if connection.vendor == "sqlite":
        return "\n".join(r[-1] for r in rows)
    return "\n".join(r[0] for r in rows)


# ------------------------------------------------------------------------------------------------
# report


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
    order = [
        "first page, tab",
        "first page, sort",
        "first page, filter",
        "next page 2-19",
        "deep page 20-50",
        "image detail",
    ]
    by_type = {k: r["by_type"][k] for k in order if k in r["by_type"]}
    print_table("per request type (server time, ms):", by_type)
    print_table("per variant:", dict(sorted(r["by_variant"].items())))
    g, d, o = r["gallery"], r["image_detail"], r["overall"]
    verdict = "PASS" if g["p95"] < TARGET_P95_MS else "FAIL"
    print(f"\n  gallery pages   p50 {g['p50']:.1f} ms  p95 {g['p95']:.1f} ms  max {g['max']:.1f} ms  (n={g['n']})")
    print(f"  image detail    p50 {d['p50']:.1f} ms  p95 {d['p95']:.1f} ms  max {d['max']:.1f} ms  (n={d['n']})")
    print(f"  all requests    p50 {o['p50']:.1f} ms  p95 {o['p95']:.1f} ms  max {o['max']:.1f} ms  (n={o['n']})")
    print("  (exec p50: time inside cursor.execute(); SQLite computes rows while fetching too: a lower bound)")
    print(f"  gallery p95 target {TARGET_P95_MS:.0f} ms: {verdict}")


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
            "command": " ".join([Path(sys.executable).name, "-m", "bench.gallery", *sys.argv[1:]]),
            "args": {k: v for k, v in vars(args).items() if k not in ("keep",)},
            "machine": machine(url),
            "fill": made,
            "results": results,
            "target_p95_ms": TARGET_P95_MS,
            "gallery_p95_ok": results["gallery"]["p95"] < TARGET_P95_MS,
        }
        if args.explain:
            for group, r in results["slowest_request_per_type"].items():
                q = r["queries"][0]
                print(f"\n--- slowest request of '{group}': {r['ms']} ms, {r['url']}")
                print("    its queries (ms, re-run with fetch): " + ", ".join(str(x["ms"]) for x in r["queries"]))
                print(f"{q['sql']}\n{explain(q['sql'])}")
        close_django_connections()
        return result
    finally:
        keep_root = args.keep and args.database == "sqlite"
        if keep_root:
            print(f"kept: {tmp}")
        if args.keep and args.database == "postgres":
            print(f"kept: {url} (drop it with: DROP DATABASE {PG_DBNAME})")
        remove_scratch(tmp, args.database, args.pg_url, PG_DBNAME, url, keep_root=keep_root, keep_db=args.keep)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_and_write(lambda: run_gallery_bench(args), report, args.out)


if __name__ == "__main__":
    sys.exit(main())
