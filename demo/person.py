"""People: a random appearance (skin, hair and style, eyes, face shape, glasses, beard, clothes)
and its drawing, a posed head with torso, hair, ears and features, with its box and landmarks."""

from __future__ import annotations

import math

import numpy as np

from liveness.boxes import Box

from .paint import random_color, soft_ellipse, uniform

SKIN_TONES = np.array(
    [
        [255, 228, 206],
        [241, 204, 172],
        [226, 180, 142],
        [200, 148, 106],
        [163, 110, 74],
        [122, 80, 54],
        [86, 56, 40],
        [60, 40, 30],
    ],
    np.float32,
)
_HAIR_COLORS = np.array(
    [
        [22, 18, 16],
        [48, 32, 24],
        [92, 62, 38],
        [150, 110, 65],
        [205, 170, 115],
        [140, 62, 30],
        [150, 150, 150],
        [225, 222, 215],
    ],
    np.float32,
)
_HAIR_SHARES = np.array([0.3, 0.22, 0.16, 0.08, 0.08, 0.05, 0.07, 0.04])
_IRIS_COLORS = np.array([[60, 40, 25], [35, 25, 20], [90, 120, 150], [80, 110, 70], [110, 80, 45]], np.float32)


def person_params(rng) -> dict:
    """A random appearance.  Positions and sizes are in face units: u from -1 (image-left cheek)
    to 1, v from -1 (top of the head) to 1 (chin)."""
    tone = rng.uniform(0, len(SKIN_TONES) - 1)
    lower = int(tone)
    skin = SKIN_TONES[lower] * (1 - (tone - lower)) + SKIN_TONES[min(lower + 1, len(SKIN_TONES) - 1)] * (tone - lower)
    skin = np.clip(skin * rng.uniform(0.96, 1.04, 3), 0, 255)
    hair = _HAIR_COLORS[rng.choice(len(_HAIR_COLORS), p=_HAIR_SHARES)] * rng.uniform(0.85, 1.15)
    return {
        "skin": skin.astype(np.float32),
        "hair": np.clip(hair, 0, 255).astype(np.float32),
        "style": ["short", "long", "bald", "bun", "afro", "fringe"][
            rng.choice(6, p=[0.34, 0.26, 0.08, 0.08, 0.1, 0.14])
        ],
        "hairline": uniform(rng, -0.78, -0.5),
        "iris": _IRIS_COLORS[rng.integers(len(_IRIS_COLORS))],
        "aspect": uniform(rng, 1.2, 1.42),  # face height / width
        "jaw": uniform(rng, 0.08, 0.24),  # how much narrower the face gets towards the chin
        "eye_x": uniform(rng, 0.33, 0.41),
        "eye_y": uniform(rng, -0.14, -0.02),
        "eye_size": uniform(rng, 0.15, 0.2),
        "nose_y": uniform(rng, 0.18, 0.3),
        "mouth_x": uniform(rng, 0.22, 0.33),  # of the corners
        "mouth_y": uniform(rng, 0.45, 0.56),
        "lip": np.clip(skin * np.array([0.78, 0.55, 0.56]) + np.array([25, 5, 8]), 0, 255).astype(np.float32),
        "brow": uniform(rng, 0.035, 0.07),  # thickness
        "ears": rng.random() < 0.85,
        "glasses": rng.random() < 0.15,
        "beard": uniform(rng, 0.25, 0.75) if rng.random() < 0.12 else 0.0,
        "clothes": np.array(random_color(rng, 20, 230, 0.8), np.float32),
    }


def _project(x, y, z, yaw, pitch):
    cos_yaw, sin_yaw = math.cos(yaw), math.sin(yaw)
    x1, z1 = x * cos_yaw + z * sin_yaw, -x * sin_yaw + z * cos_yaw
    cos_pitch, sin_pitch = math.cos(pitch), math.sin(pitch)
    y1, z2 = y * cos_pitch - z1 * sin_pitch, y * sin_pitch + z1 * cos_pitch
    return x1, y1, z2


