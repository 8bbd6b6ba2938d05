"""Drawing primitives shared by the scenes, the people and the attacks: soft ellipses blended into
float RGB arrays (height, width, 3) in place, gradients and random colours."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image


def uniform(rng, low, high):
    return float(rng.uniform(low, high))


def soft_ellipse(img, cx, cy, rx, ry, angle, color, alpha=1.0, soft=0.0, ring=0.0):
    """Blend a soft-edged (optionally ring-shaped) rotated ellipse into img (height, width, 3) in place."""
    if rx < 0.4 or ry < 0.4 or alpha <= 0:
        return
    height, width = img.shape[:2]
    reach = max(rx, ry) + 2
    x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, width)
    y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, height)
    if x0 >= x1 or y0 >= y1:
        return
    xs = np.arange(x0, x1, dtype=np.float32) + 0.5 - cx
    ys = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]
    cos_angle, sin_angle = math.cos(angle), math.sin(angle)
    u = (xs * cos_angle + ys * sin_angle) / rx
    v = (ys * cos_angle - xs * sin_angle) / ry
    distance = np.sqrt(u * u + v * v)
    edge = max(soft, 1.3 / min(rx, ry))
    mask = np.clip((1.0 - distance) / edge, 0.0, 1.0)
    if ring > 0:
        mask *= np.clip((distance - (1.0 - ring)) / edge, 0.0, 1.0)
    mask *= alpha
    region = img[y0:y1, x0:x1]
    region += (np.asarray(color, np.float32) - region) * mask[..., None]


def gradient_image(rng, width, height, color0, color1, angle=None):
    """Linear gradient color0 -> color1 (uint8 RGB PIL image), via a tiny image resized (fast)."""
    angle = uniform(rng, 0, 2 * math.pi) if angle is None else angle
    steps = np.linspace(0, 1, 8, dtype=np.float32)
    grid_x, grid_y = np.meshgrid(steps - 0.5, steps - 0.5)
    mix = np.clip(grid_x * math.cos(angle) + grid_y * math.sin(angle) + 0.5, 0, 1)[..., None]
    small = np.asarray(color0, np.float32) * (1 - mix) + np.asarray(color1, np.float32) * mix
    return Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).resize((width, height), Image.BILINEAR)


def random_color(rng, low=30, high=230, spread=0.5):
    """A random RGB colour around a grey level in low..high; spread 0 is grey, 1 is colourful."""
    base = rng.uniform(low, high)
    return tuple(int(np.clip(base + rng.normal(0, spread * 50), 0, 255)) for _ in range(3))
