"""The demo inbox: days of captures from the demo devices written as INBOX/<day>/<device>/ files
with sidecars (SPEC section 3), with the odd cases a real inbox has (late files, copies, broken
files, small and turned faces, blur)."""

from __future__ import annotations

import datetime as _dt
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .paint import uniform
from .render import ATTACK_TYPES, DEVICES, TZ, DeviceProfile, Sample, random_blur, random_face_size, render_sample
from .scene import background


def days_ending(end_day: _dt.date | None, days: int) -> list[_dt.date]:
    """The ``days`` days up to ``end_day`` (default: yesterday), oldest first."""
    end = end_day or _dt.date.today() - _dt.timedelta(days=1)
    return [end - _dt.timedelta(days=days - 1 - k) for k in range(days)]


def face_fields(s: Sample) -> dict:
    """The sidecar fields a device that tracks the face sends: box, landmarks, pose, blur."""
    return {
        "face": {
            "x": int(round(s.box.x)),
            "y": int(round(s.box.y)),
            "w": int(round(s.box.w)),
            "h": int(round(s.box.h)),
        },
        "landmarks": [[round(x, 1), round(y, 1)] for x, y in s.landmarks],
        "pose": {k: round(float(v), 1) for k, v in s.pose.items()},
        "blur": round(s.blur, 3),
    }


def encode(img: Image.Image, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, "PNG", compress_level=1)
    else:
        img.save(buf, "JPEG", quality=int(quality))
    return buf.getvalue()


def write_new(path: Path, data: bytes) -> bool:
    """Write without ever overwriting; False if the file already exists."""
    try:
        with open(path, "xb") as fh:
            fh.write(data)
        return True
    except FileExistsError:
        return False


def generate_inbox(
    out: Path,
    *,
    days: int,
    per_day: int,
    seed: int = 0,
    end_day: _dt.date | None = None,
    progress: Callable[[int, int], None] | None = None,
    camera_blur: Callable[[_dt.date, str, str], float | None] | None = None,
) -> dict:
    """Write a demo inbox (SPEC section 3) for ``days`` days ending at ``end_day`` (default:
    yesterday).  File names are ``s{seed}_{i:06d}.jpg|.png`` so runs with other seeds add files;
    existing files are never overwritten (they are counted as ``skipped_existing``).

    Contents per day: ~per_day files (+-20%), ~5-15% attacks with both types every day, ~30% of
    sidecars labelled (attacks 50%), ~10% of images without sidecar, ~5% with a sidecar without
    ``face``, ~1% broken files (truncated JPEG / zero bytes / text; at least one per day),
    ~1% exact byte duplicates (at least one per day, of an earlier file, maybe an earlier day),
    ~3% late arrivals (captured_at late on the previous day).  ``gate-south`` degrades over the
    days (more noise, less contrast, more blur, lower JPEG quality).

    ``camera_blur(day, device_id, stem)``, when given and not None for an image, replaces that
    image's camera blur (demo/stories.py plants a blurry camera this way); every other
    random decision stays as without it, so the other files are the same bytes."""
    out = Path(out)
    rng = np.random.default_rng([seed, 0x1B0C])
    day_list = days_ending(end_day, days)
    counts = [max(6, int(round(per_day * uniform(rng, 0.8, 1.2)))) for _ in day_list]
    shares = np.array([d.weight for d in DEVICES])
    shares /= shares.sum()
    inbox = _Inbox(
        out=out,
        seed=seed,
        rng=rng,
        device_shares=shares,
        subjects=_subjects(rng),
        summary=_new_summary(out, seed, day_list, sum(counts)),
        progress=progress,
        camera_blur=camera_blur,
    )
    for day_index, day in enumerate(day_list):
        inbox.write_day(day, counts[day_index], day_index / max(days - 1, 1))
    return inbox.summary


