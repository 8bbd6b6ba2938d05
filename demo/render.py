"""The demo renderer: camera-like face captures, genuine and presentation attacks.

Used by the demo (a realistic-looking inbox, SPEC section 3) and to train the bundled demo
liveness models.  Everything is numpy + Pillow and deterministic given the seed / rng.

Public API
----------
``ATTACK_TYPES``            ("print", "replay")
``Sample``                  one rendered capture (image, true face box, 5 landmarks, pose, blur, label)
``render_sample(rng, ...)`` one capture; genuine, or a re-captured print / screen (replay)
``training_samples(n, seed)`` balanced-ish stream (50% genuine, 25% print, 25% replay)
``generate_inbox(out, ...)``  writes ``out/<YYYY-MM-DD>/<device_id>/<name>.jpg|.png`` + sidecars
``days_ending(end, n)``     the n days of an inbox ending at end (default: yesterday)
``face_fields(sample)``     the sidecar's face box, landmarks, pose and blur of a sample
``encode(image, fmt, q)``   the bytes of a stored capture (JPEG at quality q, or PNG)
``write_new(path, data)``   write a file that does not exist yet (never overwrites)
``DEVICES``                 the device profiles (size, noise, JPEG quality, face sizes)

Conventions
-----------
* ``Sample.box`` is the face oval's bounding box (forehead/hairline to chin, cheek to cheek;
  ears stick out slightly), in pixels of the stored image.
* Landmarks: image-left eye, image-right eye, nose tip, image-left mouth corner, image-right
  mouth corner.
* Pose in degrees: positive yaw turns the face towards image-right, positive pitch looks up,
  positive roll rotates clockwise in the image.  For attacks the pose is the pose of the face in
  the photo (roll includes the tilt of the sheet / screen).
* ``blur`` = sigma of the Gaussian blur applied by the capturing camera / 6, in [0, 1].

The steps live in modules of their own: ``paint.py`` (drawing primitives), ``scene.py``
(backgrounds, a person in a scene), ``person.py`` (appearance and drawing of a person),
``attacks.py`` (print and replay attacks, how they are made) and ``camera.py`` (the capturing
camera: blur, light, white balance, noise).
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from liveness.boxes import Box

from .attacks import render_attack
from .camera import capture, device_noise
from .paint import uniform
from .person import person_params
from .scene import person_scene

ATTACK_TYPES = ("print", "replay")
TZ = _dt.timezone(_dt.timedelta(hours=8))


@dataclass
class Sample:
    image: Image.Image
    box: Box
    landmarks: list[tuple[float, float]]
    pose: dict
    blur: float
    label: str
    attack_type: str | None
    device_id: str | None = None


@dataclass(frozen=True)
class DeviceProfile:
    device_id: str
    size: tuple[int, int]  # (width, height) of stored images
    site: str
    noise: float  # read-noise sigma, in 0..255 units
    fpn: float  # fixed-pattern (row/column) noise amplitude, 0..255 units
    jpeg_quality: int
    face_range: tuple[int, int]  # typical face box min side (px)
    weight: float  # share of the traffic
    degrades: bool = False  # gets worse over the days in generate_inbox


DEVICES: tuple[DeviceProfile, ...] = (
    DeviceProfile("phone-01", (480, 640), "mobile", 2.5, 0.8, 90, (150, 300), 0.26),
    DeviceProfile("phone-02", (480, 640), "mobile", 4.5, 1.4, 80, (130, 290), 0.22),
    DeviceProfile("pad-01", (800, 600), "lobby", 3.5, 1.0, 85, (120, 300), 0.18),
    DeviceProfile("gate-north", (1280, 720), "north", 2.5, 0.8, 88, (90, 260), 0.18),
    DeviceProfile("gate-south", (1920, 1080), "south", 3.0, 1.0, 86, (100, 320), 0.16, True),
)
_DEVICE_BY_ID = {d.device_id: d for d in DEVICES}

# --------------------------------------------------------------------------------------------
# public API


def random_face_size(rng, width, height, low=100, high=300, small_share=0.2):
    high = min(high, 0.6 * min(width, height))
    if rng.random() < small_share:
        return uniform(rng, 60, 130)
    return uniform(rng, min(low, high - 1), high)


def random_blur(rng):
    r = rng.random()
    if r < 0.65:
        return uniform(rng, 0.0, 0.12)
    if r < 0.9:
        return uniform(rng, 0.12, 0.4)
    return uniform(rng, 0.4, 0.9)


def render_sample(
    rng: np.random.Generator,
    *,
    label: str,
    attack_type: str | None = None,
    size: tuple[int, int] = (640, 480),
    face_size: float | None = None,
    yaw: float | None = None,
    pitch: float | None = None,
    blur: float | None = None,
    quality: float = 1.0,
    device: DeviceProfile | str | None = None,
    identity: int | None = None,
) -> Sample:
    """Render one capture.  ``label`` is "genuine" or "attack"; an attack without a type gets
    a random one of ATTACK_TYPES.  ``device`` (profile or id) sets noise and fixed-pattern
    noise; ``identity`` makes the person's appearance a function of that integer."""
    attack_type = _checked_attack_type(rng, label, attack_type)
    if isinstance(device, str):
        device = _DEVICE_BY_ID[device]
    width, height = int(size[0]), int(size[1])
    person = person_params(np.random.default_rng(identity) if identity is not None else rng)
    face_size = float(face_size) if face_size is not None else random_face_size(rng, width, height)
    face_size = max(12.0, min(face_size, 0.9 * min(width, height)))
    yaw, pitch, roll = _random_pose(rng, yaw, pitch)
    if blur is None:
        blur = random_blur(rng)
    blur = float(np.clip(blur, 0.0, 1.0))
    arr, box, landmarks, roll_out = _scene(rng, label, attack_type, width, height, face_size, yaw, pitch, roll, person)
    noise, fpn = device_noise(rng, device, width, height)
    out = capture(rng, arr, noise=noise, fpn=fpn, blur_sigma=6.0 * blur, quality=quality)
    return Sample(
        image=Image.fromarray(out, "RGB"),
        box=box,
        landmarks=landmarks,
        pose={"yaw": round(float(yaw), 2), "pitch": round(float(pitch), 2), "roll": round(float(roll_out), 2)},
        blur=round(blur, 4),
        label=label,
        attack_type=attack_type,
        device_id=device.device_id if device is not None else None,
    )


