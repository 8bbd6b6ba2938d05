"""Score files (SPEC section 5): CSV with a header, one image per line, for the threshold table.

Columns (header names are matched case-insensitively, surrounding blanks ignored):

    path,score,label                                    required
    face_w,face_h,yaw,pitch,blur                        optional numbers; empty = unknown (NaN)
    attack_type,device,day                              optional text; day is YYYY-MM-DD
    score_<model>                                       optional per-model scores; empty = NaN

- `score` (and every `score_<model>` value) is a number in [0, 1].
- `label` is genuine/live/real/1 or attack/spoof/fake/0, case-insensitive.
- face_w/face_h are >= 0, blur is in [0, 1], yaw/pitch any finite number of degrees.
- Other columns are ignored (listed in `ScoreSet.ignored_columns`); completely empty lines are
  skipped.

`read_scores` checks everything and collects *all* problems as (line number, message), line 1
being the header, then raises one `ScoreFileError`.

Speed: the csv module; numbers via `float()` mapped over a whole column in C, per-value Python
checks only on columns that have a problem; the cyclic GC is paused while parsing. Most of the
rest of the time is `csv.reader` itself.
"""

from __future__ import annotations

import csv
import datetime as dt
import gc
import io
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REQUIRED = ("path", "score", "label")
NUMERIC = ("face_w", "face_h", "yaw", "pitch", "blur")
TEXT = ("attack_type", "device", "day")
MODEL_PREFIX = "score_"

GENUINE_WORDS = frozenset({"genuine", "live", "real", "1"})
ATTACK_WORDS = frozenset({"attack", "spoof", "fake", "0"})
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")

MAX_SHOWN = 20  # problems listed in str(ScoreFileError); all of them are in .problems


class ScoreFileError(ValueError):
    """A malformed score file. `problems` is the full list of (1-based line number, message)."""

    def __init__(self, problems: list[tuple[int, str]], source: str = "score file"):
        self.problems = sorted(problems)
        self.source = source
        lines = [f"line {ln}: {msg}" for ln, msg in self.problems[:MAX_SHOWN]]
        if len(self.problems) > MAX_SHOWN:
            lines.append(f"... and {len(self.problems) - MAX_SHOWN} more problems")
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n" + "\n".join(lines))


@dataclass
class ScoreSet:
    """A parsed score file: parallel numpy arrays, one entry per data line, in file order."""

    paths: np.ndarray  # object (str)
    scores: np.ndarray  # float64, the ensemble score
    is_attack: np.ndarray  # bool
    face_w: np.ndarray  # float64, NaN = unknown (also when the column is absent)
    face_h: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    blur: np.ndarray
    attack_types: np.ndarray  # object (str), "" when empty or absent
    devices: np.ndarray  # object (str), "" when empty or absent
    days: np.ndarray  # object (str, YYYY-MM-DD), "" when empty or absent
    model_scores: dict[str, np.ndarray] = field(default_factory=dict)  # model name -> float64, NaN = empty
    line_numbers: np.ndarray | None = None  # int64, the file line of each entry (header = 1)
    columns: tuple[str, ...] = ()  # the header as read (normalised)
    ignored_columns: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def models(self) -> list[str]:
        return list(self.model_scores)

    def scores_for(self, model: str | None = None) -> np.ndarray:
        """The ensemble score (model None) or one model's score column."""
        if model is None:
            return self.scores
        try:
            return self.model_scores[model]
        except KeyError:
            raise KeyError(f"no column score_{model}; models in the file: {self.models}") from None

    def table_inputs(self, model: str | None = None) -> dict:
        """Keyword arguments for `metrics.strategy_table` (rows without that model's score dropped)."""
        s = self.scores_for(model)
        keep = ~np.isnan(s)
        every = bool(keep.all())
        pick = (lambda v: v) if every else (lambda v: v[keep])
        return {
            "scores": pick(s),
            "is_attack": pick(self.is_attack),
            "face_w": pick(self.face_w),
            "face_h": pick(self.face_h),
            "yaw": pick(self.yaw),
            "pitch": pick(self.pitch),
            "blur": pick(self.blur),
        }


def _is_text(s: str) -> bool:
    """A str is CSV text when it is empty, has a line break, or has a comma and names no file."""
    return not s or "\n" in s or "\r" in s or ("," in s and not Path(s).is_file())


def _read_text(file_or_text) -> tuple[str, str]:
    """(text, source name) from CSV text (see `_is_text`), bytes, a path or an open file."""
    if isinstance(file_or_text, bytes | bytearray):
        return bytes(file_or_text).decode("utf-8-sig"), "score file"
    if isinstance(file_or_text, str) and _is_text(file_or_text):
        return file_or_text.removeprefix("\ufeff"), "score file"
    if isinstance(file_or_text, str | os.PathLike):
        p = Path(file_or_text)
        return p.read_text(encoding="utf-8-sig"), str(p)
    if hasattr(file_or_text, "read"):
        data = file_or_text.read()
        if isinstance(data, bytes):
            data = data.decode("utf-8-sig")
        return data.removeprefix("\ufeff"), getattr(file_or_text, "name", "score file")
    raise TypeError(f"read_scores needs a path, CSV text, bytes or a file, not {type(file_or_text).__name__}")


