"""The decode ceiling and the inference ceiling, measured in pools of processes without Django,
and the combined ceiling of the two."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from bench._common import DEMO_MANIFEST
from bench.pipeline.draft import reductions
from bench.pipeline.procs import init_quiet, ping, proc_mem, rusage, rusage_per_image, spawn_pool

BATCH_SIZES = (1, 8, 32, 64)
DECODE_RULE = {"pipeline": "min_side_pipeline", "full": None, "draft": "min_side"}
# Pillow frees the memory of every image (PILLOW_BLOCKS_MAX=0): a decode loop then page-faults fresh
# memory for each image; with a few cached blocks it reuses them (read by Pillow when it is imported)
BLOCK_CACHE_ENV = {"PILLOW_BLOCKS_MAX": "16"}


# ------------------------------------------------------------------------------------------------
# decode


def _decode_chunk(job):
    from liveness.decode import decode_image

    c0, r0 = time.process_time(), rusage()
    for path, min_side in job:
        decode_image(Path(path).read_bytes(), min_side=min_side)
    r1 = rusage()
    return len(job), time.process_time() - c0, [b - a for a, b in zip(r0, r1, strict=True)]


def decode_ceiling(pool, cores: int, files: list[dict], rule: str) -> dict:
    key = DECODE_RULE[rule]
    items = [(f["path"], f[key] if key else None) for f in files]
    pool.map(_decode_chunk, [items[i : i + 4] for i in range(0, min(len(items), 16), 4)])  # warm the page cache
    chunks = [items[i : i + 8] for i in range(0, len(items), 8)]
    t0 = time.perf_counter()
    res = list(pool.imap_unordered(_decode_chunk, chunks))
    wall = time.perf_counter() - t0
    cpu = sum(r[1] for r in res)
    use = [sum(r[2][k] for r in res) for k in range(3)]
    return {
        **rusage_per_image((0, 0, 0), use, len(items)),
        "images": len(items),
        "seconds": round(wall, 3),
        "rate": round(len(items) / wall, 1),
        "cpu_s": round(cpu, 3),
        "cpu_share": round(cpu / (wall * cores), 2),
        "rate_cpu": round(len(items) / cpu * cores, 1),
    }


def decode_ceilings(args, ctx, files: list[dict]) -> dict:
    """Every decode variant: the rules as they are, then again with Pillow's block cache."""
    decode = {}
    for mem, env, rules in (
        ("", {}, ("pipeline", "full", "draft")),
        (" + block cache", BLOCK_CACHE_ENV, ("pipeline", "draft")),
    ):
        with spawn_pool(ctx, args.workers, env) as pool:
            pool.map(ping, range(args.workers))
            for rule in rules:
                decode[rule + mem] = decode_ceiling(pool, args.workers, files, rule)
                print(f"  {rule + mem}: {decode[rule + mem]['rate']}/s", flush=True)
    return decode


# ------------------------------------------------------------------------------------------------
# inference


_MODELS: dict = {}


def _infer_window(job):
    """Run the ensemble's models on random uint8 crops from start_at for `seconds`."""
    from liveness.manifest import load_manifest
    from liveness.runtime import LivenessModel

    manifest, batch, threads, start_at, seconds = job
    if (manifest, threads) not in _MODELS:  # loaded once per process
        _MODELS[(manifest, threads)] = [LivenessModel(m, threads=threads) for m in load_manifest(manifest).models]
    models = _MODELS[(manifest, threads)]
    rng = np.random.default_rng(os.getpid())
    crops = [rng.integers(0, 256, (batch, *m.manifest.size, 3), dtype=np.uint8) for m in models]
    per_model = [0.0] * len(models)
    for m, c in zip(models, crops, strict=True):  # warm-up: first runs allocate
        m.probabilities(c)
    time.sleep(max(0.0, start_at - time.time()))
    t_start, c0 = time.time(), time.process_time()
    n = 0
    while time.time() < t_start + seconds:
        for k, (m, c) in enumerate(zip(models, crops, strict=True)):
            t = time.perf_counter()
            m.probabilities(c)
            per_model[k] += time.perf_counter() - t
        n += batch
    end = time.time()
    return {
        "images": n,
        "start": t_start,
        "end": end,
        "cpu_s": time.process_time() - c0,
        "per_model_s": per_model,
        **proc_mem(),
    }


