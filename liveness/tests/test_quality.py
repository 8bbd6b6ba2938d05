"""Quality gates (unknown values pass), the blur measure and pose from landmarks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageFilter

from liveness.boxes import Box
from liveness.quality import Gates, Quality, assess, blur_score, pose_from_landmarks

# --- gates ---------------------------------------------------------------------------------------


def test_it_passes_every_gate_when_nothing_is_known():
    assert Gates().failed(Quality()) == []


def test_it_uses_the_production_default_gates():
    g = Gates()
    assert (g.min_face, g.max_yaw, g.max_pitch, g.max_blur) == (130, 30, 30, 0.5)


GOOD = {"face_size": 160, "yaw": 5, "pitch": -5, "blur": 0.1}


@pytest.mark.parametrize(
    ("change", "gate"),
    [
        ({"face_size": 129.5}, "face_size"),
        ({"yaw": 30.5}, "yaw"),
        ({"yaw": -31}, "yaw"),
        ({"pitch": 31}, "pitch"),
        ({"pitch": -45}, "pitch"),
        ({"blur": 0.51}, "blur"),
    ],
)
def test_it_fails_exactly_the_gate_whose_value_is_out_of_range(change, gate):
    assert Gates().failed(Quality(**{**GOOD, **change})) == [gate]


def test_it_passes_values_exactly_on_the_limits():
    assert Gates().failed(Quality(face_size=130, yaw=-30, pitch=30, blur=0.5)) == []


def test_it_lets_an_unknown_value_pass_while_a_known_bad_one_fails():
    assert Gates().failed(Quality(face_size=None, yaw=None, pitch=None, blur=0.9)) == ["blur"]
    assert Gates().failed(Quality(face_size=50)) == ["face_size"]


def test_it_reports_every_failed_gate():
    q = Quality(face_size=10, yaw=80, pitch=80, blur=1.0)
    assert Gates().failed(q) == ["face_size", "yaw", "pitch", "blur"]


def test_it_skips_a_gate_set_to_none():
    q = Quality(face_size=10, yaw=80, pitch=80, blur=1.0)
    assert Gates(min_face=None, max_yaw=None, max_pitch=None, max_blur=None).failed(q) == []
    assert Gates(min_face=None).failed(Quality(face_size=10)) == []


# --- blur ----------------------------------------------------------------------------------------

RADII = (0, 1, 2, 4, 8)


@pytest.mark.parametrize("size", [(96, 96), (160, 160), (240, 200)])
def test_it_scores_blur_monotonically_in_the_gaussian_radius(textured, size):
    img = textured(size, seed=3)
    scores = [blur_score(img.filter(ImageFilter.GaussianBlur(r))) for r in RADII]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores), scores
    assert scores[0] < 0.1  # a sharp texture reads as sharp ...
    assert scores[-1] > 0.5  # ... a heavily blurred one fails the default gate


def test_it_scores_a_heavily_blurred_texture_as_blurry_not_as_sharp_rounding_noise(textured):
    img = textured((192, 192), seed=1)
    scores = [blur_score(img.filter(ImageFilter.GaussianBlur(r))) for r in (4, 8, 12, 16)]
    assert scores == sorted(scores), scores
    assert scores[-1] > 0.9


def test_it_gives_a_flat_image_the_maximum_blur():
    assert blur_score(Image.new("RGB", (50, 50), (120, 90, 60))) == 1.0


def test_it_does_not_depend_on_brightness(textured):
    img = textured((128, 128), seed=5)
    for radius in (0, 1, 2):
        base = img.filter(ImageFilter.GaussianBlur(radius))
        arr = np.asarray(base, dtype=np.float64)
        darker = Image.fromarray(np.round(arr * 0.6).astype(np.uint8))
        brighter = Image.fromarray(np.round(arr * 0.5 + 100).astype(np.uint8))
        s = blur_score(base)
        assert blur_score(darker) == pytest.approx(s, abs=0.05)
        assert blur_score(brighter) == pytest.approx(s, abs=0.05)


def test_it_does_not_depend_on_the_face_pixel_size(textured):
    small = textured((96, 96), seed=2)
    large = small.resize((288, 288), Image.Resampling.NEAREST)
    assert blur_score(large) == pytest.approx(blur_score(small), abs=0.05)


# --- pose from landmarks ---------------------------------------------------------------------------

FRONTAL = [(30.0, 40.0), (70.0, 40.0), (50.0, 59.8), (35.0, 80.0), (65.0, 80.0)]  # nose at NOSE_REST 0.495


def rotate(points, degrees, centre=(50.0, 60.0)):
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    cx, cy = centre
    return [(cx + c * (x - cx) - s * (y - cy), cy + s * (x - cx) + c * (y - cy)) for x, y in points]


def test_it_estimates_a_frontal_face_as_zero_pose():
    pose = pose_from_landmarks(FRONTAL)
    assert pose["yaw"] == pytest.approx(0, abs=1e-6)
    assert pose["pitch"] == pytest.approx(0, abs=1e-6)
    assert pose["roll"] == pytest.approx(0, abs=1e-6)


def test_it_gives_positive_yaw_when_the_nose_moves_towards_image_right():
    right = [*FRONTAL[:2], (60.0, 59.8), *FRONTAL[3:]]
    left = [*FRONTAL[:2], (40.0, 59.8), *FRONTAL[3:]]
    assert pose_from_landmarks(right)["yaw"] == pytest.approx(30, abs=0.5)  # halfway to the eye
    assert pose_from_landmarks(left)["yaw"] == pytest.approx(-30, abs=0.5)
    assert pose_from_landmarks([*FRONTAL[:2], (70.0, 59.8), *FRONTAL[3:]])["yaw"] == pytest.approx(90)


def test_it_gives_positive_pitch_when_the_nose_is_higher():  # looking up, as in the demo sidecars
    down = [*FRONTAL[:2], (50.0, 70.0), *FRONTAL[3:]]
    up = [*FRONTAL[:2], (50.0, 52.0), *FRONTAL[3:]]
    assert pose_from_landmarks(down)["pitch"] < -10
    assert pose_from_landmarks(up)["pitch"] > 10


@pytest.mark.parametrize("angle", [-40, -15, 10, 25])
def test_it_reads_roll_from_a_rotated_landmark_set_and_keeps_yaw_and_pitch(angle):
    pose = pose_from_landmarks(rotate(FRONTAL, angle))
    assert pose["roll"] == pytest.approx(angle, abs=1e-6)
    assert pose["yaw"] == pytest.approx(0, abs=1e-6)
    assert pose["pitch"] == pytest.approx(0, abs=1e-6)


def test_it_keeps_yaw_under_rotation():
    turned = [*FRONTAL[:2], (60.0, 59.8), *FRONTAL[3:]]
    pose = pose_from_landmarks(rotate(turned, 20))
    assert pose["roll"] == pytest.approx(20)
    assert pose["yaw"] == pytest.approx(30, abs=0.5)


# --- assess ----------------------------------------------------------------------------------------


def test_it_measures_face_size_and_blur_from_the_box(textured):
    img = textured((300, 300), seed=4)
    q = assess(img, Box(50, 60, 150, 140))
    assert q.face_size == 140
    assert q.blur_source == "measured" and q.blur < 0.5
    assert q.yaw is None and q.pose_source == ""
    assert q.failed_gates == []


def test_it_fails_the_blur_gate_on_a_blurred_face_region_only(textured):
    img = textured((300, 300), seed=4)
    img.paste(img.crop((0, 0, 150, 150)).filter(ImageFilter.GaussianBlur(8)), (0, 0))
    assert assess(img, Box(0, 0, 150, 150)).failed_gates == ["blur"]
    assert assess(img, Box(150, 150, 150, 150)).failed_gates == []


def test_it_prefers_sidecar_pose_and_blur_over_estimates(textured):
    img = textured((200, 200))
    q = assess(
        img,
        Box(20, 20, 160, 160),
        sidecar_pose={"yaw": 40.0, "pitch": 1.0},
        sidecar_blur=0.05,
        landmarks=FRONTAL,
    )
    assert (q.yaw, q.pitch, q.roll) == (40.0, 1.0, None)
    assert (q.pose_source, q.blur, q.blur_source) == ("sidecar", 0.05, "sidecar")
    assert q.failed_gates == ["yaw"]


def test_it_estimates_pose_from_landmarks_without_a_sidecar_pose(textured):
    turned = [(x * 3, y * 3) for x, y in [*FRONTAL[:2], (68.0, 62.0), *FRONTAL[3:]]]
    q = assess(textured((300, 300)), Box(60, 90, 160, 160), landmarks=turned)
    assert q.pose_source == "landmarks"
    assert q.yaw > 30
    assert q.failed_gates == ["yaw"]


def test_it_knows_nothing_without_a_box():
    q = assess(Image.new("RGB", (100, 100)), None)
    assert (q.face_size, q.blur, q.failed_gates) == (None, None, [])


def test_it_measures_blur_on_a_reduced_decode_in_full_resolution_coordinates(textured):
    full = textured((400, 400), seed=6)
    full.paste(full.crop((200, 200, 400, 400)).filter(ImageFilter.GaussianBlur(10)), (200, 200))
    reduced = full.resize((200, 200), Image.Resampling.BOX)
    sharp = assess(reduced, Box(0, 0, 200, 200), scale=2.0)
    blurry = assess(reduced, Box(200, 200, 200, 200), scale=2.0)
    assert sharp.face_size == 200 and blurry.face_size == 200
    assert sharp.blur < 0.5 < blurry.blur
