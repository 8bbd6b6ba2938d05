"""Model and ensemble manifests: valid ones load; every problem is a ManifestError naming its key."""

from __future__ import annotations

import re
import textwrap
import tomllib
from pathlib import Path

import pytest

import liveness.manifest
from liveness.detect import load_detector_manifest
from liveness.manifest import (
    CropRecipe,
    EnsembleManifest,
    ManifestError,
    ModelManifest,
    load_manifest,
    parse_model_text,
)

from .onnx_models import manifest_text

FULL_MODEL = """
[model]
name = "fas_a"
version = "2.1"
file = "weights/fas_a.onnx"

[input]
name = "data"
size = [80, 96]
layout = "NHWC"
color = "BGR"
scale = "raw"
mean = [104.0, 117.0, 123]
std = [58.0, 57.0, 57.5]

[crop]
side = "axes"
scale = 2.7
border = "shift"
resize = "letterbox"
interpolation = "opencv_linear"
small_face_ref = 130
small_face_max_scale = 4.0

[output]
name = "prob"
type = "logits"
activation = "sigmoid"
live_index = [0, 2]
classes = ["live", "print", "live_too", "replay"]
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def minimal(**override) -> dict:
    sections = {
        "model": {"name": "m", "file": "m.onnx"},
        "input": {"size": [80, 80]},
    }
    for key, value in override.items():
        section, _, field = key.partition("__")
        if value is None:
            sections[section].pop(field, None)
        else:
            sections.setdefault(section, {})[field] = value
    return sections


def test_it_loads_every_field_of_a_model_manifest(tmp_path):
    path = write(tmp_path, "fas_a.toml", FULL_MODEL)
    m = load_manifest(path)
    assert isinstance(m, ModelManifest)
    assert m.name == "fas_a" and m.version == "2.1"
    assert m.file == (tmp_path / "weights" / "fas_a.onnx").resolve()  # relative to the manifest
    assert (m.input_name, m.size, m.layout, m.color, m.scale) == ("data", (80, 96), "NHWC", "BGR", "raw")
    assert m.mean == (104.0, 117.0, 123.0) and m.std == (58.0, 57.0, 57.5)
    assert m.crop == CropRecipe(
        side="axes",
        scale=2.7,
        border="shift",
        resize="letterbox",
        interpolation="opencv_linear",
        small_face_ref=130.0,
        small_face_max_scale=4.0,
    )
    assert (m.output_name, m.output_type, m.activation) == ("prob", "logits", "sigmoid")
    assert m.live_index == (0, 2)
    assert m.attack_classes == {1: "print", 3: "replay"}
    assert m.text == FULL_MODEL  # the source is kept for registration


def test_it_fills_documented_defaults_for_a_minimal_model_manifest(tmp_path):
    m = load_manifest(write(tmp_path, "m.toml", manifest_text(minimal())))
    assert (m.layout, m.color, m.scale, m.mean, m.std) == ("NCHW", "RGB", "unit", (0.0,) * 3, (1.0,) * 3)
    assert m.crop == CropRecipe()
    assert (m.output_type, m.activation, m.live_index, m.classes) == ("logits", "softmax", (1,), ())
    assert m.attack_classes == {}


def test_it_loads_an_ensemble_with_its_member_models(tmp_path):
    write(tmp_path, "fas_a.toml", FULL_MODEL)
    (tmp_path / "b").mkdir()
    write(tmp_path / "b", "fas_b.toml", manifest_text(minimal(model__name="fas_b")))
    ens = write(
        tmp_path,
        "prod.toml",
        '[ensemble]\nname = "prod"\nthreshold = 0.72\nrule = "mean"\nmodels = ["fas_a.toml", "b/fas_b.toml"]\n',
    )
    e = load_manifest(ens)
    assert isinstance(e, EnsembleManifest)
    assert (e.name, e.threshold, e.rule) == ("prod", 0.72, "mean")
    assert [m.name for m in e.models] == ["fas_a", "fas_b"]
    assert e.models[1].file == (tmp_path / "b" / "m.onnx").resolve()


def test_it_accepts_an_integer_threshold(tmp_path):
    write(tmp_path, "a.toml", manifest_text(minimal()))
    e = load_manifest(write(tmp_path, "e.toml", '[ensemble]\nname = "e"\nthreshold = 1\nmodels = ["a.toml"]\n'))
    assert e.threshold == 1.0 and e.rule == "mean"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"input__layout": "NCWH"}, "input.layout"),
        ({"input__color": "RGBA"}, "input.color"),
        ({"input__scale": "percent"}, "input.scale"),
        ({"input__size": [80]}, "input.size"),
        ({"input__size": [80, 0]}, "input.size"),
        ({"input__size": None}, "input.size"),
        ({"input__size": "80x80"}, "input.size"),
        ({"input__mean": [0.5, 0.5]}, "input.mean"),
        ({"input__std": [1, 0, 1]}, "input.std"),
        ({"input__layout": 4}, "input.layout"),
        ({"model__name": None}, "model.name"),
        ({"model__name": "bad name!"}, "model.name"),
        ({"model__file": None}, "model.file"),
        ({"crop__side": "min"}, "crop.side"),
        ({"crop__scale": 0}, "crop.scale"),
        ({"crop__scale": "big"}, "crop.scale"),
        ({"crop__border": "wrap"}, "crop.border"),
        ({"crop__resize": "crop"}, "crop.resize"),
        ({"crop__interpolation": "bicubic"}, "crop.interpolation"),
        ({"output__type": "scores"}, "output.type"),
        ({"output__activation": "relu"}, "output.activation"),
        ({"output__live_index": -1}, "output.live_index"),
        ({"output__live_index": "live"}, "output.live_index"),
        ({"output__live_index": []}, "output.live_index"),
        ({"output__classes": "live,attack"}, "output.classes"),
    ],
)
def test_it_names_the_bad_key_of_a_model_manifest(tmp_path, override, key):
    path = write(tmp_path, "m.toml", manifest_text(minimal(**override)))
    with pytest.raises(ManifestError) as exc:
        load_manifest(path)
    assert key in str(exc.value)
    assert str(path) in str(exc.value)  # and the file


@pytest.mark.parametrize("section", ["model", "input"])
def test_it_names_a_missing_required_section(tmp_path, section):
    sections = minimal()
    del sections[section]
    with pytest.raises(ManifestError, match=rf"\[{section}\].*missing"):
        load_manifest(write(tmp_path, "m.toml", manifest_text(sections)))


@pytest.mark.parametrize("threshold", [1.5, -0.01])
def test_it_refuses_an_ensemble_threshold_outside_0_to_1(tmp_path, threshold):
    write(tmp_path, "a.toml", manifest_text(minimal()))
    path = write(tmp_path, "e.toml", f'[ensemble]\nname = "e"\nthreshold = {threshold}\nmodels = ["a.toml"]\n')
    with pytest.raises(ManifestError, match="ensemble.threshold"):
        load_manifest(path)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('name = "e"\nthreshold = 0.5\nmodels = []', "ensemble.models"),
        ('name = "e"\nthreshold = 0.5', "ensemble.models"),
        ('name = "e"\nthreshold = "high"\nmodels = ["a.toml"]', "ensemble.threshold"),
        ('threshold = 0.5\nmodels = ["a.toml"]', "ensemble.name"),
        ('name = "e"\nrule = "median"\nmodels = ["a.toml"]', "ensemble.rule"),
    ],
)
def test_it_names_the_bad_key_of_an_ensemble_manifest(tmp_path, body, key):
    write(tmp_path, "a.toml", manifest_text(minimal()))
    with pytest.raises(ManifestError, match=key.replace(".", r"\.")):
        load_manifest(write(tmp_path, "e.toml", f"[ensemble]\n{body}\n"))


def test_it_names_the_member_file_and_key_of_a_broken_member(tmp_path):
    write(tmp_path, "a.toml", manifest_text(minimal(input__layout="CHW")))
    with pytest.raises(ManifestError) as exc:
        load_manifest(write(tmp_path, "e.toml", '[ensemble]\nname = "e"\nmodels = ["a.toml"]\n'))
    assert "a.toml" in str(exc.value) and "input.layout" in str(exc.value)


def test_it_refuses_an_ensemble_that_lists_an_ensemble(tmp_path):
    write(tmp_path, "a.toml", manifest_text(minimal()))
    write(tmp_path, "inner.toml", '[ensemble]\nname = "i"\nmodels = ["a.toml"]\n')
    with pytest.raises(ManifestError, match="not a model manifest"):
        load_manifest(write(tmp_path, "e.toml", '[ensemble]\nname = "e"\nmodels = ["inner.toml"]\n'))


def test_it_reports_a_missing_member_file(tmp_path):
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifest(write(tmp_path, "e.toml", '[ensemble]\nname = "e"\nmodels = ["gone.toml"]\n'))


def test_it_reports_invalid_toml(tmp_path):
    with pytest.raises(ManifestError, match="not valid TOML"):
        load_manifest(write(tmp_path, "m.toml", "[model\nname = "))


def test_it_rebuilds_a_stored_manifest_with_its_model_at_a_new_place(tmp_path):
    original = load_manifest(write(tmp_path, "fas_a.toml", FULL_MODEL))
    moved = tmp_path / "store" / "abc123.onnx"
    rebuilt = parse_model_text(original.text, moved)
    assert rebuilt.file == moved
    assert rebuilt == ModelManifest(**{**original.__dict__, "file": moved})


def test_it_refuses_an_ensemble_with_two_models_of_the_same_name(tmp_path):
    # scores are stored per model name: a second "m" would silently replace the first one's scores
    write(tmp_path, "a.toml", manifest_text(minimal(model__file="a.onnx")))
    write(tmp_path, "b.toml", manifest_text(minimal(model__file="b.onnx")))
    path = write(tmp_path, "e.toml", '[ensemble]\nname = "e"\nmodels = ["a.toml", "b.toml"]\n')
    with pytest.raises(ManifestError, match=r"ensemble\.models.*'m'"):
        load_manifest(path)


# --- unknown keys and sections ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"input__colour": "BGR"}, "input.colour: unknown key; did you mean 'color'?"),
        ({"crop__border_policy": "shift"}, "crop.border_policy: unknown key; did you mean 'border'?"),
        ({"model__nmae": "m2"}, "model.nmae: unknown key; did you mean 'name'?"),
        ({"output__live_indices": [1]}, "output.live_indices: unknown key; did you mean 'live_index'?"),
        ({"crop__small_face_maxscale": 4.0}, "did you mean 'small_face_max_scale'?"),
        ({"input__border": "shift"}, "input.border: unknown key; it belongs in [crop]"),
        ({"output__size": [80, 80]}, "output.size: unknown key; it belongs in [input]"),
        ({"output__scale": 2.7}, "output.scale: unknown key; it belongs in [input] or [crop]"),
        ({"input__input_size": [80, 80]}, "input.input_size: unknown key; did you mean 'size'?"),
    ],
)
def test_it_refuses_an_unknown_key_of_a_model_manifest_and_suggests_the_known_one(tmp_path, override, message):
    path = write(tmp_path, "m.toml", manifest_text(minimal(**override)))
    with pytest.raises(ManifestError) as exc:
        load_manifest(path)
    assert message in str(exc.value)
    assert str(path) in str(exc.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"input__crop_scale": 2.7}, "crop_scale is not an [input] key; did you mean [crop] scale?"),
        ({"crop__input_scale": "raw"}, "input_scale is not a [crop] key; did you mean [input] scale?"),
        ({"crop__pixel_scale": "raw"}, "pixel_scale is not a [crop] key; did you mean [input] scale?"),
        ({"input__crop_size": [80, 80]}, "crop_size is not an [input] key, and [crop] has no key 'size'"),
    ],
)
def test_it_suggests_the_key_of_the_section_a_word_of_the_key_names(tmp_path, override, message):
    # input.scale (values /255 or raw) is spelt like crop_scale but is another setting: never suggested
    with pytest.raises(ManifestError) as exc:
        load_manifest(write(tmp_path, "m.toml", manifest_text(minimal(**override))))
    assert message in str(exc.value)
    assert "did you mean 'scale'" not in str(exc.value) and "did you mean 'size'" not in str(exc.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"input__scale": 255}, 'input.scale: expected one of "unit", "raw" (a string in quotes), got 255'),
        ({"input__color": 1}, 'input.color: expected one of "RGB", "BGR" (a string in quotes), got 1'),
        ({"crop__side": True}, 'crop.side: expected one of "max", "axes" (a string in quotes), got True'),
        ({"input__layout": "NCWH"}, "input.layout: must be one of NCHW, NHWC, got 'NCWH'"),
    ],
)
def test_it_lists_the_allowed_values_of_a_bad_value(tmp_path, override, message):
    with pytest.raises(ManifestError) as exc:
        load_manifest(write(tmp_path, "m.toml", manifest_text(minimal(**override))))
    assert message in str(exc.value)


def test_it_lists_the_known_keys_when_nothing_is_close(tmp_path):
    with pytest.raises(ManifestError) as exc:
        load_manifest(write(tmp_path, "m.toml", manifest_text(minimal(crop__wobble=1))))
    message = str(exc.value)
    assert "crop.wobble: unknown key (known: side, scale, border," in message
    assert "did you mean" not in message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[inputs]\nsize = [80, 80]\n", "[inputs]: unknown section; did you mean [input]?"),
        ('[preprocess]\nscale = "raw"\n', "[preprocess]: unknown section (known: [model], [input], [crop], [output])"),
        ('[ensemble]\nname = "e"\n', None),  # an ensemble manifest: checked as one (below)
    ],
)
def test_it_refuses_an_unknown_section_of_a_model_manifest(tmp_path, text, message):
    path = write(tmp_path, "m.toml", manifest_text(minimal()) + text)
    with pytest.raises(ManifestError) as exc:
        load_manifest(path)
    assert (message or "[model]: unknown section") in str(exc.value)


def test_it_refuses_a_key_outside_any_section(tmp_path):
    path = write(tmp_path, "m.toml", 'name = "m"\n' + manifest_text(minimal()))
    with pytest.raises(ManifestError, match=r"name: unknown top-level key; keys belong in a section \(\[model\]"):
        load_manifest(path)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'name = "e"\ntreshold = 0.3\nmodels = ["a.toml"]',
            "ensemble.treshold: unknown key; did you mean 'threshold'?",
        ),
        ('name = "e"\nmembers = ["a.toml"]', "ensemble.members: unknown key"),
        (
            'name = "e"\nmodels = ["a.toml"]\n[ensembles]\nx = 1',
            "[ensembles]: unknown section; did you mean [ensemble]?",
        ),
    ],
)
def test_it_refuses_an_unknown_key_or_section_of_an_ensemble_manifest(tmp_path, body, message):
    write(tmp_path, "a.toml", manifest_text(minimal()))
    path = write(tmp_path, "e.toml", f"[ensemble]\n{body}\n")
    with pytest.raises(ManifestError) as exc:
        load_manifest(path)
    assert message in str(exc.value) and str(path) in str(exc.value)


def test_it_names_the_member_file_of_a_member_with_an_unknown_key(tmp_path):
    write(tmp_path, "a.toml", manifest_text(minimal(input__colour="BGR")))
    with pytest.raises(ManifestError) as exc:
        load_manifest(write(tmp_path, "e.toml", '[ensemble]\nname = "e"\nmodels = ["a.toml"]\n'))
    assert "a.toml" in str(exc.value) and "input.colour: unknown key" in str(exc.value)


def test_it_refuses_an_unknown_key_of_a_stored_manifest_too(tmp_path):
    with pytest.raises(ManifestError, match="input.colour: unknown key"):
        parse_model_text(manifest_text(minimal(input__colour="BGR")), tmp_path / "m.onnx")


# --- the small-face rule, live_index and classes ---------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"crop__small_face_ref": -130, "crop__small_face_max_scale": 4.0},
            "crop.small_face_ref: must not be negative",
        ),
        (
            {"crop__small_face_ref": 130, "crop__small_face_max_scale": -4.0},
            "crop.small_face_max_scale: must not be negative",
        ),
        ({"crop__small_face_max_scale": -1}, "crop.small_face_max_scale: must not be negative"),
        ({"crop__small_face_ref": 130}, "crop.small_face_max_scale: missing or 0"),
        ({"crop__small_face_ref": 130, "crop__small_face_max_scale": 0}, "crop.small_face_max_scale: missing or 0"),
    ],
)
def test_it_refuses_a_small_face_rule_that_cannot_work(tmp_path, override, message):
    with pytest.raises(ManifestError) as exc:
        load_manifest(write(tmp_path, "m.toml", manifest_text(minimal(**override))))
    assert message in str(exc.value)


def test_it_accepts_the_small_face_rule_turned_off_with_a_zero_reference(tmp_path):
    m = load_manifest(write(tmp_path, "m.toml", manifest_text(minimal(crop__small_face_max_scale=4.0))))
    assert (m.crop.small_face_ref, m.crop.small_face_max_scale) == (0.0, 4.0)


@pytest.mark.parametrize(
    ("live_index", "classes", "message"),
    [
        (2, ["attack", "live"], "output.live_index: 2 is beyond output.classes, which names 2 (indices 0..1)"),
        ([0, 3], ["live", "print", "replay"], "output.live_index: 3 is beyond output.classes, which names 3"),
        ([1, 1], [], "output.live_index: an index is listed twice"),
    ],
)
def test_it_refuses_a_live_index_that_does_not_fit_the_classes(tmp_path, live_index, classes, message):
    override = {"output__live_index": live_index, "output__classes": classes or None}
    with pytest.raises(ManifestError) as exc:
        load_manifest(write(tmp_path, "m.toml", manifest_text(minimal(**override))))
    assert message in str(exc.value)


def test_it_accepts_a_live_index_within_the_classes(tmp_path):
    override = {"output__live_index": [0, 2], "output__classes": ["live", "print", "live_too"]}
    m = load_manifest(write(tmp_path, "m.toml", manifest_text(minimal(**override))))
    assert m.live_index == (0, 2) and m.attack_classes == {1: "print"}


# --- every manifest documented or shared still loads (demo models: tests/test_demo_models.py) ------

ROOT = Path(__file__).resolve().parents[2]
SHARED_MODELS = ROOT.parent / "shared" / "models"


def _docstring_blocks() -> list[str]:
    """The indented TOML examples of liveness/manifest.py's docstring: model, then ensemble."""
    blocks = re.findall(r"((?:^    .*\n|^\n)+)", liveness.manifest.__doc__, re.M)
    return [textwrap.dedent(b) for b in blocks if "[" in b]


