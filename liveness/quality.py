"""Image quality: face size, head pose and blur, and the quality gates (SPEC section 4.4).

Blur measure
------------
`blur_score(face_crop)` is in [0, 1], higher = blurrier. The face region is converted to grey,
resized (area average) to 96 x 96 so that the measure does not depend on the face's pixel size,
and the ratio of high-frequency to total energy is taken:

    r = max(mean(laplacian(g) ** 2) - Q, 0) / (var(g) + eps)

where Q = 20 / (12 * 255**2) is the Laplacian energy of 8-bit quantisation noise (without it,
a heavily blurred low-contrast face has its "detail" dominated by rounding noise and its
score falls back towards 0.5, so the measure was not monotone in the blur sigma).

A sharp face gives r around 0.3-1, a heavily blurred one below 0.01. The score maps log10(r)
linearly from [log10(R_SHARP), log10(R_BLURRY)] onto [0, 1] and clips. Gaussian blur removes
high frequencies faster than it lowers the total variance, so the score grows monotonically
with the blur sigma (tested). Being a ratio, it ignores brightness and contrast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .boxes import Box

BLUR_SIDE = 96
R_SHARP = 0.6  # ratio at or above which blur = 0
R_BLURRY = 0.004  # ratio at or below which blur = 1
QUANT_LAP_ENERGY = 20 / (12 * 255**2)  # mean(laplacian**2) of uniform 8-bit rounding noise


@dataclass(frozen=True)
class Gates:
    """Production defaults from the team's earlier analyses; None disables a gate."""

    min_face: float | None = 130
    max_yaw: float | None = 30
    max_pitch: float | None = 30
    max_blur: float | None = 0.5

    def failed(self, q: Quality) -> list[str]:
        """Names of the gates `q` fails. An unknown value passes its gate."""
        out = []
        if self.min_face is not None and q.face_size is not None and q.face_size < self.min_face:
            out.append("face_size")
        if self.max_yaw is not None and q.yaw is not None and abs(q.yaw) > self.max_yaw:
            out.append("yaw")
        if self.max_pitch is not None and q.pitch is not None and abs(q.pitch) > self.max_pitch:
            out.append("pitch")
        if self.max_blur is not None and q.blur is not None and q.blur > self.max_blur:
            out.append("blur")
        return out


@dataclass
class Quality:
    face_size: float | None = None  # min side of the face box, px of the full-resolution image
    yaw: float | None = None
    pitch: float | None = None
    roll: float | None = None
    blur: float | None = None
    pose_source: str = ""  # "sidecar" | "landmarks" | ""
    blur_source: str = ""  # "sidecar" | "measured" | ""
    failed_gates: list[str] = field(default_factory=list)


def blur_score(grey_or_rgb: Image.Image) -> float:
    g = grey_or_rgb.convert("L").resize((BLUR_SIDE, BLUR_SIDE), Image.Resampling.BOX)
    a = np.asarray(g, dtype=np.float32) / 255.0
    lap = -4 * a[1:-1, 1:-1] + a[:-2, 1:-1] + a[2:, 1:-1] + a[1:-1, :-2] + a[1:-1, 2:]
    r = float(max(float(np.mean(lap**2)) - QUANT_LAP_ENERGY, 0.0) / (np.var(a) + 1e-4))
    lo, hi = math.log10(R_BLURRY), math.log10(R_SHARP)
    return float(np.clip((hi - math.log10(max(r, 1e-12))) / (hi - lo), 0.0, 1.0))


def pose_from_landmarks(points: list[tuple[float, float]]) -> dict[str, float]:
    """Rough head pose in degrees from 5 landmarks (left eye, right eye, nose, mouth left,
    mouth right; "left" = smaller x in a frontal image).

    roll: angle of the eye line. In the face frame (roll removed), yaw from the nose's
    horizontal position between the eyes (0.5 = frontal; +90 degrees when it reaches the right
    eye: positive yaw = nose towards image right) and pitch from its vertical position between
    the eye line and the mouth line (NOSE_REST = frontal; positive pitch = nose higher = looking up,
    the convention of the demo sidecars).
    """
    p = np.asarray(points, dtype=np.float64)
    le, re, nose, ml, mr = p
    dx, dy = re - le
    roll = math.degrees(math.atan2(dy, dx))
    c, s = math.cos(-math.radians(roll)), math.sin(-math.radians(roll))
    rot = np.array([[c, -s], [s, c]])
    q = (p - le) @ rot.T
    eye_w = q[1, 0] or 1e-6
    eye_y = (q[0, 1] + q[1, 1]) / 2
    mouth_y = (q[3, 1] + q[4, 1]) / 2
    u = np.clip(2 * (q[2, 0] / eye_w - 0.5), -1, 1)
    span = (mouth_y - eye_y) or 1e-6
    v = np.clip((q[2, 1] - eye_y) / span - NOSE_REST, -1, 1) / NOSE_RANGE
    return {
        "yaw": math.degrees(math.asin(u)),
        "pitch": -math.degrees(math.asin(float(np.clip(v, -1, 1)))),
        "roll": roll,
    }


# Nose height between the eye line (0) and the mouth line (1) in a frontal face: 0.495 in the
# widely used 5-point reference template of ArcFace (eyes y 51.6, nose 71.7, mouth 92.2 of 112).
NOSE_REST = 0.495
NOSE_RANGE = 0.45


def assess(
    image: Image.Image,
    box: Box | None,
    *,
    sidecar_pose: dict | None = None,
    sidecar_blur: float | None = None,
    landmarks: list[tuple[float, float]] | None = None,
    gates: Gates = Gates(),
    scale: float = 1.0,
) -> Quality:
    """Quality of one face. `image` may be a reduced decode (`scale` = full / reduced pixels);
    `box` and `landmarks` are in full-resolution pixels."""
    q = Quality()
    if box is not None:
        q.face_size = box.min_side
    if sidecar_pose:
        q.yaw, q.pitch, q.roll = (sidecar_pose.get(k) for k in ("yaw", "pitch", "roll"))
        q.pose_source = "sidecar"
    elif landmarks:
        est = pose_from_landmarks(landmarks)
        q.yaw, q.pitch, q.roll = est["yaw"], est["pitch"], est["roll"]
        q.pose_source = "landmarks"
    if sidecar_blur is not None:
        q.blur, q.blur_source = sidecar_blur, "sidecar"
    elif box is not None:
        b = box.clip(image.width * scale, image.height * scale)
        if b is not None and b.min_side >= 8:
            region = image.crop(
                (int(b.x / scale), int(b.y / scale), math.ceil((b.x + b.w) / scale), math.ceil((b.y + b.h) / scale))
            )
            q.blur, q.blur_source = blur_score(region), "measured"
    q.failed_gates = gates.failed(q)
    return q
