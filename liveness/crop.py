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


def resize_linear(image: Image.Image, w: int, h: int, rect: tuple[int, int, int, int] | None = None) -> Image.Image:
    """The pixels `rect` of `image` (default: all of it) resized to (w, h) as OpenCV's
    cv2.resize(..., interpolation=INTER_LINEAR) samples them: two taps per axis at half-pixel
    centres, edge pixels repeated, no antialiasing when shrinking (unlike Pillow's BILINEAR
    resize). Pillow's affine transform does the sampling, so the cost follows the output size,
    not the rectangle's: 0.1 ms for an 80x80 crop of a 1080x1080 rectangle, where the
    antialiased resize reads all its pixels (3.6 ms). Values are within one grey level of
    OpenCV's: Pillow truncates where OpenCV's fixed point rounds, so up to about half of them
    are one lower, none higher (liveness/tests/test_crop_reference.py).

    A rectangle reaching outside the image (zeros there) or smaller than the output on an axis is
    cut out first, so that the taps at its edges repeat its own edge pixels, as OpenCV does on
    the cut-out; a larger one is sampled in place (its taps never leave it when shrinking). The
    cut-out is a copy of the rectangle: 0.7-1.1 ms for fas_c's pad crop of a 1920x1080 capture
    whose face is near an edge, against 0.3 ms in place."""
    x0, y0, x1, y1 = rect or (0, 0, image.width, image.height)
    rw, rh = x1 - x0, y1 - y0
    if x0 < 0 or y0 < 0 or x1 > image.width or y1 > image.height or rw < w or rh < h:
        image, x0, y0 = image.crop((x0, y0, x1, y1)), 0, 0
    return image.transform((w, h), Image.Transform.AFFINE, (rw / w, 0, x0, 0, rh / h, y0), Image.Resampling.BILINEAR)


def _resize(image: Image.Image, rect: tuple[int, int, int, int], w: int, h: int, interpolation: str) -> Image.Image:
    if interpolation == "opencv_linear":
        return resize_linear(image, w, h, rect)
    return image.crop(rect).resize((w, h), Image.Resampling.BILINEAR)  # zero-filled outside the image


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
    `box` is in original pixels. Resizing is bilinear: Pillow's antialiased resize, or OpenCV's
    INTER_LINEAR sampling with `interpolation = "opencv_linear"` (`resize_linear`); pixels
    outside the image are zero.
    """
    h, w = size
    rect = source_rect(image, recipe, box, scale)
    if recipe.resize == "stretch":
        out = _resize(image, rect, w, h, recipe.interpolation)
    else:
        rw, rh = rect[2] - rect[0], rect[3] - rect[1]
        f = min(w / rw, h / rh)
        nw, nh = max(1, round(rw * f)), max(1, round(rh * f))
        out = Image.new("RGB", (w, h))
        out.paste(_resize(image, rect, nw, nh, recipe.interpolation), ((w - nw) // 2, (h - nh) // 2))
    return np.asarray(out, dtype=np.uint8)
