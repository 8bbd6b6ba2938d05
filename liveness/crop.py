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


def crop_face(
    image: Image.Image, recipe: CropRecipe, box: Box, size: tuple[int, int], *, scale: float = 1.0
) -> np.ndarray:
    """The model input pixels: uint8 array (h, w, 3) in RGB.

    `image` may be a reduced decode of a larger original: `scale` = original / reduced pixels;
    `box` is in original pixels. Resizing is bilinear; pixels outside the image are zero.
    """
    full_w, full_h = round(image.width * scale), round(image.height * scale)
    x0, y0, x1, y1 = (v / scale for v in crop_rect(recipe, box, full_w, full_h))
    h, w = size
    rect = (round(x0), round(y0), max(round(x1), round(x0) + 1), max(round(y1), round(y0) + 1))
    region = image.crop(rect)  # zero-filled outside the image
    if recipe.resize == "stretch":
        out = region.resize((w, h), Image.Resampling.BILINEAR)
    else:
        rw, rh = region.size
        f = min(w / rw, h / rh)
        nw, nh = max(1, round(rw * f)), max(1, round(rh * f))
        out = Image.new("RGB", (w, h))
        out.paste(region.resize((nw, nh), Image.Resampling.BILINEAR), ((w - nw) // 2, (h - nh) // 2))
    return np.asarray(out, dtype=np.uint8)
