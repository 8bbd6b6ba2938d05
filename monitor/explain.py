"""What changed on a day: the stored slice counts (DaySlice) and the explanation read from them.

- `store_day_slices(day)` (called by monitor/daily.py compute_day) reads the day's images once,
  in chunks of plain values, gives every image its value in each dimension of monitor/slices.py,
  and counts per slice (single dimensions and the pairs of `slices.PAIRS`) with numpy: images,
  scored (a decision, low quality included), flagged, low quality, genuine / FP, attacks / TP
  (scored and labelled) and the score histogram of the scored images.
- `explain_day(day, measure, device, window_days)` reads only DaySlice rows: the day's, and one
  aggregate of the trailing window's (GROUP BY dims, value); the math is liveness/explain.py.

Counted like the overview's "all scored": every image with a decision, low quality included, so
the day's figures here equal DailyMetric's `all_` figures.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from itertools import islice

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import F, Func, IntegerField, Q, Sum

from liveness import explain as lx
from liveness.metrics import Rate, wilson

from . import slices
from .counts import HISTOGRAM_BINS, lock_day
from .models import DaySlice, Image
from .rates import pct

COUNTS = ("images", "scored", "flagged", "low_quality", "genuine", "fp", "attacks", "tp")
CHUNK = 20_000  # rows read at a time: a few hundred thousand images never sit in memory as tuples
MEASURES = lx.MEASURES
DEVICE = "device"


# -- storing -------------------------------------------------------------------------------------


def _flags(rows: dict) -> dict[str, np.ndarray]:
    """Per image of a chunk: each count's 0/1, and the score bin of the scored (-1 otherwise)."""
    category = np.array(rows["category"], dtype=object)
    decision = np.array(rows["decision"], dtype=object)
    label = np.array(rows["label"], dtype=object)
    scored = slices.scored(rows)
    flagged = scored & (decision == "attack")
    genuine, attack = scored & (label == "genuine"), scored & (label == "attack")
    score = np.array(rows["score"], dtype=np.float64)  # None -> NaN
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)  # liveness.drift.score_histogram's bins
    bins = np.searchsorted(edges[1:-1], np.nan_to_num(score), side="right")
    return {
        "images": np.ones(len(category), dtype=bool),
        "scored": scored,
        "flagged": flagged,
        "low_quality": scored & (category == "low_quality"),
        "genuine": genuine,
        "fp": flagged & genuine,
        "attacks": attack,
        "tp": flagged & attack,
        "bin": np.where(scored & ~np.isnan(score), bins, -1),
    }


def _read_day(day: dt.date) -> tuple[dict[str, np.ndarray], dict[str, list[str]], dict[str, np.ndarray]]:
    """(codes per dimension, the value of each code per dimension, flags) of the day's images."""
    columns = (*slices.COLUMNS, "label", "score")
    rows_iter = (
        Image.objects.filter(day=day)
        .annotate(**slices.annotations())
        .values_list(*columns)
        .order_by()
        .iterator(chunk_size=CHUNK)
    )
    vocab: dict[str, dict[str, int]] = {d: {} for d in slices.DIMENSIONS}
    codes: dict[str, list[np.ndarray]] = {d: [] for d in slices.DIMENSIONS}
    flags: dict[str, list[np.ndarray]] = {}
    while chunk := list(islice(rows_iter, CHUNK)):
        rows = dict(zip(columns, zip(*chunk, strict=True), strict=True))
        for name, dim in slices.DIMENSIONS.items():
            v = vocab[name]
            labels = dim.labels(rows)
            codes[name].append(np.fromiter((v.setdefault(x, len(v)) for x in labels), np.int64, len(labels)))
        for key, value in _flags(rows).items():
            flags.setdefault(key, []).append(value)
    values = {d: list(v) for d, v in vocab.items()}
    empty = np.zeros(0, dtype=np.int64)
    joined = {d: np.concatenate(c) if c else empty for d, c in codes.items()}
    return joined, values, {k: np.concatenate(v) for k, v in flags.items()}


