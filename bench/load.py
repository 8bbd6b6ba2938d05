"""Load test: `wrk` against the overview and the day gallery served by gunicorn (issue 8).

    python -m bench.load [--database sqlite|postgres] [--duration 30] [--connections 50] [--images N]

Production-like: gunicorn (`monitor.wsgi`, 2 x cores + 1 sync workers), DEBUG off, a random
SECRET_KEY, ALLOWED_HOSTS=127.0.0.1, collected static files served by whitenoise (manifest
storage), CSP and django-axes on, CONN_MAX_AGE=60 as in docker-compose's web service (unless the
environment sets it). Its own temporary data root and database, filled with the gallery
benchmark's rows (`bench.gallery.fill`: N images, a tenth of them on the gallery's day),
then the daily figures (DailyMetric) of every day, so the overview has its charts. A viewer logs
in through the login form (a real POST with the CSRF token, over HTTP to gunicorn) and wrk sends
its session cookie. Each page gets `--duration` seconds of `--connections` connections. Target:
no errors (socket errors, non-2xx/3xx answers, or any answer but 200 in gunicorn's access log)
and p99 latency under 500 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import http.cookiejar
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

from bench._common import (
    PG_DEFAULT,
    ROOT,
    command_line,
    cpu_model,
    data_root,
    django_setup,
    git,
    migrate,
    remove_scratch,
    run_and_write,
)

TARGET_P99_MS = 500.0
VIEWER = ("bench-viewer", "bench-viewer-password")  # made by bench.gallery.fill
WRK_TIMEOUT = "10s"  # wrk drops requests slower than its timeout from the percentiles: keep it well above p99


def parse_args(argv=None):
    cores = os.cpu_count() or 1
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    p.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--pg-url", default=PG_DEFAULT, help="PostgreSQL server")
    p.add_argument("--duration", type=int, default=30, help="seconds of load per page (default 30)")
    p.add_argument("--connections", type=int, default=50, help="open connections (default 50)")
    p.add_argument("--threads", type=int, default=min(cores, 50), help="wrk threads (default: cores)")
    p.add_argument(
        "--images",
        type=int,
        default=300_000,
        help="images in the database, a tenth on the gallery's day (default 300,000; bench.gallery uses 1,000,000)",
    )
    p.add_argument("--workers", type=int, default=2 * cores + 1, help="gunicorn workers (default 2 x cores + 1)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=None, help="JSON (default bench/results/load.json, load-postgres.json)")
    args = p.parse_args(argv)
    if args.connections < args.threads:
        args.threads = args.connections
    if args.out is None:
        args.out = "bench/results/load.json" if args.database == "sqlite" else "bench/results/load-postgres.json"
    return args


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found: apt-get install -y wrk", flush=True)
        r = subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True, text=True)
        if r.returncode != 0:  # the package lists may be missing
            subprocess.run(["apt-get", "update"], capture_output=True)
            r = subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True, text=True)
        path = shutil.which("wrk")
        if path:
            return path
        print(r.stdout[-2000:] + r.stderr[-2000:], file=sys.stderr)
    raise SystemExit(
        "bench.load needs wrk (https://github.com/wg/wrk): install it with `sudo apt-get install -y wrk` "
        "(Debian/Ubuntu) or `brew install wrk` (macOS), then run again"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------
# the server


def prepare(args, tmp: Path) -> dict:
    """Database, rows, daily figures, static files. Runs in this process (django.setup())."""
    from bench import gallery

    fill_args = argparse.Namespace(
        database=args.database,
        pg_url=args.pg_url,
        days_total=args.images,
        day_images=max(1, args.images // 10),
        seed=args.seed,
    )
    url = gallery.configure_environment(fill_args, tmp)
    os.environ.update(
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1",
        KOALA_MANIFEST_STATIC="1",  # production: hashed names, whitenoise serves them
        STATIC_ROOT=str(tmp / "static"),
        KOALA_ACCESS_LOG="1",
    )
    os.environ.setdefault("CONN_MAX_AGE", "60")  # as docker-compose's web service (CONN_MAX_AGE=0 to compare)
    django_setup()
    from django.core.management import call_command
    from django.db import connections

    from monitor import daily

    migrate_s = migrate()
    print(f"database: {url.split('@')[-1]}, migrated in {migrate_s:.1f} s", flush=True)
    made = gallery.fill(fill_args)
    print(
        f"fill: {made['images']:,} images ({made['big_day_images']:,} on {made['big_day']}) "
        f"in {made['fill_seconds']:.1f} s",
        flush=True,
    )
    t0 = time.perf_counter()
    days = [d for d, _ in gallery.day_plan(fill_args.days_total, fill_args.day_images, _rng(args.seed))]
    for d in days:
        daily.compute_day(d)
    made["metrics_seconds"] = round(time.perf_counter() - t0, 1)
    print(f"daily figures of {len(days)} days in {made['metrics_seconds']:.1f} s", flush=True)
    t0 = time.perf_counter()
    call_command("collectstatic", verbosity=0, interactive=False)
    made["collectstatic_seconds"] = round(time.perf_counter() - t0, 1)
    connections.close_all()
    return {"database_url": url, "fill": made}


def _rng(seed):
    import numpy as np

    return np.random.default_rng(seed)


def start_gunicorn(args, tmp: Path, port: int) -> subprocess.Popen:
    gunicorn = Path(sys.executable).parent / "gunicorn"
    cmd = [
        str(gunicorn) if gunicorn.exists() else "gunicorn",
        "monitor.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(args.workers),
        "--access-logfile",
        str(tmp / "access.log"),
        "--access-logformat",
        "%(s)s %(M)s %(U)s",  # status, ms, path
        "--error-logfile",
        str(tmp / "gunicorn.log"),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=os.environ.copy(), start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode}:\n{_tail(tmp / 'gunicorn.log')}")
        try:
            status, _, _ = http_get(port, "/login/")
            if status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.3)
    stop(proc)
    raise SystemExit(f"gunicorn did not answer /login/ within 60 s:\n{_tail(tmp / 'gunicorn.log')}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()  # the arbiter stops its workers
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def http_get(port: int, path: str, cookie: str = "") -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def login(port: int) -> str:
    """Log in through the form as the viewer; returns the Cookie header for wrk."""
    base = f"http://127.0.0.1:{port}"
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(base + "/login/", timeout=60).read().decode()
    m = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if not m:
        raise SystemExit("login page has no csrfmiddlewaretoken field")
    data = urllib.parse.urlencode(
        {"username": VIEWER[0], "password": VIEWER[1], "csrfmiddlewaretoken": m.group(1)}
    ).encode()
    opener.open(urllib.request.Request(base + "/login/", data=data, headers={"Referer": base + "/login/"}), timeout=60)
    cookies = {c.name: c.value for c in jar}
    if "sessionid" not in cookies:
        raise SystemExit(f"login as {VIEWER[0]} gave no session cookie (cookies: {sorted(cookies)})")
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


# ------------------------------------------------------------------------------------------------
# wrk

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"wrk time {text!r}")
    return float(m.group(1)) * UNIT_MS[m.group(2)]


def parse_wrk(out: str) -> dict:
    r: dict = {"percentiles_ms": {}}
    for pct, value in re.findall(r"^\s+(\d+)%\s+(\S+)\s*$", out, re.M):
        r["percentiles_ms"][pct] = round(_ms(value), 1)
    m = re.search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
    if m:
        r["mean_ms"], r["max_ms"] = round(_ms(m.group(1)), 1), round(_ms(m.group(3)), 1)
    m = re.search(r"(\d+) requests in ([\d.]+\w+), (\S+) read", out)
    r["requests"] = int(m.group(1)) if m else 0
    r["seconds"] = round(_ms(m.group(2)) / 1000, 2) if m else None
    r["read"] = m.group(3) if m else None
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["requests_per_s"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["socket_errors"] = dict(
        zip(["connect", "read", "write", "timeout"], (int(x) for x in m.groups()) if m else (0, 0, 0, 0), strict=True)
    )
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non_2xx_3xx"] = int(m.group(1)) if m else 0
    return r


def access_log_since(path: Path, offset: int, url_path: str) -> tuple[dict, list[float], int]:
    """Status counts and server times (ms) of the requests for `url_path` logged after `offset`."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    statuses: Counter = Counter()
    times = []
    for line in data.decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == url_path:
            statuses[parts[0]] += 1
            times.append(float(parts[1]))
    return dict(statuses), times, offset + len(data)


