"""Pipeline.analyse: a batch of inbox files in, one categorised, scored result per file out.

Two channel-mean models make the scores predictable: model "red" says live = mean red / 255
of its crop, model "green" says live = mean green / 255; the ensemble score is their mean.
"""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from liveness.boxes import Box
from liveness.ensemble import CATEGORIES, Ensemble, categorise, decide
from liveness.manifest import load_manifest
from liveness.pipeline import FileInput, Pipeline
from liveness.quality import Gates
from liveness.runtime import LivenessModel

from .onnx_models import pipeline_of, write_model

GOOD_BOX = {"x": 70, "y": 60, "w": 160, "h": 170}


def make_ensemble(tmp_path, threshold=0.5) -> Ensemble:
    write_model(tmp_path, "red", crop={"scale": 1.2}, output={"live_index": 0})
    write_model(tmp_path, "green", crop={"scale": 2.7, "border": "shift"}, output={"live_index": 1})
    ens = tmp_path / "ensemble.toml"
    ens.write_text(f'[ensemble]\nname = "t"\nthreshold = {threshold}\nmodels = ["red.toml", "green.toml"]\n')
    manifest = load_manifest(ens)
    return Ensemble(manifest.name, [LivenessModel(m) for m in manifest.models], manifest.threshold)


@pytest.fixture
def pipeline(tmp_path):
    return Pipeline(make_ensemble(tmp_path))


def image(encode, colour, size=(300, 300), fmt="JPEG") -> bytes:
    return encode(Image.new("RGB", size, colour), fmt, **({"quality": 95} if fmt == "JPEG" else {}))


def sidecar(**fields) -> bytes:
    return json.dumps({"blur": 0.1, **fields}).encode()


def test_it_sorts_a_mixed_batch_into_the_right_categories(pipeline, encode):
    files = [
        FileInput(image(encode, (230, 130, 30)), sidecar(face=GOOD_BOX)),  # live
        FileInput(image(encode, (20, 40, 200)), sidecar(face=GOOD_BOX)),  # attack
        FileInput(image(encode, (230, 130, 30))),  # no sidecar
        FileInput(b"\xff\xd8\xff\xe0 this is not really a jpeg"),  # broken
        FileInput(image(encode, (230, 130, 30)), sidecar(face={"x": 100, "y": 100, "w": 100, "h": 120})),  # small
        FileInput(image(encode, (230, 130, 30)), sidecar(face={"x": 400, "y": 50, "w": 100, "h": 100})),  # outside
    ]
    results = pipeline.analyse(files)
    assert [r.category for r in results] == ["live", "attack", "no_face", "unreadable", "low_quality", "no_face"]
    assert all(r.category in CATEGORIES for r in results)

    live, attack, no_sidecar, broken, small, outside = results
    assert live.decision == "live" and live.score > 0.5
    assert attack.decision == "attack" and attack.score <= 0.5
    assert live.box == Box(**GOOD_BOX) and live.box_source == "sidecar"
    assert live.quality.face_size == 160 and live.quality.failed_gates == []

    assert no_sidecar.score is None and no_sidecar.decision is None
    assert "no face" in no_sidecar.reason

    assert broken.reason and broken.score is None and broken.width is None

    # a face failing a gate is still scored and decided, but categorised low_quality
    assert small.quality.failed_gates == ["face_size"]
    assert small.score is not None and small.decision == "live"
    assert set(small.scores) == {"red", "green"}

    assert outside.score is None and outside.box is None
    assert any("outside" in note for note in outside.notes)
    assert "outside the image" in outside.reason


def test_it_scores_each_model_and_combines_them_by_their_mean(pipeline, encode):
    results = pipeline.analyse(
        [
            FileInput(image(encode, (230, 130, 30), fmt="PNG"), sidecar(face=GOOD_BOX)),
            FileInput(image(encode, (20, 40, 200), fmt="PNG"), sidecar(face=GOOD_BOX)),
        ]
    )
    for r, (red, green) in zip(results, [(230, 130), (20, 40)], strict=True):
        assert r.scores["red"] == pytest.approx(red / 255, abs=1e-6)
        assert r.scores["green"] == pytest.approx(green / 255, abs=1e-6)
        assert r.score == pytest.approx((r.scores["red"] + r.scores["green"]) / 2, abs=1e-12)


