"""Crop recipes (SPEC section 6): from a face box to the model's input pixels."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .boxes import Box
from .manifest import CropRecipe


def effective_scale(recipe: CropRecipe, box: Box) -> float:
    """The dynamic small-face rule: a face whose min side is below `small_face_ref` px gets
    scale * ref / side (so its crop keeps about the pixel size of a reference face), capped at
    `small_face_max_scale`. Never smaller than the recipe's own scale."""
    side = box.min_side
    if recipe.small_face_ref > 0 and recipe.small_face_max_scale > 0 and 0 < side < recipe.small_face_ref:
        return max(recipe.scale, min(recipe.small_face_max_scale, recipe.scale * recipe.small_face_ref / side))
    return recipe.scale


def crop_rect(recipe: CropRecipe, box: Box, width: int, height: int) -> tuple[float, float, float, float]:
    """The crop rectangle (x0, y0, x1, y1) in image pixels.

    `shift` follows the MiniFASNet reference crop: the scale is first reduced so that the crop
    fits the image ((size - 1) / box side), then the rectangle is moved inside the image.
    `pad` keeps the rectangle where it is; what lies outside the image is filled with zeros.
    """
    scale = effective_scale(recipe, box)
    if recipe.side == "max":
        bw = bh = max(box.w, box.h)
    else:
        bw, bh = box.w, box.h
    if recipe.border == "shift":
        scale = min(scale, (height - 1) / bh if bh else scale, (width - 1) / bw if bw else scale)
    cw, ch = bw * scale, bh * scale
    x0, y0 = box.cx - cw / 2, box.cy - ch / 2
    x1, y1 = x0 + cw, y0 + ch
    if recipe.border == "shift":
        if x0 < 0:
            x1, x0 = x1 - x0, 0.0
        if y0 < 0:
            y1, y0 = y1 - y0, 0.0
        if x1 > width - 1:
            x0, x1 = x0 - (x1 - width + 1), float(width - 1)
        if y1 > height - 1:
            y0, y1 = y0 - (y1 - height + 1), float(height - 1)
    return x0, y0, x1, y1


def pixel_rect(recipe: CropRecipe, box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """The crop in whole pixels (x0, y0, x1, y1), end exclusive.

    `shift` rounds as the MiniFASNet reference does: each corner truncated with int(), the
    bottom-right pixel included (its slice is img[y0 : y1 + 1, x0 : x1 + 1]). `pad` rounds to
    the nearest pixel and keeps at least one pixel."""
    x0, y0, x1, y1 = crop_rect(recipe, box, width, height)
    if recipe.border == "shift":
        return int(x0), int(y0), int(x1) + 1, int(y1) + 1
    return round(x0), round(y0), max(round(x1), round(x0) + 1), max(round(y1), round(y0) + 1)


def _linear_taps(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's INTER_LINEAR source taps: half-pixel centres, clamped at the edges, weights in
    fixed point (x 2048) as OpenCV rounds them."""
    s = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    i0 = np.floor(s).astype(np.int64)
    t = s - i0
    t[i0 < 0] = 0.0
    i0 = np.clip(i0, 0, n_in - 1)
    t[i0 >= n_in - 1] = 0.0
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = np.round(t * 2048).astype(np.int64)
    return i0, i1, w1


def resize_opencv_linear(pixels: np.ndarray, w: int, h: int) -> np.ndarray:
    """Resize uint8 (H, W, 3) like cv2.resize(..., interpolation=INTER_LINEAR): two taps per axis,
    no antialiasing when shrinking (unlike Pillow's BILINEAR). The vertical pass rounds as
    OpenCV's vectorised code does ((row >> 4) * weight >> 16, then + 2 >> 2), so nearly every
    pixel is identical and none is more than one grey level off."""
    a = pixels.astype(np.int64)
    x0, x1, wx = _linear_taps(w, a.shape[1])
    y0, y1, wy = _linear_taps(h, a.shape[0])
    rows = (a[:, x0] * (2048 - wx)[None, :, None] + a[:, x1] * wx[None, :, None]) >> 4
    out = ((rows[y0] * (2048 - wy)[:, None, None]) >> 16) + ((rows[y1] * wy[:, None, None]) >> 16)
    return ((out + 2) >> 2).clip(0, 255).astype(np.uint8)


def _resize(region: Image.Image, w: int, h: int, interpolation: str) -> Image.Image:
    if interpolation == "opencv_linear":
        return Image.fromarray(resize_opencv_linear(np.asarray(region), w, h))
    return region.resize((w, h), Image.Resampling.BILINEAR)


def source_rect(image: Image.Image, recipe: CropRecipe, box: Box, scale: float = 1.0) -> tuple[int, int, int, int]:
    """The pixels of `image` that `crop_face` cuts (x0, y0, x1, y1), end exclusive. `image` may
    be a reduced decode of a larger original (`scale` = original / reduced pixels, `box` in
    original pixels): the rectangle is found at the original's size, then scaled down."""
    full_w, full_h = round(image.width * scale), round(image.height * scale)
    rect = pixel_rect(recipe, box, full_w, full_h)
    if scale != 1:
        x0, y0, x1, y1 = (round(v / scale) for v in rect)
        rect = (x0, y0, max(x1, x0 + 1), max(y1, y0 + 1))
    return rect


def crop_face(
    image: Image.Image, recipe: CropRecipe, box: Box, size: tuple[int, int], *, scale: float = 1.0
) -> np.ndarray:
    """The model input pixels: uint8 array (h, w, 3) in RGB.

    `image` may be a reduced decode of a larger original: `scale` = original / reduced pixels;
    `box` is in original pixels. Resizing is bilinear (Pillow's, or OpenCV's INTER_LINEAR with
    `interpolation = "opencv_linear"`); pixels outside the image are zero.
    """
    h, w = size
    region = image.crop(source_rect(image, recipe, box, scale))  # zero-filled outside the image
    if recipe.resize == "stretch":
        out = _resize(region, w, h, recipe.interpolation)
    else:
        rw, rh = region.size
        f = min(w / rw, h / rh)
        nw, nh = max(1, round(rw * f)), max(1, round(rh * f))
        out = Image.new("RGB", (w, h))
        out.paste(_resize(region, nw, nh, recipe.interpolation), ((w - nw) // 2, (h - nh) // 2))
    return np.asarray(out, dtype=np.uint8)
