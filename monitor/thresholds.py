"""The threshold table ("strategy explorer", SPEC section 5), shared by the page and the command.

- `database_input(date_from, date_to, ensemble=None, model=None)`: the table input from the
  stored images of a date range: labelled (genuine/attack) images scored by the ensemble, with its
  stored ensemble score, or with one member model's score (`Image.scores[model]`). The active
  threshold is the ensemble's.
- `file_input(file_or_text, model=None)`: the same from a score file (`liveness.scorefile`); no
  active threshold.
- `threshold_table(table_input, target_fprs, threshold=None)`: the whole result: the strategy
  rows (`liveness.metrics.strategy_table`) and the ISO/IEC 30107-3 block. The block applies one
  threshold to every score (`applied_text` says which: for stored images a what-if, since past
  images were decided at the thresholds in force then) and, for stored images, sets beside it what
  production decided for the same images (`Production`).
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
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from django.db.models import FloatField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from liveness import metrics, scorefile
from liveness.metrics import UNKNOWN_TYPE, ApcerPoint, Rate, StrategyRow

from .models import Ensemble, Image
from .rates import interval, pct

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


# --- the result --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Production:
    """What production decided for the images of the ISO block (`Image.decision`), each at the
    threshold in force when it was scored, to set beside the what-if at one threshold."""

    images: int
    flagged: int  # decided attack
    tp: int  # labelled attack, decided attack
    fp: int  # labelled genuine, decided attack
    thresholds: tuple[tuple[float | None, int], ...]  # each distinct threshold (None: not stored), images
    same: bool  # every image was decided on these scores at the block's threshold: the what-if is production

    def thresholds_text(self) -> str:
        return ", ".join(
            f"{threshold_text(t) if t is not None else 'not stored'} ({n} images)" for t, n in self.thresholds
        )

    def as_dict(self) -> dict:
        return {
            "images": self.images,
            "flagged": self.flagged,
            "tp": self.tp,
            "fp": self.fp,
            "thresholds": [{"threshold": t, "images": n} for t, n in self.thresholds],
            "same_as_what_if": self.same,
        }


def production_of(inp: TableInput, t: float) -> Production | None:
    """Production's decisions over the images of `inp` (None for a score file: it has none; None
    without images: nothing to set beside the what-if)."""
    if inp.decided_attack is None or inp.decided_at is None or not len(inp):
        return None
    flagged, at = inp.decided_attack, inp.decided_at
    counts = Counter(None if math.isnan(v) else float(v) for v in at.tolist())
    ordered = sorted(counts.items(), key=lambda kv: (kv[0] is None, kv[0] or 0.0))
    return Production(
        images=len(inp),
        flagged=int(flagged.sum()),
        tp=int((flagged & inp.is_attack).sum()),
        fp=int((flagged & ~inp.is_attack).sum()),
        thresholds=tuple(ordered),
        # one model's scores were never what production decided on, whatever the thresholds
        same=inp.model is None and list(counts) == [t],
    )


def applied_text(inp: TableInput, t: float, given: bool) -> str:
    """Which threshold the ISO block applies, to whose scores, and for stored images that it is a
    what-if (past images were decided at the thresholds in force then, see `Production`)."""
    # without one given, the threshold is the ensemble's as it is now (`database_input`)
    origin = "the threshold given" if given or inp.ensemble is None else f"today's threshold of {inp.ensemble.name}"
    if inp.ensemble is None:  # a score file: no production decisions to contrast with
        return f"at threshold {threshold_text(t)}, {origin}, applied to the file's scores"
    whose = f"model {inp.model}'s scores" if inp.model else "these scores"
    return f"at threshold {threshold_text(t)}, {origin}, applied to {whose} — a what-if"


def _rate_dict(r: Rate | None) -> dict | None:
    if r is None:
        return None
    return {"value": r.value, "k": r.k, "n": r.n, "low": r.low, "high": r.high, "too_few": r.too_few}


def _point_dict(p: ApcerPoint | None) -> dict | None:
    if p is None:
        return None
    return {
        "threshold": p.threshold,
        "bpcer": _rate_dict(p.bpcer),
        "apcer": p.apcer,
        "apcer_type": p.apcer_type,
        "untyped_attacks": _rate_dict(p.untyped),
    }


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
    applied: str = ""  # `applied_text`: the threshold of the ISO block, whose scores, what-if or not
    flagged: int | None = None  # images with score <= threshold (what the block's threshold flags)
    flagged_attacks: int | None = None
    production: Production | None = None  # stored images: production's own decisions for them

    def groups(self) -> list[tuple[float, list[StrategyRow]]]:
        return [(f, [r for r in self.rows if r.target_fpr == f]) for f in self.target_fprs]

    @property
    def apcer_per_type(self) -> dict[str, Rate]:
        return self.iso["apcer_per_type"] if self.iso else {}

    @property
    def species(self) -> list[tuple[str, Rate]]:
        """The APCER lines of the species, by name: the untyped attacks are not among them when they
        are reported apart (`iso["untyped"]`); when no attack has a type they are the pooled group."""
        untyped = self.iso["untyped"] if self.iso else None
        return [(t, r) for t, r in self.apcer_per_type.items() if not (t == UNKNOWN_TYPE and untyped)]

    @property
    def acer_too_few(self) -> bool:
        """ACER greys like its parts: when the reported APCER's or the BPCER's count is under 30."""
        iso = self.iso
        return iso is None or iso["apcer_rate"] is None or iso["apcer_rate"].too_few or iso["bpcer_rate"].too_few

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
                **self._iso_details(iso),
            },
        }

    def _iso_details(self, iso: dict) -> dict:
        """The JSON fields added to the first ones: counts, intervals, greying, what-if, production."""
        return {
            "applied": self.applied or None,
            "apcer_type": iso.get("apcer_type"),
            "apcer_rate": _rate_dict(iso.get("apcer_rate")),
            "apcer_per_type_rates": {t: _rate_dict(r) for t, r in self.apcer_per_type.items()},
            "untyped_attacks": _rate_dict(iso.get("untyped")),
            "bpcer_rate": _rate_dict(iso.get("bpcer_rate")),
            "acer_too_few": self.acer_too_few if self.iso else None,
            "flagged": self.flagged,
            "flagged_attacks": self.flagged_attacks,
            "production": None if self.production is None else self.production.as_dict(),
            "bpcer20_point": _point_dict(self.bpcer20),
            "bpcer100_point": _point_dict(self.bpcer100),
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
    at_t = {} if t is None else _applied(inp, t, given=threshold is not None)
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
        **at_t,
    )


def _applied(inp: TableInput, t: float, given: bool) -> dict:
    """The ISO block's figures at t beyond `iso_at`: its label, what t flags, production beside it."""
    flagged = inp.scores <= t
    return {
        "applied": applied_text(inp, t, given),
        "flagged": int(flagged.sum()),
        "flagged_attacks": int((flagged & inp.is_attack).sum()),
        "production": production_of(inp, t),
    }


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


