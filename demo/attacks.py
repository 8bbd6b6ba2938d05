"""Presentation attacks: a print or a screen (replay) showing a photo of a face, held in front of
the capturing camera.

How attacks are made: a genuine-looking scene is rendered as the "photo", the medium's
artefacts are applied at the photo's resolution (print: washed colours, CMY halftone screen,
paper texture, white margin; replay: gamma/blue cast, RGB sub-pixel grid, moire of two fine
gratings, glare, dark bezel with rounded corners), the sheet/screen is warped with a slight
perspective into a new scene (sometimes with fingers holding it, sometimes partly out of frame);
the capturing camera (camera.py) then adds its lighting, white balance, blur, noise and
fixed-pattern noise, exactly as for genuine images.

Attacks cost more to render than genuine captures: the photo is rendered first, then the
medium, then the capture scene.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from liveness.boxes import Box

from .camera import blur_image
from .paint import soft_ellipse, uniform
from .person import SKIN_TONES
from .scene import background, person_scene, place_face


def render_attack(rng, attack_type, width, height, face_size, yaw, pitch, roll, person):
    """Returns (arr float32 height x width x 3, box, landmarks, roll_total)."""
    scale = uniform(rng, 0.9, 1.1)  # sheet pixels -> frame pixels
    half_width = face_size / scale / 2  # of the face oval in the photo
    half_height = half_width * person["aspect"]
    phone, medium_width, medium_aspect = _random_medium(rng, attack_type)
    photo_width, photo_height, centre = _photo_layout(
        rng, width, height, scale, half_width, half_height, medium_width, medium_aspect
    )
    photo, _, landmarks = person_scene(
        rng, photo_width, photo_height, person, half_width, half_height, yaw, pitch, roll, centre=centre
    )
    if uniform(rng, 0, 1) < 0.7:  # the photo itself was a little soft
        photo = np.asarray(
            blur_image(Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)), uniform(rng, 0.3, 0.9)), np.float32
        )
    if attack_type == "print":
        sheet, alpha, offset = _print_media(rng, photo)
        rotation = rng.normal(0, 6.0)
    else:
        sheet, alpha, offset = _replay_media(rng, photo, phone)
        rotation = rng.normal(0, 4.0)
    face_on_sheet = (centre[0] + offset[0], centre[1] + offset[1])
    homography, corners = _place_sheet(
        rng, width, height, sheet.shape, scale, half_width, half_height, face_on_sheet, rotation
    )
    arr = np.asarray(
        background(rng, width, height, dim=uniform(rng, 0.5, 1.0) if attack_type == "replay" else 1.0), np.float32
    ).copy()
    _paste_sheet(arr, sheet, alpha, homography, corners)
    if rng.random() < (0.5 if attack_type == "print" else 0.35):
        _draw_fingers(rng, arr, corners, face_size)
    landmarks = _apply_homography(homography, np.array(landmarks) + [offset[0], offset[1]])
    box = _face_box(homography, face_on_sheet, half_width, half_height, yaw, roll)
    return arr, box, [(float(x), float(y)) for x, y in landmarks], roll + rotation


def _random_medium(rng, attack_type):
    """(is a phone, the medium's width in face widths, its height / width)."""
    phone = False
    if attack_type == "print":
        width_in_faces = uniform(rng, 1.6, 3.4)
        aspect = [1.33, 1.0, 0.75, 1.41][rng.integers(4)]
        return phone, width_in_faces, aspect
    kind = rng.choice(3, p=[0.5, 0.3, 0.2])
    if kind == 0:  # a phone
        phone, width_in_faces, aspect = True, uniform(rng, 1.3, 2.3), uniform(rng, 1.75, 2.15)
    elif kind == 1:  # a tablet
        width_in_faces, aspect = uniform(rng, 2.0, 3.6), [0.75, 1.33][rng.integers(2)]
    else:  # a monitor
        width_in_faces, aspect = uniform(rng, 2.8, 5.0), 0.625
    if rng.random() < 0.3:  # turned
        aspect = 1 / aspect
    return phone, width_in_faces, aspect


def _photo_layout(rng, width, height, scale, half_width, half_height, width_in_faces, aspect):
    """The photo's size (sheet pixels) and the centre of the face oval in it."""
    photo_width = width_in_faces * 2 * half_width
    photo_height = photo_width * aspect
    # keep the medium not much larger than the frame
    fit = min(1.0, 1.15 * width / scale / photo_width, 1.2 * height / scale / photo_height)
    photo_width = max(int(photo_width * fit), int(2.3 * half_width))
    photo_height = max(int(photo_height * fit), int(2.3 * half_height))
    cx, cy = photo_width / 2 + rng.normal(0, 0.06) * photo_width, photo_height * uniform(rng, 0.4, 0.52)
    centre = (
        float(np.clip(cx, 1.05 * half_width, photo_width - 1.05 * half_width)),
        float(np.clip(cy, 1.0 * half_height, photo_height - 1.0 * half_height)),
    )
    return photo_width, photo_height, centre


def _place_sheet(rng, width, height, sheet_shape, scale, half_width, half_height, face_on_sheet, rotation):
    """Where the sheet lands in the frame: a similarity placing the face in the frame plus
    perspective jitter of the corners.  Returns (homography sheet -> frame, the corners in the
    frame as a (4, 2) array)."""
    sheet_height, sheet_width = sheet_shape[:2]
    target = place_face(rng, width, height, half_width * scale, half_height * scale)
    if rng.random() < 0.2:  # sometimes partly out of frame
        target = (target[0] + rng.choice([-1, 1]) * uniform(rng, 0.1, 0.25) * width, target[1])
        target = (float(np.clip(target[0], half_width * scale, width - half_width * scale)), target[1])
    theta = math.radians(rotation)
    cos_scaled, sin_scaled = math.cos(theta) * scale, math.sin(theta) * scale
    face_x, face_y = face_on_sheet
    corners = [(0, 0), (sheet_width, 0), (sheet_width, sheet_height), (0, sheet_height)]
    jitter = uniform(rng, 0.0, 0.07) * max(sheet_width, sheet_height) * scale
    in_frame = []
    for x, y in corners:
        dx, dy = x - face_x, y - face_y
        in_frame.append(
            (
                target[0] + dx * cos_scaled - dy * sin_scaled + rng.normal(0, jitter / 2),
                target[1] + dx * sin_scaled + dy * cos_scaled + rng.normal(0, jitter / 2),
            )
        )
    return _homography(corners, in_frame), np.array(in_frame)


def _paste_sheet(arr, sheet, alpha, homography, corners):
    """Warp the sheet (with its alpha) through the homography onto arr, in place."""
    height, width = arr.shape[:2]
    x0, y0 = max(int(corners[:, 0].min()), 0), max(int(corners[:, 1].min()), 0)
    x1, y1 = min(int(corners[:, 0].max()) + 2, width), min(int(corners[:, 1].max()) + 2, height)
    if x0 >= x1 or y0 >= y1:
        return
    shift = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], float)
    inverse = np.linalg.inv(homography) @ shift
    inverse /= inverse[2, 2]
    coeffs = tuple(inverse.flatten()[:8])
    size = (x1 - x0, y1 - y0)
    warped = Image.fromarray(sheet.astype(np.uint8)).transform(size, Image.PERSPECTIVE, coeffs, Image.BILINEAR)
    warped_mask = Image.fromarray((alpha * 255).astype(np.uint8)).transform(
        size, Image.PERSPECTIVE, coeffs, Image.BILINEAR
    )
    mask = np.asarray(warped_mask, np.float32)[..., None] / 255
    region = arr[y0:y1, x0:x1]
    region += (np.asarray(warped, np.float32) - region) * mask