def test_it_crops_each_model_by_its_own_recipe(pipeline, encode):
    img = Image.new("RGB", (300, 300), (0, 0, 0))
    img.paste((255, 255, 0), (70, 60, 230, 230))  # the face box is yellow, the rest black
    (r,) = pipeline.analyse([FileInput(encode(img, "PNG"), sidecar(face=GOOD_BOX))])
    # "red" crops 1.2 x 170 around the box: mostly face; "green" crops 2.7 x (shrunk to fit): much background
    assert r.scores["red"] > 0.6
    assert r.scores["green"] < 0.5
    x0, y0, x1, y1 = r.crop_rects["green"]
    assert x0 >= 0 and y0 >= 0 and x1 <= 299 and y1 <= 299


def test_it_decides_attack_when_the_score_equals_the_threshold(tmp_path, encode):
    files = [FileInput(image(encode, (100, 100, 100), fmt="PNG"), sidecar(face=GOOD_BOX))]
    ens = make_ensemble(tmp_path)
    score = Pipeline(ens).analyse(files)[0].score

    ens.threshold = score
    at = Pipeline(ens).analyse(files)[0]
    assert at.score == score
    assert (at.decision, at.category) == ("attack", "attack")

    ens.threshold = float(np.nextafter(score, -1.0))
    below = Pipeline(ens).analyse(files)[0]
    assert (below.decision, below.category) == ("live", "live")


def test_it_uses_the_decision_rule_of_the_spec():
    assert decide(0.5000001, 0.5) == "live"
    assert decide(0.5, 0.5) == "attack"
    assert decide(0.0, 0.0) == "attack"
    assert decide(1.0, 1.0) == "attack"


def test_it_categorises_by_gates_before_decision():
    assert categorise("live", []) == "live"
    assert categorise("attack", []) == "attack"
    assert categorise("live", ["blur"]) == "low_quality"
    with pytest.raises(ValueError):
        categorise(None, [])


def test_it_clips_a_box_partly_outside_the_image_and_says_so(pipeline, encode):
    data = image(encode, (230, 130, 30))
    (r,) = pipeline.analyse([FileInput(data, sidecar(face={"x": 200, "y": -20, "w": 160, "h": 160}))])
    assert r.box == Box(200, 0, 100, 140)
    assert any("clipped" in n for n in r.notes)
    assert r.category == "low_quality"  # the clipped face is 100 px
    assert r.score is not None


def test_it_measures_blur_when_the_sidecar_has_none(pipeline, encode, textured):
    sharp = encode(textured((300, 300), seed=1), "PNG")
    flat = image(encode, (230, 130, 30), fmt="PNG")
    a, b = pipeline.analyse(
        [
            FileInput(sharp, json.dumps({"face": GOOD_BOX}).encode()),
            FileInput(flat, json.dumps({"face": GOOD_BOX}).encode()),
        ]
    )
    assert a.quality.blur_source == "measured" and a.quality.failed_gates == []
    assert b.quality.failed_gates == ["blur"] and b.category == "low_quality"


def test_it_fails_the_pose_gate_from_sidecar_pose(pipeline, encode):
    (r,) = pipeline.analyse([FileInput(image(encode, (230, 130, 30)), sidecar(face=GOOD_BOX, pose={"yaw": -50}))])
    assert r.quality.failed_gates == ["yaw"] and r.category == "low_quality"


def test_it_uses_the_configured_gates(tmp_path, encode):
    p = Pipeline(make_ensemble(tmp_path), gates=Gates(min_face=50))
    (r,) = p.analyse([FileInput(image(encode, (230, 130, 30)), sidecar(face={"x": 100, "y": 100, "w": 100, "h": 120}))])
    assert r.category == "live"


