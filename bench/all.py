"""Every benchmark of issue 7 in one run (`make bench`): the daily job's throughput and memory
(bench.pipeline), the gallery's server time (bench.gallery) and the threshold table (bench.threshold_table),
one after the other (never at the same time: they would slow each other down), then one table
of the six figures with pass / fail against the issue's targets, and (issue 14) the cost of the
decode, the crops and the thumbnails, OpenCV beside Pillow.

    python -m bench.all [--images 1500] [--database sqlite|postgres] [--json bench/results/bench.json]

Each benchmark runs in its own process (each sets up Django with its own temporary database) and
writes its own JSON under bench/results/ (gitignored); this one writes bench/results/bench.json.
The exit status is 1 if a benchmark crashed, else 0 (a missed target is reported, not an error;
`--strict` makes it 1 as well).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench._common import ROOT, write_json

TOTAL_TARGET_S = 600  # `make bench` under 10 minutes
GALLERY_P95_MS = 150.0
THRESHOLD_TABLE_S = 2.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.all", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1500, help="images of the pipeline benchmark's day")
    p.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--json", default="bench/results/bench.json")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return p.parse_args(argv)


def run(name: str, cmd: list[str]) -> dict:
    print(f"\n===== {name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, cwd=ROOT).returncode
    secs = round(time.perf_counter() - t0, 1)
    print(f"===== {name}: exit {rc} after {secs:.0f} s", flush=True)
    return {"returncode": rc, "seconds": secs}


def load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def stage_rows(pipe: dict) -> list[dict]:
    """Issue 14: decode, crops and thumbnails per image, in one worker (stage timer, ms of wall
    time) and in the what-ifs (median CPU ms, 640x480 / 1920x1080 mix), OpenCV beside Pillow."""
    st = {k: v["ms_per_image"] for k, v in (pipe.get("profile") or {}).get("stages", {}).items()}
    w = pipe.get("whatif", {}).get("ms_mixed", {})

    def ms(name: str) -> str:
        return f"{w[name]:.2f}" if name in w else "n/a"

    return [
        {
            "item": "7. decode, crops, thumbs",
            "value": f"decode {st.get('decode', 0):.2f}, crops (3 models) {st.get('crop (3 models)', 0):.2f},"
            f" thumbnail {st.get('thumbnail (resize in memory)', 0):.2f} ms/image (stage timer, one worker)",
            "target": "",
            "ok": None,
        },
        {
            "item": "7. ... OpenCV vs Pillow",
            "value": f"crops {ms('crops from full')} (Pillow affine before"
            f" {ms('crops from full, Pillow affine (before)')}),"
            f" thumbnail {ms('thumbnail from full (box reduction, as Pipeline)')} (Pillow reduce"
            f" {ms('thumbnail, Pillow reduce alone')}), decode {ms('decode full')} (cv2.imdecode"
            f" {ms('decode full, cv2.imdecode (not used)')}, not used) ms, what-if mix",
            "target": "",
            "ok": None,
        },
    ]


def summary_rows(pipe: dict | None, gallery: dict | None, table: dict | None) -> list[dict]:
    rows = []
    if pipe:
        rows += pipeline_rows(pipe)
    if gallery:
        rows.append(gallery_row(gallery))
    if table:
        rows.append(threshold_table_row(table))
    return rows + (stage_rows(pipe) if pipe else [])


def pipeline_rows(pipe: dict) -> list[dict]:
    """Items 1-4: the ceilings, end to end against the combined ceiling, the workers' memory."""
    c, e = pipe["ceilings"], pipe["end_to_end"]
    b = c["inference"]["best"]
    ws = e["memory"]["workers"].values()
    return [
        {
            "item": "1. decode ceiling",
            "value": ", ".join(f"{k} {d['rate']:.0f}/s" for k, d in c["decode"].items()),
            "target": "",
            "ok": None,
        },
        {
            "item": "2. inference ceiling",
            "value": f"{c['inference']['rate']:.0f}/s ({b['config']}, batch {b['batch']})",
            "target": "",
            "ok": None,
        },
        {
            "item": "3. combined ceiling",
            "value": f"{pipe['combined_ceiling']:.0f}/s (decode: {pipe['ceiling_decode']};"
            f" {c['combined_best']:.0f}/s with the best decode, {c['decode_best']})",
            "target": "",
            "ok": None,
        },
        {
            "item": "3. end to end / ceiling",
            "value": f"{e['rate']:.0f}/s = {pipe['ratio']:.2f} of the ceiling ({pipe['ratio_cpu']:.2f} on"
            f" CPU-normalised rates; {pipe['ratio_best']:.2f} of the best-decode one)",
            "target": f">= {pipe['target_ratio']}",
            "ok": pipe["ratio_ok"],
        },
        {
            "item": "4. worker memory",
            "value": "peak "
            + ", ".join(f"{w['peak_mb']:.0f}" for w in ws)
            + " MB; RSS at 20 % -> end "
            + ", ".join(f"{w['rss_at_20pct_mb']:.0f}->{w['rss_end_mb']:.0f}" for w in ws)
            + " MB",
            "target": "flat",
            "ok": pipe["memory_flat"],
        },
    ]


