"""How fast a liveness model runs on this machine (plain library, no Django).

Two figures, measured the way the original team measured every model:

- latency: milliseconds per image with batch 1 on ONE core (an onnxruntime session with
  intra_op_num_threads=1), the cost of scoring one face;
- throughput: images per second at the best of a few batch sizes with onnxruntime's default
  threads (all cores), what a nightly run of a full day can reach.

Both go through `LivenessModel.probabilities`, so the preprocessing (uint8 crop to float tensor)
is included. Inputs are random uint8 crops of the manifest's size. Every figure is the median of
timed calls after a warm-up, and each measurement stops after a short time budget, so a small
model is measured in well under a few seconds.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from .manifest import ModelManifest
from .runtime import LivenessModel

BATCHES = (1, 8, 32, 64)


def _crops(manifest: ModelManifest, n: int, seed: int = 0) -> np.ndarray:
    h, w = manifest.size
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def _median_seconds(model: LivenessModel, crops: np.ndarray, *, runs: int, warmup: int, budget_s: float) -> float:
    """Median wall time of one `probabilities` call: `warmup` untimed calls, then up to `runs`
    timed ones, stopping early (after at least 3) once `budget_s` seconds are spent."""
    for _ in range(warmup):
        model.probabilities(crops)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < runs:
        t0 = time.perf_counter()
        model.probabilities(crops)
        times.append(time.perf_counter() - t0)
        if len(times) >= 3 and time.perf_counter() - started > budget_s:
            break
    return statistics.median(times)


def measure_latency(
    manifest: ModelManifest, runs: int = 30, threads: int = 1, *, warmup: int = 3, budget_s: float = 0.5
) -> float:
    """Milliseconds per image with batch 1 on `threads` cores (default one): the median of up to
    `runs` timed calls after `warmup` untimed ones."""
    if runs < 1:
        raise ValueError(f"runs: must be at least 1, got {runs}")
    model = LivenessModel(manifest, threads=threads)
    return 1000.0 * _median_seconds(model, _crops(manifest, 1), runs=runs, warmup=warmup, budget_s=budget_s)


def measure_throughput(
    manifest: ModelManifest,
    batches: tuple[int, ...] = BATCHES,
    *,
    threads: int = 0,
    runs: int = 10,
    budget_s: float = 0.4,
) -> tuple[float, int]:
    """(images per second, the batch size that gave it): for each batch size, the median time
    of up to `runs` calls after one warm-up call; `threads=0` is onnxruntime's default (all
    cores). A model exported with a fixed batch size runs in chunks of it (LivenessModel)."""
    batches = tuple(batches)
    if not batches or any(not isinstance(b, int) or b < 1 for b in batches):
        raise ValueError(f"batches: expected positive integers, got {batches!r}")
    model = LivenessModel(manifest, threads=threads)
    best = (0.0, batches[0])
    for b in batches:
        seconds = _median_seconds(model, _crops(manifest, b, seed=b), runs=runs, warmup=1, budget_s=budget_s)
        rate = b / seconds
        if rate > best[0]:
            best = (rate, b)
    return best