def _draw_fingers(rng, arr, corners, face_size):
    """Fingers holding the sheet / a hand holding the phone, at a random point of an edge."""
    edge = int(rng.integers(4))
    along = uniform(rng, 0.2, 0.8)
    start, end = corners[edge], corners[(edge + 1) % 4]
    px, py = start + (end - start) * along
    normal = np.array([px, py]) - corners.mean(axis=0)  # outwards
    normal /= np.linalg.norm(normal) + 1e-9
    angle = math.atan2(normal[1], normal[0])
    hand = SKIN_TONES[rng.integers(len(SKIN_TONES))] * uniform(rng, 0.85, 1.05)
    finger_width = uniform(rng, 0.06, 0.12) * face_size * 1.6
    for j in range(int(rng.integers(1, 4))):
        along_edge = (j - 1) * finger_width * 1.9
        x, y = px - normal[1] * along_edge, py + normal[0] * along_edge
        soft_ellipse(arr, x, y, finger_width * 2.2, finger_width, angle, hand, soft=0.3)


def _face_box(homography, face_on_sheet, half_width, half_height, yaw, roll):
    """The box of the face oval's outline, taken through the homography."""
    angles = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    squash = 1.0 - 0.1 * abs(math.sin(math.radians(yaw)))
    cos_roll, sin_roll = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    ou, ov = np.cos(angles) * half_width * squash, np.sin(angles) * half_height
    face_x, face_y = face_on_sheet
    outline = np.c_[face_x + ou * cos_roll - ov * sin_roll, face_y + ou * sin_roll + ov * cos_roll]
    in_frame = _apply_homography(homography, outline)
    x0, y0 = in_frame.min(axis=0)
    x1, y1 = in_frame.max(axis=0)
    return Box(float(x0), float(y0), float(x1 - x0), float(y1 - y0))