def _subjects(rng) -> dict[str, list[tuple[str, int]]]:
    """Per device, the people who use it: (subject id for the sidecar, identity to render)."""
    return {
        d.device_id: [
            (f"u{int(rng.integers(16**8)):08x}", int(rng.integers(2**31))) for _ in range(int(rng.integers(6, 16)))
        ]
        for d in DEVICES
    }


def _new_summary(out: Path, seed: int, day_list: list[_dt.date], total: int) -> dict:
    return {
        "out": str(out),
        "seed": seed,
        "days": [d.isoformat() for d in day_list],
        "planned": total,
        "files_written": 0,
        "images": 0,
        "sidecars": 0,
        "skipped_existing": 0,
        "by_label": {"genuine": 0, "attack": 0},
        "by_attack_type": {t: 0 for t in ATTACK_TYPES},
        "by_device": {d.device_id: 0 for d in DEVICES},
        "by_day": {},
        "labelled": 0,
        "no_sidecar": 0,
        "sidecar_without_face": 0,
        "png": 0,
        "small_faces": 0,
        "large_pose": 0,
        "blurry": 0,
        "late_arrivals": 0,
        "broken": 0,
        "broken_files": [],
        "duplicates": [],
    }


def _day_kinds(rng, n: int) -> list[str]:
    """What the n files of a day are, in random order: "genuine", "print", "replay" (both every
    day), "broken" and "dup" (at least one each)."""
    n_broken = max(1, int(round(0.01 * n)))
    n_dup = max(1, int(round(0.01 * n)))
    n_images = n - n_broken - n_dup
    n_attacks = min(n_images // 2, max(2, int(round(n_images * uniform(rng, 0.05, 0.15)))))
    kinds = (
        ["print", "replay"]
        + [ATTACK_TYPES[int(rng.integers(2))] for _ in range(n_attacks - 2)]
        + ["genuine"] * (n_images - n_attacks)
        + ["broken"] * n_broken
        + ["dup"] * n_dup
    )
    return [kinds[i] for i in rng.permutation(len(kinds))]


@dataclass
class _Capture:
    """Every random decision about one image of the inbox."""

    label: str
    attack_type: str | None
    face_size: float
    quality: float
    blur: float
    jpeg_quality: int
    subject: str
    identity: int
    fmt: str
    sidecar_draw: float  # < 0.10: no sidecar, < 0.15: a sidecar without face
    late: bool
    captured_at: _dt.datetime
    labelled: bool


@dataclass
class _Inbox:
    """One generate_inbox run: its random stream, the summary it keeps, the good files written
    so far (a duplicate copies one of them) and the progress."""

    out: Path
    seed: int
    rng: np.random.Generator
    device_shares: np.ndarray
    subjects: dict[str, list[tuple[str, int]]]
    summary: dict
    progress: Callable[[int, int], None] | None
    camera_blur: Callable[[_dt.date, str, str], float | None] | None
    written: list[tuple[Path, Path | None]] = field(default_factory=list)  # (image, sidecar)
    done: int = 0
    counter: int = 0

    def write_day(self, day: _dt.date, n: int, frac: float) -> None:
        """The n files of a day; frac is how far the day is into the inbox (0 first, 1 last)."""
        rng = self.rng
        kinds = _day_kinds(rng, n)
        day_stats = self.summary["by_day"].setdefault(
            day.isoformat(), {"files": 0, "genuine": 0, "attack": 0, "print": 0, "replay": 0}
        )
        for kind in kinds:
            self.counter += 1
            dev = DEVICES[int(rng.choice(len(DEVICES), p=self.device_shares))]
            stem = f"s{self.seed}_{self.counter:06d}"
            if kind == "dup" and not self.written:
                kind = "genuine"  # nothing to copy yet
            if kind == "dup":
                self._write_duplicate(day, stem, day_stats)
            elif kind == "broken":
                self._write_broken(day, dev, stem, day_stats)
            else:
                self._write_image(day, dev, stem, kind, frac, day_stats)
            self.done += 1
            if self.progress:
                self.progress(self.done, self.summary["planned"])

    def _rel(self, p: Path) -> str:
        return p.relative_to(self.out).as_posix()

    def _image_rng(self, day: _dt.date) -> np.random.Generator:
        """The stream of one image's pixels: the same for a file whatever was written before."""
        return np.random.default_rng([self.seed, day.toordinal(), self.counter])

    def _write_duplicate(self, day: _dt.date, stem: str, day_stats: dict) -> None:
        """An exact byte copy of an earlier good image (maybe of an earlier day) in its device's
        folder of this day, with a copy of its sidecar half of the time."""
        summary = self.summary
        src_img, src_side = self.written[int(self.rng.integers(len(self.written)))]
        folder = self.out / day.isoformat() / src_img.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        dst = folder / (stem + src_img.suffix)
        if write_new(dst, src_img.read_bytes()):
            summary["files_written"] += 1
            summary["duplicates"].append([self._rel(src_img), self._rel(dst)])
            day_stats["files"] += 1
        else:
            summary["skipped_existing"] += 1
        copy_side = self.rng.random() < 0.5  # drawn even without a sidecar: the stream stays the same
        if src_side is not None and copy_side:
            if write_new(folder / (stem + ".json"), src_side.read_bytes()):
                summary["files_written"] += 1
                summary["sidecars"] += 1

    def _write_broken(self, day: _dt.date, dev: DeviceProfile, stem: str, day_stats: dict) -> None:
        """A truncated JPEG, an empty file or an error page named .jpg, with a sidecar without
        face half of the time."""
        rng, summary = self.rng, self.summary
        folder = self.out / day.isoformat() / dev.device_id
        folder.mkdir(parents=True, exist_ok=True)
        how = ["truncated", "empty", "text"][int(rng.integers(3))]
        if how == "truncated":
            data = encode(background(self._image_rng(day), *dev.size), "jpg", dev.jpeg_quality)
            data = data[: int(len(data) * uniform(rng, 0.3, 0.7))]
        elif how == "empty":
            data = b""
        else:
            data = b"<html><body>502 Bad Gateway: upload failed</body></html>\n"
        path = folder / (stem + ".jpg")
        if write_new(path, data):
            summary["files_written"] += 1
            summary["broken"] += 1
            summary["broken_files"].append(self._rel(path))
            day_stats["files"] += 1
        else:
            summary["skipped_existing"] += 1
        if rng.random() < 0.5:
            time = _dt.time(int(rng.integers(7, 22)), int(rng.integers(60)), int(rng.integers(60)))
            side = {"captured_at": _dt.datetime.combine(day, time, TZ).isoformat(), "site": dev.site}
            if write_new(folder / (stem + ".json"), json.dumps(side).encode()):
                summary["files_written"] += 1
                summary["sidecars"] += 1

    def _plan_capture(self, day: _dt.date, dev: DeviceProfile, stem: str, kind: str, frac: float) -> _Capture:
        """Every random decision about an image, made before looking at the disk, so a rerun
        takes the same path."""
        rng = self.rng
        width, height = dev.size
        face_size = random_face_size(rng, width, height, *dev.face_range, small_share=0.15)
        quality = 1.0 if rng.random() < 0.9 else uniform(rng, 0.6, 1.0)
        blur = random_blur(rng)
        jpeg_quality = dev.jpeg_quality
        if dev.degrades:
            quality = min(quality, 1.0 - 0.5 * frac)
            blur = min(1.0, blur + 0.4 * frac * uniform(rng, 0.5, 1.0))
            jpeg_quality = int(jpeg_quality - 20 * frac)
        if self.camera_blur is not None and (forced := self.camera_blur(day, dev.device_id, stem)) is not None:
            blur = forced
        subjects = self.subjects[dev.device_id]
        subject, identity = subjects[int(rng.integers(len(subjects)))]
        fmt = "png" if rng.random() < 0.05 else "jpg"
        sidecar_draw = rng.random()
        late = rng.random() < 0.03
        if late:  # captured late on the previous day
            start, seconds = _dt.datetime.combine(day - _dt.timedelta(days=1), _dt.time(21, 0), TZ), 3 * 3600
        else:
            start, seconds = _dt.datetime.combine(day, _dt.time(7, 0), TZ), 15 * 3600
        captured_at = start + _dt.timedelta(seconds=int(rng.integers(seconds)))
        label = "genuine" if kind == "genuine" else "attack"
        labelled = rng.random() < (0.5 if label == "attack" else 0.3)
        attack_type = None if kind == "genuine" else kind
        return _Capture(
            label=label,
            attack_type=attack_type,
            face_size=face_size,
            quality=quality,
            blur=blur,
            jpeg_quality=jpeg_quality,
            subject=subject,
            identity=identity,
            fmt=fmt,
            sidecar_draw=sidecar_draw,
            late=late,
            captured_at=captured_at,
            labelled=labelled,
        )

    def _write_image(self, day: _dt.date, dev: DeviceProfile, stem: str, kind: str, frac: float, day_stats: dict):
        """A rendered capture of this kind ("genuine", "print" or "replay"), with its sidecar
        unless the draw says none; nothing new if the image exists already."""
        summary = self.summary
        folder = self.out / day.isoformat() / dev.device_id
        folder.mkdir(parents=True, exist_ok=True)
        capture = self._plan_capture(day, dev, stem, kind, frac)
        path = folder / f"{stem}.{capture.fmt}"
        side_path = folder / f"{stem}.json" if capture.sidecar_draw >= 0.10 else None
        if path.exists():
            summary["skipped_existing"] += 1
        else:
            sample = render_sample(
                self._image_rng(day),
                label=capture.label,
                attack_type=capture.attack_type,
                size=dev.size,
                face_size=capture.face_size,
                blur=capture.blur,
                quality=capture.quality,
                device=dev,
                identity=capture.identity,
            )
            if not write_new(path, encode(sample.image, capture.fmt, capture.jpeg_quality)):
                summary["skipped_existing"] += 1
            else:
                self._count_image(dev, capture, sample, day_stats)
                if side_path is None:
                    summary["no_sidecar"] += 1
                else:
                    self._write_sidecar(side_path, dev, capture, sample)
        if side_path is not None and not side_path.exists():
            side_path = None
        self.written.append((path, side_path))

    def _count_image(self, dev: DeviceProfile, capture: _Capture, sample: Sample, day_stats: dict) -> None:
        summary = self.summary
        summary["files_written"] += 1
        summary["images"] += 1
        summary["png"] += capture.fmt == "png"
        summary["by_label"][capture.label] += 1
        day_stats[capture.label] += 1
        day_stats["files"] += 1
        if capture.attack_type:
            summary["by_attack_type"][capture.attack_type] += 1
            day_stats[capture.attack_type] += 1
        summary["by_device"][dev.device_id] += 1
        summary["small_faces"] += sample.box.min_side < 130
        summary["large_pose"] += abs(sample.pose["yaw"]) > 30 or abs(sample.pose["pitch"]) > 30
        summary["blurry"] += sample.blur > 0.5

    def _write_sidecar(self, path: Path, dev: DeviceProfile, capture: _Capture, sample: Sample) -> None:
        summary = self.summary
        side: dict = {"captured_at": capture.captured_at.isoformat()}
        summary["late_arrivals"] += capture.late
        if capture.sidecar_draw >= 0.15:
            side.update(face_fields(sample))
        else:
            summary["sidecar_without_face"] += 1
        if capture.labelled:
            side["label"] = capture.label
            if capture.attack_type:
                side["attack_type"] = capture.attack_type
            summary["labelled"] += 1
        side["subject"] = capture.subject
        side["site"] = dev.site
        if write_new(path, (json.dumps(side, indent=1) + "\n").encode()):
            summary["files_written"] += 1
            summary["sidecars"] += 1