def _rows_with_lines(text: str) -> tuple[list[list[str]], list[int]]:
    """csv rows and the (last) physical line of each; fast path when every row is one line."""
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = list(reader)
    if len(rows) == reader.line_num:  # no quoted line breaks: row i is on line i + 1
        return rows, list(range(1, len(rows) + 1))
    reader = csv.reader(io.StringIO(text, newline=""))
    rows, lines = [], []
    for row in reader:
        rows.append(row)
        lines.append(reader.line_num)
    return rows, lines


def _float_or_nan(v: str) -> float:
    return float(v) if v and not v.isspace() else math.nan


def _floats(values, lines: np.ndarray, name: str, problems: list, *, required: bool, lo=None, hi=None) -> np.ndarray:
    """str -> float64, NaN for empty (allowed in optional columns); problems appended with their line.

    `float()` over the column (it accepts surrounding blanks); the per-value loop that names each
    bad value runs only when that fails or meets a non-finite value ("nan" and "inf" are refused).
    """
    n = len(values)
    clean = False
    try:
        out = np.fromiter(map(float, values), dtype=np.float64, count=n)
        clean = bool(np.isfinite(out).all())
    except ValueError:
        if not required:  # empty cells; every NaN must come from one, not from a spelled-out "nan"
            try:
                out = np.fromiter(map(_float_or_nan, values), dtype=np.float64, count=n)
                clean = not np.isinf(out).any() and int(np.isnan(out).sum()) == values.count("")
            except ValueError:
                pass
    if not clean:
        out = np.full(n, np.nan)
        for i, v in enumerate(values):
            w = v.strip()
            if not w:
                if required:
                    problems.append((int(lines[i]), f"{name} is empty"))
                continue
            try:
                x = float(w)
            except ValueError:
                x = math.nan
            if not math.isfinite(x):
                problems.append((int(lines[i]), f"{name} is not a number: {v!r}"))
                continue
            out[i] = x
    with np.errstate(invalid="ignore"):
        out_of_range = np.zeros(n, dtype=bool)
        if lo is not None:
            out_of_range |= out < lo
        if hi is not None:
            out_of_range |= out > hi
    if out_of_range.any():
        if lo is not None and hi is not None:
            what = f"in [{lo:g}, {hi:g}]"
        else:
            what = f">= {lo:g}" if lo is not None else f"<= {hi:g}"
        for i in np.flatnonzero(out_of_range):
            problems.append((int(lines[i]), f"{name} must be {what}, got {values[i].strip()}"))
            out[i] = np.nan
    return out


def read_scores(file_or_text) -> ScoreSet:
    """Parse a score file (path, CSV text, bytes or an open file) into a `ScoreSet`.

    Raises `ScoreFileError` listing every problem found (bad or missing header, missing required
    column, duplicate column, wrong column count, non-numeric or out-of-range number, unknown label,
    empty path, bad day), each with its 1-based line number (the header is line 1).
    """
    text, source = _read_text(file_or_text)
    # millions of small strings and lists: the cyclic garbage collector would rescan them over and
    # over while they are created (about a third of the time); nothing here makes cycles
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse(text, source)
    finally:
        if was_enabled:
            gc.enable()


