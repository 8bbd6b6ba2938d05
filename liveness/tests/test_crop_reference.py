"""Crops against the published reference: MiniFASNet's `CropImage` (Silent-Face-Anti-Spoofing,
src/generate_patches.py), transcribed below with OpenCV as its authors run it.

A manifest with side "axes", border "shift", resize "stretch" and interpolation "opencv_linear"
must give the model the same pixels as the authors' code: the same rectangle and the same array
(cv2.resize itself runs on the cut-out). With box_round "truncate" a float box (a detector's)
is cut to integers first, as the authors' detector hands its box to their crop.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from liveness.boxes import Box
from liveness.crop import crop_face, pixel_rect, source_rect
from liveness.manifest import CropRecipe

MINIFASNET = CropRecipe(
    side="axes", scale=2.7, border="shift", resize="stretch", interpolation="opencv_linear", box_round="truncate"
)


def reference_box(src_w, src_h, bbox, scale):
    """CropImage._get_new_box, as published."""
    x, y, box_w, box_h = bbox
    scale = min((src_h - 1) / box_h, min((src_w - 1) / box_w, scale))
    new_width, new_height = box_w * scale, box_h * scale
    center_x, center_y = box_w / 2 + x, box_h / 2 + y
    left_top_x, left_top_y = center_x - new_width / 2, center_y - new_height / 2
    right_bottom_x, right_bottom_y = center_x + new_width / 2, center_y + new_height / 2
    if left_top_x < 0:
        right_bottom_x -= left_top_x
        left_top_x = 0
    if left_top_y < 0:
        right_bottom_y -= left_top_y
        left_top_y = 0
    if right_bottom_x > src_w - 1:
        left_top_x -= right_bottom_x - src_w + 1
        right_bottom_x = src_w - 1
    if right_bottom_y > src_h - 1:
        left_top_y -= right_bottom_y - src_h + 1
        right_bottom_y = src_h - 1
    return int(left_top_x), int(left_top_y), int(right_bottom_x), int(right_bottom_y)


def reference_crop(rgb: np.ndarray, bbox, scale, out_w, out_h) -> np.ndarray:
    """CropImage.crop(..., crop=True), as published (the slice includes the bottom-right pixel)."""
    src_h, src_w = rgb.shape[:2]
    x0, y0, x1, y1 = reference_box(src_w, src_h, bbox, scale)
    return cv2.resize(rgb[y0 : y1 + 1, x0 : x1 + 1], (out_w, out_h))


def textured(w=640, h=480, seed=3) -> np.ndarray:
    """Smooth gradients plus noise: every pixel differs, so a 1-pixel shift shows."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], axis=-1)
    return np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)


IMAGE = textured()


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype == np.uint8
    assert np.array_equal(got, want), np.argwhere(got != want)[:5].tolist()


boxes = st.builds(
    lambda x, y, w, h: (x, y, w, h),
    st.integers(-20, 600),
    st.integers(-20, 440),
    st.integers(20, 400),
    st.integers(20, 400),
)


@settings(max_examples=300, deadline=None)
@given(bbox=boxes, scale=st.sampled_from([1.0, 2.7, 4.0]))
def test_it_cuts_the_same_rectangle_as_minifasnet(bbox, scale):
    recipe = CropRecipe(side="axes", scale=scale, border="shift")
    x0, y0, x1, y1 = reference_box(640, 480, bbox, scale)
    assert pixel_rect(recipe, Box(*bbox), 640, 480) == (x0, y0, x1 + 1, y1 + 1)


@pytest.mark.parametrize(
    "bbox",
    [(250, 180, 120, 150), (5, 10, 200, 220), (560, 400, 70, 60), (100, 50, 300, 380), (300, 200, 33, 41)],
)
@pytest.mark.parametrize("out", [(80, 80), (128, 96)])
def test_it_gives_the_model_the_pixels_minifasnet_gives_it(bbox, out):
    want = reference_crop(IMAGE, bbox, 2.7, *out)
    for image in (Image.fromarray(IMAGE), IMAGE):  # as Pillow decoded it, or its pixels (the pipeline)
        assert_same(crop_face(image, MINIFASNET, Box(*bbox), (out[1], out[0])), want)


@settings(max_examples=200, deadline=None)
@given(
    left=st.floats(-20, 600),
    top=st.floats(-20, 440),
    w=st.floats(1, 400),
    h=st.floats(1, 400),
    scale=st.sampled_from([2.7, 4.0]),
)
def test_it_crops_any_detected_box_as_minifasnet_does(left, top, w, h, scale):
    """From a detector's float box to the model's pixels, the authors' way: the box truncated to
    [int(left), int(top), int(w), int(h)], then CropImage.crop."""
    recipe = CropRecipe(**{**MINIFASNET.__dict__, "scale": scale})
    want = reference_crop(IMAGE, [int(left), int(top), max(1, int(w)), max(1, int(h))], scale, 80, 80)
    assert_same(crop_face(IMAGE, recipe, Box(left, top, w, h), (80, 80)), want)