class _Face:
    """Where a face is drawn: its oval's centre and half axes (before roll, in pixels) and its
    pose (radians); maps face units (u, v) to image pixels."""

    def __init__(self, cx, cy, half_width, half_height, yaw_deg, pitch_deg, roll_deg):
        self.cx, self.cy = cx, cy
        self.half_width, self.half_height = half_width, half_height
        self.yaw, self.pitch, self.roll = math.radians(yaw_deg), math.radians(pitch_deg), math.radians(roll_deg)
        self.cos_roll, self.sin_roll = math.cos(self.roll), math.sin(self.roll)
        self.squash = 1.0 - 0.1 * abs(math.sin(self.yaw))  # a turned head looks narrower

    def to_image(self, u, v):
        return (
            self.cx + u * self.half_width * self.cos_roll - v * self.half_height * self.sin_roll,
            self.cy + u * self.half_width * self.sin_roll + v * self.half_height * self.cos_roll,
        )

    def feature(self, u0, v0, dz=0.0):
        """A point of the face, projected from a unit sphere (dz: how far it protrudes, as the
        nose tip) -> (u, v, foreshortening of features there, depth)."""
        z = math.sqrt(max(0.0, 1 - u0 * u0 - v0 * v0)) + dz
        x1, y1, z2 = _project(u0, v0, z, self.yaw, self.pitch)
        foreshortening = max(0.12, z2 / max(z, 1e-3))
        return x1 * self.squash, y1, foreshortening, z2


def draw_person(img, person, cx, cy, half_width, half_height, yaw, pitch, roll, light):
    """Draw a person whose face oval (half axes half_width, half_height before roll) is centred
    at (cx, cy); the pose in degrees.

    Returns (box, landmarks) in image pixels."""
    face = _Face(cx, cy, half_width, half_height, yaw, pitch, roll)
    _draw_torso(img, person, face)
    _draw_neck(img, person, face)
    _draw_back_hair(img, person, face)
    _draw_ears(img, person, face)
    extent_x, extent_y = _draw_head(img, person, face, light)
    landmarks = _draw_eyes(img, person, face)
    landmarks.append(_draw_nose(img, person, face, light))
    landmarks += _draw_mouth(img, person, face)
    box = Box(cx - extent_x, cy - extent_y, 2 * extent_x, 2 * extent_y)
    return box, [(float(x), float(y)) for x, y in landmarks]


def _draw_torso(img, person, face):
    """Shoulders and a collar shadow, behind the head; the body continues to the bottom of the frame."""
    height, width = img.shape[:2]
    half_w, half_h = face.half_width, face.half_height
    clothes = person["clothes"]
    x, _ = face.to_image(0.0, 0.0)
    soft_ellipse(img, x, face.cy + 2.25 * half_h, 2.3 * half_w, 1.25 * half_h, 0.0, clothes, soft=0.03)
    top = max(int(face.cy + 2.25 * half_h), 0)
    left, right = max(int(x - 2.28 * half_w), 0), min(int(x + 2.28 * half_w) + 1, width)
    if top < height and left < right:
        img[top:, left:right] = clothes
    soft_ellipse(img, x, face.cy + 1.12 * half_h, 0.75 * half_w, 0.25 * half_h, 0.0, clothes * 0.7, soft=0.3)


def _draw_neck(img, person, face):
    x, y = face.to_image(0.05 * math.sin(face.yaw), 0.95)
    soft_ellipse(
        img, x, y, 0.52 * face.half_width, 0.62 * face.half_height, face.roll * 0.4, person["skin"] * 0.72, soft=0.08
    )


def _draw_back_hair(img, person, face):
    half_w, half_h, roll = face.half_width, face.half_height, face.roll
    style = person["style"]
    shade = person["hair"] * 0.75
    if style in ("short", "fringe", "bun"):
        x, y = face.to_image(0, -0.14)
        soft_ellipse(img, x, y, 1.1 * half_w, 1.06 * half_h, roll, shade, soft=0.05)
    elif style == "long":
        x, y = face.to_image(0, -0.1)
        soft_ellipse(img, x, y, 1.16 * half_w, 1.1 * half_h, roll, shade, soft=0.05)
        x, y = face.to_image(0, 0.6)
        soft_ellipse(img, x, y, 1.22 * half_w, 0.95 * half_h, roll, shade * 0.9, soft=0.12)
    elif style == "afro":
        x, y = face.to_image(0, -0.22)
        soft_ellipse(img, x, y, 1.5 * half_w, 1.3 * half_h, roll, shade, soft=0.1)
    if style == "bun":
        x, y = face.to_image(0.0, -1.12)
        soft_ellipse(img, x, y, 0.38 * half_w, 0.3 * half_h, roll, shade, soft=0.1)


