"""The printed report of a result: throughput and ceilings, worker memory, the stage breakdown
and the what-ifs."""

from __future__ import annotations

from bench.pipeline.config import TARGET_RATIO

DECODE_NAMES = {
    "pipeline": "as Pipeline decodes (its draft rule)",
    "full": "full size",
    "draft": "draft, crops >= 1x model input",
    "pipeline + block cache": "as Pipeline, + Pillow block cache",
    "draft + block cache": "draft >= 1x, + Pillow block cache",
}


def _line(label, rate, share=None, rate_cpu=None, extra=""):
    cols = f"{rate:8.1f}"
    cols += f" {share:6.0%}" if share is not None else " " * 7
    cols += f" {rate_cpu:9.1f}" if rate_cpu is not None else " " * 10
    print(f"  {label:60s} {cols}{extra}")


def _code(r: dict) -> None:
    code = r["machine"]["code"]
    print(f"\ncode: commit {code['commit']}; " + ", ".join(f"{k} {v}" for k, v in code["files"].items()))
    if code != r["code_at_start"]:
        print("  WARNING: the daily job's code changed while the benchmark ran: its figures mix two versions")


def _ceilings(r: dict) -> None:
    c, e, args = r["ceilings"], r["end_to_end"], r["args"]
    b = c["inference"]["best"]
    print(
        f"\nDaily job throughput, {args['images']} images ({args['big_share']:.0%} 1920x1080, rest 640x480),"
        f" all cores = {args['workers']} processes"
    )
    print(f"  {'':60s} {'images/s':>8s} {'cpu':>6s} {'cpu-rate':>9s}")
    for k, d in c["decode"].items():
        mark = " *" if k == c["decode_used"] else ""
        _line(f"1. decode ceiling, {DECODE_NAMES.get(k, k)}{mark}", d["rate"], d["cpu_share"], d["rate_cpu"])
    _line(
        f"2. inference ceiling ({b['config']}, batch {b['batch']})",
        c["inference"]["rate"],
        b["cpu_share"],
        b["rate_cpu"],
    )
    _line("3. combined ceiling 1/(1/decode* + 1/inference)", c["combined"], rate_cpu=c["combined_cpu"])
    _line(
        f"   combined ceiling with the best decode ({c['decode_best']})",
        c["combined_best"],
        rate_cpu=c["combined_best_cpu"],
    )
    label = f"3. end to end, {e['workers']} workers x {e['ort_threads']} ORT thread, batches of {e['batch_size']}"
    _line(label, e["rate"], e["cpu_share"], e["rate_cpu"])


def _ratios(r: dict) -> None:
    c = r["ceilings"]
    verdict = "PASS" if r["ratio_ok"] else "FAIL"
    print(f"  {'3. end to end / combined ceiling':60s} {r['ratio']:8.2f}   target >= {TARGET_RATIO}: {verdict}")
    if r.get("ratio_cpu") is not None:
        print(f"  {'   same on CPU-normalised rates (cpu-rate column)':60s} {r['ratio_cpu']:8.2f}")
    print(
        f"  {'   end to end / combined ceiling with the best decode':60s} {r['ratio_best']:8.2f}"
        f"   (CPU-normalised {r['ratio_best_cpu']})"
    )
    print(
        f"  draft reductions: Pipeline's rule {c['decode_reductions']['pipeline']} ({c['pipeline_rule']});"
        f" >= 1x rule {c['decode_reductions']['draft']}"
    )
    for k, v in r["inprocess"].items():
        _line(
            f"   in-process run_day (one process), ORT threads {k}",
            v["rate"],
            extra=f"  {v['cpu_ms_per_image']} ms CPU/image",
        )
    print(
        "  (cpu = CPU time the benchmark's processes got / (wall x cores): below ~0.9 the machine was busy with"
        " other work;\n   cpu-rate = images per CPU second x cores, the rate with the cores to ourselves)"
    )


def _end_to_end(r: dict) -> None:
    c, e, args = r["ceilings"], r["end_to_end"], r["args"]
    if not e["valid"]:
        print(f"  END TO END INVALID: not every file was stored; errors: {e['errors']}")
    print(
        f"  end to end: discover {e['discover_s']:.1f} s, batches {e['batches_s']:.1f} s, finish_run {e['finish_s']:.1f} s,"
        f" batch median {e['batch_s_median']:.1f} s; {e['retries']} retries on 'database is locked'"
    )
    print(
        f"  end to end per image: user {e.get('user_ms_per_image')} ms, system {e.get('sys_ms_per_image')} ms,"
        f" {e.get('minor_faults_per_image')} minor page faults"
        + (f" (worker env {args['worker_env']})" if args["worker_env"] else "")
        + "; decode ceiling: "
        + ", ".join(
            f"{k} system {d.get('sys_ms_per_image')} ms / {d.get('minor_faults_per_image')} faults"
            for k, d in c["decode"].items()
        )
    )
    ck = e["check"]
    print(
        f"  check: {ck['rows']} rows {ck['categories']}, {ck['thumbnails']} thumbnails, {ck['sorted_links']} links,"
        f" inbox {ck['inbox_status']}"
    )


