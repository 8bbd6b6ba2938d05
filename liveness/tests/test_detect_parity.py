"""Our face detectors against their authors' own code, on every photo in ../shared/images/faces/.

The references are written here from the authors' published code, not with liveness.detect:
- YuNet: OpenCV's `cv2.FaceDetectorYN` (opencv/opencv modules/objdetect/src/face_detect.cpp),
  with OpenCV Zoo's `yunet.py` defaults (score 0.6, NMS 0.3, top_k 5000);
- UltraFace: Linzaer/Ultra-Light-Fast-Generic-Face-Detector-1MB `detect_imgs_onnx.py` with
  `vision/utils/box_utils_numpy.py` (`hard_nms`, `iou_of`).
Both sides read the same file; ours decodes it with liveness.decode (Pillow), the references
with cv2.imread. The ONNX files and photos live in ../shared and the tests skip without them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from liveness.decode import decode_image
from liveness.detect import FaceDetector, load_detector_manifest

REPO = Path(__file__).resolve().parents[2]
ONNX_DIR = REPO.parent / "shared" / "models" / "face_detection"
PHOTOS = REPO.parent / "shared" / "images" / "faces"
MANIFESTS = REPO / "liveness" / "detectors"
YUNET_FILE = ONNX_DIR / "face_detection_yunet_2023mar.onnx"
ULTRAFACE_FILE = ONNX_DIR / "version-RFB-320.onnx"
NAMES = sorted(p.name for p in PHOTOS.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
TOLERANCE = 0.5  # px in the photo: what "the authors' boxes" must mean for a crop
# px: with the same network input on both sides only the inference engines' rounding is left;
# this tighter bound is the one that catches a resize that is not OpenCV's
ENGINE_TOLERANCE = 0.01

needs_shared = pytest.mark.skipif(
    not YUNET_FILE.is_file() or not ULTRAFACE_FILE.is_file() or not NAMES,
    reason=f"the face detector files and photos are not there ({ONNX_DIR}, {PHOTOS})",
)
every_photo = pytest.mark.parametrize("name", NAMES or ["(no photos)"])


def ours(manifest: str, name: str, interpolation: str = ""):
    """Our boxes (x1, y1, x2, y2), scores and landmarks, in the order FaceDetector.detect gives,
    with the shipped manifest (or its `interpolation` replaced)."""
    m = load_detector_manifest(MANIFESTS / manifest, base=ONNX_DIR)
    detector = FaceDetector(replace(m, interpolation=interpolation) if interpolation else m)
    found = detector.detect(decode_image((PHOTOS / name).read_bytes()).image)
    boxes = np.array([[d.box.x, d.box.y, d.box.x + d.box.w, d.box.y + d.box.h] for d in found]).reshape(-1, 4)
    points = np.array([d.landmarks for d in found]) if found and found[0].landmarks else None
    return boxes, np.array([d.score for d in found]), points


def clip(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.clip(boxes, 0, [width, height, width, height])


def face_detector_yn(name: str, own_size: bool):
    """cv2.FaceDetectorYN on the photo as our pipeline shrinks it: fitted into 640x640 (never
    enlarged, sides rounded) with cv2.resize INTER_LINEAR. `own_size`: given at that size, as
    OpenCV Zoo's demo.py does (setInputSize to the image; FaceDetectorYN pads it with zeros to a
    multiple of 32); else padded with zeros to 640x640 first, the ONNX file's fixed input, which
    is what our pipeline feeds onnxruntime. Faces (x, y, w, h, 5 landmarks, score) are mapped back
    by the per-axis scale and the boxes clipped to the photo."""
    bgr = cv2.imread(str(PHOTOS / name))
    h, w = bgr.shape[:2]
    scale = min(640 / w, 640 / h, 1.0)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = bgr if (nw, nh) == (w, h) else cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
    if not own_size:
        small = cv2.copyMakeBorder(small, 0, 640 - nh, 0, 640 - nw, cv2.BORDER_CONSTANT, value=0)
    detector = cv2.FaceDetectorYN.create(str(YUNET_FILE), "", (small.shape[1], small.shape[0]), 0.6, 0.3, 5000)
    _, faces = detector.detect(small)
    faces = np.zeros((0, 15)) if faces is None else faces.astype(np.float64)
    sx, sy = nw / w, nh / h
    x1, y1 = faces[:, 0] / sx, faces[:, 1] / sy
    x2, y2 = (faces[:, 0] + faces[:, 2]) / sx, (faces[:, 1] + faces[:, 3]) / sy
    points = faces[:, 4:14].reshape(-1, 5, 2) / [sx, sy]
    return clip(np.stack([x1, y1, x2, y2], axis=1), w, h), faces[:, 14], points


def authors_iou_of(boxes0, boxes1, eps=1e-5):
    """box_utils_numpy.iou_of."""
    left_top = np.maximum(boxes0[..., :2], boxes1[..., :2])
    right_bottom = np.minimum(boxes0[..., 2:], boxes1[..., 2:])

    def area(lt, rb):
        hw = np.clip(rb - lt, 0.0, None)
        return hw[..., 0] * hw[..., 1]

    overlap = area(left_top, right_bottom)
    return overlap / (area(boxes0[..., :2], boxes0[..., 2:]) + area(boxes1[..., :2], boxes1[..., 2:]) - overlap + eps)


def authors_hard_nms(box_scores, iou_threshold, candidate_size=200):
    """box_utils_numpy.hard_nms (top_k -1: every face kept)."""
    indexes = np.argsort(box_scores[:, -1])[-candidate_size:]
    picked = []
    while len(indexes) > 0:
        current = indexes[-1]
        picked.append(current)
        if len(indexes) == 1:
            break
        indexes = indexes[:-1]
        iou = authors_iou_of(box_scores[indexes, :4], box_scores[current, :4][None])
        indexes = indexes[iou <= iou_threshold]
    return box_scores[picked, :]


def ultraface_authors(name: str):
    """detect_imgs_onnx.py on the photo: cv2.imread, BGR -> RGB, cv2.resize to 320x240,
    (x - 127) / 128, onnxruntime; predict(): class-1 probability above 0.7, hard_nms at its
    default IoU 0.5 among 200 candidates, boxes times the photo's width and height. Compared
    before the script's int32 cast (made for cv2.rectangle), clipped to the photo as ours are."""
    orig = cv2.imread(str(PHOTOS / name))
    image = cv2.resize(cv2.cvtColor(orig, cv2.COLOR_BGR2RGB), (320, 240))
    image = np.expand_dims(np.transpose((image - np.array([127, 127, 127])) / 128, [2, 0, 1]), 0).astype(np.float32)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the file's harmless "initializer in graph inputs" warnings
    session = ort.InferenceSession(str(ULTRAFACE_FILE), options, providers=["CPUExecutionProvider"])
    confidences, boxes = session.run(None, {session.get_inputs()[0].name: image})
    probs = confidences[0][:, 1]
    mask = probs > 0.7
    picked = authors_hard_nms(np.concatenate([boxes[0][mask], probs[mask, None]], axis=1), 0.5)
    height, width = orig.shape[:2]
    return clip(picked[:, :4] * [width, height, width, height], width, height), picked[:, 4]


