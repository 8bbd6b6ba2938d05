"""Planted stories in the demo data: four days on which one cause changes the figures.

``make_demo_data --stories`` writes the normal demo inbox (demo/inbox.py generate_inbox) and
plants, on the last four days (one story a day, the order drawn from the seed):

* ``blurry_camera``: one device's camera is out of focus all day (real Gaussian blur of the
  pixels, above the blur gate), topped up to MIN_IMAGES captures if it had fewer;
* ``replay_wave``: extra replay attacks at the devices of one site;
* ``small_faces``: a new device, never seen before, at a new site, sending faces of 100-120 px;
* ``retry_burst``: users retrying 3-6 times within seconds, each on one device, the attempts
  near-identical (the same scene re-rendered with a small jitter); half of the users' sidecars
  carry a subject, the others none (only the perceptual face hash can group those). The groups
  sit on several devices at different hours: the retries are the common factor, not a device.

The rest of every day is the normal distribution, byte for byte what generate_inbox writes
without stories. Everything is deterministic for a seed. The plan (days, devices, site, every
planted file with its sidecar, and the burst's groups in order) is written as JSON next to the
inbox (``<inbox>/../demo_stories.json``) and returned, so tests and the demo can check it.

Each planted slice gets at least MIN_IMAGES images on its day: a rate on fewer than 30 images
is "too few" (SPEC section 2) and could not be told apart from noise.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .inbox import days_ending, encode, face_fields, generate_inbox, write_new
from .render import ATTACK_TYPES, DEVICES, TZ, DeviceProfile, Sample, render_sample

PLAN_FILE = "demo_stories.json"
STORIES = ("blurry_camera", "replay_wave", "small_faces", "retry_burst")
MIN_DAYS = len(STORIES) + 1  # at least one normal day before the stories
MIN_IMAGES = 32  # per planted slice and day: a rate on fewer than 30 images is "too few"
# alone at their site and at their resolution, so the device is the one slice that holds the cause
BLURRY_DEVICES = ("pad-01", "gate-north")
BLUR = (0.6, 0.85)  # liveness.demo blur units (sigma / 6), above the 0.5 gate
WAVE_SITE = "mobile"  # the one site with two devices
WAVE_SHARE = 0.25  # of the day's planned images
KIOSK = DeviceProfile("kiosk-07", (1024, 768), "annex", 3.0, 0.9, 86, (100, 120), 0.0)
KIOSK_SHARE = 0.2
BURST_RETRIES = (3, 6)  # retries per user, after the first attempt
BURST_GAP_SECONDS = (2, 9)  # between two attempts
BURST_QUALITY = (0.08, 0.16)  # dark corners: the demo ensemble rejects most of these genuine users
BURST_BLUR = (0.0, 0.4)  # below the blur gate
BURST_CLEARANCE = 600  # seconds from any other capture on the device: nothing else joins a group
ATTACK_SHARE = 0.1  # attacks among the new device's captures, as on a normal day
JPEG_QUALITY = 86

_DEVICE_BY_ID = {d.device_id: d for d in (*DEVICES, KIOSK)}


def plan_path(inbox: Path) -> Path:
    return Path(inbox).parent / PLAN_FILE


def load_plan(inbox: Path) -> dict:
    """The plan written by the last generate() into this inbox."""
    return json.loads(plan_path(inbox).read_text())


def _time(rng, day: dt.date, start_h: int = 7, hours: int = 15) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(start_h), TZ) + dt.timedelta(seconds=int(rng.integers(hours * 3600)))


def _entry(
    rng,
    day: dt.date,
    dev: DeviceProfile,
    name: str,
    *,
    label: str,
    at: str | None,
    face: float,
    when: dt.datetime,
    subject: str | None,
    labelled: bool,
    **render,
) -> dict:
    sidecar: dict = {"captured_at": when.isoformat()}
    if labelled:
        sidecar["label"] = label
        if at:
            sidecar["attack_type"] = at
    if subject:
        sidecar["subject"] = subject
    sidecar["site"] = dev.site
    render = {
        "label": label,
        "attack_type": at,
        "face_size": round(face, 2),
        "seed": [int(rng.integers(2**31))],
        **render,
    }
    return {"path": f"{day.isoformat()}/{dev.device_id}/{name}.jpg", "sidecar": sidecar, "render": render}


def _subject(rng) -> str:
    return f"u{int(rng.integers(16**8)):08x}"


def _mixed_entries(rng, day, dev, prefix: str, n: int, face_range, **render) -> list[dict]:
    """n captures of the day's usual kind (mostly genuine, ATTACK_SHARE attacks), usual labelling."""
    out = []
    for k in range(n):
        attack = rng.random() < ATTACK_SHARE
        at = ATTACK_TYPES[int(rng.integers(2))] if attack else None
        out.append(
            _entry(
                rng,
                day,
                dev,
                f"{prefix}{k:04d}",
                label="attack" if attack else "genuine",
                at=at,
                face=float(rng.uniform(*face_range)),
                when=_time(rng, day),
                subject=_subject(rng),
                labelled=rng.random() < (0.5 if attack else 0.3),
                yaw=float(np.clip(rng.normal(0, 6), -15, 15)),
                **render,
            )
        )
    return out