def _parse(text: str, source: str) -> ScoreSet:
    rows, lines = _rows_with_lines(text)
    # skip completely empty lines (a trailing newline, blank separators)
    keep = [i for i, r in enumerate(rows) if r and not (len(r) == 1 and r[0].strip() == "")]
    if not keep:
        raise ScoreFileError([(1, "empty file: a header line with path,score,label is required")], source)
    header_at = keep[0]
    header_line = lines[header_at]
    header = [h.strip().lower() for h in rows[header_at]]
    problems: list[tuple[int, str]] = []

    col: dict[str, int] = {}
    for i, name in enumerate(header):
        if name == "":
            problems.append((header_line, f"header column {i + 1} has no name"))
        elif name in col:
            problems.append((header_line, f"duplicate column {name!r}"))
        elif name == MODEL_PREFIX:
            problems.append((header_line, f"column {name!r} names no model (score_<model>)"))
        else:
            col[name] = i
    missing = [c for c in REQUIRED if c not in col]
    if missing:
        if all(_looks_like_data(h) for h in header if h):
            problems.append((header_line, "no header: the first line must be path,score,label[,...]"))
        for c in missing:
            problems.append((header_line, f"missing required column {c!r}"))
    known = set(REQUIRED) | set(NUMERIC) | set(TEXT)
    models = [c for c in col if c.startswith(MODEL_PREFIX) and c != MODEL_PREFIX]
    ignored = tuple(c for c in col if c not in known and c not in models)

    width = len(header)
    body = keep[1:]
    if len(body) == len(rows) - 1 - header_at:  # no blank line to skip (the usual case)
        body_rows, body_lines = rows[header_at + 1 :], lines[header_at + 1 :]
    else:
        body_rows, body_lines = [rows[i] for i in body], [lines[i] for i in body]
    lengths = np.fromiter(map(len, body_rows), dtype=np.int64, count=len(body_rows))
    wrong = np.flatnonzero(lengths != width)
    for i in wrong:
        problems.append((body_lines[i], f"expected {width} columns, got {lengths[i]}"))
    if len(wrong):
        good = np.flatnonzero(lengths == width)
        body_rows = [body_rows[i] for i in good]
        body_lines = [body_lines[i] for i in good]
    n = len(body_rows)
    ln = np.asarray(body_lines, dtype=np.int64)
    columns = list(zip(*body_rows, strict=True)) if n else [() for _ in header]

    def values(name: str) -> tuple[str, ...] | None:
        return columns[col[name]] if name in col else None

    # path
    paths = values("path")
    if paths is not None:
        paths_arr = np.asarray([p.strip() for p in paths], dtype=object)
        for i in np.flatnonzero(paths_arr == ""):
            problems.append((int(ln[i]), "path is empty"))
    else:
        paths_arr = np.full(n, "", dtype=object)
    # score
    raw = values("score")
    scores = (
        _floats(raw, ln, "score", problems, required=True, lo=0.0, hi=1.0) if raw is not None else np.full(n, np.nan)
    )
    # label: map each distinct spelling once
    raw = values("label")
    is_attack = np.zeros(n, dtype=bool)
    if raw is not None:
        meaning = {v: _label(v) for v in set(raw)}
        is_attack = np.fromiter((meaning[v] is True for v in raw), dtype=bool, count=n)
        if any(m is None for m in meaning.values()):
            for i, v in enumerate(raw):
                if meaning[v] is None:
                    msg = (
                        f"unknown label {v!r} (genuine/live/real/1 or attack/spoof/fake/0)"
                        if v.strip()
                        else "label is empty"
                    )
                    problems.append((int(ln[i]), msg))
    # optional numbers
    ranges = {"face_w": (0.0, None), "face_h": (0.0, None), "yaw": (None, None), "pitch": (None, None)}
    ranges["blur"] = (0.0, 1.0)
    num = {}
    for name in NUMERIC:
        raw = values(name)
        lo, hi = ranges[name]
        num[name] = (
            _floats(raw, ln, name, problems, required=False, lo=lo, hi=hi) if raw is not None else np.full(n, np.nan)
        )
    # optional text: strip each distinct value once
    txt = {}
    for name in TEXT:
        raw = values(name)
        if raw is None:
            txt[name] = np.full(n, "", dtype=object)
            continue
        clean = {v: v.strip() for v in set(raw)}
        txt[name] = np.fromiter(map(clean.__getitem__, raw), dtype=object, count=n)
        if name == "day":
            bad_days = {v for v, c in clean.items() if c and not _valid_day(c)}
            if bad_days:
                for i, v in enumerate(raw):
                    if v in bad_days:
                        problems.append((int(ln[i]), f"day must be YYYY-MM-DD, got {v.strip()!r}"))
    # per-model scores
    model_scores = {}
    for c in models:
        model_scores[c[len(MODEL_PREFIX) :]] = _floats(values(c), ln, c, problems, required=False, lo=0.0, hi=1.0)

    if problems:
        raise ScoreFileError(problems, source)
    return ScoreSet(
        paths=paths_arr,
        scores=scores,
        is_attack=is_attack,
        face_w=num["face_w"],
        face_h=num["face_h"],
        yaw=num["yaw"],
        pitch=num["pitch"],
        blur=num["blur"],
        attack_types=txt["attack_type"],
        devices=txt["device"],
        days=txt["day"],
        model_scores=model_scores,
        line_numbers=ln,
        columns=tuple(header),
        ignored_columns=ignored,
    )


def _label(v: str) -> bool | None:
    """True = attack, False = genuine, None = not a label."""
    w = v.strip().lower()
    return True if w in ATTACK_WORDS else False if w in GENUINE_WORDS else None


def _looks_like_data(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return "/" in cell or "." in cell or cell.lower() in GENUINE_WORDS | ATTACK_WORDS


def _valid_day(d: str) -> bool:
    if not _DAY.fullmatch(d):
        return False
    try:
        dt.date.fromisoformat(d)
    except ValueError:
        return False
    return True