def fpr_label(f: float) -> str:
    return f"{100 * f:g}%"


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
    lines += [_point_line(name, p) for name, p in (("BPCER20", result.bpcer20), ("BPCER100", result.bpcer100))]
    if result.iso is None:
        lines.append("  APCER, BPCER, ACER: no active threshold (give one with --threshold)")
    else:
        lines += _iso_lines(result)
    return "\n".join(lines) + "\n"


UNTYPED_NOTE = "not a PAI species, not in the reported APCER"


def too_few_text(r: Rate | None) -> str:
    return " too few" if r is None or r.too_few else ""


def rate_text(r: Rate) -> str:
    """A rate with its counts, interval and greying, as the text output writes it."""
    return f"{pct(r.value)} ({r.k}/{r.n}) {interval(r)}{too_few_text(r)}"


def species_name(name: str) -> str:
    # only the pooled group is ever listed under UNKNOWN_TYPE (`TableResult.species`)
    return "unknown (no attack has a type: all attacks pooled)" if name == UNKNOWN_TYPE else name


def production_text(result: TableResult) -> str | None:
    """The production line beside the what-if, None when there is none to show."""
    p = result.production
    if p is None:
        return None
    if p.same:
        return f"production decided all {p.images} images at this threshold: the same decisions"
    # production decided on the ensemble score: say so beside one model's what-if
    on = "" if result.scores_of == "ensemble score" else " on the ensemble score"
    return (
        f"production flagged {p.flagged} of {p.images} ({p.tp} attacks, {p.fp} genuine){on}"
        f" at the thresholds in force then: {p.thresholds_text()}"
    )


def flagged_text(result: TableResult) -> str:
    n = result.attacks + result.genuine
    genuine = result.flagged - result.flagged_attacks
    return f"flagged {result.flagged} of {n} ({result.flagged_attacks} attacks, {genuine} genuine)"


def _point_line(name: str, p: ApcerPoint | None) -> str:
    if p is None:
        return f"  {name}: - (needs attack and genuine images)"
    untyped = "" if p.untyped is None else f"; untyped attacks above t: {p.untyped.k}/{p.untyped.n}"
    return (
        f"  {name}: {pct(p.bpcer.value)} ({p.bpcer.k}/{p.bpcer.n} genuine at or below t = {p.threshold:.6g},"
        f" APCER there {pct(p.apcer)} ({p.apcer_type})){too_few_text(p.bpcer)}{untyped}"
    )


def _iso_lines(result: TableResult) -> list[str]:
    iso = result.iso
    lines = [f"  {result.applied}:", f"    {flagged_text(result)}"]
    production = production_text(result)
    if production:
        lines.append(f"    {production}")
    r = iso["apcer_rate"]
    if r is None:
        lines.append("    APCER -")
    else:
        lines.append(f"    APCER {pct(iso['apcer'])} ({iso['apcer_type']}), {r.k}/{r.n} {interval(r)}{too_few_text(r)}")
    b = iso["bpcer_rate"]
    lines.append(f"    BPCER {rate_text(b)}" if iso["bpcer"] is not None else "    BPCER -")
    lines.append(f"    ACER  {pct(iso['acer'])}{' too few' if result.acer_too_few else ''}")
    lines += [f"    APCER {species_name(t)}: {rate_text(r)}" for t, r in result.species]
    if iso["untyped"] is not None:
        lines.append(f"    untyped attacks: {rate_text(iso['untyped'])} — {UNTYPED_NOTE}")
    return lines


FORMATS = {"json": as_json_text, "csv": as_csv_text, "text": as_text}