def test_it_loads_the_documented_examples(tmp_path):
    model, ensemble = _docstring_blocks()
    write(tmp_path, "fas_a.toml", model)
    write(tmp_path, "fas_b.toml", model.replace('name = "fas_a"', 'name = "fas_b"'))
    assert load_manifest(tmp_path / "fas_a.toml").classes == ("attack", "live")
    assert [m.name for m in load_manifest(write(tmp_path, "demo.toml", ensemble)).models] == ["fas_a", "fas_b"]


def test_it_loads_every_shared_model_manifest():
    paths = sorted(SHARED_MODELS.rglob("*.toml")) if SHARED_MODELS.is_dir() else []
    if not paths:
        pytest.skip(f"no model manifests under {SHARED_MODELS}")
    for path in paths:
        if "detector" in tomllib.loads(path.read_text(encoding="utf-8")):
            load_detector_manifest(path)
        else:
            load_manifest(path)


# --- the cookbook of published models (liveness/manifests/) ----------------------------------------

COOKBOOK = ROOT / "liveness" / "manifests"


def _is_detector(path: Path) -> bool:
    return "detector" in tomllib.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", sorted(COOKBOOK.glob("*.toml")), ids=lambda p: p.name)
def test_it_loads_every_cookbook_manifest_and_says_where_its_file_is_published(path):
    loaded = load_detector_manifest(path) if _is_detector(path) else load_manifest(path)
    assert loaded.name
    text = path.read_text(encoding="utf-8")
    if not isinstance(loaded, EnsembleManifest):
        assert "# Where the ONNX file is published:" in text and "# What the authors' code does" in text