def gallery_row(gallery: dict) -> dict:
    """Item 5: the gallery's server time."""
    g = gallery["results"]["gallery"]
    return {
        "item": "5. gallery server time",
        "value": f"p50 {g['p50']:.0f} ms, p95 {g['p95']:.0f} ms"
        f" ({gallery['fill']['big_day_images']:,} / {gallery['fill']['images']:,} images)",
        "target": f"p95 < {GALLERY_P95_MS:.0f} ms",
        "ok": g["p95"] < GALLERY_P95_MS,
    }


def threshold_table_row(table: dict) -> dict:
    """Item 6: the threshold table's median time."""
    times = sorted(table["seconds"]["strategy_table_14x2"])
    med = times[len(times) // 2]
    return {
        "item": "6. threshold table",
        "value": f"{med:.2f} s median on {table['rows']:,} rows",
        "target": f"< {THRESHOLD_TABLE_S:.0f} s",
        "ok": med < THRESHOLD_TABLE_S,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    out_dir = ROOT / "bench" / "results"
    jsons = {
        "pipeline": out_dir / "pipeline.json",
        "gallery": out_dir / ("gallery.json" if args.database == "sqlite" else "gallery-postgres.json"),
        "threshold_table": out_dir / "threshold_table.json",
    }
    for stale in jsons.values():
        stale.unlink(missing_ok=True)  # a crashed benchmark must not report an old figure
    t0 = time.perf_counter()
    runs = run_all(args, jsons)
    total = round(time.perf_counter() - t0, 1)
    pipe, gallery, table = (load(jsons[k]) for k in ("pipeline", "gallery", "threshold_table"))
    rows = summary_rows(pipe, gallery, table)
    rows.append(
        {
            "item": "total time",
            "value": f"{total:.0f} s (" + ", ".join(f"{k} {v['seconds']:.0f} s" for k, v in runs.items()) + ")",
            "target": f"< {TOTAL_TARGET_S // 60} min",
            "ok": total < TOTAL_TARGET_S,
        }
    )
    print_summary(args, rows, pipe)
    crashed = [k for k, v in runs.items() if v["returncode"] != 0]
    if crashed:
        print(f"  crashed: {', '.join(crashed)} (see above)")
    write_result(args, total, runs, rows, jsons)
    missed = any(r["ok"] is False for r in rows)
    return 1 if crashed or (args.strict and missed) else 0


def run_all(args, jsons: dict[str, Path]) -> dict:
    """The three benchmarks, one after the other, each writing its JSON to `jsons[name]`."""
    py = sys.executable
    pipeline_cmd = [py, "-m", "bench.pipeline", "--images", str(args.images), "--database", args.database]
    return {
        "pipeline": run("pipeline", [*pipeline_cmd, "--json", str(jsons["pipeline"])]),
        "gallery": run(
            "gallery", [py, "-m", "bench.gallery", "--database", args.database, "--out", str(jsons["gallery"])]
        ),
        "threshold_table": run(
            "threshold_table", [py, "-m", "bench.threshold_table", "--out", str(jsons["threshold_table"])]
        ),
    }


def print_summary(args, rows: list[dict], pipe: dict | None) -> None:
    """The table of the figures, and a note when the machine was busy during the daily-job runs."""
    print(f"\nIssue 7 benchmarks ({os.cpu_count()} cores, {args.database}, {args.images} images for the daily job)")
    print(f"  {'':26s} {'value':78s} {'target':>15s} {'':>5s}")
    for r in rows:
        print(f"  {r['item']:26s} {r['value']:78s} {r['target']:>15s} {verdict(r['ok']):>5s}")
    if not pipe:
        return
    shares = {
        **{f"decode {k}": d["cpu_share"] for k, d in pipe["ceilings"]["decode"].items()},
        "inference": pipe["ceilings"]["inference"]["best"]["cpu_share"],
        "end to end": pipe["end_to_end"]["cpu_share"],
    }
    if min(shares.values()) < 0.9:
        print(
            "  note: the machine was busy with other work during the daily-job runs (CPU share "
            + ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
            + "):\n  the images/s figures are low and their ratio uncertain; the CPU-normalised ratio is the"
            " steadier figure (bench/README.md)"
        )


def write_result(args, total: float, runs: dict, rows: list[dict], jsons: dict[str, Path]) -> None:
    """bench/results/bench.json (or --json): the table and where each benchmark's own JSON is."""
    result = {
        "benchmark": "all",
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "args": vars(args),
        "total_seconds": total,
        "runs": runs,
        "rows": rows,
        "results": {k: str(v) for k, v in jsons.items()},
    }
    out = write_json(result, args.json)
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    sys.exit(main())