@needs_shared
@every_photo
@pytest.mark.parametrize("own_size", [False, True], ids=["640x640-canvas", "own-size"])
def test_it_gives_yunet_boxes_within_half_a_pixel_of_cv2_face_detector_yn(name, own_size):
    boxes, scores, points = ours("yunet-2023mar.toml", name)
    want_boxes, want_scores, want_points = face_detector_yn(name, own_size)
    assert len(boxes) == len(want_boxes) > 0
    bound = TOLERANCE if own_size else ENGINE_TOLERANCE
    assert np.abs(boxes - want_boxes).max() <= bound  # the same faces in the same (score) order
    assert np.abs(points - want_points).max() <= bound
    assert np.abs(scores - want_scores).max() < 1e-3


@needs_shared
@every_photo
def test_it_gives_ultraface_boxes_within_half_a_pixel_of_the_authors_decode(name):
    boxes, scores, _ = ours("ultraface-rfb320.toml", name)
    want_boxes, want_scores = ultraface_authors(name)
    assert len(boxes) == len(want_boxes) > 0
    assert np.abs(boxes - want_boxes).max() <= ENGINE_TOLERANCE  # same input, onnxruntime on both sides
    assert np.abs(scores - want_scores).max() < 1e-4


@needs_shared
@pytest.mark.parametrize("family", ["yunet", "ultraface"])
def test_it_misses_the_authors_boxes_with_pillows_resize_so_the_parity_tests_can_fail(family):
    manifest, reference = {
        "yunet": ("yunet-2023mar.toml", lambda name: face_detector_yn(name, own_size=False)[0]),
        "ultraface": ("ultraface-rfb320.toml", lambda name: ultraface_authors(name)[0]),
    }[family]
    worst = 0.0
    for name in NAMES:
        boxes, want = ours(manifest, name, "pillow_bilinear")[0], reference(name)
        if len(boxes) != len(want):  # another number of faces: plainly not the authors' result
            worst = np.inf
            break
        by_left = np.argsort(boxes[:, 0]), np.argsort(want[:, 0])  # the faces side by side, whatever their scores
        worst = max(worst, np.abs(boxes[by_left[0]] - want[by_left[1]]).max())
    assert worst > ENGINE_TOLERANCE