# --------------------------------------------------------------------------------------------
# geometry


def _homography(src, dst):
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    h = np.linalg.solve(np.array(rows, float), np.array(rhs, float))
    return np.append(h, 1.0).reshape(3, 3)


def _apply_homography(homography, points):
    p = np.c_[np.asarray(points, float), np.ones(len(points))] @ homography.T
    return p[:, :2] / p[:, 2:3]


# --------------------------------------------------------------------------------------------
# the media


def _sep_cos(width, height, fx, fy, phase=0.0):
    """cos(2 pi (fx x + fy y) + phase) on a height x width grid, via outer products (fast)."""
    ax = 2 * math.pi * fx * np.arange(width, dtype=np.float32) + phase
    ay = 2 * math.pi * fy * np.arange(height, dtype=np.float32)
    return np.cos(ay)[:, None] * np.cos(ax)[None, :] - np.sin(ay)[:, None] * np.sin(ax)[None, :]


def _highlight(rng, width, height, max_spread, low, high):
    """A bright Gaussian spot at a random place, of random spread (up to max_spread of the size)
    and strength in low..high, (height, width, 1) to add to an image 0..1."""
    gx = np.exp(-(((np.arange(width) - uniform(rng, 0, width)) / (uniform(rng, 0.15, max_spread) * width)) ** 2))
    gy = np.exp(-(((np.arange(height) - uniform(rng, 0, height)) / (uniform(rng, 0.15, max_spread) * height)) ** 2))
    return (uniform(rng, low, high) * np.outer(gy, gx).astype(np.float32))[..., None]


def _print_media(rng, src):
    """src (h, w, 3) float 0..255 -> (sheet, alpha, offset of src inside the sheet)."""
    x = _washed_colors(rng, src / 255.0)
    x = _halftone(rng, x)
    return _paper(rng, x)


def _washed_colors(rng, x):
    """Lower saturation and contrast, raised black level."""
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * uniform(rng, 0.45, 0.85)
    black, white = uniform(rng, 0.05, 0.2), uniform(rng, 0.84, 0.97)
    return black + x * (white - black)


def _halftone(rng, x):
    """A CMY halftone screen: three rotated dot screens, inked where the colour is darker."""
    height, width = x.shape[:2]
    strength = uniform(rng, 0.35, 1.0)
    period = uniform(rng, 2.6, 6.0)
    base_angle = uniform(rng, 0, math.pi / 2)
    sharpness = uniform(rng, 3.0, 9.0)
    cmy = 1.0 - x
    out = np.empty_like(x)
    for channel, screen_angle in enumerate((math.radians(15), math.radians(75), 0.0)):
        angle = base_angle + screen_angle
        freq = 1.0 / period
        screen = 0.5 + 0.25 * (
            _sep_cos(width, height, freq * math.cos(angle), freq * math.sin(angle))
            + _sep_cos(width, height, -freq * math.sin(angle), freq * math.cos(angle))
        )
        ink = np.clip((cmy[..., channel] - screen) * sharpness + 0.5, 0, 1)
        out[..., channel] = 1.0 - ink
    return x * (1 - strength) + out * strength


