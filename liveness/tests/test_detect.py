"""Face detectors (liveness/detect.py) on real photos, with the real ONNX files.

The ONNX files and photos live in ../shared (next to the repository), never in it: the tests that
need them skip when that folder is absent. Manifest, NMS and resize tests run everywhere. The
boxes' parity with the authors' own code is in test_detect_parity.py.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from liveness.decode import decode_image
from liveness.detect import FaceDetector, load_detector_manifest, nms, opencv_rects, resize_rgb
from liveness.ensemble import Ensemble
from liveness.manifest import ManifestError, load_manifest
from liveness.pipeline import FileInput, Pipeline
from liveness.runtime import LivenessModel, file_sha256

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
ONNX_DIR = SHARED / "models" / "face_detection"
PHOTOS = SHARED / "images" / "faces"
MANIFESTS = REPO / "liveness" / "detectors"
FAMILIES = {"ultraface": "ultraface-rfb320.toml", "yunet": "yunet-2023mar.toml"}
FACES = {"one_face.jpg": 1, "two_faces.jpg": 2, "group_five.jpg": 5}

needs_shared = pytest.mark.skipif(
    not ONNX_DIR.is_dir() or not PHOTOS.is_dir(),
    reason=f"the face detector files and photos are not there ({ONNX_DIR}, {PHOTOS})",
)


def photo(name: str) -> Image.Image:
    return decode_image((PHOTOS / name).read_bytes()).image


def iou(a, b) -> float:
    w = max(0.0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    h = max(0.0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    return w * h / (a.w * a.h + b.w * b.h - w * h)


@pytest.fixture(scope="module")
def detectors() -> dict[str, FaceDetector]:
    if not ONNX_DIR.is_dir():
        pytest.skip(f"no face detector files in {ONNX_DIR}")
    return {f: FaceDetector(load_detector_manifest(MANIFESTS / m, base=ONNX_DIR)) for f, m in FAMILIES.items()}


@needs_shared
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", FACES)
def test_it_finds_every_face_of_the_shared_photos_with_plausible_boxes(detectors, family, name):
    img = photo(name)
    found = detectors[family].detect(img)
    assert len(found) == FACES[name]
    for d in found:
        b = d.box
        assert 0 <= b.x and 0 <= b.y and b.x + b.w <= img.width and b.y + b.h <= img.height
        assert 40 <= b.min_side and max(b.w, b.h) <= 0.5 * max(img.size)  # a head, not a speck or the frame
        assert 0.8 <= b.h / b.w <= 2.0  # faces are upright, a bit taller than wide
        assert d.score > detectors[family].manifest.score_threshold
    scores = [d.score for d in found]
    assert scores == sorted(scores, reverse=True)  # the shipped manifests use the best-scoring face
    assert detectors[family](img) == (found[0].box, found[0].score)


@needs_shared
def test_it_finds_the_same_face_with_both_families_and_labels_them_by_file_hash(detectors):
    img = photo("one_face.jpg")
    (u_box, _), (y_box, _) = detectors["ultraface"](img), detectors["yunet"](img)
    assert iou(u_box, y_box) > 0.5
    yunet = detectors["yunet"].detect(img)[0]
    assert len(yunet.landmarks) == 5  # eyes, nose, mouth corners inside the face box
    assert all(u_box.x <= x <= u_box.x + u_box.w and u_box.y <= y <= u_box.y + u_box.h for x, y in yunet.landmarks)
    assert detectors["ultraface"].detect(img)[0].landmarks is None
    sha = file_sha256(ONNX_DIR / "version-RFB-320.onnx")
    assert detectors["ultraface"].label == f"ultraface-rfb320@2:{sha[:8]}"


@needs_shared
@pytest.mark.parametrize("family", FAMILIES)
def test_it_finds_the_same_faces_in_a_mirrored_photo(detectors, family):
    for name, count in FACES.items():
        assert len(detectors[family].detect(ImageOps.mirror(photo(name)))) == count


@needs_shared
@pytest.mark.parametrize("family", FAMILIES)
def test_it_finds_no_face_in_a_uniform_grey_image(detectors, family):
    grey = Image.new("RGB", (640, 480), (128, 128, 128))
    assert detectors[family].detect(grey) == []
    assert detectors[family](grey) is None


@needs_shared
@pytest.mark.parametrize("family", FAMILIES)
def test_it_maps_the_face_of_an_upscaled_photo_back_to_its_pixels(detectors, family):
    img = photo("one_face.jpg")
    big = img.resize((img.width * 2, img.height * 2), Image.Resampling.BILINEAR)
    (small_box, _), (big_box, _) = detectors[family](img), detectors[family](big)
    for a, b in zip(small_box.as_dict().values(), big_box.as_dict().values(), strict=True):
        assert b == pytest.approx(2 * a, abs=0.05 * 2 * small_box.w)


@needs_shared
def test_it_ignores_faces_smaller_than_min_face(tmp_path):
    manifest = tmp_path / "d.toml"
    manifest.write_text(f'[detector]\nname = "u"\nfamily = "ultraface"\nfile = "{ONNX_DIR / "version-RFB-320.onnx"}"\n')
    assert len(FaceDetector(load_detector_manifest(manifest)).detect(photo("group_five.jpg"))) == 5
    manifest.write_text(manifest.read_text() + "min_face = 80\n")
    found = FaceDetector(load_detector_manifest(manifest)).detect(photo("group_five.jpg"))
    assert 1 <= len(found) < 5 and all(d.box.min_side >= 80 for d in found)


@needs_shared
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", ["two_faces.jpg", "group_five.jpg"])
def test_it_uses_the_best_scoring_or_the_largest_face_as_the_manifest_says(tmp_path, family, name):
    text = (MANIFESTS / FAMILIES[family]).read_text()
    assert 'face = "best_score"' in text
    picked = {}
    for rule in ("best_score", "largest"):
        path = tmp_path / f"{rule}.toml"
        path.write_text(text.replace('face = "best_score"', f'face = "{rule}"'))
        detector = FaceDetector(load_detector_manifest(path, base=ONNX_DIR))
        found = detector.detect(photo(name))
        picked[rule] = detector(photo(name))
        assert picked[rule] == (found[0].box, found[0].score)
        assert len(found) == FACES[name]
    best = max(found, key=lambda d: d.score)
    largest = max(found, key=lambda d: d.area)
    assert best != largest  # on these photos the two rules pick different faces
    assert picked == {"best_score": (best.box, best.score), "largest": (largest.box, largest.score)}


def test_it_keeps_the_higher_scored_of_two_overlapping_boxes_and_keeps_disjoint_ones():
    boxes = np.array([[0, 0, 100, 100], [5, 5, 105, 105], [200, 200, 260, 260]], float)
    assert nms(boxes, np.array([0.8, 0.9, 0.7]), 0.3).tolist() == [1, 2]
    assert nms(boxes, np.array([0.9, 0.8, 0.7]), 0.3).tolist() == [0, 2]
    assert nms(boxes[:0], np.array([]), 0.3).tolist() == []


def test_it_looks_only_at_the_best_nms_candidates():
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], float)
    assert nms(boxes, np.array([0.7, 0.9, 0.8]), 0.3, candidates=2).tolist() == [1, 2]
    assert nms(boxes, np.array([0.7, 0.9, 0.8]), 0.3).tolist() == [1, 2, 0]


def test_it_truncates_boxes_toward_zero_as_opencv_rect2i_for_yunet_nms():
    rects = opencv_rects(np.array([[-3.7, 2.9, 10.2, 20.99]]))
    assert rects.tolist() == [[-3.0, 2.0, 10.0, 20.0]]  # x, y, w = 13.9 -> 13, h = 18.09 -> 18


def test_it_resizes_the_detector_input_with_cv2_resize_itself_or_with_pillow():
    rng = np.random.default_rng(14)
    img = Image.fromarray(rng.integers(0, 256, (300, 410, 3), dtype=np.uint8))
    want = cv2.resize(np.asarray(img), (320, 240), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(resize_rgb(img, 320, 240, "opencv_linear"), want)
    pillow = np.asarray(img.resize((320, 240), Image.Resampling.BILINEAR))
    assert np.array_equal(resize_rgb(img, 320, 240, "pillow_bilinear"), pillow)
    assert not np.array_equal(pillow, want)  # the setting matters
    assert np.array_equal(resize_rgb(img, 410, 300, "opencv_linear"), np.asarray(img))  # no resize, no change


def write(tmp_path, body: str) -> Path:
    path = tmp_path / "detector.toml"
    path.write_text("[detector]\n" + body)
    return path


@pytest.mark.parametrize(
    "body, key",
    [
        ('name = "d"\nfamily = "x"\nfile = "d.onnx"\n', "detector.family: must be one of ultraface, yunet, got 'x'"),
        ('name = "d"\nfamily = "yunet"\n', "detector.file: missing"),
        ('name = "d"\nfamily = "yunet"\nfile = "d.onnx"\nscore_threshold = "high"\n', "detector.score_threshold"),
        ('name = "d"\nfamily = "yunet"\nfile = "d.onnx"\nscore_threshold = 7\n', "detector.score_threshold"),
        ('name = "d"\nfamily = "ultraface"\nfile = "d.onnx"\ninput_size = [240]\n', "detector.input_size"),
        ('name = "d"\nfamily = "yunet"\nfile = "d.onnx"\ninput_size = [480, 620]\n', "detector.input_size"),
        (
            'name = "d"\nfamily = "yunet"\nfile = "d.onnx"\nscore_treshold = 0.5\n',
            "detector.score_treshold: unknown key; did you mean 'score_threshold'?",
        ),
        (
            'name = "d"\nfamily = "yunet"\nfile = "d.onnx"\ninterpolation = "linear"\n',
            "detector.interpolation: must be one of opencv_linear, pillow_bilinear, got 'linear'",
        ),
        (
            'name = "d"\nfamily = "yunet"\nfile = "d.onnx"\nface = "biggest"\n',
            "detector.face: must be one of best_score, largest, got 'biggest'",
        ),
        (
            'name = "d"\nfamily = "yunet"\nfile = "d.onnx"\nface = 1\n',
            'detector.face: expected one of "best_score", "largest"',
        ),
        ('name = "d"\nfamily = "yunet"\nfile = "d.onnx"\nnms_iou = 0\n', "detector.nms_iou: must be in (0, 1]"),
        (
            'name = "d"\nfamily = "yunet"\nfile = "d.onnx"\nnms_candidates = 0\n',
            "detector.nms_candidates: must be a positive integer, got 0",
        ),
        (
            'name = "d"\nfamily = "yunet"\nfile = "d.onnx"\nnms_candidates = 2.5\n',
            "detector.nms_candidates: expected int",
        ),
        ('name = "d"\nfamily = "yunet"\nfile = "d.onnx"\n[detectors]\nx = 1\n', "[detectors]: unknown section"),
    ],
)
def test_it_refuses_a_bad_detector_manifest_naming_the_file_and_key(tmp_path, body, key):
    path = write(tmp_path, body)
    with pytest.raises(ManifestError) as err:
        load_detector_manifest(path)
    assert str(path) in str(err.value) and key in str(err.value)


def test_it_reads_the_file_relative_to_the_manifest_or_to_base(tmp_path):
    path = write(tmp_path, 'name = "d"\nfamily = "yunet"\nfile = "d.onnx"\n')
    m = load_detector_manifest(path)
    assert m.file == tmp_path / "d.onnx"
    assert (m.score_threshold, m.input_size, m.nms_iou, m.nms_candidates) == (0.6, (640, 640), 0.3, 5000)
    assert (m.interpolation, m.face, m.min_face) == ("opencv_linear", "best_score", 0.0)  # yunet defaults
    assert m.text == path.read_text()
    assert load_detector_manifest(path, base="/models").file == Path("/models/d.onnx")


@pytest.mark.parametrize("family", FAMILIES)
def test_it_ships_manifests_that_say_the_family_defaults_which_are_the_authors_settings(tmp_path, family):
    authors = {  # detect_imgs_onnx.py + hard_nms; cv2.FaceDetectorYN with OpenCV Zoo's yunet.py defaults
        "ultraface": ((240, 320), "opencv_linear", 0.7, 0.5, 200, "best_score"),
        "yunet": ((640, 640), "opencv_linear", 0.6, 0.3, 5000, "best_score"),
    }[family]
    bare = load_detector_manifest(write(tmp_path, f'name = "d"\nfamily = "{family}"\nfile = "d.onnx"\n'))
    shipped = load_detector_manifest(MANIFESTS / FAMILIES[family])
    for m in (bare, shipped):
        assert (m.input_size, m.interpolation, m.score_threshold, m.nms_iou, m.nms_candidates, m.face) == authors
        assert m.min_face == 0


def test_it_refuses_a_missing_onnx_file_at_load(tmp_path):
    manifest = load_detector_manifest(write(tmp_path, 'name = "d"\nfamily = "yunet"\nfile = "absent.onnx"\n'))
    with pytest.raises(ManifestError, match="detector.file: .*absent.onnx does not exist"):
        FaceDetector(manifest)


@needs_shared
def test_it_refuses_an_onnx_file_of_the_other_family_at_load(tmp_path):
    yunet_file = ONNX_DIR / "face_detection_yunet_2023mar.onnx"
    manifest = load_detector_manifest(write(tmp_path, f'name = "d"\nfamily = "ultraface"\nfile = "{yunet_file}"\n'))
    with pytest.raises(ManifestError, match="detector.family: ultraface needs the outputs scores, boxes.*cls_8"):
        FaceDetector(manifest)
    ultraface_file = ONNX_DIR / "version-RFB-320.onnx"
    body = f'name = "d"\nfamily = "ultraface"\nfile = "{ultraface_file}"\ninput_size = [480, 640]\n'
    with pytest.raises(ManifestError, match=r"detector.input_size: .*\[1, 3, 240, 320\]"):
        FaceDetector(load_detector_manifest(write(tmp_path, body)))


@pytest.fixture(scope="module")
def demo_ensemble() -> Ensemble:
    e = load_manifest(REPO / "demo" / "models" / "demo.toml")
    return Ensemble(e.name, [LivenessModel(m) for m in e.models], e.threshold, e.rule)


@needs_shared
@pytest.mark.parametrize("family", FAMILIES)
def test_it_gives_a_face_box_to_a_photo_without_sidecar_in_the_pipeline(detectors, demo_ensemble, encode, family):
    pipeline = Pipeline(demo_ensemble, detector=detectors[family])
    grey = encode(Image.new("RGB", (640, 480), (128, 128, 128)), "JPEG")
    face, blank = pipeline.analyse([FileInput(data=(PHOTOS / "one_face.jpg").read_bytes()), FileInput(data=grey)])
    assert face.box_source == "detector" and face.box == detectors[family](photo("one_face.jpg"))[0]
    assert face.detection_score > detectors[family].manifest.score_threshold
    assert face.category != "no_face" and face.score is not None
    assert blank.category == "no_face" and "face detector" in blank.reason and blank.box is None
