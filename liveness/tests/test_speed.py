"""Model speed: latency (batch 1, one core) and throughput (best batch, all cores) of the demo
models. Relations between the figures only, no timing thresholds: machines differ."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from liveness.manifest import load_manifest
from liveness.runtime import load_session
from liveness.speed import BATCHES, measure_latency, measure_throughput

from .onnx_models import write_model

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo" / "models"


@pytest.mark.parametrize("name", ["fas_a", "fas_b", "fas_c"])
def test_it_measures_latency_and_throughput_of_the_demo_models(name):
    manifest = load_manifest(DEMO / f"{name}.toml")

    latency = measure_latency(manifest, runs=10)
    throughput, best_batch = measure_throughput(manifest)

    assert math.isfinite(latency) and latency > 0
    assert math.isfinite(throughput) and throughput > 0
    assert best_batch in BATCHES
    # all cores at the best batch size do at least about as well as one core one image at a time
    assert throughput >= 1000 / latency * 0.5


def test_it_measures_latency_on_one_core_and_throughput_on_all(monkeypatch):
    from liveness import runtime

    asked = []

    def spy(path, threads=0):
        asked.append(threads)
        return load_session(path, threads)

    monkeypatch.setattr(runtime, "load_session", spy)
    manifest = load_manifest(DEMO / "fas_a.toml")
    measure_latency(manifest, runs=2)
    measure_throughput(manifest, batches=(1,), runs=2)
    assert asked == [1, 0]  # one intra-op thread; then onnxruntime's default (all cores)


def test_it_picks_the_best_batch_among_the_candidates_given():
    manifest = load_manifest(DEMO / "fas_b.toml")
    throughput, best_batch = measure_throughput(manifest, batches=(2, 4), runs=3)
    assert throughput > 0 and best_batch in (2, 4)


def test_it_handles_a_model_exported_with_a_fixed_batch_size(tmp_path):
    manifest = load_manifest(write_model(tmp_path, "fixed", batch=4))
    assert measure_latency(manifest, runs=3) > 0
    throughput, best_batch = measure_throughput(manifest, batches=(1, 8), runs=3)
    assert throughput > 0 and best_batch in (1, 8)


@pytest.mark.parametrize("bad", [(), (0, 8), (8, -1)])
def test_it_refuses_bad_batch_sizes(bad):
    with pytest.raises(ValueError, match="batches"):
        measure_throughput(load_manifest(DEMO / "fas_a.toml"), batches=bad)


def test_it_imports_without_django():
    code = "import sys, liveness.speed; assert not any(m.split('.')[0] == 'django' for m in sys.modules); print('ok')"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
