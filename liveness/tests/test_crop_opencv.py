"""`opencv_linear` crops are cv2.resize(..., INTER_LINEAR) of the cut-out, bit for bit.

Hundreds of random cases (seeded): shift and pad borders, stretch and letterbox, boxes at the
image edges and outside it, crops smaller than the model input (upscaling), 1-pixel boxes, odd
image and input sizes, every box_round. Each crop, from the Pillow image, from its pixels as an
array and from `Pixels` of the part of it the crops cover, must equal cv2.resize run on a
zero-padded cut-out made here with np.pad.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from liveness.boxes import Box
from liveness.crop import Pixels, crop_face, source_rect
from liveness.manifest import CropRecipe

CASES = 400


def reference_cut_out(pixels: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
    """The rectangle of the image padded with zeros on every side by as much as it leaves it."""
    x0, y0, x1, y1 = rect
    h, w = pixels.shape[:2]
    m = max(0, -x0, -y0, x1 - w, y1 - h)
    padded = np.pad(pixels, ((m, m), (m, m), (0, 0)))
    return padded[y0 + m : y1 + m, x0 + m : x1 + m]


def reference_crop(pixels: np.ndarray, rect, out_w: int, out_h: int, letterbox: bool) -> np.ndarray:
    cut = reference_cut_out(pixels, rect)
    if not letterbox:
        return cv2.resize(cut, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    ch, cw = cut.shape[:2]
    f = min(out_w / cw, out_h / ch)  # aspect kept, centred on zeros
    nw, nh = max(1, round(cw * f)), max(1, round(ch * f))
    out = np.zeros((out_h, out_w, 3), np.uint8)
    left, top = (out_w - nw) // 2, (out_h - nh) // 2
    out[top : top + nh, left : left + nw] = cv2.resize(cut, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return out


def random_case(seed: int):
    rng = np.random.default_rng(seed)
    w, h = (int(v) for v in rng.integers(1, 8, 2)) if seed % 20 == 0 else (int(v) for v in rng.integers(9, 400, 2))
    pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if seed % 7 == 0:  # a 1-pixel face
        bw = bh = 1.0
    else:
        bw, bh = (float(v) for v in rng.uniform(0.6, 1.2 * max(w, h), 2))
    # corners from well outside the image (before its top-left, past its bottom-right) to inside
    x = float(rng.uniform(-bw, w + 2)) if seed % 3 else float(rng.choice([-bw / 2, 0.0, w - bw / 2, w - 1.0]))
    y = float(rng.uniform(-bh, h + 2)) if seed % 3 else float(rng.choice([-bh / 2, 0.0, h - bh / 2, h - 1.0]))
    recipe = CropRecipe(
        side=str(rng.choice(["max", "axes"])),
        scale=float(rng.choice([1.0, 1.5, 2.7, 4.0, float(rng.uniform(0.3, 5.0))])),
        border=str(rng.choice(["pad", "shift"])),
        resize=str(rng.choice(["stretch", "letterbox"])),
        interpolation="opencv_linear",
        box_round=str(rng.choice(["none", "truncate", "round"])),
        small_face_ref=130.0 if seed % 5 == 0 else 0.0,
        small_face_max_scale=4.0 if seed % 5 == 0 else 0.0,
    )
    out = tuple(int(v) for v in rng.integers(1, 161, 2))  # h, w: larger than small rectangles (upscaling)
    return pixels, Box(x, y, bw, bh), recipe, out


@pytest.mark.parametrize("seed", range(CASES))
def test_it_crops_exactly_as_cv2_resize_on_the_cut_out(seed):
    pixels, box, recipe, (out_h, out_w) = random_case(seed)
    rect = source_rect(pixels, recipe, box)
    want = reference_crop(pixels, rect, out_w, out_h, recipe.resize == "letterbox")
    img = Image.fromarray(pixels)
    other = random_case(seed + CASES)[1]  # another face's rectangle widens the part held
    sources = (
        pixels,
        img,
        Pixels.of(img),
        Pixels.of(img, [rect]),
        Pixels.of(img, [rect, source_rect(img, recipe, other)]),
    )
    for image in sources:
        got = crop_face(image, recipe, box, (out_h, out_w))
        assert got.shape == (out_h, out_w, 3) and got.dtype == np.uint8
        assert np.array_equal(got, want), (recipe, box, rect, np.argwhere(got != want)[:3].tolist())


def test_it_covers_every_kind_of_case():
    """The random cases hold what they claim: both borders and resizes, every rounding, rectangles
    leaving the image, crops smaller than the input, 1-pixel boxes, odd sizes."""
    seen = set()
    for seed in range(CASES):
        pixels, box, recipe, (out_h, out_w) = random_case(seed)
        x0, y0, x1, y1 = source_rect(pixels, recipe, box)
        h, w = pixels.shape[:2]
        seen |= {recipe.border, recipe.resize, recipe.box_round}
        seen |= {"outside"} if x0 < 0 or y0 < 0 or x1 > w or y1 > h else set()
        seen |= {"upscaling"} if x1 - x0 < out_w or y1 - y0 < out_h else set()
        seen |= {"1-pixel box"} if box.w == box.h == 1 else set()
        seen |= {"odd sizes"} if w % 2 and h % 2 and out_w % 2 else set()
    assert seen >= {"pad", "shift", "stretch", "letterbox", "none", "truncate", "round"}
    assert seen >= {"outside", "upscaling", "1-pixel box", "odd sizes"}


@pytest.mark.parametrize("seed", range(0, CASES, 4))
def test_it_rounds_the_box_before_the_crop(seed):
    """box_round is the box cut to integers first, then the unrounded recipe: int() of x, y, w
    and h for "truncate", round() for "round", sides of at least 1 px."""
    pixels, box, recipe, _ = random_case(seed)
    unrounded = CropRecipe(**{**recipe.__dict__, "box_round": "none"})
    for mode, f in (("truncate", int), ("round", round)):
        rounded = Box(f(box.x), f(box.y), max(1, f(box.w)), max(1, f(box.h)))
        rounding = CropRecipe(**{**recipe.__dict__, "box_round": mode})
        assert source_rect(pixels, rounding, box) == source_rect(pixels, unrounded, rounded)


def test_it_holds_only_the_part_the_rectangles_cover_inside_the_image():
    img = Image.fromarray(np.arange(40 * 30 * 3, dtype=np.uint32).astype(np.uint8).reshape(30, 40, 3))
    part = Pixels.of(img, [(-5, 3, 12, 10), (8, 6, 20, 50)])
    assert (part.x, part.y, part.width, part.height, part.array.shape) == (0, 3, 40, 30, (27, 20, 3))
    assert np.array_equal(part.array, np.asarray(img)[3:30, 0:20])
    assert np.array_equal(part.cut_out((2, 4, 9, 9)), np.asarray(img)[4:9, 2:9])


@pytest.mark.parametrize("rect", [(0, 0, 5, 5), (15, 5, 25, 8), (-3, 2, 4, 8)])
def test_it_refuses_a_rectangle_beyond_the_pixels_it_holds(rect):
    """A slice beyond the array would be silently short: a wrong crop, not an error."""
    part = Pixels.of(Image.new("RGB", (40, 30)), [(2, 3, 20, 10)])
    with pytest.raises(ValueError, match="beyond the pixels held"):
        part.cut_out(rect)