def _wave(rng, day, seed: int, per_day: int) -> dict:
    devices = [d for d in DEVICES if d.site == WAVE_SITE]
    files = []
    for k in range(max(MIN_IMAGES, round(WAVE_SHARE * per_day))):
        dev = devices[int(rng.integers(len(devices)))]
        files.append(
            _entry(
                rng,
                day,
                dev,
                f"s{seed}_wave{k:04d}",
                label="attack",
                at="replay",
                face=float(rng.uniform(*dev.face_range)),
                when=_time(rng, day),
                subject=None,
                labelled=rng.random() < 0.5,
            )
        )
    return {"day": day.isoformat(), "site": WAVE_SITE, "devices": [d.device_id for d in devices], "files": files}


def _kiosk(rng, day, seed: int, per_day: int) -> dict:
    n = max(MIN_IMAGES, round(KIOSK_SHARE * per_day))
    # the face box's min side comes out 0-3 px above the rendered face size for frontal faces
    files = _mixed_entries(rng, day, KIOSK, f"s{seed}_kiosk", n, (100.0, 116.0))
    return {
        "day": day.isoformat(),
        "device": KIOSK.device_id,
        "site": KIOSK.site,
        "face_range": list(KIOSK.face_range),
        "files": files,
    }


def _burst(rng, day, seed: int) -> dict:
    groups: list[dict] = []
    while sum(len(g["files"]) - 1 for g in groups) < MIN_IMAGES:
        g = len(groups)
        dev = DEVICES[g % len(DEVICES)]
        subject = _subject(rng) if g % 2 == 0 else None
        size = 1 + int(rng.integers(BURST_RETRIES[0], BURST_RETRIES[1] + 1))
        labelled = rng.random() < 0.5
        face = float(rng.uniform(max(140, dev.face_range[0]), min(240, dev.face_range[1])))
        start = _time(rng, day, 8 + g, 1)  # one user an hour: no hour of the day holds the story
        identity, scene = int(rng.integers(2**31)), [int(rng.integers(2**31))]
        # pose, blur and light as varied as other captures': only the retrying is common to the users
        yaw, pitch = float(np.clip(rng.normal(0, 13), -28, 28)), float(np.clip(rng.normal(0, 8), -28, 28))
        blur, quality = float(rng.uniform(*BURST_BLUR)), float(rng.uniform(*BURST_QUALITY))
        files, when = [], start
        for a in range(size):
            e = _entry(
                rng,
                day,
                dev,
                f"s{seed}_burst{g:02d}{a}",
                label="genuine",
                at=None,
                face=face,
                when=when,
                subject=subject,
                labelled=labelled,
                identity=identity,
                quality=quality,
                yaw=yaw,
                pitch=pitch,
                blur=blur,
                jitter=a > 0,
            )
            e["render"]["seed"] = scene  # the same scene each attempt: only the jitter differs
            files.append(e)
            when += dt.timedelta(seconds=int(rng.integers(BURST_GAP_SECONDS[0], BURST_GAP_SECONDS[1] + 1)))
        groups.append({"device": dev.device_id, "subject": subject, "files": files})
    return {"day": day.isoformat(), "devices": sorted({g["device"] for g in groups}), "groups": groups}