def test_it_keeps_going_with_a_broken_sidecar_and_notes_it(pipeline, encode):
    data = image(encode, (230, 130, 30))
    r1, r2 = pipeline.analyse(
        [
            FileInput(data, b"{not json"),
            FileInput(data, json.dumps({"face": {"x": 70, "y": 60, "w": -5, "h": 170}, "blur": 0.1}).encode()),
        ]
    )
    assert r1.category == "no_face" and any("JSON" in n for n in r1.notes)
    assert r2.category == "no_face" and any("sidecar face" in n for n in r2.notes)


def test_it_asks_the_detector_when_the_sidecar_has_no_box(tmp_path, encode):
    seen = []

    def detector(img):
        seen.append(img.size)
        return Box(70, 60, 160, 170), 0.93

    p = Pipeline(make_ensemble(tmp_path), detector=detector)
    r, with_box = p.analyse(
        [
            FileInput(image(encode, (230, 130, 30)), sidecar()),
            FileInput(image(encode, (230, 130, 30)), sidecar(face=GOOD_BOX)),
        ]
    )
    assert seen == [(300, 300)]  # only for the image without a sidecar box
    assert (r.box_source, r.detection_score, r.category) == ("detector", 0.93, "live")
    assert with_box.box_source == "sidecar"


def test_it_reports_no_face_when_the_detector_finds_none(tmp_path, encode):
    p = Pipeline(make_ensemble(tmp_path), detector=lambda img: None)
    (r,) = p.analyse([FileInput(image(encode, (230, 130, 30)))])
    assert r.category == "no_face" and "no face detected" in r.reason


def test_it_records_identity_size_format_and_a_thumbnail(pipeline, encode):
    data = image(encode, (230, 130, 30), size=(600, 400))
    r, dup = pipeline.analyse([FileInput(data, sidecar(face=GOOD_BOX)), FileInput(data, sidecar(face=GOOD_BOX))])
    assert r.sha256 == hashlib.sha256(data).hexdigest() == dup.sha256
    assert (r.size, r.format, r.width, r.height) == (len(data), "JPEG", 600, 400)
    assert r.thumbnail.size == (300, 200)  # box-reduced by 2: fits THUMB_SIDE (320), its long side above 160
    assert r.score == dup.score


def test_it_gives_boxes_in_upright_coordinates_for_a_rotated_photo(pipeline, encode):
    # stored 400 wide x 300 tall, EXIF 6: upright it is 300 x 400; the sidecar box is upright
    img = Image.new("RGB", (400, 300), (0, 0, 0))
    img.paste((255, 255, 0), (0, 0, 200, 300))  # stored left half -> upright top half
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(img, "JPEG", quality=95, exif=exif.tobytes())
    # upright x 170..290 is yellow (top half); stored x 170..290 would be mostly black
    (r,) = pipeline.analyse([FileInput(data, sidecar(face={"x": 180, "y": 20, "w": 100, "h": 100}))])
    assert (r.width, r.height) == (300, 400)
    assert r.scores["red"] > 0.9


def test_it_returns_nothing_for_an_empty_batch(pipeline):
    assert pipeline.analyse([]) == []


def test_it_returns_only_unscored_results_when_nothing_can_be_scored(pipeline, encode):
    results = pipeline.analyse([FileInput(b""), FileInput(image(encode, (1, 2, 3)))])
    assert [r.category for r in results] == ["unreadable", "no_face"]
    assert "empty" in results[0].reason


def test_it_scores_the_stored_box_before_the_sidecar_and_the_detector(tmp_path, encode):
    seen = []

    def detector(img):
        seen.append(img.size)
        return Box(0, 0, 50, 50), 0.9

    p = Pipeline(make_ensemble(tmp_path), detector=detector)
    img = Image.new("RGB", (300, 300), (20, 40, 200))  # blue: the sidecar's box says attack
    img.paste((230, 130, 30), (40, 30, 260, 260))  # orange around the stored box: live
    data = encode(img, "PNG")
    stored = Box(80, 70, 140, 150)
    side = sidecar(face={"x": 0, "y": 0, "w": 30, "h": 30})
    given, from_sidecar, outside = p.analyse(
        [FileInput(data, side, box=stored), FileInput(data, side), FileInput(data, side, box=Box(400, 400, 50, 50))]
    )
    assert (given.box, given.box_source) == (stored, "stored")
    assert given.detection_score is None and seen == []
    assert given.scores["red"] > 0.8 and from_sidecar.scores["red"] < 0.2
    assert from_sidecar.box_source == "sidecar"
    # a stored box outside the image is ignored, with a note; the sidecar's box is used instead
    assert outside.box_source == "sidecar" and outside.score == from_sidecar.score
    assert any("given face box" in n for n in outside.notes)


