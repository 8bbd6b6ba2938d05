"""The demo inbox: days of captures from the demo devices written as INBOX/<day>/<device>/ files
with sidecars (SPEC section 3), with the odd cases a real inbox has (late files, copies, broken
files, small and turned faces, blur)."""

from __future__ import annotations

import datetime as _dt
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from .render import (
    ATTACK_TYPES,
    DEVICES,
    TZ,
    Sample,
    background,
    random_blur,
    random_face_size,
    render_sample,
    uniform,
)


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
    total = sum(counts)
    weights = np.array([d.weight for d in DEVICES])
    weights /= weights.sum()
    subjects = {
        d.device_id: [
            (f"u{int(rng.integers(16**8)):08x}", int(rng.integers(2**31))) for _ in range(int(rng.integers(6, 16)))
        ]
        for d in DEVICES
    }

    summary: dict = {
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
    written: list[tuple[Path, Path | None]] = []  # (image, sidecar) of good images, for duplicates
    done = 0
    counter = 0

    def rel(p: Path) -> str:
        return p.relative_to(out).as_posix()

    for di, day in enumerate(day_list):
        n = counts[di]
        n_broken = max(1, int(round(0.01 * n)))
        n_dup = max(1, int(round(0.01 * n)))
        n_img = n - n_broken - n_dup
        n_att = min(n_img // 2, max(2, int(round(n_img * uniform(rng, 0.05, 0.15)))))
        kinds = (
            ["print", "replay"]
            + [ATTACK_TYPES[int(rng.integers(2))] for _ in range(n_att - 2)]
            + ["genuine"] * (n_img - n_att)
            + ["broken"] * n_broken
            + ["dup"] * n_dup
        )
        kinds = [kinds[i] for i in rng.permutation(len(kinds))]
        frac = di / max(days - 1, 1)
        day_stats = summary["by_day"].setdefault(
            day.isoformat(), {"files": 0, "genuine": 0, "attack": 0, "print": 0, "replay": 0}
        )
        for kind in kinds:
            counter += 1
            dev = DEVICES[int(rng.choice(len(DEVICES), p=weights))]
            ddir = out / day.isoformat() / dev.device_id
            stem = f"s{seed}_{counter:06d}"
            if kind == "dup" and not written:
                kind = "genuine"
            if kind == "dup":
                src_img, src_side = written[int(rng.integers(len(written)))]
                ddir = out / day.isoformat() / src_img.parent.name
                ddir.mkdir(parents=True, exist_ok=True)
                dst = ddir / (stem + src_img.suffix)
                if write_new(dst, src_img.read_bytes()):
                    summary["files_written"] += 1
                    summary["duplicates"].append([rel(src_img), rel(dst)])
                    day_stats["files"] += 1
                else:
                    summary["skipped_existing"] += 1
                copy_side = rng.random() < 0.5
                if src_side is not None and copy_side:
                    if write_new(ddir / (stem + ".json"), src_side.read_bytes()):
                        summary["files_written"] += 1
                        summary["sidecars"] += 1
                done += 1
                if progress:
                    progress(done, total)
                continue
            ddir.mkdir(parents=True, exist_ok=True)
            irng = np.random.default_rng([seed, day.toordinal(), counter])
            if kind == "broken":
                how = ["truncated", "empty", "text"][int(rng.integers(3))]
                if how == "truncated":
                    im = background(irng, *dev.size)
                    data = encode(im, "jpg", dev.jpeg_quality)
                    data = data[: int(len(data) * uniform(rng, 0.3, 0.7))]
                elif how == "empty":
                    data = b""
                else:
                    data = b"<html><body>502 Bad Gateway: upload failed</body></html>\n"
                path = ddir / (stem + ".jpg")
                if write_new(path, data):
                    summary["files_written"] += 1
                    summary["broken"] += 1
                    summary["broken_files"].append(rel(path))
                    day_stats["files"] += 1
                else:
                    summary["skipped_existing"] += 1
                if rng.random() < 0.5:
                    side = {
                        "captured_at": _dt.datetime.combine(
                            day, _dt.time(int(rng.integers(7, 22)), int(rng.integers(60)), int(rng.integers(60))), TZ
                        ).isoformat(),
                        "site": dev.site,
                    }
                    if write_new(ddir / (stem + ".json"), json.dumps(side).encode()):
                        summary["files_written"] += 1
                        summary["sidecars"] += 1
                done += 1
                if progress:
                    progress(done, total)
                continue

            label = "genuine" if kind == "genuine" else "attack"
            at = None if kind == "genuine" else kind
            W, H = dev.size
            F = random_face_size(rng, W, H, *dev.face_range, small_share=0.15)
            quality = 1.0 if rng.random() < 0.9 else uniform(rng, 0.6, 1.0)
            blur = random_blur(rng)
            jq = dev.jpeg_quality
            if dev.degrades:
                quality = min(quality, 1.0 - 0.5 * frac)
                blur = min(1.0, blur + 0.4 * frac * uniform(rng, 0.5, 1.0))
                jq = int(jq - 20 * frac)
            if camera_blur is not None and (forced := camera_blur(day, dev.device_id, stem)) is not None:
                blur = forced
            subj, ident = subjects[dev.device_id][int(rng.integers(len(subjects[dev.device_id])))]
            # every random decision is made before looking at the disk, so a rerun takes the same path
            fmt = "png" if rng.random() < 0.05 else "jpg"
            r_side = rng.random()
            late = rng.random() < 0.03
            if late:
                t = _dt.datetime.combine(day - _dt.timedelta(days=1), _dt.time(21, 0), TZ) + _dt.timedelta(
                    seconds=int(rng.integers(3 * 3600))
                )
            else:
                t = _dt.datetime.combine(day, _dt.time(7, 0), TZ) + _dt.timedelta(seconds=int(rng.integers(15 * 3600)))
            labelled = rng.random() < (0.5 if label == "attack" else 0.3)
            path = ddir / f"{stem}.{fmt}"
            side_path = ddir / f"{stem}.json" if r_side >= 0.10 else None
            if path.exists():
                summary["skipped_existing"] += 1
            else:
                s = render_sample(
                    irng,
                    label=label,
                    attack_type=at,
                    size=dev.size,
                    face_size=F,
                    blur=blur,
                    quality=quality,
                    device=dev,
                    identity=ident,
                )
                if not write_new(path, encode(s.image, fmt, jq)):
                    summary["skipped_existing"] += 1
                else:
                    summary["files_written"] += 1
                    summary["images"] += 1
                    summary["png"] += fmt == "png"
                    summary["by_label"][label] += 1
                    day_stats[label] += 1
                    day_stats["files"] += 1
                    if at:
                        summary["by_attack_type"][at] += 1
                        day_stats[at] += 1
                    summary["by_device"][dev.device_id] += 1
                    summary["small_faces"] += s.box.min_side < 130
                    summary["large_pose"] += abs(s.pose["yaw"]) > 30 or abs(s.pose["pitch"]) > 30
                    summary["blurry"] += s.blur > 0.5
                    if side_path is None:
                        summary["no_sidecar"] += 1
                    else:
                        side: dict = {"captured_at": t.isoformat()}
                        summary["late_arrivals"] += late
                        if r_side >= 0.15:
                            side.update(face_fields(s))
                        else:
                            summary["sidecar_without_face"] += 1
                        if labelled:
                            side["label"] = label
                            if at:
                                side["attack_type"] = at
                            summary["labelled"] += 1
                        side["subject"] = subj
                        side["site"] = dev.site
                        if write_new(side_path, (json.dumps(side, indent=1) + "\n").encode()):
                            summary["files_written"] += 1
                            summary["sidecars"] += 1
            if side_path is not None and not side_path.exists():
                side_path = None
            written.append((path, side_path))
            done += 1
            if progress:
                progress(done, total)
    return summary
