"""ONNX face detectors: find the face box of an image whose sidecar has none (SPEC sections 4, 6).

A detector manifest (TOML) names the ONNX file and its family:

    [detector]
    name = "ultraface-rfb320"
    family = "ultraface"            # or "yunet"
    version = "1"
    file = "version-RFB-320.onnx"   # relative to the manifest (or absolute)
    score_threshold = 0.7           # family defaults: ultraface 0.7, yunet 0.6
    nms_iou = 0.3
    input_size = [240, 320]         # h, w; family defaults: ultraface [240, 320], yunet [640, 640]
    min_face = 0                    # px in the original image; detections with a smaller side are ignored

Conventions:
- images are RGB PIL images; boxes come back as `liveness.boxes.Box` in that image's pixels,
  clipped to the image; internally boxes are numpy rows x1, y1, x2, y2;
- `FaceDetector.detect` returns every face, largest area first; calling the detector returns the
  largest face and its score (the pipeline's `Detector` type), or None;
- UltraFace (RFB-320): the image is stretched to the input size (bilinear), values (x - 127) / 128,
  RGB NCHW; the outputs `scores` (index 1 = face) and normalised x1y1x2y2 `boxes` are already decoded;
- YuNet (OpenCV Zoo 2023mar): the image keeps its aspect ratio. It is downscaled to fit the
  input (never upscaled: YuNet finds faces of about 10 to 300 px, so upscaling would only push the
  large faces of liveness photos out of its range, and the shared test photos need none) and
  pasted at the top left of a zero canvas, BGR, raw 0..255, NCHW; the 12 outputs cls/obj/bbox/kps
  at strides 8/16/32 are decoded on the grid (see shared/models/face_detection/NOTICE.md);
- both: score threshold, then greedy hard NMS at IoU `nms_iou`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .boxes import Box
from .manifest import ManifestError, _get, _is_int, _section, check_keys, check_sections, read_toml
from .runtime import file_sha256, load_session

FAMILIES = ("ultraface", "yunet")
DEFAULT_THRESHOLD = {"ultraface": 0.7, "yunet": 0.6}
DEFAULT_INPUT_SIZE = {"ultraface": (240, 320), "yunet": (640, 640)}
YUNET_STRIDES = (8, 16, 32)
YUNET_OUTPUTS = tuple(f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in YUNET_STRIDES)
ULTRAFACE_OUTPUTS = ("scores", "boxes")
KEYS = ("name", "family", "version", "file", "score_threshold", "nms_iou", "input_size", "min_face")


@dataclass(frozen=True)
class DetectorManifest:
    name: str
    family: str
    file: Path
    version: str = "1"
    score_threshold: float = 0.7
    nms_iou: float = 0.3
    input_size: tuple[int, int] = (240, 320)  # h, w
    min_face: float = 0.0
    text: str = ""  # the TOML source


@dataclass(frozen=True)
class Detection:
    box: Box  # in the given image's pixels
    score: float
    landmarks: list[tuple[float, float]] | None = None  # 5 points (YuNet: eyes, nose, mouth corners)

    @property
    def area(self) -> float:
        return self.box.w * self.box.h


def parse_detector(doc: dict, base: Path, text: str = "") -> DetectorManifest:
    check_sections(doc, ("detector",))
    d = _section(doc, "detector")
    check_keys(d, "detector", KEYS)
    family = _get(d, "detector", "family", str, choices=FAMILIES)
    name = _get(d, "detector", "name", str)
    if not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise ManifestError(f"detector.name: use letters, digits, '_', '-', '.', got {name!r}")
    threshold = _get(d, "detector", "score_threshold", float, DEFAULT_THRESHOLD[family])
    if not 0 <= threshold <= 1:
        raise ManifestError(f"detector.score_threshold: must be in [0, 1], got {threshold}")
    nms_iou = _get(d, "detector", "nms_iou", float, 0.3)
    if not 0 < nms_iou <= 1:
        raise ManifestError(f"detector.nms_iou: must be in (0, 1], got {nms_iou}")
    size = d.get("input_size", list(DEFAULT_INPUT_SIZE[family]))
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) and v > 0 for v in size)):
        raise ManifestError(f"detector.input_size: expected [height, width] positive integers, got {size!r}")
    if family == "yunet" and any(v % 32 for v in size):
        raise ManifestError(f"detector.input_size: yunet needs multiples of 32 (its largest stride), got {size!r}")
    min_face = _get(d, "detector", "min_face", float, 0.0)
    if min_face < 0:
        raise ManifestError(f"detector.min_face: must be >= 0, got {min_face}")
    return DetectorManifest(
        name=name,
        family=family,
        file=(base / _get(d, "detector", "file", str)).resolve(),
        version=str(d.get("version", "1")),
        score_threshold=threshold,
        nms_iou=nms_iou,
        input_size=(size[0], size[1]),
        min_face=min_face,
        text=text,
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


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy hard NMS. boxes (n, 4) x1, y1, x2, y2; returns the kept indices, best score first.

    A box is dropped when its IoU with an already kept, higher-scored box exceeds `iou`.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-np.asarray(scores), kind="stable")
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
        outputs = [o.name for o in self.session.get_outputs()]
        need = ULTRAFACE_OUTPUTS if m.family == "ultraface" else YUNET_OUTPUTS
        missing = [n for n in need if n not in outputs]
        if missing:
            raise ManifestError(
                f"detector.family: {m.family} needs the outputs {', '.join(need)}; "
                f"{m.file.name} has the outputs {', '.join(outputs)}"
            )
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
        """The largest face and its score, or None (the pipeline's Detector)."""
        found = self.detect(image)
        return (found[0].box, found[0].score) if found else None

    def detect(self, image: Image.Image) -> list[Detection]:
        """Every face in an RGB image, largest area first."""
        image = image.convert("RGB")
        if self.manifest.family == "ultraface":
            boxes, scores, landmarks = self._ultraface(image)
        else:
            boxes, scores, landmarks = self._yunet(image)
        return self._finish(boxes, scores, landmarks, image.width, image.height)

    def _finish(self, boxes, scores, landmarks, width, height) -> list[Detection]:
        """Clip to the image, drop small boxes, NMS, sort largest first."""
        m = self.manifest
        boxes = np.clip(boxes, 0, [width, height, width, height])
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        ok = (sides > 0) & (sides >= m.min_face)
        boxes, scores = boxes[ok], scores[ok]
        landmarks = landmarks[ok] if landmarks is not None else None
        found = []
        for i in nms(boxes, scores, m.nms_iou):
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            points = [(float(x), float(y)) for x, y in landmarks[i]] if landmarks is not None else None
            found.append(Detection(Box(x1, y1, x2 - x1, y2 - y1), float(scores[i]), points))
        return sorted(found, key=lambda d: -d.area)

    def _ultraface(self, image: Image.Image):
        h, w = self.manifest.input_size
        x = np.asarray(image.resize((w, h), Image.Resampling.BILINEAR), np.float32)
        x = ((x - 127.0) / 128.0).transpose(2, 0, 1)[None]
        scores, boxes = self.session.run(list(ULTRAFACE_OUTPUTS), {self.input_name: np.ascontiguousarray(x)})
        scores, boxes = scores[0][:, 1], boxes[0].astype(np.float64)
        keep = scores > self.manifest.score_threshold
        scale = [image.width, image.height, image.width, image.height]
        return np.clip(boxes[keep], 0.0, 1.0) * scale, scores[keep].astype(np.float64), None

    def _yunet(self, image: Image.Image):
        h, w = self.manifest.input_size
        scale = min(w / image.width, h / image.height, 1.0)
        nw, nh = max(1, round(image.width * scale)), max(1, round(image.height * scale))
        small = image if (nw, nh) == image.size else image.resize((nw, nh), Image.Resampling.BILINEAR)
        x = np.zeros((1, 3, h, w), np.float32)
        x[0, :, :nh, :nw] = np.asarray(small, np.float32)[..., ::-1].transpose(2, 0, 1)  # RGB -> BGR
        out = dict(zip(YUNET_OUTPUTS, self.session.run(list(YUNET_OUTPUTS), {self.input_name: x}), strict=True))
        all_boxes, all_scores, all_points = [], [], []
        for s in YUNET_STRIDES:
            cls, obj = out[f"cls_{s}"].reshape(-1), out[f"obj_{s}"].reshape(-1)
            bbox, kps = out[f"bbox_{s}"].reshape(-1, 4), out[f"kps_{s}"].reshape(-1, 10)
            score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
            keep = np.flatnonzero(score > self.manifest.score_threshold)
            row, col = np.divmod(keep, w // s)
            b, k = bbox[keep].astype(np.float64), kps[keep].astype(np.float64)
            cx, cy = (col + b[:, 0]) * s, (row + b[:, 1]) * s
            bw, bh = np.exp(b[:, 2]) * s, np.exp(b[:, 3]) * s
            all_boxes.append(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1))
            all_points.append(np.stack([(col[:, None] + k[:, 0::2]) * s, (row[:, None] + k[:, 1::2]) * s], axis=2))
            all_scores.append(score[keep].astype(np.float64))
        sx, sy = nw / image.width, nh / image.height  # the exact scale of each axis after rounding
        boxes = np.concatenate(all_boxes) / [sx, sy, sx, sy]
        points = np.concatenate(all_points) / [sx, sy]  # not clipped: a landmark may lie outside the image
        return boxes, np.concatenate(all_scores), points
