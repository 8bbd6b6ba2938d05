"""Crop recipes: side (max/axes), scale, small-face rule, border (pad/shift), resize (stretch/letterbox)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from liveness.boxes import Box
from liveness.crop import crop_face, crop_rect, effective_scale
from liveness.manifest import CropRecipe

# --- the small-face rule ---------------------------------------------------------------------------

SMALL = CropRecipe(scale=1.5, small_face_ref=130, small_face_max_scale=4.0)


def test_it_doubles_the_scale_for_a_face_half_the_reference_size():
    assert effective_scale(SMALL, Box(0, 0, 65, 80)) == pytest.approx(3.0)


def test_it_caps_the_small_face_scale():
    assert effective_scale(SMALL, Box(0, 0, 20, 20)) == 4.0
    capped = CropRecipe(scale=2.7, small_face_ref=130, small_face_max_scale=4.0)
    assert effective_scale(capped, Box(0, 0, 65, 65)) == 4.0  # 5.4 would exceed the cap


def test_it_keeps_the_recipe_scale_for_faces_at_or_above_the_reference():
    assert effective_scale(SMALL, Box(0, 0, 130, 130)) == 1.5
    assert effective_scale(SMALL, Box(0, 0, 400, 300)) == 1.5


def test_it_never_shrinks_the_scale_when_the_cap_is_below_it():
    odd = CropRecipe(scale=3.0, small_face_ref=130, small_face_max_scale=2.0)
    assert effective_scale(odd, Box(0, 0, 40, 40)) == 3.0


@pytest.mark.parametrize("recipe", [CropRecipe(scale=1.5), CropRecipe(scale=1.5, small_face_ref=130)])
def test_it_leaves_small_faces_alone_when_the_rule_is_off(recipe):
    assert effective_scale(recipe, Box(0, 0, 40, 40)) == 1.5


def test_it_crops_a_small_face_wider_in_pixels():
    rect = crop_rect(SMALL, Box(100, 100, 65, 65), 1000, 1000)
    assert rect[2] - rect[0] == pytest.approx(65 * 3.0)


# --- crop side: max vs axes ------------------------------------------------------------------------


def test_it_makes_a_square_crop_of_the_larger_side_with_max():
    x0, y0, x1, y1 = crop_rect(CropRecipe(side="max", scale=2.0), Box(400, 300, 100, 50), 1000, 1000)
    assert (x1 - x0, y1 - y0) == (200, 200)
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == (450, 325)  # centred on the box


def test_it_scales_each_axis_separately_with_axes():
    x0, y0, x1, y1 = crop_rect(CropRecipe(side="axes", scale=2.0), Box(400, 300, 100, 50), 1000, 1000)
    assert (x1 - x0, y1 - y0) == (200, 100)
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == (450, 325)


# --- border: pad vs shift --------------------------------------------------------------------------


def test_it_lets_a_pad_crop_extend_beyond_the_image():
    rect = crop_rect(CropRecipe(scale=2.0, border="pad"), Box(0, 0, 50, 50), 100, 100)
    assert rect == (-25, -25, 75, 75)


def test_it_fills_the_outside_of_a_pad_crop_with_zeros():
    img = Image.new("RGB", (100, 100), (255, 255, 255))
    out = crop_face(img, CropRecipe(scale=2.0, border="pad"), Box(0, 0, 50, 50), (100, 100))
    assert out.shape == (100, 100, 3) and out.dtype == np.uint8
    assert (out[:22, :, :] == 0).all() and (out[:, :22, :] == 0).all()  # 25 px outside, top and left
    assert (out[28:, 28:, :] == 255).all()


def test_it_shifts_a_crop_inside_the_image_keeping_its_size_when_it_fits():
    w, h = 200, 100
    x0, y0, x1, y1 = crop_rect(CropRecipe(scale=2.0, border="shift"), Box(150, 40, 40, 40), w, h)
    assert (x1 - x0, y1 - y0) == (80, 80)  # scale kept
    assert x1 == w - 1 and x0 == w - 1 - 80  # moved left to the right edge
    assert 0 <= y0 and y1 <= h - 1


def test_it_shrinks_the_scale_of_a_shift_crop_that_cannot_fit():
    w, h = 200, 100
    x0, y0, x1, y1 = crop_rect(CropRecipe(scale=4.0, border="shift"), Box(150, 40, 40, 40), w, h)
    # MiniFASNet: scale = min(4, (h - 1) / 40, (w - 1) / 40) = 2.475, then moved inside
    assert (x1 - x0, y1 - y0) == pytest.approx((99, 99))
    assert x0 >= 0 and y0 >= 0 and x1 <= w - 1 and y1 <= h - 1


@pytest.mark.parametrize(
    "box",
    [Box(0, 0, 30, 30), Box(170, 70, 30, 30), Box(-10, 20, 40, 40), Box(90, 0, 20, 90), Box(0, 0, 200, 100)],
)
@pytest.mark.parametrize("side", ["max", "axes"])
def test_it_always_keeps_a_shift_crop_inside_the_image(box, side):
    w, h = 200, 100
    x0, y0, x1, y1 = crop_rect(CropRecipe(side=side, scale=2.7, border="shift"), box, w, h)
    assert x0 >= 0 and y0 >= 0 and x1 <= w - 1 and y1 <= h - 1
    assert x1 > x0 and y1 > y0


def test_it_never_puts_black_into_a_shift_crop_near_a_corner():
    img = Image.new("RGB", (120, 90), (200, 200, 200))
    out = crop_face(img, CropRecipe(scale=2.7, border="shift"), Box(0, 0, 40, 40), (32, 32))
    assert (out == 200).all()


# --- resize: stretch vs letterbox ------------------------------------------------------------------


def test_it_letterboxes_a_wide_crop_with_zero_bars_top_and_bottom():
    img = Image.new("RGB", (300, 300), (255, 255, 255))
    recipe = CropRecipe(side="axes", scale=1.0, resize="letterbox")
    out = crop_face(img, recipe, Box(100, 100, 100, 50), (40, 40))
    assert out.shape == (40, 40, 3)
    assert (out[:10] == 0).all() and (out[30:] == 0).all()  # 100x50 -> 40x20, centred
    assert (out[10:30] == 255).all()


def test_it_letterboxes_a_tall_crop_with_zero_bars_left_and_right():
    img = Image.new("RGB", (300, 300), (255, 255, 255))
    recipe = CropRecipe(side="axes", scale=1.0, resize="letterbox")
    out = crop_face(img, recipe, Box(100, 50, 50, 200), (40, 80))  # h=40, w=80
    # 50x200 fits 40 high -> 10 wide, centred in 80
    assert (out[:, :35] == 0).all() and (out[:, 45:] == 0).all()
    assert (out[:, 35:45] == 255).all()


def test_it_stretches_a_wide_crop_to_fill_the_whole_input():
    img = Image.new("RGB", (300, 300), (255, 255, 255))
    out = crop_face(img, CropRecipe(side="axes", scale=1.0, resize="stretch"), Box(100, 100, 100, 50), (40, 40))
    assert (out == 255).all()


def test_it_returns_rgb_in_the_requested_height_and_width():
    img = Image.new("RGB", (200, 200), (10, 20, 30))
    out = crop_face(img, CropRecipe(), Box(50, 50, 100, 100), (24, 48))
    assert out.shape == (24, 48, 3)
    assert tuple(out[12, 24]) == (10, 20, 30)


def test_it_crops_the_face_and_not_its_surroundings():
    img = Image.new("RGB", (200, 200), (0, 0, 255))
    img.paste((255, 0, 0), (60, 80, 120, 140))
    out = crop_face(img, CropRecipe(scale=1.0), Box(60, 80, 60, 60), (16, 16))
    assert (out[..., 0] == 255).all() and (out[..., 2] == 0).all()


def test_it_crops_a_reduced_decode_like_the_full_image(textured):
    full = textured((400, 320), seed=9)
    reduced = full.resize((200, 160), Image.Resampling.BOX)
    recipe = CropRecipe(scale=1.5, border="pad")
    box = Box(120, 90, 140, 140)
    a = crop_face(full, recipe, box, (35, 35)).astype(int)
    b = crop_face(reduced, recipe, box, (35, 35), scale=2.0).astype(int)
    assert np.abs(a - b).mean() < 6
    other = crop_face(full, recipe, Box(20, 20, 140, 140), (35, 35)).astype(int)
    assert np.abs(a - other).mean() > 5 * np.abs(a - b).mean()


# --- boxes -----------------------------------------------------------------------------------------


def test_it_keeps_a_box_inside_the_image_unchanged_when_clipped():
    assert Box(10, 20, 30, 40).clip(100, 100) == Box(10, 20, 30, 40)


def test_it_clips_a_box_to_the_image():
    assert Box(-10, 80, 50, 50).clip(100, 100) == Box(0, 80, 40, 20)
    assert Box(-10, -10, 500, 500).clip(100, 60) == Box(0, 0, 100, 60)


@pytest.mark.parametrize("box", [Box(100, 0, 10, 10), Box(-20, 5, 20, 10), Box(10, 200, 5, 5)])
def test_it_clips_a_box_outside_or_touching_the_edge_to_nothing(box):
    assert box.clip(100, 100) is None


def test_it_knows_the_centre_and_min_side_of_a_box():
    b = Box(10, 20, 30, 50)
    assert (b.cx, b.cy, b.min_side) == (25, 45, 30)
    assert b.as_dict() == {"x": 10, "y": 20, "w": 30, "h": 50}
