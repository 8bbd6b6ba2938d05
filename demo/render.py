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

How attacks are made: a genuine-looking scene is rendered as the "photo", the medium's
artefacts are applied at the photo's resolution (print: washed colours, CMY halftone screen,
paper texture, white margin; replay: gamma/blue cast, RGB sub-pixel grid, moire of two fine
gratings, glare, dark bezel with rounded corners), the sheet/screen is warped with a slight
perspective into a new scene (sometimes with fingers holding it, sometimes partly out of frame),
and the capturing camera adds its lighting, white balance, blur, noise and fixed-pattern noise,
exactly as for genuine images.

Attacks cost more to render than genuine captures: the photo is rendered first, then the
medium, then the capture scene.
"""

from __future__ import annotations

import datetime as _dt
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from liveness.boxes import Box

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
# small helpers


def uniform(rng, a, b):
    return float(rng.uniform(a, b))


def _soft_ellipse(img, cx, cy, rx, ry, ang, color, alpha=1.0, soft=0.0, ring=0.0):
    """Blend a soft-edged (optionally ring-shaped) rotated ellipse into img (H, W, 3) in place."""
    if rx < 0.4 or ry < 0.4 or alpha <= 0:
        return
    H, W = img.shape[:2]
    R = max(rx, ry) + 2
    x0, x1 = max(int(cx - R), 0), min(int(cx + R) + 2, W)
    y0, y1 = max(int(cy - R), 0), min(int(cy + R) + 2, H)
    if x0 >= x1 or y0 >= y1:
        return
    xs = np.arange(x0, x1, dtype=np.float32) + 0.5 - cx
    ys = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]
    c, s = math.cos(ang), math.sin(ang)
    u = (xs * c + ys * s) / rx
    v = (ys * c - xs * s) / ry
    d = np.sqrt(u * u + v * v)
    edge = max(soft, 1.3 / min(rx, ry))
    m = np.clip((1.0 - d) / edge, 0.0, 1.0)
    if ring > 0:
        m *= np.clip((d - (1.0 - ring)) / edge, 0.0, 1.0)
    m *= alpha
    reg = img[y0:y1, x0:x1]
    reg += (np.asarray(color, np.float32) - reg) * m[..., None]


def _grad_image(rng, w, h, c0, c1, ang=None):
    """Linear gradient c0 -> c1 (uint8 RGB PIL image), via a tiny image resized (fast)."""
    ang = uniform(rng, 0, 2 * math.pi) if ang is None else ang
    t = np.linspace(0, 1, 8, dtype=np.float32)
    gx, gy = np.meshgrid(t - 0.5, t - 0.5)
    p = np.clip(gx * math.cos(ang) + gy * math.sin(ang) + 0.5, 0, 1)[..., None]
    small = np.asarray(c0, np.float32) * (1 - p) + np.asarray(c1, np.float32) * p
    return Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)


def _rand_color(rng, lo=30, hi=230, sat=0.5):
    base = rng.uniform(lo, hi)
    return tuple(int(np.clip(base + rng.normal(0, sat * 50), 0, 255)) for _ in range(3))


# --------------------------------------------------------------------------------------------
# backgrounds

_BG_KINDS = ("wall", "shelves", "door", "outdoor", "office", "pattern")


def background(rng, W, H, dim=1.0):
    # drawn at reduced resolution and upscaled: fast, and looks like a defocused background
    s = float(rng.choice([1.5, 2.0, 3.0]) if max(W, H) <= 700 else rng.choice([2.0, 3.0, 4.0]))
    w, h = max(8, int(W / s)), max(8, int(H / s))
    kind = _BG_KINDS[rng.choice(len(_BG_KINDS), p=[0.22, 0.18, 0.16, 0.16, 0.16, 0.12])]
    wall = _rand_color(rng, 60, 235, 0.35)
    wall2 = tuple(int(np.clip(c * uniform(rng, 0.6, 1.1), 0, 255)) for c in wall)
    img = _grad_image(rng, w, h, wall, wall2)
    d = ImageDraw.Draw(img)
    if kind == "wall":
        for _ in range(rng.integers(0, 3)):  # posters / frames / switches
            x, y = uniform(rng, -0.1, 0.9) * w, uniform(rng, -0.1, 0.7) * h
            pw, ph = uniform(rng, 0.05, 0.35) * w, uniform(rng, 0.05, 0.4) * h
            d.rectangle(
                [x, y, x + pw, y + ph],
                fill=_rand_color(rng),
                outline=_rand_color(rng, 0, 80),
                width=int(rng.integers(0, 6)),
            )
    elif kind == "shelves":
        n = int(rng.integers(2, 5))
        wood = _rand_color(rng, 70, 170, 0.3)
        for k in range(n):
            y = (k + uniform(rng, 0.6, 1.0)) * h / n
            d.rectangle([0, y, w, y + uniform(rng, 4, 12)], fill=wood)
            x = uniform(rng, 0, 0.2) * w
            while x < w:
                bw = uniform(rng, 0.01, 0.04) * w
                bh = uniform(rng, 0.4, 0.85) * h / n
                if rng.random() < 0.8:
                    d.rectangle([x, y - bh, x + bw, y], fill=_rand_color(rng, 20, 220, 1.0))
                x += bw + (0 if rng.random() < 0.7 else uniform(rng, 0.02, 0.15) * w)
    elif kind == "door":
        x = uniform(rng, -0.1, 0.75) * w
        dw = uniform(rng, 0.25, 0.45) * w
        top = uniform(rng, -0.1, 0.15) * h
        frame = _rand_color(rng, 150, 250, 0.1)
        d.rectangle([x - 8, top - 8, x + dw + 8, h], fill=frame)
        door = _rand_color(rng, 60, 200, 0.4)
        d.rectangle([x, top, x + dw, h], fill=door)
        for k in range(2):
            d.rectangle(
                [
                    x + dw * 0.12,
                    top + (0.08 + 0.45 * k) * (h - top),
                    x + dw * 0.88,
                    top + (0.45 + 0.45 * k) * (h - top),
                ],
                outline=tuple(int(c * 0.8) for c in door),
                width=3,
            )
        kx = x + dw * (0.85 if rng.random() < 0.5 else 0.15)
        d.ellipse([kx - 5, top + 0.55 * (h - top) - 5, kx + 5, top + 0.55 * (h - top) + 5], fill=(200, 190, 150))
    elif kind == "outdoor":
        sky = _grad_image(
            rng,
            w,
            h,
            (int(uniform(rng, 90, 200)), int(uniform(rng, 150, 220)), int(uniform(rng, 200, 255))),
            (int(uniform(rng, 180, 240)),) * 3,
            ang=math.pi / 2,
        )
        img.paste(sky)
        hz = uniform(rng, 0.35, 0.7) * h
        for _ in range(rng.integers(1, 5)):  # buildings
            bx, bw = uniform(rng, -0.1, 1.0) * w, uniform(rng, 0.1, 0.4) * w
            by = hz - uniform(rng, 0.1, 0.5) * h
            col = _rand_color(rng, 80, 210, 0.2)
            d.rectangle([bx, by, bx + bw, h], fill=col)
            step = uniform(rng, 12, 30)
            for yy in np.arange(by + 6, hz, step):
                for xx in np.arange(bx + 6, bx + bw - 8, step):
                    d.rectangle([xx, yy, xx + step * 0.5, yy + step * 0.6], fill=tuple(int(c * 0.6) for c in col))
        for _ in range(rng.integers(0, 6)):  # trees
            tx, ty, r = uniform(rng, 0, 1) * w, hz + uniform(rng, -0.25, 0.05) * h, uniform(rng, 0.05, 0.15) * w
            d.ellipse(
                [tx - r, ty - r, tx + r, ty + r],
                fill=(int(uniform(rng, 20, 80)), int(uniform(rng, 70, 140)), int(uniform(rng, 20, 70))),
            )
        d.rectangle([0, hz + 0.1 * h, w, h], fill=_rand_color(rng, 70, 150, 0.2))
    elif kind == "office":
        for _ in range(rng.integers(1, 4)):  # ceiling lights
            x, y = uniform(rng, 0, 0.9) * w, uniform(rng, 0, 0.12) * h
            d.rectangle([x, y, x + uniform(rng, 0.1, 0.25) * w, y + uniform(rng, 0.02, 0.05) * h], fill=(250, 250, 245))
        py = uniform(rng, 0.45, 0.75) * h
        d.rectangle([0, py, w, h], fill=_rand_color(rng, 80, 170, 0.2))
        if rng.random() < 0.6:  # a switched-off monitor or a dark window (a hard negative for bezels)
            x, y = uniform(rng, 0, 0.8) * w, uniform(rng, 0.15, 0.5) * h
            d.rectangle(
                [x, y, x + uniform(rng, 0.12, 0.3) * w, y + uniform(rng, 0.1, 0.25) * h],
                fill=_rand_color(rng, 10, 50, 0.05),
                outline=(20, 20, 22),
                width=int(rng.integers(2, 8)),
            )
    else:  # pattern: stripes / checks wallpaper or curtain (coarse periodic texture, a hard negative)
        arr = np.asarray(img, np.float32)
        per = uniform(rng, 6, 30) / s
        ang = uniform(rng, 0, math.pi)
        xs = np.arange(w, dtype=np.float32)[None, :]
        ys = np.arange(h, dtype=np.float32)[:, None]
        p = np.sin(2 * math.pi * (xs * math.cos(ang) + ys * math.sin(ang)) / per)
        if rng.random() < 0.4:
            p = p * np.sin(2 * math.pi * (ys * math.cos(ang) - xs * math.sin(ang)) / per)
        arr = arr * (1 + uniform(rng, 0.08, 0.3) * p[..., None])
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    # low-frequency blotches (plaster, shadows) and overall dimming
    blot = np.clip(rng.uniform(0.88, 1.0, (5, 7)) * dim * 255, 0, 255).astype(np.uint8)
    blot = Image.fromarray(blot).resize((w, h), Image.BICUBIC).convert("RGB")
    img = ImageChops.multiply(img.convert("RGB"), blot)
    return img.resize((W, H), Image.BILINEAR)


# --------------------------------------------------------------------------------------------
# people

_SKIN = np.array(
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
_HAIR = np.array(
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
_HAIR_P = np.array([0.3, 0.22, 0.16, 0.08, 0.08, 0.05, 0.07, 0.04])
_EYES = np.array([[60, 40, 25], [35, 25, 20], [90, 120, 150], [80, 110, 70], [110, 80, 45]], np.float32)


def _person_params(rng) -> dict:
    t = rng.uniform(0, len(_SKIN) - 1)
    i = int(t)
    skin = _SKIN[i] * (1 - (t - i)) + _SKIN[min(i + 1, len(_SKIN) - 1)] * (t - i)
    skin = np.clip(skin * rng.uniform(0.96, 1.04, 3), 0, 255)
    hair = _HAIR[rng.choice(len(_HAIR), p=_HAIR_P)] * rng.uniform(0.85, 1.15)
    return {
        "skin": skin.astype(np.float32),
        "hair": np.clip(hair, 0, 255).astype(np.float32),
        "style": ["short", "long", "bald", "bun", "afro", "fringe"][
            rng.choice(6, p=[0.34, 0.26, 0.08, 0.08, 0.1, 0.14])
        ],
        "hairline": uniform(rng, -0.78, -0.5),
        "eye": _EYES[rng.integers(len(_EYES))],
        "aspect": uniform(rng, 1.2, 1.42),
        "jaw": uniform(rng, 0.08, 0.24),
        "ex": uniform(rng, 0.33, 0.41),
        "ey": uniform(rng, -0.14, -0.02),
        "esize": uniform(rng, 0.15, 0.2),
        "ny": uniform(rng, 0.18, 0.3),
        "mw": uniform(rng, 0.22, 0.33),
        "my": uniform(rng, 0.45, 0.56),
        "lip": np.clip(skin * np.array([0.78, 0.55, 0.56]) + np.array([25, 5, 8]), 0, 255).astype(np.float32),
        "brow": uniform(rng, 0.035, 0.07),
        "ears": rng.random() < 0.85,
        "glasses": rng.random() < 0.15,
        "beard": uniform(rng, 0.25, 0.75) if rng.random() < 0.12 else 0.0,
        "cloth": np.array(_rand_color(rng, 20, 230, 0.8), np.float32),
    }


def _project(x, y, z, yaw, pitch):
    cy_, sy_ = math.cos(yaw), math.sin(yaw)
    x1, z1 = x * cy_ + z * sy_, -x * sy_ + z * cy_
    cp, sp = math.cos(pitch), math.sin(pitch)
    y1, z2 = y * cp - z1 * sp, y * sp + z1 * cp
    return x1, y1, z2


def _draw_person(img, P, fcx, fcy, a, b, yaw_d, pitch_d, roll_d, light, draw_torso=True):
    """Draw a person whose face oval (half axes a, b before roll) is centred at (fcx, fcy).

    Returns (box, landmarks) in image pixels."""
    yaw, pitch, roll = math.radians(yaw_d), math.radians(pitch_d), math.radians(roll_d)
    cr, sr = math.cos(roll), math.sin(roll)

    def to_img(u, v):  # face-normalised -> image
        return fcx + u * a * cr - v * b * sr, fcy + u * a * sr + v * b * cr

    skin, hair = P["skin"], P["hair"]
    H, W = img.shape[:2]
    # torso and neck (behind the head)
    if draw_torso:
        tx, ty = to_img(0.0, 0.0)
        _soft_ellipse(img, tx, fcy + 2.25 * b, 2.3 * a, 1.25 * b, 0.0, P["cloth"], soft=0.03)
        y0_ = max(int(fcy + 2.25 * b), 0)  # the body continues to the bottom of the frame
        x0_, x1_ = max(int(tx - 2.28 * a), 0), min(int(tx + 2.28 * a) + 1, W)
        if y0_ < H and x0_ < x1_:
            img[y0_:, x0_:x1_] = P["cloth"]
        _soft_ellipse(img, tx, fcy + 1.12 * b, 0.75 * a, 0.25 * b, 0.0, P["cloth"] * 0.7, soft=0.3)
    nx, ny = to_img(0.05 * math.sin(yaw), 0.95)
    _soft_ellipse(img, nx, ny, 0.52 * a, 0.62 * b, roll * 0.4, skin * 0.72, soft=0.08)
    # back hair
    style = P["style"]
    hb = hair * 0.75
    if style in ("short", "fringe", "bun"):
        x, y = to_img(0, -0.14)
        _soft_ellipse(img, x, y, 1.1 * a, 1.06 * b, roll, hb, soft=0.05)
    elif style == "long":
        x, y = to_img(0, -0.1)
        _soft_ellipse(img, x, y, 1.16 * a, 1.1 * b, roll, hb, soft=0.05)
        x, y = to_img(0, 0.6)
        _soft_ellipse(img, x, y, 1.22 * a, 0.95 * b, roll, hb * 0.9, soft=0.12)
    elif style == "afro":
        x, y = to_img(0, -0.22)
        _soft_ellipse(img, x, y, 1.5 * a, 1.3 * b, roll, hb, soft=0.1)
    if style == "bun":
        x, y = to_img(0.0, -1.12)
        _soft_ellipse(img, x, y, 0.38 * a, 0.3 * b, roll, hb, soft=0.1)
    # ears
    if P["ears"] and style not in ("long", "afro"):
        for side in (-1, 1):
            vis = 1.0 - 0.8 * max(0.0, -side * math.sin(yaw))
            x, y = to_img(side * (0.98 - 0.25 * side * math.sin(yaw)), 0.05 - 0.3 * math.sin(pitch))
            _soft_ellipse(img, x, y, 0.14 * a * vis, 0.24 * b, roll, skin * 0.82, soft=0.15)

    # head: shaded egg-shaped oval with hairline / beard, evaluated on its own grid
    squash = 1.0 - 0.1 * abs(math.sin(yaw))
    aa = a * squash
    ext_x = math.sqrt((aa * cr) ** 2 + (b * sr) ** 2)
    ext_y = math.sqrt((aa * sr) ** 2 + (b * cr) ** 2)
    x0, x1 = max(int(fcx - ext_x - 2), 0), min(int(fcx + ext_x + 3), W)
    y0, y1 = max(int(fcy - ext_y - 2), 0), min(int(fcy + ext_y + 3), H)
    if x0 < x1 and y0 < y1:
        xs = np.arange(x0, x1, dtype=np.float32) + 0.5 - fcx
        ys = (np.arange(y0, y1, dtype=np.float32) + 0.5 - fcy)[:, None]
        u = (xs * cr + ys * sr) / aa
        v = (ys * cr - xs * sr) / b
        uj = u / (1.0 - P["jaw"] * np.clip(v, 0, 1))  # narrower at the chin
        r2 = uj * uj + v * v
        r = np.sqrt(r2)
        m = np.clip((1.0 - r) * min(aa, b) / 1.3, 0, 1)
        nz = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
        lx, ly, lz = light
        lam = np.clip(uj * lx + v * ly + nz * lz, 0, 1)
        amb = 0.42
        shade = (amb + (1 - amb) * lam)[..., None]
        col = skin * shade
        if P["beard"] > 0:
            bm = np.clip((v - 0.22) * 5, 0, 1) * P["beard"]
            col += (hair * shade - col) * bm[..., None]
        if style != "bald":
            hl = P["hairline"] + (0.25 if style == "fringe" else 0.0)
            hm = np.clip((hl + 0.45 * u * u - v) * b / 2.5, 0, 1)
            tex = 1.0 + 0.12 * np.sin(u * 37.0 + 3.0 * np.sin(v * 11.0))
            col += (hair * (shade * tex[..., None]) - col) * hm[..., None]
        reg = img[y0:y1, x0:x1]
        reg += (col - reg) * m[..., None]

    # features (projected from a unit sphere; nose tip protrudes)
    def feat(u0, v0, dz=0.0):
        z = math.sqrt(max(0.0, 1 - u0 * u0 - v0 * v0)) + dz
        x1_, y1_, z2 = _project(u0, v0, z, yaw, pitch)
        fs = max(0.12, z2 / max(z, 1e-3))  # foreshortening of features
        return x1_ * squash, y1_, fs, z2

    ex, ey, es = P["ex"], P["ey"], P["esize"]
    lms = []
    for side in (-1, 1):
        fu, fv, fs, z = feat(side * ex, ey)
        x, y = to_img(fu, fv)
        lms.append((x, y))
        if z <= 0.05:
            continue
        rx, ry = es * a * fs, 0.45 * es * a
        _soft_ellipse(img, x, y - 0.1 * ry, rx * 1.5, ry * 2.2, roll, skin * 0.7, alpha=0.35, soft=0.8)  # socket
        bx, by = to_img(fu, fv - 0.16)
        _soft_ellipse(img, bx, by, rx * 1.2, P["brow"] * b, roll + side * 0.12, hair * 0.8, alpha=0.85, soft=0.3)
        _soft_ellipse(img, x, y, rx * 1.08, ry * 1.25, roll, (30, 22, 20), alpha=0.9)  # lash line
        _soft_ellipse(img, x, y, rx, ry, roll, (225, 220, 212))
        ir = min(ry * 0.98, rx * 0.55)
        ix = x + 0.25 * rx * math.sin(yaw) * cr
        _soft_ellipse(img, ix, y, ir * fs**0.5, ir, roll, P["eye"])
        _soft_ellipse(img, ix, y, ir * 0.45 * fs**0.5, ir * 0.45, roll, (10, 8, 8))
        _soft_ellipse(
            img, ix + 0.3 * ir, y - 0.3 * ir, max(0.8, ir * 0.18), max(0.8, ir * 0.18), 0, (250, 250, 250), alpha=0.8
        )
        if P["glasses"]:
            _soft_ellipse(img, x, y, rx * 1.9, ry * 3.3, roll, (25, 25, 30), ring=0.12)
            _soft_ellipse(img, x - 0.5 * rx, y - ry, rx * 0.5, ry * 0.8, roll, (255, 255, 255), alpha=0.18, soft=1.0)
    # nose: side shadow, nostrils, tip highlight
    fu, fv, fs, z = feat(0.0, P["ny"], 0.28)
    x, y = to_img(fu, fv)
    lms.append((x, y))
    mx_, my_ = to_img(0.5 * fu, 0.5 * (fv + ey))
    side = -1 if light[0] > 0 else 1
    _soft_ellipse(
        img,
        mx_ + side * 0.1 * a * cr,
        my_ + side * 0.1 * a * sr,
        0.1 * a,
        0.28 * b,
        roll,
        skin * 0.6,
        alpha=0.5,
        soft=1.0,
    )
    for s_ in (-1, 1):
        nx_, ny_ = to_img(fu + s_ * 0.09 * fs, fv + 0.05)
        _soft_ellipse(img, nx_, ny_, 0.045 * a, 0.03 * b, roll, skin * 0.35, alpha=0.8, soft=0.5)
    _soft_ellipse(
        img, x, y - 0.02 * b, 0.06 * a, 0.04 * b, roll, np.minimum(skin * 1.25 + 20, 255), alpha=0.35, soft=1.0
    )
    sx_, sy_ = to_img(fu, fv + 0.12)
    _soft_ellipse(img, sx_, sy_, 0.14 * a, 0.035 * b, roll, skin * 0.55, alpha=0.35, soft=1.0)
    # mouth
    pts = []
    for s_ in (-1, 1):
        fu, fv, fs, z = feat(s_ * P["mw"], P["my"])
        pts.append((fu, fv, fs))
        lms.append(to_img(fu, fv))
    cu, cv = (pts[0][0] + pts[1][0]) / 2, (pts[0][1] + pts[1][1]) / 2
    half = abs(pts[1][0] - pts[0][0]) / 2
    x, y = to_img(cu, cv - 0.03)
    _soft_ellipse(img, x, y, half * a, 0.045 * b, roll, P["lip"], alpha=0.95, soft=0.25)
    x, y = to_img(cu, cv + 0.045)
    _soft_ellipse(img, x, y, half * a * 0.85, 0.06 * b, roll, P["lip"] * 1.05, alpha=0.95, soft=0.25)
    x, y = to_img(cu, cv)
    _soft_ellipse(img, x, y, half * a, 0.012 * b + 0.6, roll, P["lip"] * 0.45, alpha=0.9)

    box = Box(fcx - ext_x, fcy - ext_y, 2 * ext_x, 2 * ext_y)
    return box, [(float(x), float(y)) for x, y in lms]


# --------------------------------------------------------------------------------------------
# camera


@lru_cache(maxsize=1)
def _noise_bank():
    return np.random.default_rng(12345).standard_normal((1300, 2200, 3), dtype=np.float32)


@lru_cache(maxsize=16)
def _device_fpn(device_id, W, H, amp):
    r = np.random.default_rng(zlib.crc32(device_id.encode()))
    col = (r.standard_normal((W, 3)) * amp).astype(np.float32)
    row = (r.standard_normal((H, 1)) * amp * 0.6).astype(np.float32)
    return col, row


def _blur_image(im: Image.Image, sigma: float) -> Image.Image:
    """Approximately Gaussian blur of standard deviation sigma (px), fast on big frames:
    one box pass for small sigma, a box down-sampling + bilinear up-sampling for large."""
    if sigma < 0.3:
        return im
    if sigma < 1.6:
        return im.filter(ImageFilter.BoxBlur(max(0.02, (sigma * math.sqrt(12.0) - 1.0) / 2.0)))
    f = 2.0 * sigma * 0.94
    W, H = im.size
    small = im.resize((max(2, round(W / f)), max(2, round(H / f))), Image.BOX)
    return small.resize((W, H), Image.BILINEAR).filter(ImageFilter.BoxBlur(0.5))


def _camera(rng, arr, *, noise, fpn, blur_sigma, quality):
    """The capturing camera, in place on arr (H, W, 3) float32 0..255; returns uint8 array."""
    H, W = arr.shape[:2]
    np.clip(arr, 0, 255, out=arr)
    if blur_sigma >= 0.3:
        im = _blur_image(Image.fromarray(arr.astype(np.uint8)), blur_sigma)
        arr[...] = np.asarray(im)
    # lighting gradient + vignetting (separable) + exposure + white balance
    ang = uniform(rng, 0, 2 * math.pi)
    g = uniform(rng, 0.0, 0.45)
    vig = uniform(rng, 0.0, 0.5)
    tx = np.linspace(-1, 1, W, dtype=np.float32)
    ty = np.linspace(-1, 1, H, dtype=np.float32) * (H / W)
    temp, tint = rng.normal(0, 0.07), rng.normal(0, 0.025)
    wb = np.array([1 + temp, 1 + tint, 1 - temp], np.float32) * uniform(rng, 0.8, 1.15)
    gx = (1 + g * math.cos(ang) * tx - vig * 0.5 * tx * tx)[:, None] * wb[None, :]
    gy = (1 + g * math.sin(ang) * ty - vig * 0.5 * ty * ty)[:, None]
    arr *= gx[None, :, :]
    arr *= gy[:, None, :]
    # degraded device: less contrast, lifted blacks
    q = float(np.clip(quality, 0.05, 1.0))
    c = 0.55 + 0.45 * q
    if c < 0.999:
        arr -= 110.0
        arr *= c
        arr += 110.0 + 20.0 * (1 - q)
    # sensor noise from a fixed bank at a random offset (fast, deterministic)
    sigma = noise * (1 + 3.0 * (1 - q)) * uniform(rng, 0.7, 1.3)
    bank = _noise_bank()
    if H <= bank.shape[0] and W <= bank.shape[1]:
        oy, ox = int(rng.integers(0, bank.shape[0] - H + 1)), int(rng.integers(0, bank.shape[1] - W + 1))
        view = bank[oy : oy + H, ox : ox + W]
    else:  # bigger than the bank (e.g. 1080x1920 portrait): draw fresh noise
        view = rng.standard_normal((H, W, 3), dtype=np.float32)
    if rng.random() < 0.5:
        view = view[::-1, ::-1]
    if sigma > 0.05:
        arr /= sigma
        arr += view
        arr *= sigma
    if fpn is not None:
        col, row = fpn
        arr += col[None, :, :]
        arr += row[:, None, :]
    np.clip(arr, 0, 255, out=arr)
    arr += 0.5
    return arr.astype(np.uint8)


# --------------------------------------------------------------------------------------------
# scenes


def _light(rng):
    v = np.array([rng.normal(0, 0.5), rng.normal(-0.3, 0.35), uniform(rng, 0.6, 1.0)])
    return tuple(v / np.linalg.norm(v))


def _place_face(rng, W, H, a, b, centered=0.5):
    mx, my = 1.1 * a, 1.05 * b
    cx = W / 2 + rng.normal(0, 0.12 * W) * centered * 2
    cy = H * 0.45 + rng.normal(0, 0.08 * H)
    cx = float(np.clip(cx, mx, max(mx, W - mx)))
    cy = float(np.clip(cy, my, max(my, H - my)))
    return cx, cy


def _person_scene(rng, W, H, P, a, b, yaw, pitch, roll, fc=None, dim=1.0):
    bg = background(rng, W, H, dim=dim)
    arr = np.asarray(bg, dtype=np.float32).copy()
    fcx, fcy = fc if fc is not None else _place_face(rng, W, H, a, b)
    box, lms = _draw_person(arr, P, fcx, fcy, a, b, yaw, pitch, roll, _light(rng))
    return arr, box, lms


def _homography(src, dst):
    A, rhs = [], []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        A.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        A.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    h = np.linalg.solve(np.array(A, float), np.array(rhs, float))
    return np.append(h, 1.0).reshape(3, 3)


def _apply_h(Hm, pts):
    p = np.c_[np.asarray(pts, float), np.ones(len(pts))] @ Hm.T
    return p[:, :2] / p[:, 2:3]


def _sep_cos(w, h, fx, fy, phase=0.0):
    """cos(2 pi (fx x + fy y) + phase) on an h x w grid, via outer products (fast)."""
    ax = 2 * math.pi * fx * np.arange(w, dtype=np.float32) + phase
    ay = 2 * math.pi * fy * np.arange(h, dtype=np.float32)
    return np.cos(ay)[:, None] * np.cos(ax)[None, :] - np.sin(ay)[:, None] * np.sin(ax)[None, :]


def _print_media(rng, src):
    """src (h, w, 3) float 0..255 -> (sheet, alpha, offset of src inside the sheet)."""
    h, w = src.shape[:2]
    x = src / 255.0
    # washed colours: lower saturation and contrast, raised black level, paper tint
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * uniform(rng, 0.45, 0.85)
    black, white = uniform(rng, 0.05, 0.2), uniform(rng, 0.84, 0.97)
    x = black + x * (white - black)
    # CMY halftone screen
    strength = uniform(rng, 0.35, 1.0)
    per = uniform(rng, 2.6, 6.0)
    base_ang = uniform(rng, 0, math.pi / 2)
    sharp = uniform(rng, 3.0, 9.0)
    cmy = 1.0 - x
    out = np.empty_like(x)
    for ch, dang in enumerate((math.radians(15), math.radians(75), 0.0)):
        t = base_ang + dang
        f = 1.0 / per
        scr = 0.5 + 0.25 * (
            _sep_cos(w, h, f * math.cos(t), f * math.sin(t)) + _sep_cos(w, h, -f * math.sin(t), f * math.cos(t))
        )
        ink = np.clip((cmy[..., ch] - scr) * sharp + 0.5, 0, 1)
        out[..., ch] = 1.0 - ink
    x = x * (1 - strength) + out * strength
    # paper: margin, tint, texture
    paper = np.array([uniform(rng, 0.88, 0.98), uniform(rng, 0.87, 0.97), uniform(rng, 0.82, 0.95)], np.float32)
    m = 0 if rng.random() < 0.25 else int(uniform(rng, 0.03, 0.14) * max(w, h))
    sheet = np.empty((h + 2 * m, w + 2 * m, 3), np.float32)
    sheet[...] = paper
    sheet[m : m + h, m : m + w] = x * (0.6 + 0.4 * paper)
    sh, sw = sheet.shape[:2]
    tex = rng.uniform(0.94, 1.06, (max(2, sh // 24), max(2, sw // 24))).astype(np.float32)
    tex = (
        np.asarray(Image.fromarray(((tex - 0.9) * 1000).astype(np.uint8)).resize((sw, sh), Image.BICUBIC), np.float32)
        / 1000
        + 0.9
    )
    sheet *= tex[..., None]
    if rng.random() < 0.25:  # glossy photo paper reflection
        gx = np.exp(-(((np.arange(sw) - uniform(rng, 0, sw)) / (uniform(rng, 0.15, 0.5) * sw)) ** 2))
        gy = np.exp(-(((np.arange(sh) - uniform(rng, 0, sh)) / (uniform(rng, 0.15, 0.5) * sh)) ** 2))
        sheet += (uniform(rng, 0.05, 0.25) * np.outer(gy, gx).astype(np.float32))[..., None]
    alpha = np.ones((sh, sw), np.float32)
    return np.clip(sheet * 255, 0, 255), alpha, (m, m)


def _replay_media(rng, src, phone):
    h, w = src.shape[:2]
    x = src / 255.0
    # display gamma / blue cast / black level
    np.power(np.clip(x, 0, 1), uniform(rng, 0.7, 1.3), out=x)
    c = uniform(rng, 0.03, 0.14)
    x *= np.array([1 - c, 1 - c / 4, 1 + c * 0.6], np.float32)
    bl = uniform(rng, 0.02, 0.1)
    x = bl + x * (1 - bl)
    # RGB sub-pixel stripes + dark gaps between pixel rows
    pitch = uniform(rng, 2.0, 4.2)
    s = uniform(rng, 0.15, 0.55)
    xs = np.arange(w, dtype=np.float32) / pitch
    colm = np.stack([0.5 + 0.5 * np.cos(2 * math.pi * (xs - k / 3.0)) for k in range(3)], axis=1)
    colm = (1 - s) + s * 1.6 * colm
    rowm = 1 - s * 0.6 * (0.5 + 0.5 * np.cos(2 * math.pi * np.arange(h, dtype=np.float32) / pitch)) ** 4
    x *= colm[None, :, :].astype(np.float32)
    x *= rowm[:, None, None].astype(np.float32)
    # moire: two fine gratings at slightly different frequency / angle, plus their beat
    p1 = uniform(rng, 1.8, 3.2)
    d = uniform(rng, 0.03, 0.15)
    t1, t2 = uniform(rng, -0.3, 0.3), uniform(rng, -0.05, 0.05)
    f1 = (math.cos(t1) / p1, math.sin(t1) / p1)
    f2 = (math.cos(t1 + t2) / (p1 * (1 + d)), math.sin(t1 + t2) / (p1 * (1 + d)))
    am = uniform(rng, 0.06, 0.25)
    g = _sep_cos(w, h, *f1) * _sep_cos(w, h, *f2)
    g += 0.5 * _sep_cos(w, h, f1[0] - f2[0], f1[1] - f2[1], uniform(rng, 0, 6.3))
    x *= (1 + am * g)[..., None]
    # glare: bright elliptical gradient
    if rng.random() < 0.8:
        gx = np.exp(-(((np.arange(w) - uniform(rng, 0, w)) / (uniform(rng, 0.15, 0.6) * w)) ** 2))
        gy = np.exp(-(((np.arange(h) - uniform(rng, 0, h)) / (uniform(rng, 0.15, 0.6) * h)) ** 2))
        x += (uniform(rng, 0.1, 0.5) * np.outer(gy, gx).astype(np.float32))[..., None]
    # bezel
    bz = int(uniform(rng, 0.025, 0.09) * min(w, h)) + 2
    bcol = (
        np.full(3, uniform(rng, 0.02, 0.12), np.float32)
        if rng.random() < 0.8
        else np.full(3, uniform(rng, 0.75, 0.92), np.float32)
    )
    sheet = np.empty((h + 2 * bz, w + 2 * bz, 3), np.float32)
    sh, sw = sheet.shape[:2]
    sheet[...] = bcol
    sheet *= (1 + 0.25 * np.linspace(-1, 1, sh, dtype=np.float32))[:, None, None]  # glossy frame
    sheet[bz : bz + h, bz : bz + w] = x
    alpha = np.ones((sh, sw), np.float32)
    if phone:
        rad = int(uniform(rng, 0.06, 0.12) * min(sw, sh))
        mask = Image.new("L", (sw, sh), 0)
        ImageDraw.Draw(mask).rounded_rectangle([0, 0, sw - 1, sh - 1], radius=rad, fill=255)
        alpha = np.asarray(mask, np.float32) / 255
    return np.clip(sheet * 255, 0, 255), alpha, (bz, bz)


def _render_attack(rng, attack_type, W, H, F, yaw, pitch, roll, P):
    """Returns (arr float32 HxWx3, box, landmarks, roll_total)."""
    scale = uniform(rng, 0.9, 1.1)  # sheet pixels -> frame pixels
    Fs = F / scale
    a = Fs / 2
    b = a * P["aspect"]
    phone = False
    if attack_type == "print":
        k = uniform(rng, 1.6, 3.4)
        aspect = [1.33, 1.0, 0.75, 1.41][rng.integers(4)]
    else:
        kind = rng.choice(3, p=[0.5, 0.3, 0.2])
        if kind == 0:
            phone, k, aspect = True, uniform(rng, 1.3, 2.3), uniform(rng, 1.75, 2.15)
        elif kind == 1:
            k, aspect = uniform(rng, 2.0, 3.6), [0.75, 1.33][rng.integers(2)]
        else:
            k, aspect = uniform(rng, 2.8, 5.0), 0.625
        if rng.random() < 0.3:
            aspect = 1 / aspect
    cw = k * 2 * a
    ch = cw * aspect
    f = min(1.0, 1.15 * W / scale / cw, 1.2 * H / scale / ch)  # keep the medium not much larger than the frame
    cw, ch = max(int(cw * f), int(2.3 * a)), max(int(ch * f), int(2.3 * b))
    fc = (cw / 2 + rng.normal(0, 0.06) * cw, ch * uniform(rng, 0.4, 0.52))
    fc = (float(np.clip(fc[0], 1.05 * a, cw - 1.05 * a)), float(np.clip(fc[1], 1.0 * b, ch - 1.0 * b)))
    src, _, lms = _person_scene(rng, cw, ch, P, a, b, yaw, pitch, roll, fc=fc)
    if uniform(rng, 0, 1) < 0.7:  # the photo itself was a little soft
        src = np.asarray(
            _blur_image(Image.fromarray(np.clip(src, 0, 255).astype(np.uint8)), uniform(rng, 0.3, 0.9)), np.float32
        )
    if attack_type == "print":
        sheet, alpha, (ox, oy) = _print_media(rng, src)
        rot = rng.normal(0, 6.0)
    else:
        sheet, alpha, (ox, oy) = _replay_media(rng, src, phone)
        rot = rng.normal(0, 4.0)
    sh, sw = sheet.shape[:2]
    # geometry: similarity placing the face in the frame + perspective jitter
    tgt = _place_face(rng, W, H, a * scale, b * scale)
    if rng.random() < 0.2:  # sometimes partly out of frame
        tgt = (tgt[0] + rng.choice([-1, 1]) * uniform(rng, 0.1, 0.25) * W, tgt[1])
        tgt = (float(np.clip(tgt[0], a * scale, W - a * scale)), tgt[1])
    th = math.radians(rot)
    cth, sth = math.cos(th) * scale, math.sin(th) * scale
    fx, fy = fc[0] + ox, fc[1] + oy
    corners = [(0, 0), (sw, 0), (sw, sh), (0, sh)]
    jit = uniform(rng, 0.0, 0.07) * max(sw, sh) * scale
    dst = []
    for x, y in corners:
        dx, dy = x - fx, y - fy
        dst.append(
            (
                tgt[0] + dx * cth - dy * sth + rng.normal(0, jit / 2),
                tgt[1] + dx * sth + dy * cth + rng.normal(0, jit / 2),
            )
        )
    Hm = _homography(corners, dst)
    dq = np.array(dst)
    bx0, by0 = max(int(dq[:, 0].min()), 0), max(int(dq[:, 1].min()), 0)
    bx1, by1 = min(int(dq[:, 0].max()) + 2, W), min(int(dq[:, 1].max()) + 2, H)
    arr = np.asarray(
        background(rng, W, H, dim=uniform(rng, 0.5, 1.0) if attack_type == "replay" else 1.0), np.float32
    ).copy()
    if bx0 < bx1 and by0 < by1:
        T = np.array([[1, 0, bx0], [0, 1, by0], [0, 0, 1]], float)
        inv = np.linalg.inv(Hm) @ T
        inv /= inv[2, 2]
        coeffs = tuple(inv.flatten()[:8])
        size = (bx1 - bx0, by1 - by0)
        wimg = Image.fromarray(sheet.astype(np.uint8)).transform(size, Image.PERSPECTIVE, coeffs, Image.BILINEAR)
        wmask = Image.fromarray((alpha * 255).astype(np.uint8)).transform(
            size, Image.PERSPECTIVE, coeffs, Image.BILINEAR
        )
        m = np.asarray(wmask, np.float32)[..., None] / 255
        reg = arr[by0:by1, bx0:bx1]
        reg += (np.asarray(wimg, np.float32) - reg) * m
    # fingers holding the sheet / a hand holding the phone
    if rng.random() < (0.5 if attack_type == "print" else 0.35):
        e = int(rng.integers(4))
        t = uniform(rng, 0.2, 0.8)
        p0, p1 = dq[e], dq[(e + 1) % 4]
        px, py = p0 + (p1 - p0) * t
        cen = dq.mean(axis=0)
        nrm = np.array([px, py]) - cen
        nrm /= np.linalg.norm(nrm) + 1e-9
        fang = math.atan2(nrm[1], nrm[0])
        hand = _SKIN[rng.integers(len(_SKIN))] * uniform(rng, 0.85, 1.05)
        fw_ = uniform(rng, 0.06, 0.12) * F * 1.6
        for j in range(int(rng.integers(1, 4))):
            off = (j - 1) * fw_ * 1.9
            qx, qy = px - nrm[1] * off, py + nrm[0] * off
            _soft_ellipse(arr, qx, qy, fw_ * 2.2, fw_, fang, hand, soft=0.3)
    pts = np.array(lms) + [ox, oy]
    lm_out = _apply_h(Hm, pts)
    # face oval outline through the homography -> box
    ang = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    squash = 1.0 - 0.1 * abs(math.sin(math.radians(yaw)))
    cr, sr = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    ou, ov = np.cos(ang) * a * squash, np.sin(ang) * b
    outline = np.c_[fx + ou * cr - ov * sr, fy + ou * sr + ov * cr]
    ob = _apply_h(Hm, outline)
    x0, y0 = ob.min(axis=0)
    x1, y1 = ob.max(axis=0)
    box = Box(float(x0), float(y0), float(x1 - x0), float(y1 - y0))
    return arr, box, [(float(x), float(y)) for x, y in lm_out], roll + rot


# --------------------------------------------------------------------------------------------
# public API


def random_face_size(rng, W, H, lo=100, hi=300, small_share=0.2):
    hi = min(hi, 0.6 * min(W, H))
    if rng.random() < small_share:
        return uniform(rng, 60, 130)
    return uniform(rng, min(lo, hi - 1), hi)


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
    if label not in ("genuine", "attack"):
        raise ValueError(f"label must be 'genuine' or 'attack', not {label!r}")
    if label == "genuine":
        if attack_type is not None:
            raise ValueError("a genuine sample has no attack_type")
    else:
        if attack_type is None:
            attack_type = ATTACK_TYPES[int(rng.integers(len(ATTACK_TYPES)))]
        if attack_type not in ATTACK_TYPES:
            raise ValueError(f"unknown attack_type {attack_type!r}")
    if isinstance(device, str):
        device = _DEVICE_BY_ID[device]
    W, H = int(size[0]), int(size[1])
    P = _person_params(np.random.default_rng(identity) if identity is not None else rng)
    F = float(face_size) if face_size is not None else random_face_size(rng, W, H)
    F = max(12.0, min(F, 0.9 * min(W, H)))
    if yaw is None:
        yaw = float(np.clip(rng.normal(0, 13), -55, 55)) if rng.random() < 0.88 else uniform(rng, -50, 50)
    if pitch is None:
        pitch = float(np.clip(rng.normal(0, 8), -35, 35))
    roll = float(np.clip(rng.normal(0, 5), -20, 20))
    if blur is None:
        blur = random_blur(rng)
    blur = float(np.clip(blur, 0.0, 1.0))

    squash = 1.0 - 0.1 * abs(math.sin(math.radians(yaw)))
    if label == "genuine":
        a = F / 2 / squash
        b = a * P["aspect"]
        arr, box, lms = _person_scene(rng, W, H, P, a, b, yaw, pitch, roll)
        roll_out = roll
    else:
        arr, box, lms, roll_out = _render_attack(rng, attack_type, W, H, F / squash, yaw, pitch, roll, P)

    if device is not None:
        noise = device.noise
        fpn = _device_fpn(device.device_id, W, H, device.fpn)
    else:
        noise = uniform(rng, 1.5, 5.0)
        amp = uniform(rng, 0.3, 1.5)
        fpn = (
            (rng.standard_normal((W, 3)) * amp).astype(np.float32),
            (rng.standard_normal((H, 1)) * amp * 0.6).astype(np.float32),
        )
    out = _camera(rng, arr, noise=noise, fpn=fpn, blur_sigma=6.0 * blur, quality=quality)
    return Sample(
        image=Image.fromarray(out, "RGB"),
        box=box,
        landmarks=lms,
        pose={"yaw": round(float(yaw), 2), "pitch": round(float(pitch), 2), "roll": round(float(roll_out), 2)},
        blur=round(blur, 4),
        label=label,
        attack_type=attack_type,
        device_id=device.device_id if device is not None else None,
    )


def training_samples(n: int, seed: int) -> Iterator[Sample]:
    """n samples: ~50% genuine, ~25% print, ~25% replay, sizes of the DEVICES profiles, face
    sizes mostly 100..300 px (15% small, 60..130), a share of blurry / degraded captures.
    Sample i depends only on (seed, i)."""
    for i in range(n):
        rng = np.random.default_rng([seed, i, 0xD0])
        r = rng.random()
        label, at = ("genuine", None) if r < 0.5 else ("attack", "print" if r < 0.75 else "replay")
        dev = DEVICES[int(rng.integers(len(DEVICES)))]
        W, H = dev.size
        F = random_face_size(rng, W, H, 100, 300, small_share=0.15)
        q = 1.0 if rng.random() < 0.8 else uniform(rng, 0.5, 1.0)
        yield render_sample(rng, label=label, attack_type=at, size=dev.size, face_size=F, quality=q, device=dev)
