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
_KNOWN = frozenset(REQUIRED + NUMERIC + TEXT)

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
    """Header, then the data rows of the right width, then every column checked; one raise at the end."""
    header, header_line, body_rows, body_lines = _split_header(*_rows_with_lines(text), source)
    problems: list[tuple[int, str]] = []
    col = _column_index(header, header_line, problems)
    body_rows, body_lines = _rows_of_width(body_rows, body_lines, len(header), problems)
    n = len(body_rows)
    ln = np.asarray(body_lines, dtype=np.int64)
    cells = _cells_by_column(col, body_rows, len(header))
    models = [c for c in col if c.startswith(MODEL_PREFIX) and c != MODEL_PREFIX]
    txt = _texts(cells, n, ln, problems)
    parsed = ScoreSet(
        paths=_paths(cells.get("path"), n, ln, problems),
        scores=_number_column(cells, "score", n, ln, problems, required=True, lo=0.0, hi=1.0),
        is_attack=_attack_flags(cells.get("label"), n, ln, problems),
        **{name: _number_column(cells, name, n, ln, problems, lo=lo, hi=hi) for name, (lo, hi) in _RANGES.items()},
        attack_types=txt["attack_type"],
        devices=txt["device"],
        days=txt["day"],
        model_scores={
            c[len(MODEL_PREFIX) :]: _number_column(cells, c, n, ln, problems, lo=0.0, hi=1.0) for c in models
        },
        line_numbers=ln,
        columns=tuple(header),
        ignored_columns=tuple(c for c in col if c not in _KNOWN and c not in models),
    )
    if problems:
        raise ScoreFileError(problems, source)
    return parsed


def _split_header(rows: list[list[str]], lines: list[int], source: str) -> tuple[list[str], int, list, list[int]]:
    """(normalised header, its line, data rows, their lines); completely empty lines are skipped."""
    # a trailing newline, blank separators
    keep = [i for i, r in enumerate(rows) if r and not (len(r) == 1 and r[0].strip() == "")]
    if not keep:
        raise ScoreFileError([(1, "empty file: a header line with path,score,label is required")], source)
    header_at = keep[0]
    header = [h.strip().lower() for h in rows[header_at]]
    body = keep[1:]
    if len(body) == len(rows) - 1 - header_at:  # no blank line to skip (the usual case)
        return header, lines[header_at], rows[header_at + 1 :], lines[header_at + 1 :]
    return header, lines[header_at], [rows[i] for i in body], [lines[i] for i in body]


def _column_index(header: list[str], header_line: int, problems: list) -> dict[str, int]:
    """Column name -> position; nameless, duplicate and missing required columns are problems."""
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
    return col


def _rows_of_width(rows: list[list[str]], lines: list[int], width: int, problems: list) -> tuple[list, list[int]]:
    """The rows with exactly `width` cells, and their lines; every other row is a problem."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    wrong = np.flatnonzero(lengths != width)
    for i in wrong:
        problems.append((lines[i], f"expected {width} columns, got {lengths[i]}"))
    if not len(wrong):
        return rows, lines
    good = np.flatnonzero(lengths == width)
    return [rows[i] for i in good], [lines[i] for i in good]


def _cells_by_column(col: dict[str, int], rows: list[list[str]], width: int) -> dict[str, tuple[str, ...]]:
    """Column name -> its cells, one per row (rows all have `width` cells)."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in range(width)]
    return {name: columns[i] for name, i in col.items()}


def _paths(raw: tuple[str, ...] | None, n: int, ln: np.ndarray, problems: list) -> np.ndarray:
    if raw is None:
        return np.full(n, "", dtype=object)
    paths = np.asarray([p.strip() for p in raw], dtype=object)
    for i in np.flatnonzero(paths == ""):
        problems.append((int(ln[i]), "path is empty"))
    return paths


_RANGES = {"face_w": (0.0, None), "face_h": (0.0, None), "yaw": (None, None), "pitch": (None, None), "blur": (0.0, 1.0)}


def _number_column(
    cells: dict, name: str, n: int, ln: np.ndarray, problems: list, *, required=False, lo=None, hi=None
) -> np.ndarray:
    """A number column checked by `_floats`, all NaN when the column is absent."""
    raw = cells.get(name)
    if raw is None:
        return np.full(n, np.nan)
    return _floats(raw, ln, name, problems, required=required, lo=lo, hi=hi)


def _attack_flags(raw: tuple[str, ...] | None, n: int, ln: np.ndarray, problems: list) -> np.ndarray:
    """is_attack per row; each distinct spelling is mapped once."""
    if raw is None:
        return np.zeros(n, dtype=bool)
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
    return is_attack


def _texts(cells: dict, n: int, ln: np.ndarray, problems: list) -> dict[str, np.ndarray]:
    """The optional text columns by name, stripped (each distinct value once), "" when absent."""
    txt = {}
    for name in TEXT:
        raw = cells.get(name)
        if raw is None:
            txt[name] = np.full(n, "", dtype=object)
            continue
        clean = {v: v.strip() for v in set(raw)}
        txt[name] = np.fromiter(map(clean.__getitem__, raw), dtype=object, count=n)
        bad_days = {v for v, c in clean.items() if c and not _valid_day(c)} if name == "day" else ()
        if bad_days:
            for i, v in enumerate(raw):
                if v in bad_days:
                    problems.append((int(ln[i]), f"day must be YYYY-MM-DD, got {v.strip()!r}"))
    return txt


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
