"""Sidecar JSON parsing and validation (SPEC section 3).

Every field is optional. A field with a wrong type or value is dropped with a warning and the
rest of the sidecar is kept; a file that is not a JSON object raises SidecarError.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime

from .boxes import Box

GENUINE_WORDS = {"genuine", "live", "real", "bonafide", "bona fide", "1"}
ATTACK_WORDS = {"attack", "spoof", "fake", "0"}
ATTACK_TYPE_MAX = 50


class SidecarError(Exception):
    """The sidecar cannot be used at all; str(exc) is the reason."""


@dataclass
class Sidecar:
    captured_at: datetime | None = None
    face: Box | None = None
    landmarks: list[tuple[float, float]] | None = None
    pose: dict[str, float] | None = None  # yaw, pitch, roll in degrees (missing keys absent)
    blur: float | None = None
    label: str | None = None  # "genuine" | "attack"
    attack_type: str | None = None
    subject: str | None = None
    site: str | None = None
    raw: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def normalise_label(value) -> str | None:
    """genuine/live/real/1 -> "genuine", attack/spoof/fake/0 -> "attack", anything else None."""
    text = str(value).strip().lower()
    if text in GENUINE_WORDS:
        return "genuine"
    if text in ATTACK_WORDS:
        return "attack"
    return None


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _no_constant(name: str) -> None:
    """NaN and Infinity are not JSON (databases refuse them): read them as null."""
    return None


def _clean(value):
    """Drop NUL characters (databases refuse them) from every string of the document."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    return value


def parse_sidecar(data: bytes | str) -> Sidecar:
    """Parse and validate a sidecar; raises SidecarError only when it is not a JSON object."""
    raw = _load(data)
    sc = Sidecar(raw=raw)
    for read_field in _FIELD_READERS:
        read_field(raw, sc)
    return sc


def _load(data: bytes | str) -> dict:
    try:
        raw = _clean(json.loads(data, parse_constant=_no_constant))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise SidecarError(f"sidecar is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise SidecarError(f"sidecar must be a JSON object, got {type(raw).__name__}")
    return raw


def _read_captured_at(raw: dict, sc: Sidecar) -> None:
    if "captured_at" in raw:
        try:
            sc.captured_at = datetime.fromisoformat(str(raw["captured_at"]).replace("Z", "+00:00"))
        except ValueError:
            sc.warnings.append(f"captured_at: not an ISO 8601 date-time: {raw['captured_at']!r}")


def _read_face(raw: dict, sc: Sidecar) -> None:
    if "face" not in raw:
        return
    face = raw["face"]
    vals = {k: _number(face.get(k)) for k in "xywh"} if isinstance(face, dict) else {}
    if not vals or any(v is None for v in vals.values()):
        sc.warnings.append("face: must be an object with numeric x, y, w, h")
    elif vals["w"] <= 0 or vals["h"] <= 0:
        sc.warnings.append(f"face: width and height must be positive, got w={vals['w']:g} h={vals['h']:g}")
    else:
        sc.face = Box(vals["x"], vals["y"], vals["w"], vals["h"])


def _read_landmarks(raw: dict, sc: Sidecar) -> None:
    if "landmarks" not in raw:
        return
    pts = raw["landmarks"]
    ok = (
        isinstance(pts, list)
        and len(pts) == 5
        and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pts)
        and all(_number(c) is not None for p in pts for c in p)
    )
    if ok:
        sc.landmarks = [(float(p[0]), float(p[1])) for p in pts]
    else:
        sc.warnings.append("landmarks: must be a list of 5 [x, y] number pairs")


def _read_pose(raw: dict, sc: Sidecar) -> None:
    if "pose" not in raw:
        return
    pose = raw["pose"]
    if not isinstance(pose, dict):
        sc.warnings.append("pose: must be an object with yaw, pitch, roll")
        return
    sc.pose = {}
    for key in ("yaw", "pitch", "roll"):
        if key in pose:
            v = _number(pose[key])
            if v is None or abs(v) > 180:
                sc.warnings.append(f"pose.{key}: must be a number of degrees in [-180, 180]")
            else:
                sc.pose[key] = v


def _read_blur(raw: dict, sc: Sidecar) -> None:
    if "blur" in raw:
        v = _number(raw["blur"])
        if v is None or not 0 <= v <= 1:
            sc.warnings.append(f"blur: must be a number in [0, 1], got {raw['blur']!r}")
        else:
            sc.blur = v


def _read_label(raw: dict, sc: Sidecar) -> None:
    if raw.get("label") is not None:
        sc.label = normalise_label(raw["label"])
        if sc.label is None:
            sc.warnings.append(f"label: unknown value {raw['label']!r} (expected genuine or attack)")


def _read_attack_type(raw: dict, sc: Sidecar) -> None:
    """After the label: an attack type on a genuine image is dropped."""
    if raw.get("attack_type") is None:
        return
    text = raw["attack_type"]
    if isinstance(text, str) and 0 < len(text.strip()) <= ATTACK_TYPE_MAX:
        sc.attack_type = text.strip().lower()
    else:
        sc.warnings.append(f"attack_type: must be a non-empty string of at most {ATTACK_TYPE_MAX} characters")
    if sc.label == "genuine" and sc.attack_type:
        sc.warnings.append("attack_type: ignored on a genuine label")
        sc.attack_type = None


def _read_names(raw: dict, sc: Sidecar) -> None:
    for key in ("subject", "site"):
        if raw.get(key) is not None:
            setattr(sc, key, str(raw[key])[:200])


# Each reader sets its field on the Sidecar, or leaves it None and appends a warning. In this order:
# the warnings come out in it, and the attack type needs the label.
_FIELD_READERS = (
    _read_captured_at,
    _read_face,
    _read_landmarks,
    _read_pose,
    _read_blur,
    _read_label,
    _read_attack_type,
    _read_names,
)
