"""Realistic Image rows for the fill: drawn a day at a time as arrays (in one fixed order, so a
seed gives the same rows), then written out row by row in the database's own formats."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from types import SimpleNamespace

import numpy as np

from bench.gallery.config import ATTACK_TYPES, CROP_SCALE, GATES, MODELS, THRESHOLD

# the columns a row is generated for, in the order of `RowMaker._row`'s tuple
GENERATED_COLUMNS = (
    "sha256",
    "path",
    "day",
    "device_id",
    "captured_at",
    "file_size",
    "format",
    "width",
    "height",
    "box_x",
    "box_y",
    "box_w",
    "box_h",
    "box_source",
    "detection_score",
    "face_size",
    "yaw",
    "pitch",
    "roll",
    "blur",
    "pose_source",
    "blur_source",
    "failed_gates",
    "scores",
    "attack_guesses",
    "crop_rects",
    "score",
    "disagreement",
    "decision",
    "category",
    "reason",
    "notes",
    "ensemble_id",
    "threshold",
    "model_versions",
    "label",
    "attack_type",
    "sidecar",
    "sorted_path",
    "has_thumbnail",
    "run_id",
    "scored_at",
)


class RowMaker:
    """Realistic Image rows, column by column, in the database's own formats."""

    def __init__(self, connection, devices, ensemble_id, runs, model_versions):
        from monitor.models import Image

        self.vendor = connection.vendor
        self.devices = devices  # [(id, name)]
        w = 1 / np.arange(1, len(devices) + 1) ** 0.8  # a few busy devices, many quiet ones
        self.device_p = w / w.sum()
        self.ensemble_id = ensemble_id
        self.runs = runs  # day -> run id
        self.versions_json = json.dumps(model_versions)
        self.generated = list(GENERATED_COLUMNS)
        # columns added to Image later get their default, the same in every row
        self.constant = {}
        for f in Image._meta.local_concrete_fields:
            if f.primary_key or f.column in self.generated:
                continue
            self.constant[f.column] = f.get_db_prep_save(f.get_default(), connection)
        self.columns = self.generated + list(self.constant)

    def _dt(self, day: dt.date, seconds) -> str | None:
        if seconds is None:
            return None
        s = int(seconds)
        us = int((seconds - s) * 1e6)
        text = f"{day.isoformat()} {s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{us:06d}"
        return text if self.vendor == "sqlite" else text + "+00"

    def _bool(self, v: bool):
        return int(v) if self.vendor == "sqlite" else v

    def day_rows(self, day: dt.date, n: int, rng: np.random.Generator, seq0: int):
        """The rows of one day, sorted as the job finds the files (device folder, then time)."""
        # the draws keep their order (files, scores, sizes and quality, then the per-row gate
        # values): the same seed gives the same rows
        d = SimpleNamespace(**_draw_files(n, rng, self.device_p), **_draw_scores(n, rng), **_draw_quality(n, rng))
        for i in range(n):
            yield self._row(day, i, seq0 + i, d, rng)

    def _row(self, day: dt.date, i: int, seq: int, d: SimpleNamespace, rng: np.random.Generator) -> tuple:
        """Row `i` of the day's draws `d`, the image number `seq` in the database."""
        device_id, device_name = self.devices[d.dev[i]]
        name = f"IMG_{seq:07d}.{'png' if d.fmt_png[i] else 'jpg'}"
        category, gates, (fs, y, p_, b) = _category(i, d, rng)
        has_face = bool(d.faced[i])
        scored = has_face
        box, crop_json = _box_and_crops(i, d, fs) if has_face else ((None, None, None, None), "{}")
        label = ("attack" if bool(d.is_attack[i]) else "genuine") if d.labelled[i] else ""
        attack_type = ATTACK_TYPES[d.atype[i]] if label == "attack" else ""
        scores_json, guesses_json, sc, dis, decision = _scores(i, d) if scored else ("{}", "{}", None, None, "")
        readable = category != "unreadable"
        return (
            hashlib.sha256(f"bench-{seq}".encode()).hexdigest(),
            f"{day.isoformat()}/{device_name}/{name}",
            day.isoformat(),
            device_id,
            None if d.no_exif[i] or not readable else self._dt(day, float(d.t[i])),
            int(d.file_size[i]),
            "" if not readable else ("PNG" if d.fmt_png[i] else "JPEG"),
            None if not readable else int(d.width[i]),
            None if not readable else int(d.height[i]),
            *box,
            *_face_columns(i, d, has_face, fs, y, p_, b),
            json.dumps(gates),
            scores_json,
            guesses_json,
            crop_json,
            sc,
            dis,
            decision,
            category,
            _reason(category, i),
            "[]",
            self.ensemble_id,
            THRESHOLD if scored else None,
            self.versions_json if scored else "{}",
            label,
            attack_type,
            _sidecar(i, d, label, attack_type, box),
            f"{day.isoformat()}/{category}/{device_name}__{name}",
            self._bool(readable),
            self.runs[day],
            self._dt(day + dt.timedelta(days=1), 2.5 * 3600 + (seq % 3_000_000) / 100),
            *self.constant.values(),
        )