def drain(log: Path, quiet: float = 1.0, limit: float = 60.0) -> None:
    """Wait until the access log has not grown for `quiet` seconds (the server is idle again)."""
    deadline = time.monotonic() + limit
    size, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = log.stat().st_size if log.exists() else 0
        if now != size:
            size, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)


def run_wrk(wrk: str, args, port: int, path: str, cookie: str) -> tuple[dict, str]:
    cmd = [
        wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.duration}s",
        "--timeout",
        WRK_TIMEOUT,
        "--latency",
        "-H",
        f"Cookie: {cookie}",
        f"http://127.0.0.1:{port}{path}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return parse_wrk(out), out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children (gunicorn's arbiter and workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    try:
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q / 100 * len(s)))], 1)


def run_load(args) -> dict:
    wrk = ensure_wrk()
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.split("\n")[0].strip()
    tmp = data_root("koala-load-")
    proc = None
    prepared = None
    try:
        prepared = prepare(args, tmp)
        from bench import gallery

        port = free_port()
        t0 = time.perf_counter()
        proc = start_gunicorn(args, tmp, port)
        print(f"gunicorn: {args.workers} workers on 127.0.0.1:{port}, up in {time.perf_counter() - t0:.1f} s")
        cookie = login(port)
        targets = [("overview", "/"), ("gallery", f"/days/{gallery.BIG_DAY.isoformat()}/")]
        check_pages(port, [path for _name, path in targets], cookie, tmp)
        log = tmp / "access.log"
        offset = log.stat().st_size if log.exists() else 0
        pages = {}
        for name, path in targets:
            pages[name], offset = load_page(wrk, args, port, proc, cookie, name, path, log, offset)
        return load_result(args, wrk_version, prepared, pages)
    finally:
        from bench import gallery

        if proc is not None:
            stop(proc)
        url = prepared["database_url"] if prepared is not None else None
        remove_scratch(tmp, args.database, args.pg_url, gallery.PG_DBNAME, url)


