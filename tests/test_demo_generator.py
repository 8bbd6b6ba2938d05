"""Tests of the procedural demo-data generator (demo/)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo import ATTACK_TYPES, DEVICES, Sample, generate_inbox, render_sample, training_samples
from liveness.boxes import Box

END_DAY = dt.date(2017, 10, 17)
NAME_RE = re.compile(r"^s\d+_\d{6}\.(jpg|png|json)$")


def _render(seed, **kw):
    kw.setdefault("label", "genuine")
    return render_sample(np.random.default_rng(seed), **kw)


def _grey(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"), np.float64)


def _crop(a: np.ndarray, box: Box, frac: float = 1.0) -> np.ndarray:
    cx, cy = box.cx, box.cy
    hw, hh = box.w * frac / 2, box.h * frac / 2
    return a[max(int(cy - hh), 0) : int(cy + hh), max(int(cx - hw), 0) : int(cx + hw)]


# ---------------------------------------------------------------------------- render_sample


def test_sample_fields_and_types():
    for label, at in [("genuine", None), ("attack", "print"), ("attack", "replay")]:
        s = _render(3, label=label, attack_type=at, size=(640, 480))
        assert isinstance(s, Sample)
        assert s.image.mode == "RGB" and s.image.size == (640, 480)
        assert isinstance(s.box, Box)
        assert len(s.landmarks) == 5 and all(len(p) == 2 for p in s.landmarks)
        assert set(s.pose) == {"yaw", "pitch", "roll"}
        assert 0.0 <= s.blur <= 1.0
        assert s.label == label and s.attack_type == at


def test_attack_without_type_gets_one_and_bad_labels_raise():
    assert _render(1, label="attack").attack_type in ATTACK_TYPES
    with pytest.raises(ValueError):
        _render(1, label="live")
    with pytest.raises(ValueError):
        _render(1, label="attack", attack_type="mask3d")
    with pytest.raises(ValueError):
        _render(1, label="genuine", attack_type="print")


def test_same_seed_same_bytes_other_seed_different():
    for label, at in [("genuine", None), ("attack", "print"), ("attack", "replay")]:
        a = _render(7, label=label, attack_type=at)
        b = _render(7, label=label, attack_type=at)
        c = _render(8, label=label, attack_type=at)
        assert a.image.tobytes() == b.image.tobytes()
        assert a.box == b.box and a.landmarks == b.landmarks
        assert a.image.tobytes() != c.image.tobytes()


def test_requested_face_size_pose_and_blur_are_respected():
    for label, at, tol in [("genuine", None, 0.12), ("attack", "print", 0.3), ("attack", "replay", 0.3)]:
        s = _render(5, label=label, attack_type=at, size=(800, 600), face_size=180, yaw=10, pitch=-5, blur=0.3)
        assert abs(s.box.min_side - 180) <= tol * 180, s.box
        assert s.pose["yaw"] == 10 and s.pose["pitch"] == -5
        assert s.blur == pytest.approx(0.3)


def test_landmarks_inside_box_and_in_face_order():
    for seed in range(4):
        for label, at in [("genuine", None), ("attack", "print"), ("attack", "replay")]:
            s = _render(seed, label=label, attack_type=at, yaw=0, pitch=0)
            b = s.box
            for x, y in s.landmarks:
                assert b.x <= x <= b.x + b.w and b.y <= y <= b.y + b.h, (seed, label, s.landmarks, b)
            le, re_, nose, lm, rm = s.landmarks
            assert le[0] < re_[0] and lm[0] < rm[0]
            assert max(le[1], re_[1]) < nose[1] < min(lm[1], rm[1])


def test_box_is_where_the_face_is():
    """The face box content differs from the image corners (background) and has the face's
    structure: the eyes are darker than the cheeks right below them."""
    differs = eyes_dark = 0
    n = 8
    for seed in range(n):
        s = _render(seed, size=(640, 480), face_size=150, yaw=0, pitch=0, blur=0.0)
        a = np.asarray(s.image, np.float64)
        inner = _crop(a, s.box, 0.5).reshape(-1, 3).mean(axis=0)
        corners = np.concatenate([a[:40, :40].reshape(-1, 3), a[:40, -40:].reshape(-1, 3)]).mean(axis=0)
        differs += np.abs(inner - corners).sum() > 25
        g = _grey(s.image)
        for x, y in s.landmarks[:2]:
            eye = g[int(y) - 2 : int(y) + 3, int(x) - 2 : int(x) + 3].mean()
            cheek_y = int(y + 0.2 * s.box.h)
            cheek = g[cheek_y - 2 : cheek_y + 3, int(x) - 2 : int(x) + 3].mean()
            eyes_dark += eye < cheek
    assert differs >= n - 1
    assert eyes_dark >= 2 * n - 2


def test_blur_parameter_lowers_high_frequency_energy():
    def hf(s):
        g = _crop(_grey(s.image), s.box)
        lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
        return float((lap**2).mean())

    for label, at in [("genuine", None), ("attack", "print")]:
        energies = [hf(_render(11, label=label, attack_type=at, face_size=160, blur=b)) for b in (0.0, 0.15, 0.4, 0.8)]
        assert all(e1 > e2 for e1, e2 in zip(energies, energies[1:], strict=False)), energies


def test_quality_lowers_contrast():
    good = _render(4, face_size=160, blur=0.0, quality=1.0)
    bad = _render(4, face_size=160, blur=0.0, quality=0.4)
    assert _grey(bad.image).std() < 0.85 * _grey(good.image).std()


def _peakiness(s: Sample) -> float:
    """Strongest mid/high-frequency FFT peak over the median of that band, on the face box."""
    g = _crop(_grey(s.image), s.box, 0.8)
    n = min(g.shape)
    g = g[:n, :n] - g[:n, :n].mean()
    f = np.abs(np.fft.fftshift(np.fft.fft2(g * np.outer(np.hanning(n), np.hanning(n)))))
    yy, xx = np.mgrid[:n, :n] - n // 2
    r = np.hypot(xx, yy) / n
    band = f[(r > 0.12) & (r < 0.5)]
    return float(band.max() / np.median(band))


def test_print_attacks_show_halftone_periodicity():
    prints = [_peakiness(_render(s, label="attack", attack_type="print", face_size=170, blur=0.0)) for s in range(6)]
    genuine = [_peakiness(_render(s, face_size=170, blur=0.0)) for s in range(6)]
    assert np.mean(prints) > 2.0 * np.mean(genuine), (prints, genuine)
    assert np.median(prints) > np.median(genuine)


def test_replay_attacks_show_screen_grid_periodicity():
    replays = [_peakiness(_render(s, label="attack", attack_type="replay", face_size=170, blur=0.0)) for s in range(6)]
    genuine = [_peakiness(_render(s, face_size=170, blur=0.0)) for s in range(6)]
    assert np.mean(replays) > 1.5 * np.mean(genuine), (replays, genuine)


def test_large_frame_renders():
    s = _render(2, label="attack", attack_type="replay", size=(1920, 1080))
    assert s.image.size == (1920, 1080)
    s = _render(2, size=(1080, 1920))  # bigger than the noise bank in one direction
    assert s.image.size == (1080, 1920)


def test_training_samples_deterministic_and_balanced():
    a = list(training_samples(10, seed=3))
    b = list(training_samples(10, seed=3))
    assert [s.image.tobytes() for s in a] == [s.image.tobytes() for s in b]
    c = next(iter(training_samples(1, seed=4)))
    assert c.image.tobytes() != a[0].image.tobytes()
    sizes = {d.size for d in DEVICES}
    assert all(s.image.size in sizes for s in a)
    labels = [s.attack_type or "genuine" for s in a]
    assert 2 <= labels.count("genuine") <= 8
    assert labels.count("print") >= 1 and labels.count("replay") >= 1


# ---------------------------------------------------------------------------- generate_inbox


@pytest.fixture(scope="module")
def inbox(tmp_path_factory):
    out = tmp_path_factory.mktemp("inbox")
    calls = []
    summary = generate_inbox(
        out, days=2, per_day=30, seed=0, end_day=END_DAY, progress=lambda done, total: calls.append((done, total))
    )
    return out, summary, calls


def _files(out: Path):
    return sorted(p for p in out.rglob("*") if p.is_file())


def test_inbox_layout_and_names(inbox):
    out, summary, _ = inbox
    devices = {d.device_id for d in DEVICES}
    days = {"2017-10-16", "2017-10-17"}
    files = _files(out)
    assert files
    for p in files:
        rel = p.relative_to(out).parts
        assert len(rel) == 3, rel
        assert rel[0] in days and rel[1] in devices and NAME_RE.match(rel[2]), rel
    assert {p.relative_to(out).parts[0] for p in files} == days
    assert len(files) == summary["files_written"]
    assert summary["days"] == sorted(days)
    per_day = [sum(1 for p in files if p.parts[-3] == d and p.suffix != ".json") for d in sorted(days)]
    assert all(20 <= n <= 40 for n in per_day), per_day


def test_inbox_images_decode_with_device_sizes(inbox):
    out, summary, _ = inbox
    broken = {out / b for b in summary["broken_files"]}
    sizes = {d.device_id: d.size for d in DEVICES}
    n = 0
    for p in _files(out):
        if p.suffix == ".json" or p in broken:
            continue
        with Image.open(p) as im:
            im.load()
            assert im.size == sizes[p.parent.name]
        n += 1
    assert n == summary["images"] + len(summary["duplicates"])
    assert summary["png"] >= 0 and sum(summary["by_device"].values()) == summary["images"]


def test_sidecars_follow_the_spec(inbox):
    out, summary, _ = inbox
    sidecars = [p for p in _files(out) if p.suffix == ".json"]
    assert sidecars
    with_face = labelled = 0
    for p in sidecars:
        d = json.loads(p.read_text())
        assert set(d) <= {"captured_at", "face", "landmarks", "pose", "blur", "label", "attack_type", "subject", "site"}
        t = dt.datetime.fromisoformat(d["captured_at"])
        assert t.utcoffset() == dt.timedelta(hours=8)
        day = dt.date.fromisoformat(p.parts[-3])
        assert t.date() in (day, day - dt.timedelta(days=1))
        if "face" in d:
            with_face += 1
            assert set(d["face"]) == {"x", "y", "w", "h"} and all(isinstance(v, int) for v in d["face"].values())
            assert len(d["landmarks"]) == 5 and all(len(xy) == 2 for xy in d["landmarks"])
            assert all(isinstance(v, (int, float)) for xy in d["landmarks"] for v in xy)
            assert set(d["pose"]) == {"yaw", "pitch", "roll"}
            assert 0 <= d["blur"] <= 1
        if "label" in d:
            labelled += 1
            assert d["label"] in ("genuine", "attack")
            assert (d.get("attack_type") in ATTACK_TYPES) == (d["label"] == "attack")
        assert isinstance(d.get("subject", ""), str) and isinstance(d.get("site", ""), str)
    assert with_face > 0.6 * len(sidecars)
    assert 0 < labelled < len(sidecars)
    images = summary["images"]
    assert summary["no_sidecar"] + summary["sidecar_without_face"] < 0.4 * images


def test_inbox_has_both_attack_types_every_day_and_mostly_genuine(inbox):
    _, summary, _ = inbox
    for day, st in summary["by_day"].items():
        assert st["print"] >= 1 and st["replay"] >= 1, (day, st)
        assert st["attack"] < st["genuine"]
    assert summary["by_label"]["attack"] == sum(summary["by_attack_type"].values())


def test_broken_files_do_not_decode(inbox):
    out, summary, _ = inbox
    assert summary["broken"] >= 2  # at least one per day
    for rel in summary["broken_files"]:
        with pytest.raises((OSError, SyntaxError, ValueError)):
            with Image.open(out / rel) as im:
                im.load()


def test_duplicates_are_byte_identical(inbox):
    out, summary, _ = inbox
    assert summary["duplicates"]
    for a, b in summary["duplicates"]:
        assert a != b
        assert (out / a).read_bytes() == (out / b).read_bytes()


def test_progress_reports_to_the_total(inbox):
    _, summary, calls = inbox
    assert calls and calls[-1][0] == calls[-1][1] == summary["planned"]
    assert [c[0] for c in calls] == list(range(1, len(calls) + 1))


def test_rerun_adds_files_without_touching_existing(tmp_path):
    generate_inbox(tmp_path, days=1, per_day=8, seed=0, end_day=END_DAY)
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in _files(tmp_path)}
    again = generate_inbox(tmp_path, days=1, per_day=8, seed=0, end_day=END_DAY)  # same seed: nothing new
    assert again["files_written"] == 0 and again["skipped_existing"] > 0
    s1 = generate_inbox(tmp_path, days=1, per_day=8, seed=1, end_day=END_DAY)
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in _files(tmp_path)}
    assert all(after[p] == h for p, h in before.items())
    assert len(after) == len(before) + s1["files_written"] and s1["files_written"] > 0


def test_inbox_is_deterministic(tmp_path):
    a = generate_inbox(tmp_path / "a", days=1, per_day=6, seed=5, end_day=END_DAY)
    b = generate_inbox(tmp_path / "b", days=1, per_day=6, seed=5, end_day=END_DAY)
    fa = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in _files(tmp_path / "a")}
    fb = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in _files(tmp_path / "b")}
    assert fa == fb
    assert a["by_label"] == b["by_label"]
