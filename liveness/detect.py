"""ONNX face detectors: find the face box of an image whose sidecar has none (SPEC sections 4, 6).

A detector manifest (TOML) names the ONNX file, its family and what the family's authors do:

    [detector]
    name = "ultraface-rfb320"
    family = "ultraface"            # or "yunet"
    version = "1"
    file = "version-RFB-320.onnx"   # relative to the manifest (or absolute)
    input_size = [240, 320]         # h, w
    interpolation = "opencv_linear" # input resize: cv2.resize INTER_LINEAR, or "pillow_bilinear" (antialiased)
    score_threshold = 0.7           # faces scoring above it are kept
    nms_iou = 0.5                   # greedy hard NMS drops a box overlapping a better one by more than this
    nms_candidates = 200            # NMS looks at this many best-scored boxes only
    face = "best_score"             # the face used: "best_score" or "largest" (area)
    min_face = 0                    # px in the original image; detections with a smaller side are ignored

Family defaults, from the authors' own code:
- ultraface (Linzaer/Ultra-Light-Fast-Generic-Face-Detector-1MB, `detect_imgs_onnx.py`):
  input [240, 320], opencv_linear, score 0.7, NMS IoU 0.5 (its `predict` default; the
  repository's PyTorch, Caffe and MNN code use 0.3), 200 candidates (`hard_nms`);
- yunet (OpenCV's `cv2.FaceDetectorYN`, with OpenCV Zoo's `yunet.py` defaults): input
  [640, 640], opencv_linear, score 0.6, NMS IoU 0.3, 5000 candidates (`top_k`);
- both: face "best_score" (the first face of the authors' score-ordered result), min_face 0.

Conventions:
- images are RGB PIL images; boxes come back as `liveness.boxes.Box` in that image's pixels,
  clipped to the image; internally boxes are numpy rows x1, y1, x2, y2;
- `FaceDetector.detect` returns every face, the one the `face` rule picks first (best score
  first, or largest area first); calling the detector returns that face and its score (the
  pipeline's `Detector` type), or None;
- UltraFace (RFB-320): the image is stretched to the input size, values (x - 127) / 128, RGB
  NCHW; the outputs `scores` (index 1 = face) and normalised x1y1x2y2 `boxes` are already decoded;
- YuNet (OpenCV Zoo 2023mar): the image keeps its aspect ratio. It is downscaled to fit the
  input (never upscaled: YuNet finds faces of about 10 to 300 px, so upscaling would only push the
  large faces of liveness photos out of its range, and the shared test photos need none) and
  pasted at the top left of a zero canvas (as FaceDetectorYN pads), BGR, raw 0..255, NCHW; the 12
  outputs cls/obj/bbox/kps at strides 8/16/32 are decoded on the grid (see
  shared/models/face_detection/NOTICE.md); NMS compares the boxes truncated to integers, as
  FaceDetectorYN does;
- both: score threshold, min_face, greedy hard NMS on the unclipped boxes, then clipping to the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .boxes import Box
from .manifest import ManifestError, check_keys, check_sections, get_key, is_int, read_toml, section_of
from .runtime import file_sha256, load_session

FAMILIES = ("ultraface", "yunet")
INTERPOLATIONS = ("opencv_linear", "pillow_bilinear")
FACE_RULES = ("best_score", "largest")
YUNET_STRIDES = (8, 16, 32)
YUNET_OUTPUTS = tuple(f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in YUNET_STRIDES)
ULTRAFACE_OUTPUTS = ("scores", "boxes")
KEYS = (
    "name",
    "family",
    "version",
    "file",
    "input_size",
    "interpolation",
    "score_threshold",
    "nms_iou",
    "nms_candidates",
    "face",
    "min_face",
)


@dataclass(frozen=True)
class FamilyDefaults:
    input_size: tuple[int, int]  # h, w
    score_threshold: float
    nms_iou: float
    nms_candidates: int
    interpolation: str = "opencv_linear"
    face: str = "best_score"


DEFAULTS = {
    "ultraface": FamilyDefaults((240, 320), 0.7, 0.5, 200),  # detect_imgs_onnx.py, box_utils_numpy.hard_nms
    "yunet": FamilyDefaults((640, 640), 0.6, 0.3, 5000),  # OpenCV Zoo yunet.py -> cv2.FaceDetectorYN
}


@dataclass(frozen=True)
class DetectorManifest:
    name: str
    family: str
    file: Path
    version: str = "1"
    score_threshold: float = 0.7
    nms_iou: float = 0.5
    input_size: tuple[int, int] = (240, 320)  # h, w
    min_face: float = 0.0
    interpolation: str = "opencv_linear"
    nms_candidates: int = 200
    face: str = "best_score"
    text: str = ""  # the TOML source


@dataclass(frozen=True)
class Detection:
    box: Box  # in the given image's pixels
    score: float
    landmarks: list[tuple[float, float]] | None = None  # 5 points (YuNet: eyes, nose, mouth corners)

    @property
    def area(self) -> float:
        return self.box.w * self.box.h


def _input_size(d: dict, family: str) -> tuple[int, int]:
    size = d.get("input_size", list(DEFAULTS[family].input_size))
    if not (isinstance(size, list) and len(size) == 2 and all(is_int(v) and v > 0 for v in size)):
        raise ManifestError(f"detector.input_size: expected [height, width] positive integers, got {size!r}")
    if family == "yunet" and any(v % 32 for v in size):
        raise ManifestError(f"detector.input_size: yunet needs multiples of 32 (its largest stride), got {size!r}")
    return size[0], size[1]


def _nms_settings(d: dict, family: str) -> dict:
    defaults = DEFAULTS[family]
    threshold = get_key(d, "detector", "score_threshold", float, defaults.score_threshold)
    if not 0 <= threshold <= 1:
        raise ManifestError(f"detector.score_threshold: must be in [0, 1], got {threshold}")
    nms_iou = get_key(d, "detector", "nms_iou", float, defaults.nms_iou)
    if not 0 < nms_iou <= 1:
        raise ManifestError(f"detector.nms_iou: must be in (0, 1], got {nms_iou}")
    candidates = get_key(d, "detector", "nms_candidates", int, defaults.nms_candidates)
    if candidates < 1:
        raise ManifestError(f"detector.nms_candidates: must be a positive integer, got {candidates}")
    min_face = get_key(d, "detector", "min_face", float, 0.0)
    if min_face < 0:
        raise ManifestError(f"detector.min_face: must be >= 0, got {min_face}")
    return {"score_threshold": threshold, "nms_iou": nms_iou, "nms_candidates": candidates, "min_face": min_face}


def parse_detector(doc: dict, base: Path, text: str = "") -> DetectorManifest:
    check_sections(doc, ("detector",))
    d = section_of(doc, "detector")
    check_keys(d, "detector", KEYS)
    family = get_key(d, "detector", "family", str, choices=FAMILIES)
    name = get_key(d, "detector", "name", str)
    if not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise ManifestError(f"detector.name: use letters, digits, '_', '-', '.', got {name!r}")
    defaults = DEFAULTS[family]
    return DetectorManifest(
        name=name,
        family=family,
        file=(base / get_key(d, "detector", "file", str)).resolve(),
        version=str(d.get("version", "1")),
        input_size=_input_size(d, family),
        interpolation=get_key(d, "detector", "interpolation", str, defaults.interpolation, INTERPOLATIONS),
        face=get_key(d, "detector", "face", str, defaults.face, FACE_RULES),
        text=text,
        **_nms_settings(d, family),
    )


def load_detector_manifest(path: str | Path, base: str | Path | None = None) -> DetectorManifest:
    """Load a detector manifest; `file` is relative to `base` (default: the manifest's folder).

    Raises ManifestError naming the file and the key. The ONNX file itself is checked by FaceDetector.
    """
    path = Path(path)
    text, doc = read_toml(path)
    try:
        return parse_detector(doc, Path(base) if base is not None else path.parent, text)
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from None


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, candidates: int = 0) -> np.ndarray:
    """Greedy hard NMS. boxes (n, 4) x1, y1, x2, y2; returns the kept indices, best score first.

    Only the `candidates` best-scored boxes are looked at (0: all). A box is dropped when its IoU
    with an already kept, higher-scored box exceeds `iou`.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-np.asarray(scores), kind="stable")
    order = order[:candidates] if candidates > 0 else order
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.int64)


