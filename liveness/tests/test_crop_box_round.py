"""The [crop] key `box_round`: how the face box is cut to integers before the crop."""

from __future__ import annotations

import pytest

from liveness.boxes import Box
from liveness.crop import crop_rect, rounded_box
from liveness.manifest import CropRecipe, ManifestError, load_manifest

from .onnx_models import manifest_text

MODEL = {"model": {"name": "m", "file": "m.onnx"}, "input": {"size": [80, 80]}}


def load_crop(tmp_path, **crop):
    path = tmp_path / "m.toml"
    path.write_text(manifest_text({**MODEL, "crop": crop}), encoding="utf-8")
    return load_manifest(path).crop


def test_it_leaves_the_box_as_it_is_by_default(tmp_path):
    assert load_crop(tmp_path).box_round == "none" == CropRecipe().box_round
    assert rounded_box(CropRecipe(), Box(10.7, 20.2, 99.9, 50.5)) == Box(10.7, 20.2, 99.9, 50.5)


@pytest.mark.parametrize("value", ["none", "truncate", "round"])
def test_it_reads_every_box_rounding(tmp_path, value):
    assert load_crop(tmp_path, box_round=value).box_round == value


def test_it_truncates_each_of_x_y_w_h_as_int_does():
    """MiniFASNet's authors: [int(left), int(top), int(right - left + 1), int(bottom - top + 1)]."""
    assert rounded_box(CropRecipe(box_round="truncate"), Box(10.7, 20.2, 99.9, 50.5)) == Box(10, 20, 99, 50)


def test_it_rounds_each_of_x_y_w_h_to_the_nearest_integer():
    assert rounded_box(CropRecipe(box_round="round"), Box(10.7, 20.2, 99.9, 50.4)) == Box(11, 20, 100, 50)


@pytest.mark.parametrize("mode", ["truncate", "round"])
def test_it_keeps_at_least_one_pixel_of_a_rounded_box(mode):
    assert rounded_box(CropRecipe(box_round=mode), Box(5.2, 5.2, 0.3, 0.2)) == Box(5, 5, 1, 1)


def test_it_crops_around_the_rounded_box():
    recipe = CropRecipe(side="axes", scale=2.0, border="pad", box_round="truncate")
    assert crop_rect(recipe, Box(10.9, 20.9, 30.9, 40.9), 200, 200) == (-5.0, 0.0, 55.0, 80.0)


@pytest.mark.parametrize("value", ["floor", "ceil", "", "Truncate"])
def test_it_refuses_another_rounding_listing_the_allowed_ones(tmp_path, value):
    with pytest.raises(ManifestError, match=r"crop\.box_round: .*none, truncate, round") as err:
        load_crop(tmp_path, box_round=value)
    assert repr(value) in str(err.value)


@pytest.mark.parametrize("value", [1, True, 0.5])
def test_it_refuses_a_rounding_that_is_not_a_string_listing_the_allowed_ones(tmp_path, value):
    with pytest.raises(ManifestError, match=r"crop\.box_round: .*none.*truncate.*round"):
        load_crop(tmp_path, box_round=value)