def check_pages(port: int, paths: list[str], cookie: str, tmp: Path) -> None:
    """One request of each page first: a viewer must get the page itself, not an error page."""
    for path in paths:
        status, headers, body = http_get(port, path, cookie)
        if status != 200:
            where = headers.get("Location", "")
            raise SystemExit(
                f"GET {path} as the logged-in viewer answered {status}{' -> ' + where if where else ''} "
                f"instead of 200: not load-testing an error page.\n{body[:500].decode(errors='replace')}\n"
                f"{_tail(tmp / 'gunicorn.log')}"
            )
        print(f"check: GET {path} -> 200, {len(body):,} bytes")


def load_page(wrk: str, args, port: int, proc, cookie: str, name: str, path: str, log: Path, offset: int):
    """wrk against one page, then what the server logged (after `offset` in the access log) and
    the CPU it used; returns the page's figures and the access log's offset after its requests."""
    print(
        f"wrk: {name} {path}, {args.connections} connections, {args.threads} threads, {args.duration} s ...",
        flush=True,
    )
    cpu0, wrk0, w0 = cpu_seconds(proc.pid), _children_cpu(), time.perf_counter()
    r, raw = run_wrk(wrk, args, port, path, cookie)
    wall = time.perf_counter() - w0
    server_cpu, wrk_cpu = cpu_seconds(proc.pid) - cpu0, _children_cpu() - wrk0
    cores = os.cpu_count() or 1
    drain(log)  # requests wrk left queued finish before the next page (and are logged)
    statuses, server_ms, offset = access_log_since(log, offset, path)
    not_200 = sum(n for s, n in statuses.items() if s != "200")
    sock = sum(r["socket_errors"].values())
    r.update(
        path=path,
        server_statuses=statuses,
        server_not_200=not_200,
        server_ms={"p50": _pct(server_ms, 50), "p99": _pct(server_ms, 99), "n": len(server_ms)},
        errors=sock + r["non_2xx_3xx"] + not_200,
        server_cpu_seconds=round(server_cpu, 1),
        wrk_cpu_seconds=round(wrk_cpu, 1),
        server_cpu_ms_per_request=round(server_cpu * 1000 / r["requests"], 1) if r["requests"] else None,
        cpu_share=round((server_cpu + wrk_cpu) / (wall * cores), 2),
        wrk_output=raw,
    )
    p99 = r["percentiles_ms"].get("99")
    r["pass"] = r["errors"] == 0 and r["requests"] > 0 and p99 is not None and p99 < TARGET_P99_MS
    return r, offset