# ------------------------------------------------------------------------------------------------
# a day's draws, as arrays


def _draw_files(n: int, rng: np.random.Generator, device_p) -> dict:
    """Device and capture time (sorted by both), and the category of each image."""
    dev = rng.choice(len(device_p), n, p=device_p)
    t = np.clip(rng.normal(13.5 * 3600, 3.5 * 3600, n), 0, 86399.999)
    order = np.lexsort((t, dev))
    dev, t = dev[order], t[order]
    no_exif = rng.random(n) < 0.03

    u = rng.random(n)  # category: unreadable 0.4%, no face 12%, low quality 25%, else by score
    unreadable = u < 0.004
    no_face = (u >= 0.004) & (u < 0.124)
    low_q = (u >= 0.124) & (u < 0.374)
    faced = ~(unreadable | no_face)
    return {
        "dev": dev,
        "t": t,
        "no_exif": no_exif,
        "unreadable": unreadable,
        "no_face": no_face,
        "low_q": low_q,
        "faced": faced,
    }


def _draw_scores(n: int, rng: np.random.Generator) -> dict:
    """The ground truth and the per-model scores, the ensemble's mean and their disagreement."""
    is_attack = rng.random(n) < 0.115  # ground truth, shows in labels and in the scores
    base = np.where(is_attack, rng.beta(1.5, 6.0, n), rng.beta(8.0, 1.6, n))
    logit = np.log(np.clip(base, 1e-4, 1 - 1e-4) / np.clip(1 - base, 1e-4, 1))
    sd = np.where(rng.random(n) < 0.07, 1.8, 0.35)  # most models agree, some images split them
    per_model = 1 / (
        1 + np.exp(-(logit[:, None] + rng.normal(0, 1, (n, 3)) * sd[:, None] + np.array([0.1, -0.05, 0.0])))
    )
    score = per_model.mean(axis=1)
    disagreement = per_model.max(axis=1) - per_model.min(axis=1)
    live = score > THRESHOLD
    return {"is_attack": is_attack, "per_model": per_model, "score": score, "disagreement": disagreement, "live": live}


def _draw_quality(n: int, rng: np.random.Generator) -> dict:
    """Image sizes, the quality values and failed gates, the face's place, labels and formats."""
    big_img = rng.random(n) < 0.3
    width = np.where(big_img, 1920, 640)
    height = np.where(big_img, 1080, 480)
    file_size = np.where(big_img, rng.lognormal(np.log(420e3), 0.3, n), rng.lognormal(np.log(95e3), 0.3, n))

    # quality: failing values only for the failed gates of low-quality images
    gate_pick = rng.choice(4, n, p=[0.45, 0.17, 0.08, 0.30])  # face_size, yaw, pitch, blur
    second = np.where(rng.random(n) < 0.2, rng.integers(0, 4, n), -1)
    face_size = np.where(big_img, rng.lognormal(np.log(420), 0.25, n), rng.lognormal(np.log(220), 0.2, n))
    face_size = np.maximum(face_size, 131)
    return {
        "width": width,
        "height": height,
        "file_size": file_size,
        "gate_pick": gate_pick,
        "second": second,
        "face_size": face_size,
        "yaw": np.clip(rng.normal(0, 9, n), -29.5, 29.5),
        "pitch": np.clip(rng.normal(0, 7, n), -29.5, 29.5),
        "roll": rng.normal(0, 6, n),
        "blur": rng.beta(2, 7, n) * 0.5,
        "det": 0.85 + 0.15 * rng.beta(6, 1.5, n),
        "cx": rng.uniform(0.35, 0.65, n),
        "cy": rng.uniform(0.35, 0.6, n),
        "from_sidecar_box": rng.random(n) < 0.15,
        "labelled": rng.random(n) < 0.30,
        "atype": rng.integers(0, len(ATTACK_TYPES), n),
        "fmt_png": rng.random(n) < 0.04,
    }


# ------------------------------------------------------------------------------------------------
# one row's columns