def opencv_rects(boxes: np.ndarray) -> np.ndarray:
    """x1, y1, x2, y2 rows as FaceDetectorYN hands them to NMSBoxes: Rect2i(int(x), int(y), int(w), int(h))."""
    x, y = np.trunc(boxes[:, 0]), np.trunc(boxes[:, 1])
    w, h = np.trunc(boxes[:, 2] - boxes[:, 0]), np.trunc(boxes[:, 3] - boxes[:, 1])
    return np.stack([x, y, x + w, y + h], axis=1)


def resize_rgb(image: Image.Image, w: int, h: int, interpolation: str) -> np.ndarray:
    """An RGB image as a uint8 (h, w, 3) array of that size, resized as the manifest says."""
    if image.size == (w, h):
        return np.asarray(image)
    if interpolation == "opencv_linear":  # the authors' own call: two taps per axis, no antialiasing
        return cv2.resize(np.asarray(image), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(image.resize((w, h), Image.Resampling.BILINEAR))


class FaceDetector:
    """One ONNX face detector with its manifest; checks at load that the ONNX file fits the family."""

    def __init__(self, manifest: DetectorManifest, threads: int = 0):
        self.manifest = m = manifest
        if not Path(m.file).is_file():
            raise ManifestError(f"detector.file: {m.file} does not exist")
        try:
            self.session = load_session(str(m.file), threads)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors share no base class but Exception
            raise ManifestError(f"detector.file: {m.file} is not a loadable ONNX model: {exc}") from None
        self.sha256 = file_sha256(m.file)
        self._check_outputs()
        self._check_input()

    def _check_outputs(self) -> None:
        m = self.manifest
        outputs = [o.name for o in self.session.get_outputs()]
        need = ULTRAFACE_OUTPUTS if m.family == "ultraface" else YUNET_OUTPUTS
        missing = [n for n in need if n not in outputs]
        if missing:
            raise ManifestError(
                f"detector.family: {m.family} needs the outputs {', '.join(need)}; "
                f"{m.file.name} has the outputs {', '.join(outputs)}"
            )

    def _check_input(self) -> None:
        m = self.manifest
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        h, w = m.input_size
        shape = list(inp.shape)
        if len(shape) != 4 or any(isinstance(g, int) and g != e for g, e in zip(shape[1:], [3, h, w], strict=True)):
            raise ManifestError(
                f"detector.input_size: manifest says [{h}, {w}] (NCHW 1x3x{h}x{w}), "
                f"the ONNX input {inp.name!r} of {m.file.name} has shape {shape}"
            )

    @property
    def label(self) -> str:
        m = self.manifest
        return f"{m.name}@{m.version}:{self.sha256[:8]}"

    def __call__(self, image: Image.Image) -> tuple[Box, float] | None:
        """The face the manifest's `face` rule picks and its score, or None (the pipeline's Detector)."""
        found = self.detect(image)
        return (found[0].box, found[0].score) if found else None

    def detect(self, image: Image.Image) -> list[Detection]:
        """Every face in an RGB image, the one the `face` rule picks first."""
        image = image.convert("RGB")
        decode = self._ultraface if self.manifest.family == "ultraface" else self._yunet
        boxes, scores, landmarks, overlap = decode(image)
        kept = self._suppress(boxes, scores, overlap)
        return self._finish(boxes[kept], scores[kept], landmarks[kept] if landmarks is not None else None, image)

    def _suppress(self, boxes: np.ndarray, scores: np.ndarray, overlap: np.ndarray) -> np.ndarray:
        """Indices kept by min_face and NMS (on `overlap`, the boxes as the authors' NMS sees them)."""
        m = self.manifest
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        big = np.flatnonzero(sides >= m.min_face) if m.min_face > 0 else np.arange(len(boxes))
        return big[nms(overlap[big], scores[big], m.nms_iou, m.nms_candidates)]

    def _finish(self, boxes, scores, landmarks, image: Image.Image) -> list[Detection]:
        """Clip to the image (dropping boxes left empty), order by the face rule."""
        boxes = np.clip(boxes, 0, [image.width, image.height] * 2)
        found = []
        for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
            if x2 > x1 and y2 > y1:
                points = [(float(x), float(y)) for x, y in landmarks[i]] if landmarks is not None else None
                found.append(Detection(Box(x1, y1, x2 - x1, y2 - y1), float(scores[i]), points))
        if self.manifest.face == "largest":
            found.sort(key=lambda d: -d.area)  # stable: equal areas keep the better score first
        return found

    def _ultraface(self, image: Image.Image):
        h, w = self.manifest.input_size
        x = resize_rgb(image, w, h, self.manifest.interpolation).astype(np.float32)
        x = ((x - 127.0) / 128.0).transpose(2, 0, 1)[None]
        scores, boxes = self.session.run(list(ULTRAFACE_OUTPUTS), {self.input_name: np.ascontiguousarray(x)})
        scores, boxes = scores[0][:, 1], boxes[0].astype(np.float64)
        keep = scores > self.manifest.score_threshold
        boxes = boxes[keep] * [image.width, image.height, image.width, image.height]
        return boxes, scores[keep].astype(np.float64), None, boxes

    def _yunet(self, image: Image.Image):
        h, w = self.manifest.input_size
        scale = min(w / image.width, h / image.height, 1.0)
        nw, nh = max(1, round(image.width * scale)), max(1, round(image.height * scale))
        x = np.zeros((1, 3, h, w), np.float32)
        small = resize_rgb(image, nw, nh, self.manifest.interpolation)
        x[0, :, :nh, :nw] = small[..., ::-1].transpose(2, 0, 1)  # RGB -> BGR
        out = dict(zip(YUNET_OUTPUTS, self.session.run(list(YUNET_OUTPUTS), {self.input_name: x}), strict=True))
        boxes, scores, points = self._yunet_decode(out, w)
        sx, sy = nw / image.width, nh / image.height  # the exact scale of each axis after rounding
        # landmarks are not clipped: one may lie outside the image
        return boxes / [sx, sy, sx, sy], scores, points / [sx, sy], opencv_rects(boxes)

    def _yunet_decode(self, out: dict, width: int):
        """Boxes, scores and landmarks above the score threshold, in the input's pixels."""
        all_boxes, all_scores, all_points = [], [], []
        for s in YUNET_STRIDES:
            cls, obj = out[f"cls_{s}"].reshape(-1), out[f"obj_{s}"].reshape(-1)
            bbox, kps = out[f"bbox_{s}"].reshape(-1, 4), out[f"kps_{s}"].reshape(-1, 10)
            score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
            keep = np.flatnonzero(score > self.manifest.score_threshold)
            row, col = np.divmod(keep, width // s)
            b, k = bbox[keep].astype(np.float64), kps[keep].astype(np.float64)
            cx, cy = (col + b[:, 0]) * s, (row + b[:, 1]) * s
            bw, bh = np.exp(b[:, 2]) * s, np.exp(b[:, 3]) * s
            all_boxes.append(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1))
            all_points.append(np.stack([(col[:, None] + k[:, 0::2]) * s, (row[:, None] + k[:, 1::2]) * s], axis=2))
            all_scores.append(score[keep].astype(np.float64))
        return np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_points)