def test_it_describes_minifasnet_as_its_authors_crop_and_read_it():
    v2, v1se = load_manifest(COOKBOOK / "minifasnet-v2.toml"), load_manifest(COOKBOOK / "minifasnet-v1se.toml")
    for m, scale in ((v2, 2.7), (v1se, 4.0)):
        assert m.crop == CropRecipe(
            side="axes",
            scale=scale,
            border="shift",
            resize="stretch",
            interpolation="opencv_linear",
            box_round="truncate",
        )
        assert (m.size, m.layout, m.color, m.scale) == ((80, 80), "NCHW", "BGR", "raw")
        assert (m.mean, m.std) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        assert (m.output_type, m.activation, m.live_index) == ("logits", "softmax", (1,))
    both = load_manifest(COOKBOOK / "silent-face.toml")
    assert [m.name for m in both.models] == [v2.name, v1se.name] and both.threshold == 0.5


def test_it_describes_the_letterboxed_rgb_model_as_its_authors_crop_and_read_it():
    m = load_manifest(COOKBOOK / "antispoofing-bin-128.toml")
    assert m.crop == CropRecipe(
        side="max", scale=1.5, border="pad", resize="letterbox", interpolation="opencv_linear", box_round="truncate"
    )
    assert (m.size, m.color, m.scale, m.mean, m.std) == ((128, 128), "RGB", "unit", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert (m.activation, m.live_index, m.classes) == ("softmax", (0,), ("live", "spoof"))


def test_it_describes_the_two_detectors_with_their_authors_thresholds():
    yunet = load_detector_manifest(COOKBOOK / "yunet-2023mar.toml")
    ultraface = load_detector_manifest(COOKBOOK / "ultraface-rfb320.toml")
    assert (yunet.family, yunet.file.name, yunet.score_threshold, yunet.nms_iou) == (
        "yunet",
        "face_detection_yunet_2023mar.onnx",
        0.6,
        0.3,
    )
    assert (ultraface.family, ultraface.input_size, ultraface.score_threshold, ultraface.nms_iou) == (
        "ultraface",
        (240, 320),
        0.7,
        0.5,
    )
