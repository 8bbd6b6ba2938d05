"""LivenessModel: preprocessing per manifest, batching, output activations, shape checks.

The channel-mean model (see onnx_models.py) returns what the runtime fed into each channel, so a
uniform crop of colour (10, 20, 30) makes channel order, scale, mean/std and layout visible.
"""

from __future__ import annotations

import numpy as np
import pytest

from liveness.manifest import ManifestError, load_manifest
from liveness.runtime import LivenessModel, file_sha256

from .onnx_models import write_model

SIZE = (16, 16)


def crops_of(*colours, size=SIZE) -> np.ndarray:
    out = np.zeros((len(colours), *size, 3), np.uint8)
    for i, c in enumerate(colours):
        out[i] = c
    return out


def model(tmp_path, name="m", **kwargs) -> LivenessModel:
    return LivenessModel(load_manifest(write_model(tmp_path, name, **kwargs)))


def softmax(v):
    e = np.exp(np.asarray(v, float) - max(v))
    return e / e.sum()


# --- preprocessing ---------------------------------------------------------------------------------


def test_it_feeds_rgb_in_rgb_order_and_bgr_reversed(tmp_path):
    rgb = model(tmp_path, "rgb", input={"color": "RGB", "scale": "raw"})
    bgr = model(tmp_path, "bgr", input={"color": "BGR", "scale": "raw"})
    crops = crops_of((10, 20, 30))
    np.testing.assert_allclose(rgb.probabilities(crops), [[10, 20, 30]])
    np.testing.assert_allclose(bgr.probabilities(crops), [[30, 20, 10]])


def test_it_divides_by_255_for_unit_scale_and_not_for_raw(tmp_path):
    unit = model(tmp_path, "unit", input={"scale": "unit"})
    raw = model(tmp_path, "raw", input={"scale": "raw"})
    crops = crops_of((51, 102, 255))
    np.testing.assert_allclose(unit.probabilities(crops), [[0.2, 0.4, 1.0]], rtol=1e-6)
    np.testing.assert_allclose(raw.probabilities(crops), [[51, 102, 255]])


def test_it_subtracts_the_mean_and_divides_by_the_std_per_channel_after_scaling(tmp_path):
    m = model(tmp_path, input={"scale": "raw", "mean": [0.0, 10.0, 20.0], "std": [1.0, 2.0, 5.0]})
    np.testing.assert_allclose(m.probabilities(crops_of((10, 20, 30))), [[10, 5, 2]])
    unit = model(tmp_path, "u", input={"scale": "unit", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.25, 0.5]})
    np.testing.assert_allclose(unit.probabilities(crops_of((255, 0, 51))), [[1.0, -2.0, -0.6]], rtol=1e-5)


def test_it_applies_mean_and_std_in_the_model_channel_order(tmp_path):
    m = model(tmp_path, input={"color": "BGR", "scale": "raw", "mean": [30.0, 0.0, 0.0], "std": [1.0, 1.0, 10.0]})
    # fed B, G, R = 30, 20, 10 -> (30 - 30) / 1, 20 / 1, 10 / 10
    np.testing.assert_allclose(m.probabilities(crops_of((10, 20, 30))), [[0, 20, 1]])


def test_it_feeds_an_nhwc_model_channels_last(tmp_path):
    m = model(tmp_path, layout="NHWC", input={"scale": "raw"})
    np.testing.assert_allclose(m.probabilities(crops_of((10, 20, 30), (1, 2, 3))), [[10, 20, 30], [1, 2, 3]])


def test_it_feeds_a_non_square_input_in_height_width_order(tmp_path):
    m = model(tmp_path, size=(12, 20), input={"scale": "raw"})
    crops = crops_of((7, 8, 9), size=(12, 20))
    np.testing.assert_allclose(m.probabilities(crops), [[7, 8, 9]])


def test_it_sees_every_pixel_of_the_crop(tmp_path):
    m = model(tmp_path, input={"scale": "raw"})
    crops = crops_of((0, 0, 0))
    crops[0, :8, :, 0] = 64  # top half red
    np.testing.assert_allclose(m.probabilities(crops), [[32, 0, 0]])


