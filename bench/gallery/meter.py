"""The measurement: the planned requests through Django's test Client, timed around `Client.get`
with their SQL queries captured, then the percentiles per request type and per variant."""

from __future__ import annotations

import html
import random
import re
import time
from collections import defaultdict

import numpy as np

from bench.gallery.config import BIG_DAY
from bench.gallery.plan import request_plan

NEXT_RE = re.compile(r'<a href="(\?[^"]*)" rel="next">')


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
    warm_s = _warm_up(meter, warm)
    run_s = _run_jobs(meter, jobs)
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


def _warm_up(meter: Meter, warm) -> float:
    """One request per variant and a short chain, not recorded; returns the seconds they took."""
    t0 = time.perf_counter()
    for variant, _kind, payload in warm:
        meter.get(meter.url(payload), "warm-up", variant, record=False)
    meter.chain({}, 3, "warm-up", record=False)
    return time.perf_counter() - t0


def _run_jobs(meter: Meter, jobs) -> float:
    """The measured requests; returns the seconds they took."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    for group, variant, kind, payload in tqdm(jobs, desc="requests", unit="job", mininterval=1):
        if kind == "get":
            meter.get(meter.url(payload), group, variant)
        else:
            meter.chain(payload[0], payload[1], variant)
    return time.perf_counter() - t0


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