def _category(i: int, d: SimpleNamespace, rng: np.random.Generator):
    """(category, failed gates, (face size, yaw, pitch, blur)): failing values for the failed gates."""
    gates: list[str] = []
    fs, y, p_, b = float(d.face_size[i]), float(d.yaw[i]), float(d.pitch[i]), float(d.blur[i])
    if d.unreadable[i]:
        return "unreadable", gates, (fs, y, p_, b)
    if d.no_face[i]:
        return "no_face", gates, (fs, y, p_, b)
    if not d.low_q[i]:
        return ("live" if d.live[i] else "attack"), gates, (fs, y, p_, b)
    for g in {int(d.gate_pick[i]), int(d.second[i])} - {-1}:
        gates.append(GATES[g])
    gates.sort(key=GATES.index)
    if "face_size" in gates:
        fs = float(rng.uniform(50, 129.9))
    if "yaw" in gates:
        y = float(np.sign(y or 1) * rng.uniform(30.5, 70))
    if "pitch" in gates:
        p_ = float(np.sign(p_ or 1) * rng.uniform(30.5, 55))
    if "blur" in gates:
        b = float(rng.uniform(0.51, 0.95))
    return "low_quality", gates, (fs, y, p_, b)


def _box_and_crops(i: int, d: SimpleNamespace, fs: float):
    """The face box (x, y, w, h) of a face `fs` px wide, and each model's crop rectangle as JSON."""
    bw, bh = fs, fs * 1.25
    bx = max(0.0, min(d.width[i] - bw, d.cx[i] * d.width[i] - bw / 2))
    by = max(0.0, min(d.height[i] - bh, d.cy[i] * d.height[i] - bh / 2))
    box = (round(bx, 1), round(by, 1), round(bw, 1), round(bh, 1))
    crops = {}
    for m in MODELS:
        s = CROP_SCALE[m]
        x0, y0 = max(0.0, bx + bw / 2 - bw * s / 2), max(0.0, by + bh / 2 - bh * s / 2)
        x1, y1 = min(d.width[i], bx + bw / 2 + bw * s / 2), min(d.height[i], by + bh / 2 + bh * s / 2)
        crops[m] = f'"{m}": [{x0:.1f}, {y0:.1f}, {x1:.1f}, {y1:.1f}]'
    return box, "{" + ", ".join(crops.values()) + "}"


def _scores(i: int, d: SimpleNamespace):
    """(scores JSON, attack guesses JSON, score, disagreement, decision) of a scored image."""
    ms = d.per_model[i]
    scores_json = "{" + ", ".join(f'"{m}": {v:.6f}' for m, v in zip(MODELS, ms, strict=True)) + "}"
    guesses = [
        f'"{m}": "{ATTACK_TYPES[(d.atype[i] + k) % 4]}"'
        for k, (m, v) in enumerate(zip(MODELS, ms, strict=True))
        if v <= 0.5
    ]
    guesses_json = "{" + ", ".join(guesses) + "}"
    sc, dis = round(float(d.score[i]), 6), round(float(d.disagreement[i]), 6)
    return scores_json, guesses_json, sc, dis, "live" if d.live[i] else "attack"


def _face_columns(i: int, d: SimpleNamespace, has_face: bool, fs: float, y: float, p_: float, b: float) -> tuple:
    """box_source .. blur_source: where the box came from, the detector's score, the quality values."""
    if not has_face:
        return ("", None, None, None, None, None, None, "", "")
    from_sidecar = d.from_sidecar_box[i] and d.labelled[i]
    return (
        "sidecar" if from_sidecar else "detector",
        round(float(d.det[i]), 4) if not from_sidecar else None,
        round(fs, 1),
        round(y, 2),
        round(p_, 2),
        round(float(d.roll[i]), 2),
        round(b, 3),
        "landmarks",
        "measured",
    )


def _sidecar(i: int, d: SimpleNamespace, label: str, attack_type: str, box) -> str | None:
    """The sidecar JSON of a labelled image (some with the face box), else None."""
    if not d.labelled[i]:
        return None
    side = {"label": label}
    if attack_type:
        side["attack_type"] = attack_type
    if d.from_sidecar_box[i] and box[0] is not None:
        side["face"] = {"x": round(box[0]), "y": round(box[1]), "w": round(box[2]), "h": round(box[3])}
    return json.dumps(side)


def _reason(category: str, i: int) -> str:
    if category == "unreadable":
        return "truncated file: image file is truncated" if i % 3 else "corrupt image data: cannot identify image file"
    if category == "no_face":
        return "no face found"
    return ""
