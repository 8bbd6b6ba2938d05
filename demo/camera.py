"""The capturing camera: blur, lighting gradient, vignetting, white balance, a degraded device's
lost contrast, sensor noise and a device's fixed-pattern (row/column) noise."""

from __future__ import annotations

import math
import zlib
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter

from .paint import uniform


@lru_cache(maxsize=1)
def _noise_bank():
    return np.random.default_rng(12345).standard_normal((1300, 2200, 3), dtype=np.float32)


@lru_cache(maxsize=16)
def _device_fpn(device_id, width, height, amplitude):
    device_rng = np.random.default_rng(zlib.crc32(device_id.encode()))
    columns = (device_rng.standard_normal((width, 3)) * amplitude).astype(np.float32)
    rows = (device_rng.standard_normal((height, 1)) * amplitude * 0.6).astype(np.float32)
    return columns, rows


def device_noise(rng, device, width, height):
    """(read-noise sigma, fixed-pattern noise) of a device profile; random for no device.  A
    device's fixed pattern is the same in all its captures."""
    if device is not None:
        return device.noise, _device_fpn(device.device_id, width, height, device.fpn)
    noise = uniform(rng, 1.5, 5.0)
    amplitude = uniform(rng, 0.3, 1.5)
    fpn = (
        (rng.standard_normal((width, 3)) * amplitude).astype(np.float32),
        (rng.standard_normal((height, 1)) * amplitude * 0.6).astype(np.float32),
    )
    return noise, fpn


def blur_image(im: Image.Image, sigma: float) -> Image.Image:
    """Approximately Gaussian blur of standard deviation sigma (px), fast on big frames:
    one box pass for small sigma, a box down-sampling + bilinear up-sampling for large."""
    if sigma < 0.3:
        return im
    if sigma < 1.6:
        return im.filter(ImageFilter.BoxBlur(max(0.02, (sigma * math.sqrt(12.0) - 1.0) / 2.0)))
    factor = 2.0 * sigma * 0.94
    width, height = im.size
    small = im.resize((max(2, round(width / factor)), max(2, round(height / factor))), Image.BOX)
    return small.resize((width, height), Image.BILINEAR).filter(ImageFilter.BoxBlur(0.5))


def capture(rng, arr, *, noise, fpn, blur_sigma, quality):
    """The capturing camera, in place on arr (height, width, 3) float32 0..255; returns uint8 array."""
    np.clip(arr, 0, 255, out=arr)
    if blur_sigma >= 0.3:
        im = blur_image(Image.fromarray(arr.astype(np.uint8)), blur_sigma)
        arr[...] = np.asarray(im)
    _light_and_white_balance(rng, arr)
    quality = float(np.clip(quality, 0.05, 1.0))
    _lose_contrast(arr, quality)
    _add_sensor_noise(rng, arr, noise * (1 + 3.0 * (1 - quality)) * uniform(rng, 0.7, 1.3))
    if fpn is not None:
        columns, rows = fpn
        arr += columns[None, :, :]
        arr += rows[:, None, :]
    np.clip(arr, 0, 255, out=arr)
    arr += 0.5
    return arr.astype(np.uint8)


def _light_and_white_balance(rng, arr):
    """Lighting gradient + vignetting (separable) + exposure + white balance, in place."""
    height, width = arr.shape[:2]
    angle = uniform(rng, 0, 2 * math.pi)
    gradient = uniform(rng, 0.0, 0.45)
    vignette = uniform(rng, 0.0, 0.5)
    tx = np.linspace(-1, 1, width, dtype=np.float32)
    ty = np.linspace(-1, 1, height, dtype=np.float32) * (height / width)
    temperature, tint = rng.normal(0, 0.07), rng.normal(0, 0.025)
    balance = np.array([1 + temperature, 1 + tint, 1 - temperature], np.float32) * uniform(rng, 0.8, 1.15)
    gain_x = (1 + gradient * math.cos(angle) * tx - vignette * 0.5 * tx * tx)[:, None] * balance[None, :]
    gain_y = (1 + gradient * math.sin(angle) * ty - vignette * 0.5 * ty * ty)[:, None]
    arr *= gain_x[None, :, :]
    arr *= gain_y[:, None, :]


def _lose_contrast(arr, quality):
    """A degraded device (quality < 1): less contrast, lifted blacks, in place."""
    contrast = 0.55 + 0.45 * quality
    if contrast < 0.999:
        arr -= 110.0
        arr *= contrast
        arr += 110.0 + 20.0 * (1 - quality)


def _add_sensor_noise(rng, arr, sigma):
    """Sensor noise from a fixed bank at a random offset (fast, deterministic), in place."""
    height, width = arr.shape[:2]
    bank = _noise_bank()
    if height <= bank.shape[0] and width <= bank.shape[1]:
        oy, ox = int(rng.integers(0, bank.shape[0] - height + 1)), int(rng.integers(0, bank.shape[1] - width + 1))
        view = bank[oy : oy + height, ox : ox + width]
    else:  # bigger than the bank (e.g. 1080x1920 portrait): draw fresh noise
        view = rng.standard_normal((height, width, 3), dtype=np.float32)
    if rng.random() < 0.5:
        view = view[::-1, ::-1]
    if sigma > 0.05:
        arr /= sigma
        arr += view
        arr *= sigma