@pytest.mark.parametrize(
    "detected",  # (left, top, right, bottom) as a detector gives them, in float pixels
    [
        (250.7, 180.2, 370.9, 330.6),
        (5.5, 10.99, 205.2, 230.4),
        (560.3, 400.8, 639.6, 479.2),
        (300.01, 200.5, 333.5, 241.9),
    ],
)
def test_it_truncates_a_detected_box_as_minifasnet_does(detected):
    """The authors' detector gives [int(left), int(top), int(right - left + 1), int(bottom - top + 1)]
    (src/anti_spoof_predict.py); box_round "truncate" on the float box gives the same crop."""
    left, top, right, bottom = detected
    bbox = [int(left), int(top), int(right - left + 1), int(bottom - top + 1)]
    want = reference_crop(IMAGE, bbox, 2.7, 80, 80)
    box = Box(left, top, right - left + 1, bottom - top + 1)
    assert_same(crop_face(IMAGE, MINIFASNET, box, (80, 80)), want)
    unrounded = CropRecipe(**{**MINIFASNET.__dict__, "box_round": "none"})
    assert not np.array_equal(crop_face(IMAGE, unrounded, box, (80, 80)), want)


def zero_filled_cv2_crop(rgb: np.ndarray, rect, out_w: int, out_h: int, letterbox: bool) -> np.ndarray:
    """OpenCV on the rectangle cut out with zeros where it leaves the image, then stretched, or
    letterboxed (aspect kept, centred on zeros) as the manifest's `resize` says."""
    x0, y0, x1, y1 = rect
    cut = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, rgb.shape[1]), min(y1, rgb.shape[0])
    cut[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = rgb[iy0:iy1, ix0:ix1]
    if not letterbox:
        return cv2.resize(cut, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    f = min(out_w / cut.shape[1], out_h / cut.shape[0])
    nw, nh = max(1, round(cut.shape[1] * f)), max(1, round(cut.shape[0] * f))
    out = np.zeros((out_h, out_w, 3), np.uint8)
    ox, oy = (out_w - nw) // 2, (out_h - nh) // 2
    out[oy : oy + nh, ox : ox + nw] = cv2.resize(cut, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return out


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
@pytest.mark.parametrize(
    "bbox",  # faces at the corners and edges: pad crops of 1.5 and 2.7 x the face leave the image
    [(-30, -20, 200, 160), (520, 380, 110, 90), (0, 200, 150, 210), (300, 430, 90, 60), (250, 180, 120, 150)],
)
@pytest.mark.parametrize("scale", [1.5, 2.7])
def test_it_fills_zeros_outside_the_image_as_opencv_on_the_padded_cut_out(resize, bbox, scale):
    """`pad` crops that reach outside the image: the model sees OpenCV's resize of the zero-filled
    cut-out, the zeros blended into the edge pixels as OpenCV blends them."""
    recipe = CropRecipe(side="axes", scale=scale, border="pad", resize=resize, interpolation="opencv_linear")
    image = Image.fromarray(IMAGE)
    x, y, w, h = bbox  # pad: the box scaled about its centre, rounded to whole pixels, not moved
    rect = tuple(round(v) for v in (x + w / 2 - scale * w / 2, y + h / 2 - scale * h / 2))
    rect += tuple(round(v) for v in (x + w / 2 + scale * w / 2, y + h / 2 + scale * h / 2))
    assert source_rect(image, recipe, Box(*bbox)) == rect
    want = zero_filled_cv2_crop(IMAGE, rect, 128, 96, resize == "letterbox")
    assert_same(crop_face(image, recipe, Box(*bbox), (96, 128)), want)
    assert_same(crop_face(IMAGE, recipe, Box(*bbox), (96, 128)), want)


def test_it_differs_from_the_reference_with_pillow_resizing_when_shrinking_a_lot():
    """Why the option exists: Pillow's bilinear filter antialiases a large reduction, OpenCV's
    INTER_LINEAR samples two pixels per axis; a model trained on one sees other pixels with the
    other."""
    bbox = (100, 50, 300, 380)
    want = reference_crop(IMAGE, bbox, 2.7, 80, 80)
    pillow = crop_face(
        Image.fromarray(IMAGE),
        CropRecipe(**{**MINIFASNET.__dict__, "interpolation": "pillow_bilinear"}),
        Box(*bbox),
        (80, 80),
    )
    assert np.abs(pillow.astype(int) - want.astype(int)).max() > 10