def _paper(rng, x):
    """The printed image on tinted, textured paper with a margin (and sometimes a gloss)."""
    height, width = x.shape[:2]
    paper = np.array([uniform(rng, 0.88, 0.98), uniform(rng, 0.87, 0.97), uniform(rng, 0.82, 0.95)], np.float32)
    margin = 0 if rng.random() < 0.25 else int(uniform(rng, 0.03, 0.14) * max(width, height))
    sheet = np.empty((height + 2 * margin, width + 2 * margin, 3), np.float32)
    sheet[...] = paper
    sheet[margin : margin + height, margin : margin + width] = x * (0.6 + 0.4 * paper)
    sheet_height, sheet_width = sheet.shape[:2]
    texture = rng.uniform(0.94, 1.06, (max(2, sheet_height // 24), max(2, sheet_width // 24))).astype(np.float32)
    texture = (
        np.asarray(
            Image.fromarray(((texture - 0.9) * 1000).astype(np.uint8)).resize(
                (sheet_width, sheet_height), Image.BICUBIC
            ),
            np.float32,
        )
        / 1000
        + 0.9
    )
    sheet *= texture[..., None]
    if rng.random() < 0.25:  # glossy photo paper reflection
        sheet += _highlight(rng, sheet_width, sheet_height, 0.5, 0.05, 0.25)
    alpha = np.ones((sheet_height, sheet_width), np.float32)
    return np.clip(sheet * 255, 0, 255), alpha, (margin, margin)


def _replay_media(rng, src, phone):
    """src (h, w, 3) float 0..255 -> (screen with bezel, alpha, offset of src inside it)."""
    x = _display_response(rng, src / 255.0)
    _subpixel_grid(rng, x)
    _moire(rng, x)
    if rng.random() < 0.8:  # glare
        x += _highlight(rng, x.shape[1], x.shape[0], 0.6, 0.1, 0.5)
    return _bezel(rng, x, phone)


def _display_response(rng, x):
    """Display gamma, blue cast and black level."""
    np.power(np.clip(x, 0, 1), uniform(rng, 0.7, 1.3), out=x)
    cast = uniform(rng, 0.03, 0.14)
    x *= np.array([1 - cast, 1 - cast / 4, 1 + cast * 0.6], np.float32)
    black = uniform(rng, 0.02, 0.1)
    return black + x * (1 - black)


def _subpixel_grid(rng, x):
    """RGB sub-pixel stripes + dark gaps between pixel rows, in place."""
    height, width = x.shape[:2]
    pitch = uniform(rng, 2.0, 4.2)
    strength = uniform(rng, 0.15, 0.55)
    xs = np.arange(width, dtype=np.float32) / pitch
    columns = np.stack([0.5 + 0.5 * np.cos(2 * math.pi * (xs - k / 3.0)) for k in range(3)], axis=1)
    columns = (1 - strength) + strength * 1.6 * columns
    rows = 1 - strength * 0.6 * (0.5 + 0.5 * np.cos(2 * math.pi * np.arange(height, dtype=np.float32) / pitch)) ** 4
    x *= columns[None, :, :].astype(np.float32)
    x *= rows[:, None, None].astype(np.float32)


def _moire(rng, x):
    """Moire: two fine gratings at slightly different frequency / angle, plus their beat, in place."""
    height, width = x.shape[:2]
    period = uniform(rng, 1.8, 3.2)
    detune = uniform(rng, 0.03, 0.15)
    angle, skew = uniform(rng, -0.3, 0.3), uniform(rng, -0.05, 0.05)
    f1 = (math.cos(angle) / period, math.sin(angle) / period)
    f2 = (math.cos(angle + skew) / (period * (1 + detune)), math.sin(angle + skew) / (period * (1 + detune)))
    amplitude = uniform(rng, 0.06, 0.25)
    grating = _sep_cos(width, height, *f1) * _sep_cos(width, height, *f2)
    grating += 0.5 * _sep_cos(width, height, f1[0] - f2[0], f1[1] - f2[1], uniform(rng, 0, 6.3))
    x *= (1 + amplitude * grating)[..., None]


def _bezel(rng, x, phone):
    """The screen in a (mostly dark, glossy) bezel; a phone's corners are rounded."""
    height, width = x.shape[:2]
    bezel = int(uniform(rng, 0.025, 0.09) * min(width, height)) + 2
    color = (
        np.full(3, uniform(rng, 0.02, 0.12), np.float32)
        if rng.random() < 0.8
        else np.full(3, uniform(rng, 0.75, 0.92), np.float32)
    )
    sheet = np.empty((height + 2 * bezel, width + 2 * bezel, 3), np.float32)
    sheet_height, sheet_width = sheet.shape[:2]
    sheet[...] = color
    sheet *= (1 + 0.25 * np.linspace(-1, 1, sheet_height, dtype=np.float32))[:, None, None]  # glossy frame
    sheet[bezel : bezel + height, bezel : bezel + width] = x
    alpha = np.ones((sheet_height, sheet_width), np.float32)
    if phone:
        radius = int(uniform(rng, 0.06, 0.12) * min(sheet_width, sheet_height))
        mask = Image.new("L", (sheet_width, sheet_height), 0)
        ImageDraw.Draw(mask).rounded_rectangle([0, 0, sheet_width - 1, sheet_height - 1], radius=radius, fill=255)
        alpha = np.asarray(mask, np.float32) / 255
    return np.clip(sheet * 255, 0, 255), alpha, (bezel, bezel)