def _inference(r: dict) -> None:
    c = r["ceilings"]
    b = c["inference"]["best"]
    print("\n  inference images/s (cpu share) by configuration and batch size:")
    for label, row in c["inference"]["configs"].items():
        print(f"    {label:38s} " + "  ".join(f"b{k}: {v['rate']:6.1f} ({v['cpu_share']:.0%})" for k, v in row.items()))
    print(f"    ms per image per model at the best: {b['ms_per_image_per_model']}")
    first = next(iter(c["inference"]["configs"].values()))
    print(
        "    RSS of one process after each batch size (MB): "
        + ", ".join(f"b{k} {v['rss_mb']:.0f}" for k, v in first.items())
    )


def _memory(r: dict) -> None:
    e = r["end_to_end"]
    print("\n4. Worker memory (MB): ready / after 20 % of batches / end / peak (VmHWM)")
    for pid, w in e["memory"]["workers"].items():
        print(
            f"  pid {pid}: {w['rss_ready_mb']:.0f} / {w['rss_at_20pct_mb']:.0f} / {w['rss_end_mb']:.0f} / "
            f"{w['peak_mb']:.0f}; growth {w['growth_mb']:+.1f} MB, slope after 20 % {w['mb_per_1000_images']:+.1f} MB"
            f" per 1000 images ({w['batches']} batches, {w['images']} images)"
        )
    print(f"  flat ({e['memory']['rule']}): {'PASS' if r['memory_flat'] else 'FAIL'}")


def _profile(p: dict) -> None:
    print(
        f"\nStage breakdown: in-process run_day, 1 ORT thread (one worker's cost), {p['images']} images,"
        f" {p['rate']:.1f} images/s, {p['cpu_ms_per_image']} ms CPU/image,"
        f" {p['sql_statements_per_image']} SQL statements per image; user {p.get('user_ms_per_image')} ms,"
        f" system {p.get('sys_ms_per_image')} ms, {p.get('minor_faults_per_image')} minor page faults per image"
    )
    print(f"  {'stage':40s} {'ms/image':>9s} {'share':>7s}")
    for name, st in p["stages"].items():
        print(f"  {name:40s} {st['ms_per_image']:9.2f} {st['share']:7.1%}")
    print("  top call paths (exclusive ms/image):")
    for tp in p["top_paths"][:16]:
        print(f"    {tp['ms_per_image']:7.2f}  {tp['path']}")


def _whatifs(r: dict) -> None:
    w, args = r["whatif"], r["args"]
    print(
        f"\nWhat-if, one process, median CPU ms per image ({w['sample']} images; mixed = {args['big_share']:.0%} 1080p):"
    )
    sizes = list(w["ms_median"])
    print(f"  {'':38s} " + " ".join(f"{sz:>10s}" for sz in sizes) + f" {'mixed':>8s}")
    for name in w["ms_mixed"]:
        print(
            f"  {name:38s} "
            + " ".join(f"{w['ms_median'][sz].get(name, 0):10.2f}" for sz in sizes)
            + f" {w['ms_mixed'][name]:8.2f}"
        )
    print(
        f"  draft reductions {w['reductions']}; |score full - draft| max {w['score_abs_diff_max']}, mean "
        f"{w['score_abs_diff_mean']}, decisions changed {w['decision_flips']}; |blur diff| max {w['blur_abs_diff_max']}"
    )
    if w.get("opencv_identical"):
        print(
            "  OpenCV identical to Pillow (images): " + ", ".join(f"{k} {v}" for k, v in w["opencv_identical"].items())
        )
    d = r["db_whatif"]
    if d:
        print(
            f"  database, ms per row ({d['rows']} rows, rolled back): insert one by one (savepoint each)"
            f" {d['insert_one_by_one_ms_per_row']}, bulk_create {d['insert_bulk_create_ms_per_row']};"
            f" inbox exists()+update() per file {d['inbox_update_per_file_ms_per_row']},"
            f" one update for all {d['inbox_update_bulk_ms_per_row']}"
        )


def report(r: dict) -> None:
    _code(r)
    _ceilings(r)
    _ratios(r)
    _end_to_end(r)
    _inference(r)
    _memory(r)
    if r["profile"]:
        _profile(r["profile"])
    _whatifs(r)