def _demo_captures(n: int = 24) -> list[FileInput]:
    """Demo captures as JPEG with sidecars: even ones 640x480 with faces of 140-300 px, odd ones
    1920x1080 with faces of 400-900 px (large enough to be decoded reduced)."""
    from demo import render_sample

    rng = np.random.default_rng(11)
    files = []
    for i in range(n):
        size, face = ((1920, 1080), rng.uniform(400, 900)) if i % 2 else ((640, 480), rng.uniform(140, 300))
        s = render_sample(rng, label="attack" if i % 3 == 0 else "genuine", size=size, face_size=face)
        buf = io.BytesIO()
        s.image.save(buf, "JPEG", quality=90)
        files.append(FileInput(buf.getvalue(), json.dumps({"face": s.box.as_dict()}).encode()))
    return files


def _demo_ensemble(interpolation: str | None = None) -> Ensemble:
    """The shipped demo ensemble; with `interpolation`, its networks fed crops resized that way."""
    import dataclasses
    from pathlib import Path

    manifest = load_manifest(Path(__file__).resolve().parents[2] / "demo" / "models" / "demo.toml")
    models = manifest.models
    if interpolation:
        models = [dataclasses.replace(m, crop=dataclasses.replace(m.crop, interpolation=interpolation)) for m in models]
    return Ensemble(manifest.name, [LivenessModel(m) for m in models], manifest.threshold)


def test_it_decodes_large_jpegs_reduced_and_scores_them_as_at_full_resolution():
    """Scaled JPEG decoding (Image.draft) changes what the models see; with antialiased crops
    (Pillow's bilinear resize) the demo networks' score must stay within 0.04 of full-resolution
    decoding and no image may change category. (DRAFT_MARGIN's figures were measured with the
    version 1 demo models, trained on such crops; the version 2 networks fed them here moved by
    at most 0.014, and by 0.14 when fed their own linear crops decoded reduced.)"""
    files = _demo_captures()
    ens = _demo_ensemble("pillow_bilinear")
    full = Pipeline(ens, draft=False).analyse(files)
    reduced = Pipeline(ens).analyse(files)

    assert all(r.reduction == 1 for r in full)
    assert all(r.reduction > 1 for r in reduced[1::2])  # the 1920x1080 captures were decoded reduced
    assert max(abs(a.score - b.score) for a, b in zip(full, reduced, strict=True)) < 0.04
    assert [a.category for a in full] == [b.category for b in reduced]
    assert [a.crop_rects for a in full] == [b.crop_rects for b in reduced]  # in full-resolution pixels


def test_it_decodes_at_full_resolution_for_models_with_linear_crops():
    """The shipped demo models sample their crops without antialiasing (opencv_linear): a
    reduced decode would filter out detail they see, so every capture is decoded whole and
    scores exactly as with reduced decoding switched off."""
    files = _demo_captures(8)
    ens = _demo_ensemble()
    assert {m.manifest.crop.interpolation for m in ens.models} == {"opencv_linear"}
    full = Pipeline(ens, draft=False).analyse(files)
    default = Pipeline(ens).analyse(files)

    assert all(r.reduction == 1 for r in default)
    assert [r.score for r in default] == [r.score for r in full]
    # one such model keeps its whole ensemble at full resolution; with every crop antialiased
    # the same captures decode reduced
    mixed = Ensemble("mixed", [*ens.models[:2], _demo_ensemble("pillow_bilinear").models[2]], ens.threshold)
    assert all(r.reduction == 1 for r in Pipeline(mixed).analyse(files[1::2]))
    pillow = _demo_ensemble("pillow_bilinear")
    assert all(r.reduction > 1 for r in Pipeline(pillow).analyse(files[1::2]))


