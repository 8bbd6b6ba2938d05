"""The threshold table's input (SPEC section 5): the user's arguments, checked, and the labelled
scores to build the table from.

- `parse_fprs`, `parse_threshold`, `parse_day`: arguments as the page and the command take them.
- `database_input(date_from, date_to, ensemble=None, model=None)`: the table input from the
  stored images of a date range: labelled (genuine/attack) images scored by the ensemble, with its
  stored ensemble score, or with one member model's score (`Image.scores[model]`). The active
  threshold is the ensemble's.
- `file_input(file_or_text, model=None)`: the same from a score file (`liveness.scorefile`); no
  active threshold.

Wrong input (unknown ensemble or model, bad dates, bad target FPRs) raises `TableError` with a
message for the user; a malformed score file raises `liveness.scorefile.ScoreFileError`.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from dataclasses import dataclass, field

import numpy as np
from django.db.models import FloatField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from liveness import metrics, scorefile

from .models import Ensemble, Image

DEFAULT_TARGET_FPRS = metrics.DEFAULT_TARGET_FPRS  # 0.1% and 1%
LABELS = ("genuine", "attack")


class TableError(ValueError):
    """Input the table cannot be built from; the message is meant for the user."""


# --- arguments ---------------------------------------------------------------------------------------


def parse_fpr(text) -> float:
    """A target FPR as a fraction ("0.001") or a percentage ("0.1%"), strictly inside (0, 1)."""
    raw = str(text).strip()
    try:
        f = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise TableError(f"not a target FPR: {raw!r} (a fraction like 0.001 or a percentage like 0.1%)") from None
    if not math.isfinite(f) or not 0 < f < 1:
        raise TableError(f"a target FPR must be strictly between 0 and 1 (0% and 100%), got {raw}")
    return f


def parse_fprs(values) -> tuple[float, ...]:
    """Target FPRs from strings (each may hold several, separated by blanks, commas or semicolons);
    duplicates dropped, order kept. An empty input gives the default 0.1% and 1%."""
    tokens = [t for v in values for t in re.split(r"[\s,;]+", str(v)) if t]
    out: list[float] = []
    for t in tokens:
        f = parse_fpr(t)
        if f not in out:
            out.append(f)
    return tuple(out) or DEFAULT_TARGET_FPRS


def parse_threshold(value) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise TableError(f"not a threshold: {value!r} (a number in [0, 1])") from None
    if not math.isfinite(t) or not 0 <= t <= 1:
        raise TableError(f"the threshold must be in [0, 1], got {value}")
    return t


def parse_day(value, name: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise TableError(f"{name}: not a day: {value!r} (expected YYYY-MM-DD)") from None


# --- table input -------------------------------------------------------------------------------------


@dataclass
class TableInput:
    """Parallel arrays, one entry per labelled, scored image, and where they came from."""

    scores: np.ndarray
    is_attack: np.ndarray
    face_w: np.ndarray
    face_h: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    blur: np.ndarray
    attack_types: np.ndarray  # object (str), "" = unknown
    threshold: float | None = None  # the active threshold of the data (the ensemble's), if any
    source: str = ""
    scores_of: str = "ensemble score"
    ensemble: Ensemble | None = field(default=None, repr=False)
    model: str | None = None
    # what production decided per image (stored images only; None for a score file): attack or not,
    # and the threshold in force then (NaN: not stored)
    decided_attack: np.ndarray | None = None
    decided_at: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def attacks(self) -> int:
        return int(self.is_attack.sum())

    @property
    def genuine(self) -> int:
        return len(self) - self.attacks

    def strategy_kwargs(self) -> dict:
        return {
            "scores": self.scores,
            "is_attack": self.is_attack,
            "face_w": self.face_w,
            "face_h": self.face_h,
            "yaw": self.yaw,
            "pitch": self.pitch,
            "blur": self.blur,
        }


def resolve_ensemble(name: str | None = None, model: str | None = None) -> Ensemble:
    """The named ensemble; without a name, the one holding `model` (the active one first), else the
    active ensemble (or the only one)."""
    if name:
        try:
            return Ensemble.objects.get(name=name)
        except Ensemble.DoesNotExist:
            known = ", ".join(Ensemble.objects.order_by("name").values_list("name", flat=True)) or "none registered"
            raise TableError(f"unknown ensemble {name!r} (ensembles: {known})") from None
    if model:
        holders = list(Ensemble.objects.filter(members__name=model).distinct().order_by("-is_active", "name"))
        if not holders:
            raise TableError(f"unknown model {model!r}: no ensemble has a member of that name")
        if holders[0].is_active or len(holders) == 1:
            return holders[0]
        names = ", ".join(e.name for e in holders)
        raise TableError(f"model {model!r} is a member of several ensembles ({names}): name one with --ensemble")
    active = Ensemble.objects.filter(is_active=True).first()
    if active is not None:
        return active
    all_ = list(Ensemble.objects.all()[:2])
    if len(all_) == 1:
        return all_[0]
    if not all_:
        raise TableError("no ensemble registered yet: register one (manage.py register_models) or use a score file")
    raise TableError("no active ensemble: name one with --ensemble")


def member_names(ens: Ensemble) -> list[str]:
    return sorted(set(ens.members.values_list("name", flat=True)))


def _floats(values) -> np.ndarray:
    return np.array(values, dtype=np.float64) if len(values) else np.empty(0)


def database_input(date_from, date_to, ensemble: str | None = None, model: str | None = None) -> TableInput:
    """Labelled images (genuine/attack) of days date_from..date_to scored by the ensemble, with the
    ensemble's stored score, or, with `model`, that member's score (images without it are left out).
    Face size from the face box (box_w, box_h); yaw, pitch and blur as stored (missing = unknown)."""
    start, end = parse_day(date_from, "from"), parse_day(date_to, "to")
    if start > end:
        raise TableError(f"the range is empty: from {start} is after to {end}")
    ens = resolve_ensemble(ensemble, model)
    if model and model not in member_names(ens):
        raise TableError(
            f"model {model!r} is not a member of ensemble {ens.name!r} (members: {', '.join(member_names(ens))})"
        )
    qs = Image.objects.filter(day__range=(start, end), ensemble=ens, label__in=LABELS)
    if model:
        qs = qs.annotate(s=Cast(KeyTextTransform(model, "scores"), FloatField())).filter(s__isnull=False)
    else:
        qs = qs.exclude(score=None).annotate(s=Cast("score", FloatField()))
    fields = ("s", "label", "box_w", "box_h", "yaw", "pitch", "blur", "attack_type", "decision", "threshold")
    rows = list(qs.order_by("id").values_list(*fields))
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(fields)
    s, label, box_w, box_h, yaw, pitch, blur, attack_type, decision, decided_at = cols
    return TableInput(
        scores=_floats(s),
        is_attack=np.array([v == "attack" for v in label], dtype=bool),
        face_w=_floats(box_w),
        face_h=_floats(box_h),
        yaw=_floats(yaw),
        pitch=_floats(pitch),
        blur=_floats(blur),
        attack_types=np.array(list(attack_type), dtype=object),
        threshold=None if model else ens.threshold,  # the ensemble's threshold was never applied to one model
        source=f"ensemble {ens.name}, {start.isoformat()} to {end.isoformat()}",
        scores_of=f"model {model}" if model else "ensemble score",
        ensemble=ens,
        model=model or None,
        decided_attack=np.array([v == "attack" for v in decision], dtype=bool),
        decided_at=_floats(decided_at),
    )


def _file_name(file_or_text, name: str | None) -> str:
    if name:
        return name
    if isinstance(file_or_text, os.PathLike) or (isinstance(file_or_text, str) and "\n" not in file_or_text):
        return str(file_or_text)
    return str(getattr(file_or_text, "name", "") or "")


def file_input(file_or_text, model: str | None = None, name: str | None = None) -> TableInput:
    """A score file (path, CSV text, bytes or an open file): the ensemble `score` column, or with
    `model` the `score_<model>` column (rows where it is empty are left out). No active threshold.

    Raises ScoreFileError for a malformed file, TableError for an unknown model or undecodable bytes."""
    try:
        ss = scorefile.read_scores(file_or_text)
    except UnicodeDecodeError as exc:
        raise TableError(f"the score file is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise TableError(f"cannot read the score file: {exc}") from None
    try:
        s = ss.scores_for(model or None)
    except KeyError:
        listed = ", ".join(ss.models) or "none"
        raise TableError(f"the score file has no column score_{model} (model columns: {listed})") from None
    keep = ~np.isnan(s)
    kw = ss.table_inputs(model or None)
    return TableInput(
        attack_types=ss.attack_types[keep],
        threshold=None,
        source=f"score file {_file_name(file_or_text, name)}".rstrip(),
        scores_of=f"model {model}" if model else "ensemble score",
        model=model or None,
        **kw,
    )
