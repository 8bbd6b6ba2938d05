"""Crop recipes (SPEC section 6): from a face box to the model's input pixels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from .boxes import Box
from .manifest import CropRecipe

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 in whole pixels, end exclusive


@dataclass(frozen=True)
class Pixels:
    """Part of an image as an (h, w, 3) uint8 RGB array: its top-left pixel is (x, y) of an image
    of width x height. OpenCV crops read their rectangles from it without another copy."""

    array: np.ndarray
    x: int
    y: int
    width: int
    height: int

    @classmethod
    def of(cls, image: Image.Image, rects: Sequence[Rect] = ()) -> Pixels:
        """The part of `image` that `rects` cover inside it (all of it without `rects`): one
        conversion to an array for all the crops, of fewer pixels than the whole image."""
        w, h = image.size
        x0, y0, x1, y1 = 0, 0, w, h
        if rects:
            x0, y0 = max(0, min(r[0] for r in rects)), max(0, min(r[1] for r in rects))
            x1, y1 = max(x0, min(w, max(r[2] for r in rects))), max(y0, min(h, max(r[3] for r in rects)))
        array = np.asarray(image if (x0, y0, x1, y1) == (0, 0, w, h) else image.crop((x0, y0, x1, y1)))
        return cls(array, x0, y0, w, h)

    def holds(self, x0: int, y0: int, x1: int, y1: int) -> bool:
        ah, aw = self.array.shape[:2]
        return self.x <= x0 and self.y <= y0 and x1 <= self.x + aw and y1 <= self.y + ah

    def cut_out(self, rect: Rect) -> np.ndarray:
        """The pixels of `rect`, zeros where it leaves the image: a view when it lies inside."""
        x0, y0, x1, y1 = rect
        ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, self.width), min(y1, self.height)
        if ix1 > ix0 and iy1 > iy0 and not self.holds(ix0, iy0, ix1, iy1):  # a slice would silently be short
            raise ValueError(f"rectangle {rect} reaches beyond the pixels held from ({self.x}, {self.y})")
        inside = self.array[iy0 - self.y : iy1 - self.y, ix0 - self.x : ix1 - self.x]
        if (ix0, iy0, ix1, iy1) == rect:
            return inside
        out = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
        if ix1 > ix0 and iy1 > iy0:
            out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = inside
        return out


# A decoded image: Pillow's, all its pixels as an (h, w, 3) uint8 RGB array, or a part of them
Source = Image.Image | np.ndarray | Pixels


def effective_scale(recipe: CropRecipe, box: Box) -> float:
    """The dynamic small-face rule: a face whose min side is below `small_face_ref` px gets
    scale * ref / side (so its crop keeps about the pixel size of a reference face), capped at
    `small_face_max_scale`. Never smaller than the recipe's own scale."""
    side = box.min_side
    if recipe.small_face_ref > 0 and recipe.small_face_max_scale > 0 and 0 < side < recipe.small_face_ref:
        return max(recipe.scale, min(recipe.small_face_max_scale, recipe.scale * recipe.small_face_ref / side))
    return recipe.scale


def rounded_box(recipe: CropRecipe, box: Box) -> Box:
    """The box as the crop recipe sees it. `box_round = "truncate"`: x, y, w and h each cut to an
    integer with int(), as MiniFASNet's authors' detector hands its box to their crop; `"round"`:
    to the nearest integer (Python's round, halves to even); `"none"`: unchanged. A side never
    drops below 1 px."""
    if recipe.box_round == "none":
        return box
    f = int if recipe.box_round == "truncate" else round
    return Box(f(box.x), f(box.y), max(1, f(box.w)), max(1, f(box.h)))


def crop_rect(recipe: CropRecipe, box: Box, width: int, height: int) -> tuple[float, float, float, float]:
    """The crop rectangle (x0, y0, x1, y1) in image pixels, from the box after `box_round`.

    `shift` follows the MiniFASNet reference crop: the scale is first reduced so that the crop
    fits the image ((size - 1) / box side), then the rectangle is moved inside the image.
    `pad` keeps the rectangle where it is; what lies outside the image is filled with zeros.
    """
    box = rounded_box(recipe, box)
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


def _size(image: Source) -> tuple[int, int]:
    if isinstance(image, Pixels):
        return image.width, image.height
    return image.size if isinstance(image, Image.Image) else (image.shape[1], image.shape[0])


def cut_out(image: Source, rect: Rect) -> np.ndarray:
    """The pixels of `rect` as an (h, w, 3) array, zeros where it leaves the image (as the
    authors' pad code fills them). Of an array: a view when the rectangle lies inside, no copy."""
    if isinstance(image, Image.Image):
        return np.asarray(image.crop(rect))  # Pillow fills the outside with zeros
    if isinstance(image, np.ndarray):
        image = Pixels(image, 0, 0, image.shape[1], image.shape[0])
    return image.cut_out(rect)


def _resize(image: Source, rect: Rect, w: int, h: int, interpolation: str) -> np.ndarray:
    if interpolation == "opencv_linear":  # cv2.resize itself: the authors' pixels, bit for bit
        return cv2.resize(cut_out(image, rect), (w, h), interpolation=cv2.INTER_LINEAR)
    part = image.crop(rect) if isinstance(image, Image.Image) else Image.fromarray(cut_out(image, rect))
    return np.asarray(part.resize((w, h), Image.Resampling.BILINEAR))


def source_rect(image: Source, recipe: CropRecipe, box: Box, scale: float = 1.0) -> Rect:
    """The pixels of `image` that `crop_face` cuts (x0, y0, x1, y1), end exclusive. `image` may
    be a reduced decode of a larger original (`scale` = original / reduced pixels, `box` in
    original pixels): the rectangle is found at the original's size, then scaled down."""
    width, height = _size(image)
    rect = pixel_rect(recipe, box, round(width * scale), round(height * scale))
    if scale != 1:
        x0, y0, x1, y1 = (round(v / scale) for v in rect)
        rect = (x0, y0, max(x1, x0 + 1), max(y1, y0 + 1))
    return rect


def crop_face(image: Source, recipe: CropRecipe, box: Box, size: tuple[int, int], *, scale: float = 1.0) -> np.ndarray:
    """The model input pixels: uint8 array (h, w, 3) in RGB.

    `image` is a Pillow image, its pixels as an array, or the `Pixels` of a part of it holding
    the crop's rectangle (the same crop each way; an array spares `opencv_linear` crops a copy of
    the rectangle). It may be a reduced decode of a larger
    original: `scale` = original / reduced pixels; `box` is in original pixels. Resizing is
    bilinear: Pillow's antialiased resize, or with `interpolation = "opencv_linear"`
    cv2.resize(..., INTER_LINEAR) on the cut-out; pixels outside the image are zero.
    """
    h, w = size
    rect = source_rect(image, recipe, box, scale)
    if recipe.resize == "stretch":
        return _resize(image, rect, w, h, recipe.interpolation)
    rw, rh = rect[2] - rect[0], rect[3] - rect[1]
    f = min(w / rw, h / rh)
    nw, nh = max(1, round(rw * f)), max(1, round(rh * f))
    out = np.zeros((h, w, 3), np.uint8)
    top, left = (h - nh) // 2, (w - nw) // 2
    out[top : top + nh, left : left + nw] = _resize(image, rect, nw, nh, recipe.interpolation)
    return out
