"""What-ifs on a sample of the day's files, in one process: the full-size path against the draft
path (per-stage CPU cost, score and blur differences), OpenCV against Pillow, and row-by-row
against bulk SQL."""

from __future__ import annotations

import io
import json
import math
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bench.pipeline.config import DAY_PROFILE
from liveness.pipeline import THUMB_SIDE, thumbnail


def affine_crop(img, recipe, box, size) -> np.ndarray:
    """The `opencv_linear` crop as it was made before the crops used OpenCV: OpenCV's INTER_LINEAR
    taps sampled by Pillow's affine transform, within one grey level of cv2.resize."""
    from PIL import Image as PILImage

    from liveness.crop import source_rect

    def resize(w, h):
        x0, y0, x1, y1 = rect
        rw, rh, src = x1 - x0, y1 - y0, img
        if x0 < 0 or y0 < 0 or x1 > img.width or y1 > img.height or rw < w or rh < h:
            src, x0, y0 = img.crop(rect), 0, 0
        affine = (rw / w, 0, x0, 0, rh / h, y0)
        return src.transform((w, h), PILImage.Transform.AFFINE, affine, PILImage.Resampling.BILINEAR)

    (h, w), rect = size, source_rect(img, recipe, box)
    if recipe.resize == "stretch":
        return np.asarray(resize(w, h))
    rw, rh = rect[2] - rect[0], rect[3] - rect[1]
    f = min(w / rw, h / rh)
    nw, nh = max(1, round(rw * f)), max(1, round(rh * f))
    out = PILImage.new("RGB", (w, h))
    out.paste(resize(nw, nh), ((w - nw) // 2, (h - nh) // 2))
    return np.asarray(out)


def crops_as_pipeline(pipeline, img, box, scale: float):
    """The array the OpenCV crops read and every model's crop, as `Pipeline.prepare` makes them."""
    from liveness.crop import crop_face

    pixels = pipeline.crop_pixels(img, box, scale)
    crops = []
    for m in pipeline.ensemble.models:
        c = m.manifest.crop
        crops.append(
            crop_face(pixels if c.interpolation == "opencv_linear" else img, c, box, m.manifest.size, scale=scale)
        )
    return pixels, crops


def tally(counts: dict, key: str, identical: bool) -> None:
    counts[key] = [counts.get(key, [0, 0])[0] + bool(identical), counts.get(key, [0, 0])[1] + 1]


def opencv_whatifs(timed, size: str, data: bytes, img, models, box, same: dict) -> None:
    """OpenCV against Pillow on one full-size image: the decode (cv2.imdecode, not used: see
    liveness/decode.py), the thumbnail's box reduction and the crops as they were made before;
    `same` counts, per comparison, the images whose OpenCV result is identical and all images."""
    import cv2

    with timed(size, "decode full, cv2.imdecode (not used)"):
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
    pixels = np.asarray(img)
    tally(same, "decode cv2.imdecode", arr is not None and np.array_equal(arr, pixels))
    k = math.ceil(max(img.size) / THUMB_SIDE)
    with timed(size, "thumbnail, Pillow reduce alone"):
        reduced = img.reduce(k)
    with timed(size, "thumbnail, cv2 INTER_AREA of the array"):
        area = cv2.resize(pixels, (img.width // k, img.height // k), interpolation=cv2.INTER_AREA)
    tally(same, f"thumbnail cv2 INTER_AREA, factor {k}", np.array_equal(area, np.asarray(reduced)))
    with timed(size, "crops: np.asarray(whole image)"):
        np.asarray(img)
    with timed(size, "crops from full, Pillow affine (before)"):
        for m in models:
            affine_crop(img, m.manifest.crop, box, m.manifest.size)


class _Sample:
    """What the what-ifs collect over the sample: CPU times per (size, step), each path's crops and
    blur, the draft reductions and the OpenCV comparisons."""

    def __init__(self, models):
        self.t: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.crops = {"full": {m.name: [] for m in models}, "draft": {m.name: [] for m in models}}
        self.blur = {"full": [], "draft": []}
        self.reductions = defaultdict(int)
        self.same: dict[str, list[int]] = {}  # OpenCV results identical to Pillow's: [images, of all]

    @contextmanager
    def timed(self, size, name):  # CPU time of this process: steadier than wall time on a busy machine
        t0 = time.process_time()
        yield
        self.t[(size, name)].append(time.process_time() - t0)


def _one_image(s: _Sample, f: dict, pipeline, models) -> None:
    """Both paths, and the what-ifs of the full-size one, on the file `f`."""
    from PIL import Image as PILImage

    from liveness.boxes import Box
    from liveness.decode import decode_image
    from liveness.quality import Gates, assess

    timed = s.timed
    size = "1920x1080" if f["big"] else "640x480"
    data = Path(f["path"]).read_bytes()
    side = json.loads(Path(f["path"]).with_suffix(".json").read_bytes())
    lms = [tuple(p) for p in side["landmarks"]]
    box = Box(*f["box"])
    with timed(size, "pillow open+load only"):
        PILImage.open(io.BytesIO(data)).load()
    with timed(size, "decode full"):
        full = decode_image(data)
    with timed(size, "decode as Pipeline (its draft rule)"):
        decode_image(data, min_side=f["min_side_pipeline"])
    with timed(size, "decode draft (crops >= 1x input)"):
        draft = decode_image(data, min_side=f["min_side"])
    r = draft.reduction
    s.reductions[f"{size} 1/{r}"] += 1
    for mode, img, sc in (("full", full.image, 1), ("draft", draft.image, r)):
        with timed(size, f"crops from {mode}"):
            pixels, cs = crops_as_pipeline(pipeline, img, box, sc)
        with timed(size, f"thumbnail from {mode} (box reduction, as Pipeline)"):
            th = thumbnail(img, THUMB_SIDE, pixels)
        if mode == "full":
            with timed(size, "thumbnail from full, bilinear resize (before)"):
                f_ = THUMB_SIDE / max(img.size)
                img.resize(
                    (round(img.width * f_), round(img.height * f_)), PILImage.Resampling.BILINEAR, reducing_gap=2.0
                )
            opencv_whatifs(timed, size, data, img, models, box, s.same)
        for m, c in zip(models, cs, strict=True):
            s.crops[mode][m.name].append(c)
        with timed(size, f"quality from {mode}"):
            q = assess(img, box, landmarks=lms, gates=Gates(), scale=sc)
        s.blur[mode].append(q.blur)
    with timed(size, "thumbnail JPEG encode"):
        th.save(io.BytesIO(), "JPEG", quality=85)


def _differences(s: _Sample, ens) -> dict:
    """Scores and blur of the full-size path against the draft path."""
    scores = {}
    for mode in ("full", "draft"):
        per_model = {m.name: m.live_probability(m.probabilities(np.stack(s.crops[mode][m.name]))) for m in ens.models}
        scores[mode] = ens.combine(per_model)
    diff = np.abs(scores["full"] - scores["draft"])
    flips = int(np.sum((scores["full"] > ens.threshold) != (scores["draft"] > ens.threshold)))
    dblur = np.abs(np.asarray(s.blur["full"], float) - np.asarray(s.blur["draft"], float))
    return {
        "score_abs_diff_max": round(float(diff.max()), 4),
        "score_abs_diff_mean": round(float(diff.mean()), 4),
        "decision_flips": flips,
        "blur_abs_diff_max": round(float(dblur.max()), 4),
    }


def whatif(args, files: list[dict]) -> dict:
    from liveness.pipeline import Pipeline
    from monitor import loading

    ens = loading.load_ensemble(loading.active_ensemble())  # 1 thread (set by the profiled run)
    pipeline = Pipeline(ens)
    sample = [f for f in files if not f["big"]][: args.whatif_images] + [f for f in files if f["big"]][
        : args.whatif_images
    ]
    s = _Sample(ens.models)
    for f in sample:
        _one_image(s, f, pipeline, ens.models)
    differences = _differences(s, ens)
    per_size = defaultdict(dict)
    for (size, name), v in s.t.items():
        per_size[size][name] = round(1000 * statistics.median(v), 2)
    big_share = args.big_share
    mixed = {
        name: round(
            (1 - big_share) * per_size["640x480"].get(name, 0) + big_share * per_size["1920x1080"].get(name, 0), 2
        )
        for name in per_size["640x480"]
    }
    return {
        "sample": len(sample),
        "ms_median": dict(per_size),
        "ms_mixed": mixed,
        "reductions": dict(s.reductions),
        **differences,
        "opencv_identical": {k: f"{v[0]}/{v[1]}" for k, v in sorted(s.same.items())},
    }


# ------------------------------------------------------------------------------------------------
# SQL


def _clones(base: list) -> list:
    """Unsaved copies of the rows `base`, each with a sha256 of its own."""
    import uuid

    from monitor.models import Image

    out = []
    for im in base:
        c = Image(**{f.attname: getattr(im, f.attname) for f in Image._meta.concrete_fields if not f.primary_key})
        c.sha256 = uuid.uuid4().hex * 2
        out.append(c)
    return out


def _ms_per_row(fn, base: list, repeat: int) -> float:
    """Median ms per row of `fn(rows)` on fresh copies of `base`, rolled back each time."""
    from django.db import transaction

    best = []
    for _ in range(repeat):
        rows = _clones(base)
        with transaction.atomic():
            t0 = time.perf_counter()
            fn(rows)
            best.append(time.perf_counter() - t0)
            transaction.set_rollback(True)
    return round(1000 * statistics.median(best) / len(base), 3)


def db_whatif(n: int = 64, repeat: int = 3) -> dict:
    """Row-by-row (what score_batch does now) vs bulk statements, on copies of n stored rows, rolled back."""
    from django.db import transaction

    from monitor.models import Image, InboxFile

    base = list(Image.objects.filter(day=DAY_PROFILE).order_by("id")[:n])
    inbox = list(InboxFile.objects.filter(day=DAY_PROFILE).order_by("id")[:n])
    if not base:
        return {}

    def one_by_one(rows):
        for c in rows:
            with transaction.atomic():  # runs._store: a savepoint per row
                c.save(force_insert=True)

    def per_file_updates(_rows):
        for f in inbox:  # score_batch: exists() + update() per file
            q = InboxFile.objects.filter(pk=f.pk)
            q.exists()
            q.update(reason="")

    def bulk_updates(_rows):
        InboxFile.objects.filter(pk__in=[f.pk for f in inbox]).update(reason="")

    return {
        "rows": len(base),
        "insert_one_by_one_ms_per_row": _ms_per_row(one_by_one, base, repeat),
        "insert_bulk_create_ms_per_row": _ms_per_row(lambda rows: Image.objects.bulk_create(rows), base, repeat),
        "inbox_update_per_file_ms_per_row": _ms_per_row(per_file_updates, base, repeat),
        "inbox_update_bulk_ms_per_row": _ms_per_row(bulk_updates, base, repeat),
    }
