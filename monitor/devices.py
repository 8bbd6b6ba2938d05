"""The devices page: one row per device with its daily trends over a range, its last day seen and
the latest day's figures.

Everything comes from the per-device DailyMetric rows (one per day and device) and the Device
table, in a constant number of queries whatever the number of devices and days. Rates follow
SPEC section 2: flag rate and FPR count the images that passed the quality gates (as the alerts
judge them); the share failing quality is low_quality / all scored images. A day with figures
(an all-devices row) on which a device has no row counts 0 images for it and leaves its rates
a gap; a day without any figures is a gap everywhere.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from django.db.models import IntegerField, Max
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce

from liveness.metrics import Rate, wilson

from .models import DailyMetric, Device
from .rates import pct

RANGES = (30, 90)
DEFAULT_RANGE = 30

# column key -> (heading, whether its first click sorts descending: the worst devices first)
COLUMNS = {
    "name": ("Device", False),
    "images": ("Images per day", True),
    "flag_rate": ("Flag rate", True),
    "fpr": ("FPR (BPCER)", True),
    "low_quality": ("Failing quality", True),
    "last_seen": ("Last seen", False),
}
DEFAULT_SORT = "name"

# (key, numerator, denominator, what it counts): the rates of a device's row
RATES = (
    ("flag_rate", "flagged", "scored", "attack decisions / images that passed the gates"),
    ("fpr", "fp", "genuine", "labelled genuine flagged / labelled genuine that passed the gates"),
    ("low_quality", "low_quality", "all_scored", "low quality / all scored images"),
)
FIELDS = ("images", "scored", "flagged", "genuine", "fp", "all_scored", "low_quality")

SPARK_WIDTH, SPARK_HEIGHT, SPARK_PAD = 120, 28, 2


@dataclass
class Cell:
    """One measure of one device: its sparkline, the latest day's figure and the range's."""

    key: str
    line: str  # SVG path of the days with enough images
    faint: str  # SVG path of every day with data (the too-few days show only in this one)
    title: str
    latest: dict | None
    total: dict | None
    sort_value: float | None


def parse_range(value: str | None) -> tuple[int, str]:
    """The number of days to show and an error to display (an invalid value falls back)."""
    if value in (None, ""):
        return DEFAULT_RANGE, ""
    if value.isdigit() and int(value) in RANGES:
        return int(value), ""
    choices = " or ".join(str(r) for r in RANGES)
    return DEFAULT_RANGE, f"Unknown range “{value}”: showing {DEFAULT_RANGE} days (choose {choices})."


def parse_sort(value: str | None) -> tuple[str, str]:
    """A sort key ("flag_rate", or "-flag_rate" for descending) and an error to display."""
    if value in (None, ""):
        return DEFAULT_SORT, ""
    if value.removeprefix("-") in COLUMNS:
        return value, ""
    choices = ", ".join(COLUMNS)
    return (
        DEFAULT_SORT,
        f"Unknown sort “{value}”: sorted by device name (choose one of {choices}, “-” first to reverse).",
    )


def header_sort(column: str, current: str) -> str:
    """The sort a column's heading links to: its own first direction, or the reverse of the
    current one when the table is already sorted by it."""
    if current.removeprefix("-") == column:
        return column if current.startswith("-") else f"-{column}"
    return f"-{column}" if COLUMNS[column][1] else column


def rate_text(rate: Rate) -> dict:
    """A rate as the page shows it: value, counts, Wilson interval, greyed when too few."""
    return {
        "value": pct(rate.value, 1) if rate.n else "—",
        "counts": f"{rate.k} / {rate.n}",
        "interval": f"95% CI {pct(rate.low, 1)} – {pct(rate.high, 1)}" if rate.n else "",
        "too_few": rate.too_few,
    }


@functools.cache
def _enough(n: int) -> bool:
    """A rate on n images is not "too few" (the rule's one home is liveness.metrics.Rate)."""
    return not Rate(0, n, 0.0, 1.0).too_few


@functools.cache
def _xs(count: int) -> tuple[str, ...]:
    step = (SPARK_WIDTH - 2 * SPARK_PAD) / max(count - 1, 1)
    return tuple(f"{SPARK_PAD + i * step:.1f}".removesuffix(".0") for i in range(count))


def sparkline(values: list[float | None], enough: list[bool]) -> tuple[str, str, float]:
    """Two SVG paths over SPARK_WIDTH x SPARK_HEIGHT, from 0 (bottom) to the largest value (top):
    the strong one joins consecutive days with enough images, the faint one every consecutive
    day with a value ("" when it would draw the same); None is a gap. A lone day is a zero-length
    segment (a dot with round caps). Returns (strong, faint, top of the scale)."""
    top = max((v for v in values if v is not None), default=0) or 1
    scale = (SPARK_HEIGHT - 2 * SPARK_PAD) / top
    bottom = SPARK_HEIGHT - SPARK_PAD
    xs = _xs(len(values))
    ys = [None if v is None else f"{bottom - v * scale:.1f}".removesuffix(".0") for v in values]

    def path(keep: list[bool]) -> str:
        parts, joined = [], False
        for x, y, k in zip(xs, ys, keep, strict=True):
            if y is None or not k:
                joined = False
            else:
                parts.append(f"L{x} {y}" if joined else f"M{x} {y}h0")
                joined = True
        return " ".join(parts)

    strong = path(enough)
    return strong, ("" if all(enough) else path([True] * len(values))), top


def _day_counts(row: tuple) -> dict:
    """A DailyMetric values_list row (device_id, day, *FIELDS) as {field: count}."""
    return dict(zip(FIELDS, row[2:], strict=True))


def _cells(days: list[dt.date], computed: set[dt.date], per_day: dict[dt.date, dict]) -> list[Cell]:
    """The images cell and one cell per rate of one device, over the range's days."""
    latest, span = per_day.get(days[-1]), f"{days[0]:%Y-%m-%d} to {days[-1]:%Y-%m-%d}"
    images = [per_day[d]["images"] if d in per_day else (0 if d in computed else None) for d in days]
    line, faint, top = sparkline(images, [True] * len(days))
    total = sum(v for v in images if v)
    cells = [
        Cell(
            "images",
            line,
            faint,
            f"Images per day, {span}; top of the scale {top:g}",
            {"value": str(images[-1] or 0), "counts": "", "interval": "", "too_few": False},
            {"value": f"{total} in all", "counts": "", "interval": "", "too_few": False},
            images[-1] or 0,
        )
    ]
    for key, num, den, meaning in RATES:
        counts = [(per_day[d][num], per_day[d][den]) if d in per_day else (0, 0) for d in days]
        values = [k / n if n else None for k, n in counts]
        line, faint, top = sparkline(values, [_enough(n) for _, n in counts])
        whole = wilson(sum(c[num] for c in per_day.values()), sum(c[den] for c in per_day.values()))
        now = wilson(latest[num], latest[den]) if latest else None
        cells.append(
            Cell(
                key,
                line,
                faint,
                f"{COLUMNS[key][0]} per day ({meaning}), {span}; top of the scale {pct(top, 1)}; "
                "grey: fewer than 30 images",
                rate_text(now) if now is not None else None,
                rate_text(whole) if whole.n else None,
                now.value if now is not None and now.n else None,
            )
        )
    return cells


def _row(device: tuple, days: list[dt.date], computed: set[dt.date], per_day: dict) -> dict:
    pk, name, last_day = device
    end = days[-1]
    silent = (end - last_day).days if last_day is not None and last_day < end else 0
    return {
        "id": pk,
        "name": name,
        "last_day": last_day,
        "silent_days": silent,
        "cells": _cells(days, computed, per_day),
    }


def _sort_key(column: str, descending: bool):
    """Rows without a value (no figure on the latest day, never seen) go last either way."""

    def key(row: dict):
        if column == "name":
            return (0, row["name"].lower())
        if column == "last_seen":
            value = row["last_day"].toordinal() if row["last_day"] is not None else None
        else:
            value = next(c.sort_value for c in row["cells"] if c.key == column)
        if value is None:
            return (1, 0, row["name"].lower())
        return (0, -value if descending else value, row["name"].lower())

    return key


def sort_rows(rows: list[dict], sort: str) -> list[dict]:
    column, descending = sort.removeprefix("-"), sort.startswith("-")
    ordered = sorted(rows, key=_sort_key(column, descending))
    return list(reversed(ordered)) if column == "name" and descending else ordered


def device_table(range_days: int, sort: str = DEFAULT_SORT) -> dict:
    """Every device's row over the range ending on the latest day with figures, sorted; three
    queries (the latest day, the devices, the range's DailyMetric rows)."""
    end = DailyMetric.objects.aggregate(last=Max("day"))["last"]
    if end is None:
        return {"latest_day": None, "start": None, "rows": [], "days": 0}
    devices = list(Device.objects.order_by("name").values_list("id", "name", "last_day"))
    start = end - dt.timedelta(days=range_days - 1)
    days = [start + dt.timedelta(days=i) for i in range(range_days)]
    computed: set[dt.date] = set()
    per_device: dict[int, dict[dt.date, dict]] = {}
    # the low quality count read in SQL, so no row's JSON is parsed in Python
    low_quality = Coalesce(Cast(KT("counts__low_quality"), IntegerField()), 0)
    rows = (
        DailyMetric.objects.filter(day__gte=start, day__lte=end)
        .annotate(low_quality=low_quality)
        .values_list("device_id", "day", *FIELDS)
    )
    for row in rows:
        if row[0] is None:
            computed.add(row[1])
        else:
            per_device.setdefault(row[0], {})[row[1]] = _day_counts(row)
    table = [_row(d, days, computed, per_device.get(d[0], {})) for d in devices]
    return {"latest_day": end, "start": start, "rows": sort_rows(table, sort), "days": range_days}