def plan_stories(days: list[dt.date], *, per_day: int, seed: int) -> dict:
    """The stories' days, devices, site and planted files (before the burst's times are moved
    clear of the normal captures, see generate). Pure: a function of its arguments."""
    if len(days) < MIN_DAYS:
        raise ValueError(f"stories need at least {MIN_DAYS} days (one normal day before four story days)")
    rng = np.random.default_rng([seed, 0x5707])
    story_days = [days[-len(STORIES) + int(i)] for i in rng.permutation(len(STORIES))]
    by_story = dict(zip(STORIES, story_days, strict=True))
    blurry_dev = _DEVICE_BY_ID[BLURRY_DEVICES[int(rng.integers(len(BLURRY_DEVICES)))]]
    return {
        "seed": seed,
        "per_day": per_day,
        "days": [d.isoformat() for d in days],
        "stories": {
            "blurry_camera": {
                "day": by_story["blurry_camera"].isoformat(),
                "device": blurry_dev.device_id,
                "site": blurry_dev.site,
                "blur": list(BLUR),
                "images": [],
                "files": [],
            },
            "replay_wave": _wave(rng, by_story["replay_wave"], seed, per_day),
            "small_faces": _kiosk(rng, by_story["small_faces"], seed, per_day),
            "retry_burst": _burst(rng, by_story["retry_burst"], seed),
        },
    }


def camera_blur(plan: dict) -> Callable[[dt.date, str, str], float | None]:
    """The blurry camera's blur for generate_inbox's images of its device and day, else None."""
    story = plan["stories"]["blurry_camera"]
    day, device, seed = dt.date.fromisoformat(story["day"]), story["device"], plan["seed"]

    def blur(d: dt.date, device_id: str, stem: str) -> float | None:
        if d != day or device_id != device:
            return None
        return float(np.random.default_rng([seed, zlib.crc32(stem.encode())]).uniform(*BLUR))

    return blur


def _blurry_images(out: Path, plan: dict, summary: dict) -> None:
    """List the blurry device's rendered images of the day (not its broken files or copies of
    other files), and top them up to MIN_IMAGES captures with the same blurry camera."""
    story = plan["stories"]["blurry_camera"]
    folder = out / story["day"] / story["device"]
    not_rendered = set(summary["broken_files"]) | {dst for _, dst in summary["duplicates"]}
    images = sorted(
        p.relative_to(out).as_posix()
        for p in folder.glob("*")
        if p.suffix in (".jpg", ".png") and p.relative_to(out).as_posix() not in not_rendered
    )
    rng = np.random.default_rng([plan["seed"], 0xB1])
    dev = _DEVICE_BY_ID[story["device"]]
    extra = _mixed_entries(
        rng,
        dt.date.fromisoformat(story["day"]),
        dev,
        f"s{plan['seed']}_blurry",
        max(0, MIN_IMAGES - len(images)),
        dev.face_range,
    )
    for e in extra:
        e["render"]["blur"] = round(float(rng.uniform(*BLUR)), 4)
    story["files"] = extra
    story["images"] = sorted(images + [e["path"] for e in extra if e["path"] not in images])