# --- batching --------------------------------------------------------------------------------------


def test_it_scores_a_batch_of_5_on_a_fixed_batch_1_model_in_order(tmp_path):
    m = model(tmp_path, batch=1, input={"scale": "raw"})
    assert m.fixed_batch == 1
    colours = [(i, 2 * i, 3 * i) for i in (1, 2, 3, 4, 5)]
    np.testing.assert_allclose(m.probabilities(crops_of(*colours)), colours)


def test_it_scores_a_large_batch_in_order_on_a_dynamic_batch_model(tmp_path):
    m = model(tmp_path, input={"scale": "raw"})
    assert m.fixed_batch is None
    colours = [(i, 0, 255 - i) for i in range(0, 250, 10)]
    np.testing.assert_allclose(m.probabilities(crops_of(*colours)), colours)


# --- output activations and live probability ------------------------------------------------------


def test_it_applies_softmax_to_three_logits(tmp_path):
    m = model(tmp_path, input={"scale": "raw"}, output={"type": "logits", "activation": "softmax"})
    probs = m.probabilities(crops_of((1, 2, 3), (5, 5, 5)))
    np.testing.assert_allclose(probs[0], softmax([1, 2, 3]), rtol=1e-6)
    np.testing.assert_allclose(probs[1], [1 / 3] * 3, rtol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


def test_it_keeps_softmax_finite_on_large_logits(tmp_path):
    m = model(tmp_path, input={"scale": "raw"}, output={"type": "logits", "live_index": 2})
    probs = m.probabilities(crops_of((0, 200, 255)))
    assert np.isfinite(probs).all()
    assert m.live_probability(probs)[0] == pytest.approx(1 / (1 + np.exp(-55)))


def test_it_applies_sigmoid_per_logit(tmp_path):
    m = model(tmp_path, input={"scale": "raw"}, output={"type": "logits", "activation": "sigmoid"})
    probs = m.probabilities(crops_of((0, 2, 4)))
    np.testing.assert_allclose(probs[0], 1 / (1 + np.exp(-np.array([0.0, 2.0, 4.0]))), rtol=1e-6)


def test_it_uses_probabilities_as_given(tmp_path):
    m = model(tmp_path, output={"type": "probabilities", "live_index": 1})
    probs = m.probabilities(crops_of((51, 102, 153)))
    np.testing.assert_allclose(m.live_probability(probs), [0.4], rtol=1e-6)


def test_it_sums_the_probabilities_of_a_live_index_list(tmp_path):
    m = model(tmp_path, input={"scale": "raw"}, output={"type": "logits", "live_index": [0, 2]})
    probs = m.probabilities(crops_of((1, 2, 3)))
    p = softmax([1, 2, 3])
    assert m.live_probability(probs)[0] == pytest.approx(p[0] + p[2])


def test_it_clips_a_live_probability_sum_into_0_to_1(tmp_path):
    m = model(tmp_path, output={"type": "probabilities", "live_index": [1, 2]})
    probs = m.probabilities(crops_of((0, 204, 153)))  # 0.8 + 0.6
    assert m.live_probability(probs)[0] == 1.0


def test_it_guesses_the_most_probable_named_attack_class(tmp_path):
    m = model(
        tmp_path,
        input={"scale": "raw"},
        output={"type": "logits", "live_index": 0, "classes": ["live", "print", "replay"]},
    )
    probs = m.probabilities(crops_of((9, 1, 3), (0, 5, 4)))
    assert m.attack_guess(probs) == ["replay", "print"]  # even when live is the most probable


def test_it_guesses_nothing_when_the_manifest_names_no_classes(tmp_path):
    m = model(tmp_path, input={"scale": "raw"}, output={"type": "logits"})
    assert m.attack_guess(m.probabilities(crops_of((1, 2, 3), (3, 2, 1)))) == [None, None]


# --- manifest vs ONNX checks -----------------------------------------------------------------------


def test_it_refuses_a_manifest_size_that_differs_from_the_onnx_input(tmp_path):
    with pytest.raises(ManifestError, match="input") as exc:
        model(tmp_path, size=(32, 32), model_size=(16, 16))
    assert "32x32" in str(exc.value)


def test_it_refuses_a_manifest_layout_that_differs_from_the_onnx_input(tmp_path):
    with pytest.raises(ManifestError, match="NHWC"):
        model(tmp_path, layout="NHWC", model_layout="NCHW")


def test_it_refuses_an_input_name_the_model_does_not_have(tmp_path):
    with pytest.raises(ManifestError, match="input.name"):
        model(tmp_path, input={"name": "pixels"})


def test_it_refuses_an_output_name_the_model_does_not_have(tmp_path):
    with pytest.raises(ManifestError, match="output.name"):
        model(tmp_path, output={"name": "score"})


def test_it_accepts_the_right_input_and_output_names(tmp_path):
    m = model(tmp_path, input={"name": "input", "scale": "raw"}, output={"name": "output"})
    np.testing.assert_allclose(m.probabilities(crops_of((1, 2, 3))), [[1, 2, 3]])


def test_it_refuses_a_live_index_beyond_fixed_model_outputs_at_load(tmp_path):
    # the channel-mean model declares (N, 3): index 3 is caught before anything is scored
    with pytest.raises(ManifestError, match=r"output\.live_index: 3 .*gives 3 values"):
        model(tmp_path, output={"live_index": 3})
    with pytest.raises(ManifestError, match=r"output\.live_index: 4 "):
        model(tmp_path, "several", output={"live_index": [0, 4]})


def test_it_accepts_the_last_index_of_fixed_model_outputs(tmp_path):
    m = model(tmp_path, output={"live_index": 2})
    live = m.live_probability(m.probabilities(crops_of((200, 100, 50))))
    np.testing.assert_allclose(live, [50 / 255], rtol=1e-6)  # the third channel's mean, no other


@pytest.mark.parametrize("classes", [["live", "print"], ["live", "print", "replay", "mask"]])
def test_it_refuses_classes_that_do_not_name_each_fixed_output(tmp_path, classes):
    with pytest.raises(ManifestError, match=rf"output\.classes: names {len(classes)} classes.*gives 3 values"):
        model(tmp_path, output={"live_index": 0, "classes": classes})


def test_it_accepts_one_class_name_per_fixed_output(tmp_path):
    m = model(tmp_path, output={"live_index": 0, "classes": ["live", "print", "replay"]})
    assert m.manifest.attack_classes == {1: "print", 2: "replay"}


def test_it_refuses_a_live_index_beyond_dynamic_model_outputs_when_scoring(tmp_path):
    m = model(tmp_path, output_dim="K", output={"live_index": 3})  # the file does not say how many
    with pytest.raises(ManifestError, match="output.live_index"):
        m.probabilities(crops_of((1, 2, 3)))


def test_it_refuses_classes_that_do_not_fit_dynamic_model_outputs_when_scoring(tmp_path):
    m = model(tmp_path, output_dim="K", output={"live_index": 0, "classes": ["live", "print"]})
    with pytest.raises(ManifestError, match="output.classes: names 2 classes"):
        m.probabilities(crops_of((1, 2, 3)))


def test_it_refuses_a_missing_model_file(tmp_path):
    manifest = load_manifest(write_model(tmp_path))
    manifest.file.unlink()
    with pytest.raises(ManifestError, match="model.file"):
        LivenessModel(manifest)


def test_it_hashes_the_model_file(tmp_path):
    import hashlib

    m = model(tmp_path)
    assert file_sha256(m.manifest.file) == hashlib.sha256(m.manifest.file.read_bytes()).hexdigest()


@pytest.mark.parametrize("batch", ["N", 1])
def test_it_scores_an_empty_batch_as_no_rows(tmp_path, batch):
    m = model(tmp_path, batch=batch, output={"live_index": 2})
    probs = m.probabilities(np.zeros((0, *SIZE, 3), np.uint8))
    assert len(probs) == 0
    assert len(m.live_probability(probs)) == 0 and m.attack_guess(probs) == []
