"""Score a batch of inbox files: decode, face box, quality, crops, ensemble, decision, category.

Pure library code: bytes in, `ImageResult`s out. Storage, folders and the database are the
caller's business (monitor/runs.py).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import cv2
import imagehash
import numpy as np
from PIL import Image

from .boxes import Box
from .crop import Pixels, crop_face, crop_rect, effective_scale, source_rect
from .decode import UnreadableImage, decode_image
from .ensemble import Ensemble, categorise, decide
from .quality import BLUR_SIDE, Gates, Quality, assess
from .sidecar import Sidecar, SidecarError, parse_sidecar

THUMB_SIDE = 320  # px: thumbnails are shown at 160 CSS px, sharp on 2x screens
# The face hash reads the box reduced to at most about twice this side: phash resizes to 32 px
# anyway, and a whole 900 px face would cost more than the hash itself.
HASH_SIDE = 64
# Without a known box the detector looks at the whole image: a reduced decode keeps this many
# pixels on the smaller side (YuNet's input is 640 px, UltraFace's 320 x 240).
DETECT_MIN_SIDE = 480
# A reduced decode keeps every model's crop at least this many times the model's input side: a
# margin that moves the ensemble score by a few hundredths at most against full resolution, where
# a margin of 1 moves it visibly (the draft what-ifs in bench/README.md; liveness/tests/
# test_pipeline.py checks the tolerance). KOALA_DRAFT_DECODE=0 scores at full resolution.
DRAFT_MARGIN = 2.0
# ... and the face (min side) at least this many pixels, whatever the models. For usual models
# (crops of 1.5 x the face or more into 128 px or less) this is the limit that binds, so an
# ensemble and any subset of its members decode an image alike (unless an `opencv_linear`
# member keeps the ensemble at full resolution, below): a shadow run of one member scores
# exactly what that member scored in production. It also keeps the blur measure's face at
# twice its BLUR_SIDE.
DRAFT_MIN_FACE = 2 * BLUR_SIDE
# An image for a model whose crops are sampled without antialiasing (`interpolation =
# "opencv_linear"`, cheap: two taps per output pixel) is always decoded at full resolution: the
# model sees the fine detail that aliases into its crop, which a reduced decode has filtered
# out. With the demo models trained that way, a reduced decode moved the ensemble score by up to
# 0.79 at DRAFT_MARGIN 2 (3 of 160 images changed category) and 0.16 at 4, one model's by up to
# 0.91 / 0.40; only a margin of 8, which never reduces these captures, kept them. (One such
# member keeps its whole ensemble at full resolution: a shadow run of only the ensemble's other
# members may then decode reduced, within the tolerance above.)

# A face detector: (RGB image) -> (box in that image's pixels, detection score) or None.
Detector = Callable[[Image.Image], "tuple[Box, float] | None"]


@dataclass
class FileInput:
    data: bytes
    sidecar: bytes | None = None
    sha256: str = ""  # of `data`, if the caller already hashed it
    box: Box | None = None  # a known face box (e.g. stored by an earlier run): used before sidecar and detector

    def digest(self) -> str:
        return self.sha256 or hashlib.sha256(self.data).hexdigest()


@dataclass
class ImageResult:
    sha256: str
    size: int
    category: str  # live | attack | low_quality | no_face | unreadable
    reason: str = ""  # why unreadable / no_face
    notes: list[str] = field(default_factory=list)  # non-fatal problems (sidecar fields, box clipped)
    format: str = ""
    width: int | None = None
    height: int | None = None
    sidecar: Sidecar | None = None
    box: Box | None = None
    box_source: str = ""  # "stored" | "sidecar" | "detector"
    detection_score: float | None = None
    quality: Quality | None = None
    scores: dict[str, float] = field(default_factory=dict)  # model name -> live probability
    attack_guesses: dict[str, str] = field(default_factory=dict)
    crop_rects: dict[str, list[float]] = field(default_factory=dict)
    face_hash: str = ""  # 64-bit perceptual hash of the face (hex): attempt groups; "" without a face
    score: float | None = None
    decision: str | None = None
    thumbnail: Image.Image | None = None
    reduction: int = 1  # the JPEG was decoded at 1/reduction of its size (draft mode)

    @property
    def captured_at(self) -> datetime | None:
        return self.sidecar.captured_at if self.sidecar else None


def halves(img: Image.Image, side: int) -> bool:
    """Whether the thumbnail halves the image (even sides): OpenCV's INTER_AREA then gives Pillow's
    reduce(2) pixel for pixel, from the crops' array (at other factors the two differ by a grey level)."""
    return math.ceil(max(img.width, img.height) / side) == 2 and img.width % 2 == 0 and img.height % 2 == 0