def _count(day: dt.date, dims: str, codes: np.ndarray, labels: list[str], flags: dict) -> list[DaySlice]:
    """One DaySlice per code that holds images."""
    size = len(labels)
    totals = {c: np.bincount(codes, weights=flags[c], minlength=size).astype(np.int64) for c in COUNTS}
    scored = flags["bin"] >= 0
    cells = codes[scored] * HISTOGRAM_BINS + flags["bin"][scored]
    hist = np.bincount(cells, minlength=size * HISTOGRAM_BINS).reshape(size, HISTOGRAM_BINS)
    return [
        DaySlice(
            day=day,
            dims=dims,
            value=labels[i][: slices.MAX_VALUE_LENGTH],
            histogram=hist[i].tolist(),
            **{c: int(totals[c][i]) for c in COUNTS},
        )
        for i in np.flatnonzero(totals["images"])
    ]


def _slices(day: dt.date, codes: dict, values: dict, flags: dict) -> list[DaySlice]:
    out: list[DaySlice] = []
    for name in slices.DIMENSIONS:
        out += _count(day, name, codes[name], values[name], flags)
    for a, b in slices.PAIRS:
        size_b = max(len(values[b]), 1)
        uniq, inverse = np.unique(codes[a] * size_b + codes[b], return_inverse=True)
        labels = [slices.join((values[a][u // size_b], values[b][u % size_b])) for u in uniq.tolist()]
        out += _count(day, slices.join((a, b)), inverse.ravel(), labels, flags)
    return out


def store_day_slices(day: dt.date) -> int:
    """Replace the day's DaySlice rows: every single dimension and every pair of slices.PAIRS.
    Returns the number of rows written."""
    codes, values, flags = _read_day(day)
    out = _slices(day, codes, values, flags) if flags else []  # a day without images has none
    with transaction.atomic():
        lock_day(day)
        DaySlice.objects.filter(day=day).delete()
        DaySlice.objects.bulk_create(out, batch_size=2000)
    return len(out)


# -- explaining ----------------------------------------------------------------------------------


@dataclass
class Figure:
    measure: lx.Measure
    day: Rate
    window: Rate

    @property
    def rates(self) -> tuple[Rate, Rate]:
        return self.day, self.window


@dataclass
class DayExplanation:
    day: dt.date
    device: str
    measure: lx.Measure
    window_from: dt.date
    window_to: dt.date
    window_days: int
    days_with_data: int
    stored: bool  # the day has slice counts
    figures: list[Figure]
    histogram: list[int]
    window_histogram: list[int]
    result: lx.Explanation

    @property
    def nothing_significant(self) -> bool:
        return not self.result.overall.significant and not any(
            s.significant for s in self.result.slices + self.result.combinations
        )


def _scope(device: str) -> Q:
    """The rows an explanation reads: all of them, or one device's row and its pair rows."""
    if not device:
        return Q()
    return Q(dims=DEVICE, value=device) | Q(
        dims__startswith=DEVICE + slices.SEPARATOR, value__startswith=device + slices.SEPARATOR
    )


class HistogramBin(Func):
    """Element `index` of the JSON array `histogram`, as an integer (NULL where there is none).
    Plain JSON_EXTRACT / ->>: Django's key transform doubles the work on SQLite."""

    output_field = IntegerField()
    template = "CAST((%(expressions)s ->> %(index)s) AS integer)"

    def __init__(self, index: int):
        super().__init__(F("histogram"))
        self.index = int(index)

    def as_sql(self, compiler, connection, **extra):
        return super().as_sql(compiler, connection, index=self.index, **extra)

    def as_sqlite(self, compiler, connection, **extra):
        template = f"JSON_EXTRACT(%(expressions)s, '$[{self.index}]')"
        return super().as_sql(compiler, connection, template=template, index=self.index, **extra)


def _window_rows(scope: Q, start: dt.date, day: dt.date) -> dict[tuple[str, str], dict]:
    """One aggregate over the window's rows: the counts and histogram bins summed per slice."""
    bins = {f"bin{i}": Sum(HistogramBin(i)) for i in range(HISTOGRAM_BINS)}
    rows = (
        DaySlice.objects.filter(scope, day__gte=start, day__lt=day)
        .values("dims", "value")
        .annotate(**{c: Sum(c) for c in COUNTS}, **bins)
        .order_by()
    )
    out = {}
    for r in rows:
        r["histogram"] = [r.pop(f"bin{i}") or 0 for i in range(HISTOGRAM_BINS)]
        out[(r["dims"], r["value"])] = r
    return out


def _sum(rows: list[dict]) -> dict:
    total = {c: sum(r[c] for r in rows) for c in COUNTS}
    total["histogram"] = [sum(r["histogram"][i] for r in rows if r["histogram"]) for i in range(HISTOGRAM_BINS)]
    return total


def _counts(key: tuple[str, str], row: dict, window: dict | None, measure: lx.Measure) -> lx.SliceCounts:
    window = window or {}
    return lx.SliceCounts(
        dims=key[0],
        value=key[1],
        k=row[measure.k],
        n=row[measure.n],
        window_k=window.get(measure.k) or 0,
        window_n=window.get(measure.n) or 0,
        histogram=tuple(row["histogram"] or ()),
        window_histogram=tuple(window.get("histogram") or ()),
    )


def _split(day_rows: dict, window: dict, device: str) -> tuple[dict, dict, list, list]:
    """(day total, window total, single slice rows, combination rows) as (key, day, window)."""
    if device:
        key = (DEVICE, device)
        prefix = (DEVICE + slices.SEPARATOR, device + slices.SEPARATOR)
        singles = [
            ((dims[len(prefix[0]) :], value[len(prefix[1]) :]), row, window.get((dims, value)))
            for (dims, value), row in day_rows.items()
            if dims.startswith(prefix[0]) and value.startswith(prefix[1])
        ]
        empty = _sum([])
        return day_rows.get(key, empty), window.get(key, empty), singles, []
    in_dim = [r for (dims, _), r in day_rows.items() if dims == DEVICE]
    window_dim = [r for (dims, _), r in window.items() if dims == DEVICE]
    singles, combos = [], []
    for key, row in day_rows.items():
        (combos if slices.SEPARATOR in key[0] else singles).append((key, row, window.get(key)))
    return _sum(in_dim), _sum(window_dim), singles, combos


def explain_day(day: dt.date, measure: str = "flag_rate", device: str = "", window_days: int | None = None):
    """The day's slices against the trailing window's, for one measure (MEASURES), for all
    devices or one device (its pair rows "device|X" as its single slices; no combinations)."""
    m = MEASURES[measure]
    window_days = window_days or settings.KOALA_EXPLAIN_WINDOW_DAYS
    start = day - dt.timedelta(days=window_days)
    scope = _scope(device)
    day_rows = {
        (r["dims"], r["value"]): r
        for r in DaySlice.objects.filter(scope, day=day).values("dims", "value", "histogram", *COUNTS)
    }
    window = _window_rows(scope, start, day)
    total, window_total, singles, combos = _split(day_rows, window, device)
    window_days_rows = DaySlice.objects.filter(scope, dims=DEVICE, day__gte=start, day__lt=day)
    days_with_data = window_days_rows.values("day").distinct().count()
    whole = lx.overall(
        total[m.k], total[m.n], window_total[m.k], window_total[m.n], m.adverse,
        total["histogram"], window_total["histogram"],
    )  # fmt: skip
    result = lx.explain(
        [_counts(k, r, w, m) for k, r, w in singles],
        [_counts(k, r, w, m) for k, r, w in combos],
        whole,
        order={dims: i for i, dims in enumerate(slices.DIMENSIONS)},
    )
    figures = [
        Figure(x, wilson(total[x.k], total[x.n]), wilson(window_total[x.k], window_total[x.n]))
        for x in MEASURES.values()
    ]
    return DayExplanation(
        day=day,
        device=device,
        measure=m,
        window_from=start,
        window_to=day - dt.timedelta(days=1),
        window_days=window_days,
        days_with_data=days_with_data,
        stored=bool(day_rows),
        figures=figures,
        histogram=list(total["histogram"]),
        window_histogram=list(window_total["histogram"]),
        result=result,
    )


def summary(e: DayExplanation, most: int) -> list[str]:
    """The first `most` slices that significantly moved the day's way, a line each with the
    measure on the day and in the window (an email's version of the page)."""
    direction = e.result.overall.direction
    moved = [s for s in e.result.slices if s.significant and not s.too_few and s.excess * direction > 0]
    lines = []
    for s in moved[:most]:
        window = f"{pct(s.window.value)} ({s.window.k} / {s.window.n}) in the window" if s.window.n else "new"
        lines.append(f"{s.dims} = {s.value}: {e.measure.label} {pct(s.day.value)} ({s.day.k} / {s.day.n}), {window}")
    return lines


def gallery_slice(dims: str, value: str) -> str:
    """The gallery's `slice` parameter for one row of an explanation."""
    return f"{dims}:{value}"