def test_it_crops_once_for_models_that_cut_the_same_pixels(tmp_path, encode, monkeypatch):
    """Two `shift` crops that both grew to the whole image height cut the same pixels: one crop
    serves both models, and their scores are what each model alone gives. A third model of
    another size, and the same models on a small face (other rectangles), get their own."""
    import liveness.pipeline as lp

    write_model(tmp_path, "a", crop={"scale": 2.7, "border": "shift"}, output={"live_index": 0})
    write_model(tmp_path, "b", crop={"scale": 4.0, "border": "shift"}, output={"live_index": 1})
    write_model(tmp_path, "c", size=(24, 24), crop={"scale": 4.0, "border": "shift"}, output={"live_index": 2})
    models = {n: LivenessModel(load_manifest(tmp_path / f"{n}.toml")) for n in "abc"}
    calls = []
    real = lp.crop_face
    monkeypatch.setattr(lp, "crop_face", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    rng = np.random.default_rng(3)
    data = encode(Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)), "PNG")
    big, small = {"x": 130, "y": 90, "w": 140, "h": 140}, {"x": 180, "y": 130, "w": 30, "h": 30}

    (r,) = Pipeline(Ensemble("t", list(models.values()), 0.5)).analyse([FileInput(data, sidecar(face=big))])
    assert len(calls) == 2  # a and b share one crop (both 299 px high, shifted alike), c has its own
    assert r.crop_rects["a"] == r.crop_rects["b"]
    assert r.crop_rects["a"][3] - r.crop_rects["a"][1] == 299  # the whole image height, minus MiniFASNet's 1
    for name, model in models.items():
        (alone,) = Pipeline(Ensemble(name, [model], 0.5)).analyse([FileInput(data, sidecar(face=big))])
        assert alone.scores[name] == r.scores[name]

    calls.clear()
    (r,) = Pipeline(Ensemble("t", [models["a"], models["b"]], 0.5)).analyse([FileInput(data, sidecar(face=small))])
    assert len(calls) == 2  # 81 and 120 px crops: one each
    assert [round(r.crop_rects[n][2] - r.crop_rects[n][0]) for n in "ab"] == [81, 120]


def test_it_gives_every_model_exactly_its_own_crop_on_a_reduced_decode(tmp_path, encode):
    """Shared crops are exact: on a JPEG decoded at half size (1001x750 -> 501x375, whose
    original-size height rounds to 749), each model gets what crop_face cuts for it alone."""
    from liveness.crop import crop_face
    from liveness.decode import decode_image

    recipes = {  # on the first box, shift and pad at 1.2 cut the same rectangle at full size, not at half
        "shift12": {"side": "max", "scale": 1.2, "border": "shift"},
        "pad12": {"side": "max", "scale": 1.2, "border": "pad"},
        "max4": {"side": "max", "scale": 4.0, "border": "shift"},
        "axes4": {"side": "axes", "scale": 4.0, "border": "shift"},
        "max3_letterbox": {"side": "max", "scale": 3.0, "border": "shift", "resize": "letterbox"},
    }
    pipeline = pipeline_of(tmp_path, **{name: {"crop": crop} for name, crop in recipes.items()})
    ens = pipeline.ensemble
    rng = np.random.default_rng(8)
    data = encode(Image.fromarray(rng.integers(0, 256, (750, 1001, 3), dtype=np.uint8)), "JPEG", quality=90)
    for box in ({"x": 181, "y": 159, "w": 546, "h": 524}, {"x": 0, "y": 340, "w": 410, "h": 405}):
        r, crops = pipeline.prepare(FileInput(data, sidecar(face=box)))
        assert r.reduction == 2
        decoded = decode_image(data, max_reduction=pipeline.max_reduction(Box(**box)))
        for model in ens.models:
            m = model.manifest
            alone = crop_face(decoded.image, m.crop, r.box, m.size, scale=r.width / decoded.image.width)
            assert np.array_equal(crops[m.name], alone), (box, m.name)
