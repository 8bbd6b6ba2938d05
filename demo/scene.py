"""Scenes: the background behind a face (a wall, shelves, a door, outdoors, an office, patterned
wallpaper), the light, where the face sits in the frame, and a person drawn into it."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from .paint import gradient_image, random_color, uniform
from .person import draw_person

# --------------------------------------------------------------------------------------------
# backgrounds


def background(rng, width, height, dim=1.0):
    # drawn at reduced resolution and upscaled: fast, and looks like a defocused background
    scale = float(rng.choice([1.5, 2.0, 3.0]) if max(width, height) <= 700 else rng.choice([2.0, 3.0, 4.0]))
    small_width, small_height = max(8, int(width / scale)), max(8, int(height / scale))
    kind = _BACKGROUND_KINDS[rng.choice(len(_BACKGROUND_KINDS), p=_BACKGROUND_SHARES)]
    wall = random_color(rng, 60, 235, 0.35)
    wall2 = tuple(int(np.clip(c * uniform(rng, 0.6, 1.1), 0, 255)) for c in wall)
    img = gradient_image(rng, small_width, small_height, wall, wall2)
    draw = ImageDraw.Draw(img)
    img = _PAINTERS[kind](rng, img, draw, small_width, small_height, scale)
    img = _blotches(rng, img, small_width, small_height, dim)
    return img.resize((width, height), Image.BILINEAR)


def _paint_wall(rng, img, draw, width, height, scale):
    for _ in range(rng.integers(0, 3)):  # posters / frames / switches
        x, y = uniform(rng, -0.1, 0.9) * width, uniform(rng, -0.1, 0.7) * height
        poster_width, poster_height = uniform(rng, 0.05, 0.35) * width, uniform(rng, 0.05, 0.4) * height
        draw.rectangle(
            [x, y, x + poster_width, y + poster_height],
            fill=random_color(rng),
            outline=random_color(rng, 0, 80),
            width=int(rng.integers(0, 6)),
        )
    return img


def _paint_shelves(rng, img, draw, width, height, scale):
    n_shelves = int(rng.integers(2, 5))
    wood = random_color(rng, 70, 170, 0.3)
    for k in range(n_shelves):
        y = (k + uniform(rng, 0.6, 1.0)) * height / n_shelves
        draw.rectangle([0, y, width, y + uniform(rng, 4, 12)], fill=wood)
        x = uniform(rng, 0, 0.2) * width
        while x < width:  # books, with a gap now and then
            book_width = uniform(rng, 0.01, 0.04) * width
            book_height = uniform(rng, 0.4, 0.85) * height / n_shelves
            if rng.random() < 0.8:
                draw.rectangle([x, y - book_height, x + book_width, y], fill=random_color(rng, 20, 220, 1.0))
            x += book_width + (0 if rng.random() < 0.7 else uniform(rng, 0.02, 0.15) * width)
    return img


def _paint_door(rng, img, draw, width, height, scale):
    x = uniform(rng, -0.1, 0.75) * width
    door_width = uniform(rng, 0.25, 0.45) * width
    top = uniform(rng, -0.1, 0.15) * height
    frame = random_color(rng, 150, 250, 0.1)
    draw.rectangle([x - 8, top - 8, x + door_width + 8, height], fill=frame)
    door = random_color(rng, 60, 200, 0.4)
    draw.rectangle([x, top, x + door_width, height], fill=door)
    for k in range(2):  # panels
        draw.rectangle(
            [
                x + door_width * 0.12,
                top + (0.08 + 0.45 * k) * (height - top),
                x + door_width * 0.88,
                top + (0.45 + 0.45 * k) * (height - top),
            ],
            outline=tuple(int(c * 0.8) for c in door),
            width=3,
        )
    knob_x = x + door_width * (0.85 if rng.random() < 0.5 else 0.15)
    knob_y = top + 0.55 * (height - top)
    draw.ellipse([knob_x - 5, knob_y - 5, knob_x + 5, knob_y + 5], fill=(200, 190, 150))
    return img


def _paint_outdoor(rng, img, draw, width, height, scale):
    sky = gradient_image(
        rng,
        width,
        height,
        (int(uniform(rng, 90, 200)), int(uniform(rng, 150, 220)), int(uniform(rng, 200, 255))),
        (int(uniform(rng, 180, 240)),) * 3,
        angle=math.pi / 2,
    )
    img.paste(sky)
    horizon = uniform(rng, 0.35, 0.7) * height
    _paint_buildings(rng, draw, width, height, horizon)
    for _ in range(rng.integers(0, 6)):  # trees
        x, y = uniform(rng, 0, 1) * width, horizon + uniform(rng, -0.25, 0.05) * height
        radius = uniform(rng, 0.05, 0.15) * width
        draw.ellipse(
            [x - radius, y - radius, x + radius, y + radius],
            fill=(int(uniform(rng, 20, 80)), int(uniform(rng, 70, 140)), int(uniform(rng, 20, 70))),
        )
    draw.rectangle([0, horizon + 0.1 * height, width, height], fill=random_color(rng, 70, 150, 0.2))  # the ground
    return img


def _paint_buildings(rng, draw, width, height, horizon):
    for _ in range(rng.integers(1, 5)):
        left, building_width = uniform(rng, -0.1, 1.0) * width, uniform(rng, 0.1, 0.4) * width
        top = horizon - uniform(rng, 0.1, 0.5) * height
        color = random_color(rng, 80, 210, 0.2)
        draw.rectangle([left, top, left + building_width, height], fill=color)
        step = uniform(rng, 12, 30)
        window = tuple(int(c * 0.6) for c in color)
        for y in np.arange(top + 6, horizon, step):
            for x in np.arange(left + 6, left + building_width - 8, step):
                draw.rectangle([x, y, x + step * 0.5, y + step * 0.6], fill=window)


def _paint_office(rng, img, draw, width, height, scale):
    for _ in range(rng.integers(1, 4)):  # ceiling lights
        x, y = uniform(rng, 0, 0.9) * width, uniform(rng, 0, 0.12) * height
        draw.rectangle(
            [x, y, x + uniform(rng, 0.1, 0.25) * width, y + uniform(rng, 0.02, 0.05) * height], fill=(250, 250, 245)
        )
    partition_top = uniform(rng, 0.45, 0.75) * height
    draw.rectangle([0, partition_top, width, height], fill=random_color(rng, 80, 170, 0.2))
    if rng.random() < 0.6:  # a switched-off monitor or a dark window (a hard negative for bezels)
        x, y = uniform(rng, 0, 0.8) * width, uniform(rng, 0.15, 0.5) * height
        draw.rectangle(
            [x, y, x + uniform(rng, 0.12, 0.3) * width, y + uniform(rng, 0.1, 0.25) * height],
            fill=random_color(rng, 10, 50, 0.05),
            outline=(20, 20, 22),
            width=int(rng.integers(2, 8)),
        )
    return img


def _paint_pattern(rng, img, draw, width, height, scale):
    """Stripes / checks wallpaper or curtain (coarse periodic texture, a hard negative)."""
    arr = np.asarray(img, np.float32)
    period = uniform(rng, 6, 30) / scale
    angle = uniform(rng, 0, math.pi)
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    wave = np.sin(2 * math.pi * (xs * math.cos(angle) + ys * math.sin(angle)) / period)
    if rng.random() < 0.4:  # checks
        wave = wave * np.sin(2 * math.pi * (ys * math.cos(angle) - xs * math.sin(angle)) / period)
    arr = arr * (1 + uniform(rng, 0.08, 0.3) * wave[..., None])
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _blotches(rng, img, width, height, dim):
    """Low-frequency blotches (plaster, shadows) and the overall dimming."""
    blot = np.clip(rng.uniform(0.88, 1.0, (5, 7)) * dim * 255, 0, 255).astype(np.uint8)
    blot = Image.fromarray(blot).resize((width, height), Image.BICUBIC).convert("RGB")
    return ImageChops.multiply(img.convert("RGB"), blot)


# each painter (rng, img, draw, width, height, scale) -> img draws on the small image
_PAINTERS = {
    "wall": _paint_wall,
    "shelves": _paint_shelves,
    "door": _paint_door,
    "outdoor": _paint_outdoor,
    "office": _paint_office,
    "pattern": _paint_pattern,
}
_BACKGROUND_KINDS = tuple(_PAINTERS)
_BACKGROUND_SHARES = [0.22, 0.18, 0.16, 0.16, 0.16, 0.12]

# --------------------------------------------------------------------------------------------
# a person in front of a background


def random_light(rng):
    """The light's direction (unit vector): mostly from the front and a little above."""
    direction = np.array([rng.normal(0, 0.5), rng.normal(-0.3, 0.35), uniform(rng, 0.6, 1.0)])
    return tuple(direction / np.linalg.norm(direction))


def place_face(rng, width, height, half_width, half_height):
    """A random centre for a face oval of these half axes, inside the frame."""
    margin_x, margin_y = 1.1 * half_width, 1.05 * half_height
    cx = width / 2 + rng.normal(0, 0.12 * width)
    cy = height * 0.45 + rng.normal(0, 0.08 * height)
    cx = float(np.clip(cx, margin_x, max(margin_x, width - margin_x)))
    cy = float(np.clip(cy, margin_y, max(margin_y, height - margin_y)))
    return cx, cy


def person_scene(rng, width, height, person, half_width, half_height, yaw, pitch, roll, centre=None):
    """A background with a person whose face oval is centred at centre (default: random);
    returns (arr float32 height x width x 3, box, landmarks)."""
    arr = np.asarray(background(rng, width, height), dtype=np.float32).copy()
    cx, cy = centre if centre is not None else place_face(rng, width, height, half_width, half_height)
    box, landmarks = draw_person(arr, person, cx, cy, half_width, half_height, yaw, pitch, roll, random_light(rng))
    return arr, box, landmarks
