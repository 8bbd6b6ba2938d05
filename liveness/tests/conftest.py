"""Shared helpers for the scoring-library tests. Every input is generated here, in memory."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image


def _encode(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _textured(size: tuple[int, int] = (96, 96), seed: int = 0, colour=(128, 128, 128)) -> Image.Image:
    """A sharp, face-sized test pattern: blocky random texture around `colour`."""
    w, h = size
    rng = np.random.default_rng(seed)
    blocks = rng.integers(-60, 61, size=(h // 4 + 1, w // 4 + 1, 1))
    tex = np.kron(blocks, np.ones((4, 4, 1)))[:h, :w]
    arr = np.clip(np.asarray(colour, dtype=np.float64) + tex, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


@pytest.fixture
def encode():
    """encode(image, fmt="PNG", **save_kwargs) -> bytes."""
    return _encode


@pytest.fixture
def textured():
    """textured(size=(w, h), seed=0, colour=(r, g, b)) -> a sharp RGB test pattern."""
    return _textured
