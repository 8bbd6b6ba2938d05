"""Pipeline.analyse end to end: the crop border policy, letterbox and orientation, each pinned
through real (tiny) ONNX models on known pixels.

Images are PNG (lossless, never draft-decoded), and crops are made the model's input size
where possible, so resizing leaves every pixel as it was. A channel-mean model with
live_index c scores the mean of channel c / 255 over its crop; a pixel model scores channel c
of one input pixel / 255 (onnx_models.py).
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from liveness.pipeline import FileInput, ImageResult, Pipeline

from .onnx_models import pipeline_of

WHITE = (255, 255, 255)
SIZE = (32, 32)  # h, w of the models' input
RED, GREEN, BLUE = 0, 1, 2  # live_index = the channel a model scores


def mean_model(crop: dict, channel: int = RED, size=SIZE, layout="NCHW") -> dict:
    return {"size": size, "layout": layout, "crop": crop, "output": {"live_index": channel}}


def pixel_models(tag: str, pixel: tuple[int, int], crop: dict, size=SIZE, layout="NCHW") -> dict[str, dict]:
    """Two pixel models reading the red and the green value of `pixel` (y, x) of the model input."""
    return {
        f"{tag}_{name}": {**mean_model(crop, channel, size, layout), "pixel": pixel}
        for name, channel in (("r", RED), ("g", GREEN))
    }


def analyse(pipeline: Pipeline, img: Image.Image, box: dict) -> ImageResult:
    """The one result of `img` (as PNG) with the face `box` in its sidecar; it must be scored."""
    buf = io.BytesIO()
    img.save(buf, "PNG")
    (r,) = pipeline.analyse([FileInput(buf.getvalue(), json.dumps({"blur": 0.1, "face": box}).encode())])
    assert r.score is not None, r.reason
    return r


def gradient(width: int = 240, height: int = 160) -> Image.Image:
    """Red = 10 + x, green = 10 + y, blue = 255: every pixel tells where it is, and none is the
    zero of the padding."""
    x = np.arange(width)[None, :].repeat(height, 0)
    y = np.arange(height)[:, None].repeat(width, 1)
    arr = np.stack([10 + x, 10 + y, np.full_like(x, 255)], axis=-1).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def read(r: ImageResult, tag: str) -> tuple[float, float]:
    """The (red, green) values a pair of pixel models saw, in 0..255."""
    return r.scores[f"{tag}_r"] * 255, r.scores[f"{tag}_g"] * 255


# --- border policy ---------------------------------------------------------------------------------

CORNER_BOX = {"x": 0, "y": 4, "w": 16, "h": 16}  # a 2x crop reaches 8 px left and 4 px above the image


def test_it_fills_the_crop_outside_the_image_with_zeros_under_pad(tmp_path):
    p = pipeline_of(tmp_path, pad=mean_model({"scale": 2.0, "border": "pad"}))
    r = analyse(p, Image.new("RGB", (300, 300), WHITE), CORNER_BOX)
    assert r.crop_rects["pad"] == [-8.0, -4.0, 24.0, 28.0]
    # 24 of 32 columns and 28 of 32 rows lie inside the image
    assert r.scores["pad"] == pytest.approx(24 * 28 / (32 * 32), abs=1e-7)


def test_it_moves_the_crop_inside_the_image_under_shift(tmp_path):
    p = pipeline_of(tmp_path, shift=mean_model({"scale": 2.0, "border": "shift"}))
    r = analyse(p, Image.new("RGB", (300, 300), WHITE), CORNER_BOX)
    assert r.crop_rects["shift"] == [0.0, 0.0, 32.0, 32.0]
    assert r.scores["shift"] == pytest.approx(1.0, abs=1e-7)  # no zeros: all white


def test_it_shrinks_the_scale_until_the_crop_fits_under_shift_and_pads_otherwise(tmp_path):
    crop = {"scale": 4.0}  # 80 px around a 20 px face: larger than the 60 px image
    p = pipeline_of(tmp_path, shift=mean_model({**crop, "border": "shift"}), pad=mean_model({**crop, "border": "pad"}))
    r = analyse(p, Image.new("RGB", (60, 60), WHITE), {"x": 10, "y": 10, "w": 20, "h": 20})
    assert r.crop_rects["shift"] == [0.0, 0.0, 59.0, 59.0]  # scale (60 - 1) / 20
    assert r.scores["shift"] == pytest.approx(1.0, abs=1e-7)
    assert r.crop_rects["pad"] == [-20.0, -20.0, 60.0, 60.0]
    assert r.scores["pad"] == pytest.approx((60 * 60) / (80 * 80), abs=1e-3)  # resized 80 -> 32: edges blend


def test_it_puts_the_image_corner_where_the_border_policy_says(tmp_path):
    crop = {"scale": 2.0}
    models = {
        **pixel_models("shift_corner", (0, 0), {**crop, "border": "shift"}),
        **pixel_models("pad_corner", (4, 8), {**crop, "border": "pad"}),  # the image's (0, 0) in the pad crop
        **pixel_models("pad_outside", (3, 7), {**crop, "border": "pad"}),
    }
    r = analyse(pipeline_of(tmp_path, **models), gradient(), CORNER_BOX)
    assert read(r, "shift_corner") == pytest.approx((10, 10), abs=1e-4)
    assert read(r, "pad_corner") == pytest.approx((10, 10), abs=1e-4)
    assert read(r, "pad_outside") == pytest.approx((0, 0), abs=1e-4)


# --- resize ----------------------------------------------------------------------------------------

WIDE_BOX = {"x": 100, "y": 100, "w": 16, "h": 4}  # per-axis 2x crop: 32 wide, 8 high


@pytest.mark.parametrize("box", [WIDE_BOX, {"x": 100, "y": 100, "w": 4, "h": 16}])
def test_it_letterboxes_a_non_square_crop_with_zero_bars_and_stretches_it_otherwise(tmp_path, box):
    crop = {"side": "axes", "scale": 2.0}
    p = pipeline_of(
        tmp_path,
        letterbox=mean_model({**crop, "resize": "letterbox"}),
        stretch=mean_model({**crop, "resize": "stretch"}),
    )
    r = analyse(p, Image.new("RGB", (300, 300), WHITE), box)
    assert r.scores["letterbox"] == pytest.approx(8 / 32, abs=1e-7)  # the 8 of 32 lines or columns of the crop
    assert r.scores["stretch"] == pytest.approx(1.0, abs=1e-7)


def test_it_letterboxes_a_resized_crop_with_the_bars_fraction_of_its_aspect(tmp_path):
    # 64 x 16 crop into 32 x 32: resized to 32 x 8, so 3/4 of the input are bars
    p = pipeline_of(tmp_path, letterbox=mean_model({"side": "axes", "scale": 2.0, "resize": "letterbox"}))
    r = analyse(p, Image.new("RGB", (300, 300), WHITE), {"x": 100, "y": 100, "w": 32, "h": 8})
    assert r.scores["letterbox"] == pytest.approx(8 / 32, abs=1e-7)


def test_it_centres_the_letterboxed_crop(tmp_path):
    crop = {"side": "axes", "scale": 2.0, "resize": "letterbox"}  # rect (92, 98)-(124, 106), pasted at row 12
    models = {
        **pixel_models("above", (11, 5), crop),
        **pixel_models("top", (12, 5), crop),
        **pixel_models("bottom", (19, 5), crop),
        **pixel_models("below", (20, 5), crop),
    }
    r = analyse(pipeline_of(tmp_path, **models), gradient(), WIDE_BOX)
    assert read(r, "above") == pytest.approx((0, 0), abs=1e-4)
    assert read(r, "top") == pytest.approx((10 + 92 + 5, 10 + 98), abs=1e-4)
    assert read(r, "bottom") == pytest.approx((10 + 92 + 5, 10 + 105), abs=1e-4)
    assert read(r, "below") == pytest.approx((0, 0), abs=1e-4)


# --- orientation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_it_feeds_the_crop_upright_without_flips_or_a_height_width_swap(tmp_path, layout):
    # a 40 x 24 face into a 24 x 40 (h, w) input: the crop is the input, pixel for pixel
    crop, size = {"side": "axes", "scale": 1.0}, (24, 40)
    models = {
        **pixel_models("top_left", (0, 0), crop, size, layout),
        **pixel_models("inner", (5, 30), crop, size, layout),
        **pixel_models("bottom_right", (23, 39), crop, size, layout),
    }
    r = analyse(pipeline_of(tmp_path, **models), gradient(), {"x": 100, "y": 50, "w": 40, "h": 24})
    assert r.crop_rects["inner_r"] == [100.0, 50.0, 140.0, 74.0]
    assert read(r, "top_left") == pytest.approx((10 + 100, 10 + 50), abs=1e-4)
    assert read(r, "inner") == pytest.approx((10 + 130, 10 + 55), abs=1e-4)  # x 30 to the right, y 5 down
    assert read(r, "bottom_right") == pytest.approx((10 + 139, 10 + 73), abs=1e-4)
