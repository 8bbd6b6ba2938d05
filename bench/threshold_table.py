"""Benchmark: the threshold table (14 strategies x 2 target FPRs) on 1M score rows.

python -m bench.threshold_table [--rows 1000000] [--repeat 5] [--out bench/results/threshold_table.json]
"""

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from bench._common import write_json
from liveness.iso import bpcer_at_apcer, iso_at
from liveness.metrics import strategy_table


def synthetic(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    attack = rng.random(n) < 0.3
    scores = np.where(attack, rng.beta(2, 5, n), rng.beta(5, 2, n)).round(4)  # rounded: many ties
    face_w = rng.normal(140, 25, n)
    face_w[rng.random(n) < 0.05] = np.nan
    types = np.where(attack, rng.choice(["print", "replay", "mask"], n), "")
    return {
        "scores": scores,
        "is_attack": attack,
        "face_w": face_w,
        "face_h": face_w * rng.uniform(0.9, 1.2, n),
        "yaw": rng.normal(0, 20, n),
        "pitch": rng.normal(0, 15, n),
        "blur": rng.random(n),
        "attack_types": types,
    }


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results/threshold_table.json"))
    args = parser.parse_args(argv)
    d = synthetic(args.rows)
    table_inputs = {k: d[k] for k in ("face_w", "face_h", "yaw", "pitch", "blur")}
    results = {
        "strategy_table_14x2": timed(lambda: strategy_table(d["scores"], d["is_attack"], **table_inputs), args.repeat),
        "iso_at": timed(lambda: iso_at(d["scores"], d["is_attack"], d["attack_types"], 0.5), args.repeat),
        "bpcer20": timed(lambda: bpcer_at_apcer(d["scores"], d["is_attack"], d["attack_types"], 0.05), args.repeat),
    }
    print(f"threshold table on {args.rows:,} rows ({args.repeat} runs; seconds)")
    print(f"  {'step':24s} {'median':>8s} {'max':>8s}")
    for name, times in results.items():
        print(f"  {name:24s} {np.median(times):8.3f} {max(times):8.3f}")
    verdict = "PASS" if np.median(results["strategy_table_14x2"]) < 2 else "FAIL"
    print(f"  target: strategy table under 2 s: {verdict}")
    result = {
        "rows": args.rows,
        "seconds": results,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(result, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
