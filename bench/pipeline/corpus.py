"""The day's images: rendered demo captures with sidecars, written into the inbox (and kept in a
cache folder for the next run), and copies of them under other days."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np

from bench.pipeline.config import DAY_E2E
from bench.pipeline.procs import init_quiet

VARIANTS = 6  # files per rendered capture: as rendered / mirrored, each at three JPEG qualities


def _sidecar(rng, s, mirror: bool, width: int) -> dict:
    """The sidecar of one variant of the capture `s`: capture time, face box, landmarks, maybe a label."""
    x = width - s.box.x - s.box.w if mirror else s.box.x
    lms = [(width - px if mirror else px, py) for px, py in s.landmarks]
    if mirror:  # image-left eye / mouth corner first
        lms = [lms[1], lms[0], lms[2], lms[4], lms[3]]
    t = dt.datetime.combine(DAY_E2E, dt.time(7), dt.UTC) + dt.timedelta(seconds=int(rng.integers(15 * 3600)))
    side = {
        "captured_at": t.isoformat(),
        "face": {"x": round(x), "y": round(s.box.y), "w": round(s.box.w), "h": round(s.box.h)},
        "landmarks": [[round(px, 1), round(py, 1)] for px, py in lms],
    }
    if rng.random() < 0.3:
        side["label"] = s.label
        if s.attack_type:
            side["attack_type"] = s.attack_type
    return side


def _render(job):
    """One capture, rendered once, as VARIANTS files (mirrored or not, other JPEG qualities: other
    bytes, the same decoding and inference work). Runs in a pool; returns
    [(index, big, jpeg bytes, sidecar bytes, box)]."""
    from PIL import ImageOps

    from demo import render_sample

    base, seed, big, count = job
    rng = np.random.default_rng([seed, base, 0x7B])
    size = (1920, 1080) if big else (640, 480)
    attack = rng.random() < 0.12
    face = rng.uniform(110, 340) if big else rng.uniform(120, 300)  # some faces below the 130 px gate
    s = render_sample(rng, label="attack" if attack else "genuine", size=size, face_size=face)
    out = []
    for v in range(count):
        mirror = v % 2 == 1
        img = ImageOps.mirror(s.image) if mirror else s.image
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=(84, 88, 92)[v // 2 % 3])
        side = _sidecar(rng, s, mirror, size[0])
        f = side["face"]
        box = (f["x"], f["y"], f["w"], f["h"])
        out.append((base * VARIANTS + v, big, buf.getvalue(), (json.dumps(side, indent=1) + "\n").encode(), box))
    return out


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _from_cache(cache: Path, listing: Path, inbox: Path) -> list[dict]:
    files = json.loads(listing.read_text())
    for f in files:
        for suffix in (".jpg", ".json"):
            _link_or_copy((cache / f["rel"]).with_suffix(suffix), (inbox / f["rel"]).with_suffix(suffix))
        f["path"] = str(inbox / f["rel"])
    return files


def _into_cache(files: list[dict], inbox: Path, cache: Path, listing: Path) -> None:
    for f in files:
        for suffix in (".jpg", ".json"):
            dst = (cache / f["rel"]).with_suffix(suffix)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.unlink(missing_ok=True)
            _link_or_copy((inbox / f["rel"]).with_suffix(suffix), dst)
    listing.write_text(json.dumps([{k: v for k, v in f.items() if k != "path"} for f in files]))


def generate(args, inbox: Path, ctx) -> tuple[list[dict], str]:
    """Write the day's files into the inbox (from the cache when it has them); returns one dict
    per image (path, size, box) and where they came from."""
    cache = None if args.no_cache else Path(args.cache) / f"seed{args.seed}-n{args.images}-big{args.big_share:g}"
    listing = cache / f"files-v{VARIANTS}.json" if cache else None
    if listing and listing.is_file():
        return _from_cache(cache, listing, inbox), f"from the cache {cache}"
    files = render_files(args, inbox, ctx)
    if cache:
        _into_cache(files, inbox, cache, listing)
        return files, f"rendered, kept in {cache}"
    return files, "rendered"


def render_files(args, inbox: Path, ctx) -> list[dict]:
    rng = np.random.default_rng(args.seed)
    n_base = math.ceil(args.images / VARIANTS)
    big = rng.random(n_base) < args.big_share
    jobs = [(b, args.seed, bool(big[b]), min(VARIANTS, args.images - b * VARIANTS)) for b in range(n_base)]
    files: list[dict] = [None] * args.images  # type: ignore[list-item]
    t0 = time.perf_counter()
    n = 0
    with ctx.Pool(args.workers, initializer=init_quiet) as pool:
        for rendered in pool.imap_unordered(_render, jobs):
            for i, is_big, data, side, box in rendered:
                device = f"gate-{i % 2 + 1:02d}" if is_big else f"cam-{i % 4 + 1:02d}"
                rel = Path(DAY_E2E.isoformat()) / device / f"IMG_{i:06d}.jpg"
                path = inbox / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                path.with_suffix(".json").write_bytes(side)
                w, h = (1920, 1080) if is_big else (640, 480)
                files[i] = {"path": str(path), "rel": rel.as_posix(), "big": is_big, "w": w, "h": h, "box": box}
                n += 1
                if n % 300 == 0 or n == args.images:
                    print(f"  generated {n}/{args.images} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return files


def copy_day(files: list[dict], inbox: Path, day: dt.date, n: int) -> None:
    """The first n files again under another day, each with a trailer after the JPEG end marker:
    decoders ignore it, the sha256 differs, so they are new images to the job."""
    for f in files[:n]:
        src = Path(f["path"])
        dst = inbox / day.isoformat() / Path(f["rel"]).relative_to(DAY_E2E.isoformat())
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes() + f"koala-bench-{day.isoformat()}".encode())
        shutil.copyfile(src.with_suffix(".json"), dst.with_suffix(".json"))