def _config_row(args, ctx, procs: int, threads: int, names: list[str]) -> dict:
    """One configuration (`procs` processes x `threads` threads) at every batch size."""
    p = args.workers
    row = {}
    with ctx.Pool(procs, initializer=init_quiet) as pool:
        pool.map(ping, range(procs))
        for k, batch in enumerate(BATCH_SIZES):
            start_at = time.time() + (1.5 if k == 0 else 0.4)  # every process loaded and warmed up by then
            jobs = [(str(DEMO_MANIFEST), batch, threads, start_at, args.seconds)] * procs
            res = pool.map(_infer_window, jobs, chunksize=1)
            rate = sum(r["images"] / (r["end"] - r["start"]) for r in res)
            imgs = sum(r["images"] for r in res)
            cpu = sum(r["cpu_s"] for r in res)
            wall = max(r["end"] for r in res) - min(r["start"] for r in res)
            share = {n: round(sum(r["per_model_s"][j] for r in res) * 1000 / imgs, 3) for j, n in enumerate(names)}
            row[batch] = {
                "rate": round(rate, 1),
                "cpu_share": round(cpu / (wall * p), 2),
                "rate_cpu": round(imgs / cpu * p, 1),
                "ms_per_image_per_model": share,
                "rss_mb": max(r["rss_mb"] for r in res),  # batch sizes run in increasing order
            }
    return row


def inference_ceiling(args, ctx, models) -> dict:
    p = args.workers
    configs = [(f"{p} proc x 1 thread", p, 1)]
    if p > 1:
        configs.append((f"1 proc x {p} threads", 1, p))
        configs.append((f"{p} proc x {p} threads (oversubscribed)", p, p))
    table = {}
    names = [m.name for m in models]
    for label, procs, threads in configs:
        row = table[label] = _config_row(args, ctx, procs, threads, names)
        print(f"  {label:38s} " + "  ".join(f"b{b}: {row[b]['rate']:6.1f}/s" for b in BATCH_SIZES), flush=True)
    best_label, best_batch = max(
        ((lbl, b) for lbl, row in table.items() for b in row), key=lambda k: table[k[0]][k[1]]["rate"]
    )
    return {
        "configs": {k: {str(b): v for b, v in row.items()} for k, row in table.items()},
        "best": {"config": best_label, "batch": best_batch, **table[best_label][best_batch]},
        "rate": table[best_label][best_batch]["rate"],
        "rate_cpu": table[best_label][best_batch]["rate_cpu"],
    }


# ------------------------------------------------------------------------------------------------
# combined


def _combined(d, i):
    return round(1 / (1 / d + 1 / i), 1)


def combined_ceilings(args, decode: dict, inf: dict, files: list[dict], pipeline_rule: str) -> dict:
    """The ceilings' part of the result: both ceilings and the combined one, 1/(1/decode + 1/inference)."""
    # best: by CPU cost (wall rates of different phases are not comparable on a busy machine)
    best = max(decode, key=lambda k: decode[k]["rate_cpu"])
    used = best if args.ceiling_decode == "best" else args.ceiling_decode
    return {
        "decode": decode,
        "decode_used": used,
        "decode_best": best,
        "decode_reductions": {
            "pipeline": reductions(files, "min_side_pipeline"),
            "draft": reductions(files, "min_side"),
        },
        "pipeline_rule": pipeline_rule,
        "inference": inf,
        "combined": _combined(decode[used]["rate"], inf["rate"]),
        "combined_cpu": _combined(decode[used]["rate_cpu"], inf["rate_cpu"]),
        "combined_best": _combined(decode[best]["rate"], inf["rate"]),
        "combined_best_cpu": _combined(decode[best]["rate_cpu"], inf["rate_cpu"]),
    }
