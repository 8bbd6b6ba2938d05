"""The threshold table ("strategy explorer", SPEC section 5), shared by the page and the command.

- `database_input(date_from, date_to, ensemble=None, model=None)`: the table input from the
  stored images of a date range: labelled (genuine/attack) images scored by the ensemble, with its
  stored ensemble score, or with one member model's score (`Image.scores[model]`). The active
  threshold is the ensemble's.
- `file_input(file_or_text, model=None)`: the same from a score file (`liveness.scorefile`); no
  active threshold.
- `threshold_table(table_input, target_fprs, threshold=None)`: the whole result: the strategy
  rows (`liveness.metrics.strategy_table`) and the ISO/IEC 30107-3 block.
- `as_json_text`, `as_csv_text`, `as_text`: the three export formats (the page's downloads and the
  command's output are these same functions, so they are byte-identical for the same input).

Wrong input (unknown ensemble or model, bad dates, bad target FPRs) raises `TableError` with a
message for the user; a malformed score file raises `liveness.scorefile.ScoreFileError`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import os
import re
from dataclasses import dataclass, field

import numpy as np
from django.db.models import FloatField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from liveness import metrics, scorefile
from liveness.metrics import ApcerPoint, Rate, StrategyRow

from .models import Ensemble, Image

DEFAULT_TARGET_FPRS = metrics.DEFAULT_TARGET_FPRS  # 0.1% and 1%
ROW_KEYS = ("minface", "quality", "target_fpr", "threshold", "tpr", "fpr", "attack", "genuine", "fp", "tp")
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
    rows = list(qs.order_by("id").values_list("s", "label", "box_w", "box_h", "yaw", "pitch", "blur", "attack_type"))
    cols = list(zip(*rows, strict=True)) if rows else [()] * 8
    s, label, box_w, box_h, yaw, pitch, blur, attack_type = cols
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


# --- the result --------------------------------------------------------------------------------------


@dataclass
class TableResult:
    rows: list[StrategyRow]  # grouped by target FPR (in the order given), sorted by TPR within a group
    target_fprs: tuple[float, ...]
    threshold: float | None  # the threshold of the ISO block (None: no ISO figures at a threshold)
    iso: dict | None  # metrics.iso_at at `threshold`, None without one
    bpcer20: ApcerPoint | None
    bpcer100: ApcerPoint | None
    source: str
    scores_of: str
    attacks: int
    genuine: int

    def groups(self) -> list[tuple[float, list[StrategyRow]]]:
        return [(f, [r for r in self.rows if r.target_fpr == f]) for f in self.target_fprs]

    @property
    def apcer_per_type(self) -> dict[str, Rate]:
        return self.iso["apcer_per_type"] if self.iso else {}

    def as_dict(self) -> dict:
        """The JSON export: `rows` (exactly the keys of ROW_KEYS) and `iso`."""
        iso = self.iso or {}
        return {
            "rows": [r.as_dict() for r in self.rows],
            "iso": {
                "threshold": self.threshold,
                "apcer_per_type": {t: r.value for t, r in self.apcer_per_type.items()},
                "apcer": iso.get("apcer"),
                "bpcer": iso.get("bpcer"),
                "acer": iso.get("acer"),
                "bpcer20": None if self.bpcer20 is None else self.bpcer20.bpcer.value,
                "bpcer100": None if self.bpcer100 is None else self.bpcer100.bpcer.value,
            },
        }


def threshold_table(
    table_input: TableInput, target_fprs=DEFAULT_TARGET_FPRS, threshold: float | None = None
) -> TableResult:
    """Strategy rows for each target FPR, and the ISO block on all the images: APCER per type, APCER,
    BPCER, ACER at `threshold` (default: the data's active threshold; none: those are null) and
    BPCER20 / BPCER100."""
    fprs = tuple(float(f) for f in target_fprs) or DEFAULT_TARGET_FPRS
    for f in fprs:
        if not 0 < f < 1:
            raise TableError(f"a target FPR must be strictly between 0 and 1, got {f:g}")
    t = table_input.threshold if threshold is None else threshold
    inp = table_input
    rows = metrics.strategy_table(**inp.strategy_kwargs(), target_fprs=fprs)
    iso = metrics.iso_at(inp.scores, inp.is_attack, inp.attack_types, t) if t is not None else None
    return TableResult(
        rows=rows,
        target_fprs=fprs,
        threshold=t,
        iso=iso,
        bpcer20=metrics.apcer_point(inp.scores, inp.is_attack, inp.attack_types, 0.05),
        bpcer100=metrics.apcer_point(inp.scores, inp.is_attack, inp.attack_types, 0.01),
        source=inp.source,
        scores_of=inp.scores_of,
        attacks=inp.attacks,
        genuine=inp.genuine,
    )


# --- export formats ----------------------------------------------------------------------------------


def as_json_text(result: TableResult) -> str:
    return json.dumps(result.as_dict(), indent=2) + "\n"


def _csv_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, float) else str(v)


def as_csv_text(result: TableResult) -> str:
    """A header and one line per row, the columns of the JSON rows."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(ROW_KEYS)
    for r in result.rows:
        d = r.as_dict()
        w.writerow([_csv_value(d[k]) for k in ROW_KEYS])
    return buf.getvalue()


def pct(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}%"


def fpr_label(f: float) -> str:
    return f"{100 * f:g}%"


def interval(r: Rate) -> str:
    return f"[{100 * r.low:.2f}, {100 * r.high:.2f}]"


def threshold_text(t: float | None) -> str:
    return "none" if t is None else f"{t:.6g}"


def _align(table: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return [
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in table
    ]


def as_text(result: TableResult) -> str:
    """An aligned table per target FPR, sorted by TPR, the best row marked with `*`, then the ISO figures."""
    lines = [
        f"Threshold table: {result.source}, {result.scores_of}",
        f"{result.attacks + result.genuine} labelled images: {result.attacks} attack, {result.genuine} genuine",
        "Positive = attack; live if score > threshold. * = best row (highest TPR) of a target FPR.",
    ]
    head = ["", "minface", "quality", "threshold", "TPR", "95% CI", "FPR", "95% CI", "attack", "genuine", "TP", "FP"]
    for f, rows in result.groups():
        lines += ["", f"Target FPR {fpr_label(f)}"]
        table = [head]
        for r in rows:
            tpr, fpr = r.tpr_rate, r.fpr_rate
            table.append(
                [
                    "*" if r.best else "",
                    "none" if r.minface is None else str(r.minface),
                    "on" if r.quality else "off",
                    threshold_text(r.threshold),
                    pct(r.tpr),
                    interval(tpr),
                    pct(r.fpr, 3),
                    interval(fpr),
                    str(r.attack),
                    str(r.genuine),
                    str(r.tp),
                    str(r.fp),
                ]
            )
        lines += _align(table, right={3, 4, 6, 8, 9, 10, 11})
    lines += ["", "ISO/IEC 30107-3 (all images, no strategy filter)"]
    for name, p in (("BPCER20", result.bpcer20), ("BPCER100", result.bpcer100)):
        if p is None:
            lines.append(f"  {name}: - (needs attack and genuine images)")
        else:
            lines.append(
                f"  {name}: {pct(p.bpcer.value)} ({p.bpcer.k}/{p.bpcer.n} genuine at or below t = {p.threshold:.6g},"
                f" APCER there {pct(p.apcer)})"
            )
    if result.iso is None:
        lines.append("  APCER, BPCER, ACER: no active threshold (give one with --threshold)")
    else:
        iso = result.iso
        b = iso["bpcer_rate"]
        lines.append(f"  at threshold {result.threshold:.6g}:")
        apcer_type = f" ({iso['apcer_type']})" if iso["apcer_type"] else ""
        lines.append(f"    APCER {pct(iso['apcer'])}{apcer_type}")
        lines.append(f"    BPCER {pct(iso['bpcer'])} ({b.k}/{b.n})")
        lines.append(f"    ACER  {pct(iso['acer'])}")
        for t, r in iso["apcer_per_type"].items():
            lines.append(f"    APCER {t}: {pct(r.value)} ({r.k}/{r.n}) {interval(r)}")
    return "\n".join(lines) + "\n"


FORMATS = {"json": as_json_text, "csv": as_csv_text, "text": as_text}