def _draw_ears(img, person, face):
    if not person["ears"] or person["style"] in ("long", "afro"):
        return
    sin_yaw = math.sin(face.yaw)
    for side in (-1, 1):
        visible = 1.0 - 0.8 * max(0.0, -side * sin_yaw)  # the far ear hides behind the head
        x, y = face.to_image(side * (0.98 - 0.25 * side * sin_yaw), 0.05 - 0.3 * math.sin(face.pitch))
        soft_ellipse(
            img,
            x,
            y,
            0.14 * face.half_width * visible,
            0.24 * face.half_height,
            face.roll,
            person["skin"] * 0.82,
            soft=0.15,
        )


def _draw_head(img, person, face, light):
    """The head, a shaded egg-shaped oval with hairline and beard, evaluated on its own grid.
    Returns the half extents of its bounding box."""
    height, width = img.shape[:2]
    half_w, half_h = face.half_width * face.squash, face.half_height
    cos_roll, sin_roll = face.cos_roll, face.sin_roll
    extent_x = math.sqrt((half_w * cos_roll) ** 2 + (half_h * sin_roll) ** 2)
    extent_y = math.sqrt((half_w * sin_roll) ** 2 + (half_h * cos_roll) ** 2)
    x0, x1 = max(int(face.cx - extent_x - 2), 0), min(int(face.cx + extent_x + 3), width)
    y0, y1 = max(int(face.cy - extent_y - 2), 0), min(int(face.cy + extent_y + 3), height)
    if x0 < x1 and y0 < y1:
        xs = np.arange(x0, x1, dtype=np.float32) + 0.5 - face.cx
        ys = (np.arange(y0, y1, dtype=np.float32) + 0.5 - face.cy)[:, None]
        u = (xs * cos_roll + ys * sin_roll) / half_w
        v = (ys * cos_roll - xs * sin_roll) / half_h
        color, mask = _head_color(person, u, v, half_w, half_h, light)
        region = img[y0:y1, x0:x1]
        region += (color - region) * mask[..., None]
    return extent_x, extent_y


def _head_color(person, u, v, half_w, half_h, light):
    """The head's colour (lit skin, beard, hair) and coverage at face units (u, v) of an oval of
    half axes half_w, half_h pixels (edges about a pixel wide)."""
    skin, hair, style = person["skin"], person["hair"], person["style"]
    u_jaw = u / (1.0 - person["jaw"] * np.clip(v, 0, 1))  # narrower at the chin
    radius2 = u_jaw * u_jaw + v * v
    radius = np.sqrt(radius2)
    mask = np.clip((1.0 - radius) * min(half_w, half_h) / 1.3, 0, 1)
    normal_z = np.sqrt(np.clip(1.0 - radius2, 0.0, 1.0))
    light_x, light_y, light_z = light
    lambert = np.clip(u_jaw * light_x + v * light_y + normal_z * light_z, 0, 1)
    ambient = 0.42
    shade = (ambient + (1 - ambient) * lambert)[..., None]
    color = skin * shade
    if person["beard"] > 0:
        beard = np.clip((v - 0.22) * 5, 0, 1) * person["beard"]
        color += (hair * shade - color) * beard[..., None]
    if style != "bald":
        hairline = person["hairline"] + (0.25 if style == "fringe" else 0.0)
        hair_mask = np.clip((hairline + 0.45 * u * u - v) * half_h / 2.5, 0, 1)
        texture = 1.0 + 0.12 * np.sin(u * 37.0 + 3.0 * np.sin(v * 11.0))
        color += (hair * (shade * texture[..., None]) - color) * hair_mask[..., None]
    return color, mask