def _checked_attack_type(rng, label, attack_type):
    """The attack type of a sample with this label (drawn for an attack without one); raises
    ValueError for a bad label or type."""
    if label not in ("genuine", "attack"):
        raise ValueError(f"label must be 'genuine' or 'attack', not {label!r}")
    if label == "genuine":
        if attack_type is not None:
            raise ValueError("a genuine sample has no attack_type")
        return None
    if attack_type is None:
        attack_type = ATTACK_TYPES[int(rng.integers(len(ATTACK_TYPES)))]
    if attack_type not in ATTACK_TYPES:
        raise ValueError(f"unknown attack_type {attack_type!r}")
    return attack_type


def _random_pose(rng, yaw, pitch):
    """(yaw, pitch, roll) in degrees: the given yaw and pitch, random ones where None."""
    if yaw is None:
        yaw = float(np.clip(rng.normal(0, 13), -55, 55)) if rng.random() < 0.88 else uniform(rng, -50, 50)
    if pitch is None:
        pitch = float(np.clip(rng.normal(0, 8), -35, 35))
    roll = float(np.clip(rng.normal(0, 5), -20, 20))
    return yaw, pitch, roll


def _scene(rng, label, attack_type, width, height, face_size, yaw, pitch, roll, person):
    """The scene before the camera: (arr float32, box, landmarks, roll of the face in the image)."""
    # a turned face is drawn narrower: widen the oval so that its box keeps the face size
    squash = 1.0 - 0.1 * abs(math.sin(math.radians(yaw)))
    if label == "genuine":
        half_width = face_size / 2 / squash
        arr, box, landmarks = person_scene(
            rng, width, height, person, half_width, half_width * person["aspect"], yaw, pitch, roll
        )
        return arr, box, landmarks, roll
    return render_attack(rng, attack_type, width, height, face_size / squash, yaw, pitch, roll, person)


def training_samples(n: int, seed: int) -> Iterator[Sample]:
    """n samples: ~50% genuine, ~25% print, ~25% replay, sizes of the DEVICES profiles, face
    sizes mostly 100..300 px (15% small, 60..130), a share of blurry / degraded captures.
    Sample i depends only on (seed, i)."""
    for i in range(n):
        rng = np.random.default_rng([seed, i, 0xD0])
        r = rng.random()
        label, attack_type = ("genuine", None) if r < 0.5 else ("attack", "print" if r < 0.75 else "replay")
        device = DEVICES[int(rng.integers(len(DEVICES)))]
        width, height = device.size
        face_size = random_face_size(rng, width, height, 100, 300, small_share=0.15)
        quality = 1.0 if rng.random() < 0.8 else uniform(rng, 0.5, 1.0)
        yield render_sample(
            rng,
            label=label,
            attack_type=attack_type,
            size=device.size,
            face_size=face_size,
            quality=quality,
            device=device,
        )