def load_result(args, wrk_version: str, prepared: dict, pages: dict) -> dict:
    """The run's result: the command, the machine, the fill, the target and each page's figures."""
    import django

    return {
        "benchmark": "load",
        "command": command_line("bench.load"),
        "args": vars(args),
        "machine": {
            "cores": os.cpu_count(),
            "cpu": cpu_model() or platform.processor(),
            "python": platform.python_version(),
            "django": django.get_version(),
            "database": args.database,
            "wrk": wrk_version,
            "gunicorn_workers": args.workers,
            "conn_max_age": os.environ.get("CONN_MAX_AGE"),
            "commit": git("rev-parse", "--short", "HEAD"),
            "when": dt.datetime.now().isoformat(timespec="seconds"),
        },
        "fill": prepared["fill"],
        "target": {"errors": 0, "p99_ms_below": TARGET_P99_MS},
        "pages": pages,
        "pass": all(p["pass"] for p in pages.values()),
    }


def _children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def report(result: dict) -> None:
    m, a = result["machine"], result["args"]
    print(
        f"\nLoad test: wrk {a['connections']} connections x {a['duration']} s per page, gunicorn "
        f"{m['gunicorn_workers']} workers, CONN_MAX_AGE={m.get('conn_max_age')}, {m['database']}, "
        f"{result['fill']['images']:,} images "
        f"({result['fill']['big_day_images']:,} in the day), {m['cores']} cores, commit {m['commit']}"
    )
    head = (
        f"{'page':<9} {'requests':>8} {'req/s':>7} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7} "
        f"{'non-2xx/3xx':>11} {'socket err':>10} {'not 200':>7}  result"
    )
    print(head)
    print("-" * len(head))
    for name, r in result["pages"].items():
        p = r["percentiles_ms"]
        sock = r["socket_errors"]
        sock_text = str(sum(sock.values())) + (f" ({sock['timeout']} t/o)" if sock["timeout"] else "")
        print(
            f"{name:<9} {r['requests']:>8,} {r['requests_per_s']:>7.1f} {p.get('50', 0):>5.0f}ms "
            f"{p.get('90', 0):>5.0f}ms {p.get('99', 0):>5.0f}ms {r.get('max_ms', 0):>5.0f}ms "
            f"{r['non_2xx_3xx']:>11} {sock_text:>10} {r['server_not_200']:>7}  {'PASS' if r['pass'] else 'FAIL'}"
        )
    print(f"target: no errors, p99 < {TARGET_P99_MS:.0f} ms: {'PASS' if result['pass'] else 'FAIL'}")
    for n, r in result["pages"].items():
        print(
            f"  {n}: server time (gunicorn access log) p50 {r['server_ms']['p50']} / p99 {r['server_ms']['p99']} ms; "
            f"gunicorn CPU {r['server_cpu_ms_per_request']} ms per request; gunicorn + wrk got "
            f"{r['cpu_share']:.0%} of the {result['machine']['cores']} cores"
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_and_write(lambda: run_load(args), report, args.out)


if __name__ == "__main__":
    sys.exit(main())