def _draw_eyes(img, person, face):
    """Sockets, brows, lash lines, whites, irises, pupils, catch lights and maybe glasses;
    returns the eye centres (image-left first)."""
    half_w, half_h, roll = face.half_width, face.half_height, face.roll
    skin, hair, eye_size = person["skin"], person["hair"], person["eye_size"]
    centres = []
    for side in (-1, 1):
        u, v, foreshortening, depth = face.feature(side * person["eye_x"], person["eye_y"])
        x, y = face.to_image(u, v)
        centres.append((x, y))
        if depth <= 0.05:  # turned away
            continue
        rx, ry = eye_size * half_w * foreshortening, 0.45 * eye_size * half_w
        soft_ellipse(img, x, y - 0.1 * ry, rx * 1.5, ry * 2.2, roll, skin * 0.7, alpha=0.35, soft=0.8)  # socket
        brow_x, brow_y = face.to_image(u, v - 0.16)
        soft_ellipse(
            img, brow_x, brow_y, rx * 1.2, person["brow"] * half_h, roll + side * 0.12, hair * 0.8, alpha=0.85, soft=0.3
        )
        soft_ellipse(img, x, y, rx * 1.08, ry * 1.25, roll, (30, 22, 20), alpha=0.9)  # lash line
        soft_ellipse(img, x, y, rx, ry, roll, (225, 220, 212))
        iris = min(ry * 0.98, rx * 0.55)
        iris_x = x + 0.25 * rx * math.sin(face.yaw) * face.cos_roll
        soft_ellipse(img, iris_x, y, iris * foreshortening**0.5, iris, roll, person["iris"])
        soft_ellipse(img, iris_x, y, iris * 0.45 * foreshortening**0.5, iris * 0.45, roll, (10, 8, 8))
        glint = max(0.8, iris * 0.18)
        soft_ellipse(img, iris_x + 0.3 * iris, y - 0.3 * iris, glint, glint, 0, (250, 250, 250), alpha=0.8)
        if person["glasses"]:
            soft_ellipse(img, x, y, rx * 1.9, ry * 3.3, roll, (25, 25, 30), ring=0.12)
            soft_ellipse(img, x - 0.5 * rx, y - ry, rx * 0.5, ry * 0.8, roll, (255, 255, 255), alpha=0.18, soft=1.0)
    return centres


def _draw_nose(img, person, face, light):
    """Side shadow, nostrils, tip highlight and the shadow under it; returns the nose tip."""
    half_w, half_h, roll = face.half_width, face.half_height, face.roll
    skin = person["skin"]
    u, v, foreshortening, _ = face.feature(0.0, person["nose_y"], 0.28)
    tip_x, tip_y = face.to_image(u, v)
    mid_x, mid_y = face.to_image(0.5 * u, 0.5 * (v + person["eye_y"]))
    side = -1 if light[0] > 0 else 1  # the side away from the light
    soft_ellipse(
        img,
        mid_x + side * 0.1 * half_w * face.cos_roll,
        mid_y + side * 0.1 * half_w * face.sin_roll,
        0.1 * half_w,
        0.28 * half_h,
        roll,
        skin * 0.6,
        alpha=0.5,
        soft=1.0,
    )
    for nostril in (-1, 1):
        x, y = face.to_image(u + nostril * 0.09 * foreshortening, v + 0.05)
        soft_ellipse(img, x, y, 0.045 * half_w, 0.03 * half_h, roll, skin * 0.35, alpha=0.8, soft=0.5)
    highlight = np.minimum(skin * 1.25 + 20, 255)
    soft_ellipse(img, tip_x, tip_y - 0.02 * half_h, 0.06 * half_w, 0.04 * half_h, roll, highlight, alpha=0.35, soft=1.0)
    x, y = face.to_image(u, v + 0.12)
    soft_ellipse(img, x, y, 0.14 * half_w, 0.035 * half_h, roll, skin * 0.55, alpha=0.35, soft=1.0)
    return tip_x, tip_y


def _draw_mouth(img, person, face):
    """Upper lip, lower lip and the line between them; returns the corners (image-left first)."""
    half_w, half_h, roll, lip = face.half_width, face.half_height, face.roll, person["lip"]
    corners = [face.feature(side * person["mouth_x"], person["mouth_y"]) for side in (-1, 1)]
    (left_u, left_v, _, _), (right_u, right_v, _, _) = corners
    mid_u, mid_v = (left_u + right_u) / 2, (left_v + right_v) / 2
    half = abs(right_u - left_u) / 2
    x, y = face.to_image(mid_u, mid_v - 0.03)
    soft_ellipse(img, x, y, half * half_w, 0.045 * half_h, roll, lip, alpha=0.95, soft=0.25)
    x, y = face.to_image(mid_u, mid_v + 0.045)
    soft_ellipse(img, x, y, half * half_w * 0.85, 0.06 * half_h, roll, lip * 1.05, alpha=0.95, soft=0.25)
    x, y = face.to_image(mid_u, mid_v)
    soft_ellipse(img, x, y, half * half_w, 0.012 * half_h + 0.6, roll, lip * 0.45, alpha=0.9)
    return [face.to_image(u, v) for u, v, _, _ in corners]
