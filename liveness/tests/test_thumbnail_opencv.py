"""Thumbnails from the crops' array (OpenCV's INTER_AREA halving) are Pillow's reduce, pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from liveness.crop import Pixels
from liveness.pipeline import THUMB_SIDE, halves, thumbnail


def image(w: int, h: int, seed: int, values=None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(values, (h, w, 3)).astype(np.uint8) if values else rng.integers(0, 256, (h, w, 3), np.uint8)


@pytest.mark.parametrize(
    "size",  # halved (k = 2, even sides), odd sides, other factors, small enough to be kept as is
    [(640, 480), (480, 640), (600, 338), (641, 480), (640, 481), (1920, 1080), (1280, 720), (320, 240), (97, 61)],
)
@pytest.mark.parametrize("seed", range(3))
def test_it_makes_the_same_thumbnail_from_the_array_as_from_the_image(size, seed):
    pixels = image(*size, seed)
    img = Image.fromarray(pixels)
    want = thumbnail(img, THUMB_SIDE)
    got = thumbnail(img, THUMB_SIDE, Pixels.of(img))
    assert got.mode == "RGB" and got.size == want.size
    assert max(got.size) <= THUMB_SIDE and max(got.size) > THUMB_SIDE // 2 or got.size == img.size
    assert np.array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.parametrize("values", [[0, 1], [254, 255], [0, 255], [1, 2, 3]])
def test_it_rounds_halves_as_pillow_does(values):
    """Sums of four that end in .5 or .25 when averaged: the rounding of the two must agree."""
    pixels = image(640, 480, 9, values)
    img = Image.fromarray(pixels)
    assert halves(img, THUMB_SIDE)
    assert np.array_equal(np.asarray(thumbnail(img, THUMB_SIDE, Pixels.of(img))), np.asarray(img.reduce(2)))


def test_it_halves_with_pillow_from_pixels_of_part_of_the_image():
    img = Image.fromarray(image(640, 480, 4))
    part = Pixels.of(img, [(100, 0, 580, 480)])
    assert part.array.shape == (480, 480, 3)
    assert np.array_equal(np.asarray(thumbnail(img, THUMB_SIDE, part)), np.asarray(img.reduce(2)))
