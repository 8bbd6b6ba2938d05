"""The face hash (liveness/pipeline.py `face_hash`): a perceptual hash of the face box that keeps a
person's retries seconds apart close and other people far apart (monitor/attempts.py groups on it)."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from PIL import Image

import demo
from liveness.boxes import Box
from liveness.pipeline import FileInput, Pipeline, face_hash

from .test_pipeline import make_ensemble

# monitor/settings.py KOALA_ATTEMPT_HASH_DISTANCE's default; liveness/ does not read Django settings
DEFAULT_DISTANCE = 12


def bits(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def render(seed: int, yaw: float = 0.0, pitch: float = 0.0, **kwargs) -> demo.Sample:
    """One scene per seed: the same seed with another pose is the same person in the same place."""
    kwargs = {"label": "genuine", "face_size": 200, "blur": 0.0, **kwargs}
    return demo.render_sample(np.random.default_rng(seed), yaw=yaw, pitch=pitch, **kwargs)


def retry(seed: int, rng: np.random.Generator) -> tuple[Image.Image, Box]:
    """The scene of `seed` captured again: the head turned a little, new sensor noise, another
    JPEG quality, as a second attempt a few seconds later looks."""
    s = render(seed, yaw=float(rng.uniform(-3, 3)), pitch=float(rng.uniform(-2, 2)))
    noisy = np.asarray(s.image, dtype=np.float64) + rng.normal(0, 3, (s.image.height, s.image.width, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=int(rng.integers(70, 95)))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), s.box


def test_it_is_sixteen_hex_characters():
    s = render(1)
    h = face_hash(s.image, s.box)
    assert re.fullmatch(r"[0-9a-f]{16}", h), h


def test_it_keeps_retries_of_one_scene_within_the_default_distance():
    rng = np.random.default_rng(5)
    for seed in range(6):
        first = render(seed)
        h = face_hash(first.image, first.box)
        for _ in range(4):
            image, box = retry(seed, rng)
            assert bits(h, face_hash(image, box)) <= DEFAULT_DISTANCE, f"scene {seed}"


def test_it_puts_other_people_far_apart():
    samples = [render(seed) for seed in range(8)]
    samples += [render(seed, label="attack", attack_type="replay") for seed in range(8, 11)]
    hashes = [face_hash(s.image, s.box) for s in samples]
    far = [bits(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]]
    assert min(far) > DEFAULT_DISTANCE
    assert np.mean(far) > 2 * DEFAULT_DISTANCE  # typically about half of the 64 bits differ


def test_it_reads_the_box_of_a_reduced_decode_as_of_the_full_image():
    s = render(3, size=(1280, 960), face_size=600)
    half = s.image.reduce(2)
    assert bits(face_hash(s.image, s.box), face_hash(half, s.box, scale=2.0)) <= 4


@pytest.mark.parametrize("box", [Box(-50, -50, 120, 120), Box(600, 420, 200, 200)])
def test_it_hashes_a_box_reaching_outside_the_image(box):
    s = render(4)
    assert len(face_hash(s.image, box)) == 16


def test_the_pipeline_fills_it_only_for_images_with_a_face(tmp_path):
    s = render(2)
    buf = io.BytesIO()
    s.image.save(buf, "JPEG", quality=92)
    box = Box(*(round(v) for v in (s.box.x, s.box.y, s.box.w, s.box.h)))  # as a sidecar holds it
    sidecar = json.dumps({"face": box.as_dict()}).encode()
    files = [FileInput(buf.getvalue(), sidecar), FileInput(buf.getvalue())]
    with_face, without = Pipeline(make_ensemble(tmp_path), draft=False).analyse(files)
    decoded = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    assert with_face.face_hash == face_hash(decoded, box)
    assert bits(with_face.face_hash, face_hash(s.image, s.box)) <= DEFAULT_DISTANCE
    assert without.category == "no_face" and without.face_hash == ""