def _captures(folder: Path) -> list[dt.datetime]:
    times = []
    for side in folder.glob("*.json"):
        try:
            times.append(dt.datetime.fromisoformat(json.loads(side.read_text())["captured_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a broken file's sidecar or one without a time: not a capture to keep clear of
    return times


def _clear_burst_times(out: Path, story: dict) -> None:
    """Move each user's attempts (whole, keeping their gaps) until no other capture on the
    device is within BURST_CLEARANCE: another image between two attempts would split them."""
    clear = dt.timedelta(seconds=BURST_CLEARANCE)
    taken: dict[str, list[dt.datetime]] = {}
    for g in story["groups"]:
        busy = taken.setdefault(g["device"], _captures(out / story["day"] / g["device"]))
        times = [dt.datetime.fromisoformat(e["sidecar"]["captured_at"]) for e in g["files"]]
        shift = dt.timedelta(0)
        while any(times[0] + shift - clear <= t <= times[-1] + shift + clear for t in busy):
            shift += clear
        for e, t in zip(g["files"], times, strict=True):
            e["sidecar"]["captured_at"] = (t + shift).isoformat()
        busy += [t + shift for t in times]


def planted_files(plan: dict) -> list[dict]:
    """Every planted file of the plan (path, sidecar fields, render parameters)."""
    st = plan["stories"]
    return [
        *st["blurry_camera"]["files"],
        *st["replay_wave"]["files"],
        *st["small_faces"]["files"],
        *(e for g in st["retry_burst"]["groups"] for e in g["files"]),
    ]


def _render(entry: dict) -> Sample:
    r = entry["render"]
    dev = _DEVICE_BY_ID[entry["path"].split("/")[1]]
    face, yaw, pitch = r["face_size"], r.get("yaw"), r.get("pitch")
    if r.get("jitter"):  # the same person a few seconds later: a little nearer, turned a little
        j = np.random.default_rng([*r["seed"], zlib.crc32(entry["path"].encode())])
        face *= 1 + j.uniform(-0.02, 0.02)
        yaw, pitch = yaw + j.uniform(-1.5, 1.5), pitch + j.uniform(-1.0, 1.0)
    return render_sample(
        np.random.default_rng(r["seed"]),
        label=r["label"],
        attack_type=r["attack_type"],
        size=dev.size,
        face_size=face,
        yaw=yaw,
        pitch=pitch,
        blur=r.get("blur"),
        quality=r.get("quality", 1.0),
        device=dev,
        identity=r.get("identity"),
    )


def _write(out: Path, entry: dict) -> int:
    """Render and write one planted image and its sidecar; 0 files if it exists already."""
    path = out / entry["path"]
    if path.exists():
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    s = _render(entry)
    fields = entry["sidecar"]
    side = {"captured_at": fields["captured_at"], **face_fields(s)}
    side.update((k, v) for k, v in fields.items() if k != "captured_at")
    n = write_new(path, encode(s.image, "jpg", JPEG_QUALITY))
    return n + write_new(path.with_suffix(".json"), (json.dumps(side, indent=1) + "\n").encode())


def generate(
    out: Path,
    *,
    days: int,
    per_day: int,
    seed: int = 0,
    end_day: dt.date | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict, dict]:
    """The normal demo inbox plus the four stories; writes the plan next to the inbox.
    Returns (generate_inbox's summary with ``story_files`` added, the plan)."""
    out = Path(out)
    plan = plan_stories(days_ending(end_day, days), per_day=per_day, seed=seed)
    summary = generate_inbox(
        out, days=days, per_day=per_day, seed=seed, end_day=end_day, progress=progress, camera_blur=camera_blur(plan)
    )
    _blurry_images(out, plan, summary)
    _clear_burst_times(out, plan["stories"]["retry_burst"])
    entries = planted_files(plan)
    written = 0
    for k, entry in enumerate(entries):
        written += _write(out, entry)
        if progress:
            progress(summary["planned"] + k + 1, summary["planned"] + len(entries))
    summary["story_files"] = written
    summary["files_written"] += written
    plan_path(out).write_text(json.dumps(plan, indent=1) + "\n")
    return summary, plan