def thumbnail(img: Image.Image, side: int, pixels: Pixels | None = None) -> Image.Image:
    """The image fitted into side x side (never enlarged) by a box reduction of a whole factor:
    its long side ends between side / 2 and side (a 640x480 capture gives 320x240, 1920x1080
    320x180). A box average is cheaper than Pillow's bilinear resize; thumbnails are for the eyes
    only: no score depends on them. A halving is made with OpenCV from `pixels` when they hold the
    whole image (made for the crops: cheaper than Pillow's, bench/README.md)."""
    k = math.ceil(max(img.width, img.height) / side)
    if pixels is not None and halves(img, side) and pixels.holds(0, 0, img.width, img.height):
        return Image.fromarray(
            cv2.resize(pixels.array, (img.width // 2, img.height // 2), interpolation=cv2.INTER_AREA)
        )
    return img.reduce(k) if k > 1 else img.copy()


def face_hash(img: Image.Image, box: Box, scale: float = 1.0) -> str:
    """The 64-bit perceptual hash (imagehash.phash, DCT of the grey face) of the box region of
    `img`, as 16 hex chars. `box` is in full-resolution pixels, `img` decoded at 1/`scale`.
    Retries of one person a few seconds apart land within a few bits; other faces far apart."""
    x0, y0 = max(0, math.floor(box.x / scale)), max(0, math.floor(box.y / scale))
    x1, y1 = min(img.width, math.ceil((box.x + box.w) / scale)), min(img.height, math.ceil((box.y + box.h) / scale))
    face = img.crop((x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)))
    k = min(face.width, face.height) // HASH_SIDE
    if k > 1:
        face = face.reduce(k)
    return str(imagehash.phash(face.convert("L")))


class Pipeline:
    def __init__(
        self,
        ensemble: Ensemble,
        gates: Gates = Gates(),
        detector: Detector | None = None,
        thumb_side: int = THUMB_SIDE,
        draft: bool = True,
    ):
        self.ensemble = ensemble
        self.gates = gates
        self.detector = detector
        self.thumb_side = thumb_side
        self.draft = draft

    def max_reduction(self, box: Box | None) -> Callable[[int, int], float]:
        """How far a JPEG may be reduced while decoding (Image.draft) without starving anything
        that looks at it: every model's crop keeps DRAFT_MARGIN times the model's input size, the
        face DRAFT_MIN_FACE px, the thumbnail its size, and without a box the detector
        DETECT_MIN_SIDE px; not at all for a model with `opencv_linear` crops. The box is clipped
        to the upright image first, so a stored (clipped) box and its sidecar original decode
        alike."""

        full = any(m.manifest.crop.interpolation == "opencv_linear" for m in self.ensemble.models)

        def limit(width: int, height: int) -> float:
            if full:  # its crops alias what a reduced decode filters out (see above Detector)
                return 1.0
            short, long = min(width, height), max(width, height)
            r = long / self.thumb_side
            face = box.clip(width, height) if box is not None else None  # as the crops will see it
            if face is None:
                return min(r, short / DETECT_MIN_SIDE)
            r = min(r, face.min_side / DRAFT_MIN_FACE)
            for model in self.ensemble.models:
                m = model.manifest
                side = effective_scale(m.crop, face) * (max(face.w, face.h) if m.crop.side == "max" else face.min_side)
                r = min(r, min(side, short - 1) / (max(m.size) * DRAFT_MARGIN))
            return r

        return limit

    def analyse(self, files: Sequence[FileInput]) -> list[ImageResult]:
        results = [self._prepare_safely(f) for f in files]
        pending = [(r, crops) for r, crops in results if crops is not None]
        if pending:
            per_model: dict[str, np.ndarray] = {}
            for model in self.ensemble.models:
                probs = model.probabilities(np.stack([crops[model.name] for _, crops in pending]))
                per_model[model.name] = model.live_probability(probs)
                for (r, _), guess in zip(pending, model.attack_guess(probs), strict=True):
                    if guess:
                        r.attack_guesses[model.name] = guess
            combined = self.ensemble.combine(per_model)
            for i, (r, _) in enumerate(pending):
                r.scores = {name: float(v[i]) for name, v in per_model.items()}
                r.score = float(combined[i])
                r.decision = decide(r.score, self.ensemble.threshold)
                r.category = categorise(r.decision, r.quality.failed_gates)
        return [r for r, _ in results]

    def _prepare_safely(self, f: FileInput) -> tuple[ImageResult, dict | None]:
        """One odd file must never stop the batch: any failure makes it unreadable, with the reason."""
        try:
            return self.prepare(f)
        except Exception as exc:  # noqa: BLE001
            r = ImageResult(sha256=f.digest(), size=len(f.data), category="unreadable")
            r.reason = f"could not process the image: {exc.__class__.__name__}: {exc}"
            return r, None

    def prepare(self, f: FileInput) -> tuple[ImageResult, dict | None]:
        """One image up to its crops, as a recipe: read the sidecar, decode, find the box, (the
        thumbnail), assess, crop. Scoring and deciding follow in `analyse`, batched over the
        files. A step that ends the image (unreadable, no face) leaves no crops."""
        r = ImageResult(sha256=f.digest(), size=len(f.data), category="unreadable")
        self._read_sidecar(f, r)
        img = self._decode(f, r)
        if img is None:
            return r, None
        scale = r.width / img.width  # full-resolution pixels per decoded pixel
        self._find_box(f, r, img, scale)
        pixels = None if r.box is None else self.crop_pixels(img, r.box, scale)  # no crops without a box
        r.thumbnail = thumbnail(img, self.thumb_side, pixels)
        if r.box is None:
            self._no_face(r)
            return r, None
        r.face_hash = face_hash(img, r.box, scale)
        self._assess(r, img, scale)
        return r, self._crop(r, img, pixels, scale)

    @staticmethod
    def _read_sidecar(f: FileInput, r: ImageResult) -> None:
        if f.sidecar is not None:
            try:
                r.sidecar = parse_sidecar(f.sidecar)
                r.notes += [f"sidecar {w}" for w in r.sidecar.warnings]
            except SidecarError as exc:
                r.notes.append(str(exc))

    def _decode(self, f: FileInput, r: ImageResult) -> Image.Image | None:
        """The decoded image (reduced in draft mode where the crops allow), None when unreadable."""
        known = f.box or (r.sidecar.face if r.sidecar else None)
        try:
            decoded = decode_image(f.data, max_reduction=self.max_reduction(known) if self.draft else None)
        except UnreadableImage as exc:
            r.reason = str(exc)
            return None
        r.format, r.width, r.height = decoded.format, decoded.width, decoded.height
        r.reduction = decoded.reduction
        return decoded.image

    def _find_box(self, f: FileInput, r: ImageResult, img: Image.Image, scale: float) -> None:
        """The face box: stored (a re-score), else the sidecar's, else the detector's."""
        r.box = self._given_box(f.box, r)
        if r.box is not None:
            r.box_source = "stored"
            return
        r.box = self._sidecar_box(r)
        if r.box is not None:
            r.box_source = "sidecar"
            return
        found = self.detector(img) if self.detector is not None else None
        if found is not None:
            b, r.detection_score = found
            r.box = Box(b.x * scale, b.y * scale, b.w * scale, b.h * scale)
            r.box_source = "detector"

    def _no_face(self, r: ImageResult) -> None:
        r.category = "no_face"
        had_box = r.sidecar is not None and r.sidecar.face is not None
        r.reason = ("the sidecar's face box lies outside the image" if had_box else "no face box in the sidecar") + (
            ", and no face detected by the face detector" if self.detector else ", and no face detector is configured"
        )

    def _assess(self, r: ImageResult, img: Image.Image, scale: float) -> None:
        sc = r.sidecar
        r.quality = assess(
            img,
            r.box,
            sidecar_pose=sc.pose if sc else None,
            sidecar_blur=sc.blur if sc else None,
            landmarks=sc.landmarks if sc else None,
            gates=self.gates,
            scale=scale,
        )

    def _crop(self, r: ImageResult, img: Image.Image, pixels: Pixels | None, scale: float) -> dict:
        """Each model's input pixels, and the rectangles drawn on the image page."""
        crops, made = {}, {}
        for model in self.ensemble.models:
            m = model.manifest
            r.crop_rects[m.name] = [round(v, 1) for v in crop_rect(m.crop, r.box, r.width, r.height)]
            # models that cut the same pixels into the same size share one crop (two `shift` crops
            # that both grew to the image's height, say): the same array, made once
            key = (source_rect(img, m.crop, r.box, scale), m.size, m.crop.resize, m.crop.interpolation)
            if key not in made:
                source = pixels if m.crop.interpolation == "opencv_linear" else img
                made[key] = crop_face(source, m.crop, r.box, m.size, scale=scale)
            crops[m.name] = made[key]
        return crops

    def crop_pixels(self, img: Image.Image, box: Box, scale: float) -> Pixels | None:
        """What the models that crop with OpenCV read, as an array: the part of the image their
        rectangles cover (one copy of fewer pixels than the whole, each crop a view of it), or
        the whole image when the thumbnail halves it from the array. None without such a model."""
        recipes = [m.manifest.crop for m in self.ensemble.models if m.manifest.crop.interpolation == "opencv_linear"]
        if not recipes:
            return None
        if halves(img, self.thumb_side):
            return Pixels.of(img)
        return Pixels.of(img, [source_rect(img, c, box, scale) for c in recipes])

    @staticmethod
    def _given_box(box: Box | None, r: ImageResult) -> Box | None:
        if box is None:
            return None
        clipped = box.clip(r.width, r.height)
        if clipped is None:
            r.notes.append(f"given face box {box.as_dict()} lies outside the {r.width}x{r.height} image; ignored")
        return clipped

    @staticmethod
    def _sidecar_box(r: ImageResult) -> Box | None:
        if r.sidecar is None or r.sidecar.face is None:
            return None
        box = r.sidecar.face
        clipped = box.clip(r.width, r.height)
        if clipped is None:
            r.notes.append(f"sidecar face box {box.as_dict()} lies outside the {r.width}x{r.height} image; ignored")
            return None
        if clipped != box:
            r.notes.append(f"sidecar face box {box.as_dict()} clipped to the {r.width}x{r.height} image")
        return clipped
