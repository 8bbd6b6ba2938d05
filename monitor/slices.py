"""The slices of a day's images: one definition per dimension, for "what changed" (monitor/explain.py)
and the gallery's slice filter (monitor/browse.py).

Each dimension partitions a day's images: every image falls in exactly one value ("unknown",
"none" or "not assessed" where its value is missing). A dimension gives both

- `labels(rows)`: the value of each row of a chunk of `values_list` columns (`COLUMNS`), with numpy,
  for counting a day in one read;
- `q(value, day)`: a Q that selects exactly the images of that value, for the gallery;

and both come from the same buckets (edges and which ends are closed) or the same function.
A combination of two dimensions is named by joining names and values with "|": dims
"device|face_size", value "cam-1|100-109".
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
from django.conf import settings
from django.db.models import Q
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import ExtractHour
from django.db.models.lookups import Exact

from liveness.metrics import DEFAULT_MINFACES

from .counts import DECIDED
from .models import DaySlice, Image

SEPARATOR = "|"
UNKNOWN, NONE, NOT_ASSESSED = "unknown", "none", "not assessed"
MAX_VALUE_LENGTH = DaySlice._meta.get_field("value").max_length
GATES = ["face_size", "yaw", "pitch", "blur"]  # the quality gates, as liveness.quality.Gates names them


@dataclass(frozen=True)
class Bucket:
    """An interval of values: lo .. hi (None = unbounded), each end open or closed."""

    label: str
    lo: float | None
    hi: float | None
    lo_closed: bool = True
    hi_closed: bool = False

    def mask(self, x: np.ndarray) -> np.ndarray:
        out = ~np.isnan(x)
        with np.errstate(invalid="ignore"):
            if self.lo is not None:
                out &= (x >= self.lo) if self.lo_closed else (x > self.lo)
            if self.hi is not None:
                out &= (x <= self.hi) if self.hi_closed else (x < self.hi)
        return out

    def q(self, field: str) -> Q:
        q = Q(**{f"{field}__isnull": False})
        if self.lo is not None:
            q &= Q(**{f"{field}__{'gte' if self.lo_closed else 'gt'}": self.lo})
        if self.hi is not None:
            q &= Q(**{f"{field}__{'lte' if self.hi_closed else 'lt'}": self.hi})
        return q


def _steps(edges: list[float], fmt: Callable[[float, float], str], first: str, last: str) -> list[Bucket]:
    """[-inf, e0), [e0, e1), ..., [en, inf) labelled `first`, fmt(lo, hi)..., `last`."""
    out = [Bucket(first, None, edges[0])]
    out += [Bucket(fmt(lo, hi), lo, hi) for lo, hi in zip(edges, edges[1:], strict=False)]
    return out + [Bucket(last, edges[-1], None)]


MINFACE_STEPS = [m for m in DEFAULT_MINFACES if m is not None]
FACE_SIZE_BUCKETS = _steps(
    MINFACE_STEPS, lambda lo, hi: f"{lo:g}-{hi - 1:g}", f"<{MINFACE_STEPS[0]}", f">={MINFACE_STEPS[-1]}"
)
# up to 30 degrees passes the pose gate, so "20-30" is closed at 30 and ">30" is what fails
POSE_BUCKETS = [
    Bucket("<10", None, 10),
    Bucket("10-20", 10, 20),
    Bucket("20-30", 20, 30, hi_closed=True),
    Bucket(">30", 30, None, lo_closed=False),
]
BLUR_BUCKETS = _steps([0.1, 0.3, 0.5], lambda lo, hi: f"{lo:g}-{hi:g}", "<0.1", ">=0.5")
DISAGREEMENT_BUCKETS = _steps([0.05, 0.1, 0.2], lambda lo, hi: f"{lo:g}-{hi:g}", "<0.05", ">=0.2")


def hour_expression() -> ExtractHour:
    """The hour of capture in TIME_ZONE, the same in the day's counts and the gallery's filter."""
    return ExtractHour("captured_at", tzinfo=ZoneInfo(settings.TIME_ZONE))


# what the dimensions read of each image: a field, or an alias of `annotations()`
COLUMNS = (
    "device__name",
    "site",
    "hour",
    "face_size",
    "failed_gates",
    "category",
    "decision",
    "yaw",
    "pitch",
    "blur",
    "width",
    "height",
    "format",
    "box_source",
    "disagreement",
    "attack_guesses",
    "attempt_index",
)


def annotations() -> dict:
    return {"hour": hour_expression()}


@dataclass(frozen=True)
class Dimension:
    name: str
    label: str
    labels: Callable[[dict], np.ndarray]  # columns of a chunk of rows -> one value per row
    q: Callable[[str, object], Q]  # (value, day) -> the images of that value
    values: tuple[str, ...] | None = None  # the possible values; None = open (any text)
    pattern: str | None = None  # for an open dimension, what a value looks like


def _floats(column) -> np.ndarray:
    return np.array(column, dtype=np.float64)  # None -> NaN


def _bucket_labels(x: np.ndarray, buckets: list[Bucket]) -> np.ndarray:
    """Each value's bucket label, UNKNOWN for NaN."""
    out = np.full(len(x), UNKNOWN, dtype=object)
    for b in buckets:
        out[b.mask(x)] = b.label
    return out


def _bucketed(name: str, label: str, field: str, buckets: list[Bucket]) -> Dimension:
    def labels(rows: dict) -> np.ndarray:
        return _bucket_labels(_floats(rows[field]), buckets)

    def q(value: str, day) -> Q:
        if value == UNKNOWN:
            return Q(**{f"{field}__isnull": True})
        return next(b for b in buckets if b.label == value).q(field)

    return Dimension(name, label, labels, q, tuple(b.label for b in buckets) + (UNKNOWN,))


def _text(name: str, label: str, field: str, missing: str = UNKNOWN, pattern: str | None = None) -> Dimension:
    """A text column as it is; empty is `missing` (and a stored text equal to `missing` is it too)."""

    def labels(rows: dict) -> np.ndarray:
        return np.array([v or missing for v in rows[field]], dtype=object)

    def q(value: str, day) -> Q:
        return Q(**{field: ""}) | Q(**{field: missing}) if value == missing else Q(**{field: value})

    return Dimension(name, label, labels, q, None, pattern)


def _device() -> Dimension:
    def labels(rows: dict) -> np.ndarray:
        return np.array(rows["device__name"], dtype=object)

    return Dimension("device", "device", labels, lambda value, day: Q(device__name=value))


def _hour() -> Dimension:
    def labels(rows: dict) -> np.ndarray:
        return np.array([UNKNOWN if h is None else f"{h:02d}" for h in rows["hour"]], dtype=object)

    def q(value: str, day) -> Q:
        if value == UNKNOWN:
            return Q(captured_at__isnull=True)
        return Q(Exact(hour_expression(), int(value)))

    return Dimension("hour", "hour of capture", labels, q, tuple(f"{h:02d}" for h in range(24)) + (UNKNOWN,))


def scored(rows: dict) -> np.ndarray:
    """Per row: has a decision, low quality included (counts.DECIDED, read from its lookups)."""
    lookups = dict(DECIDED.children)
    category, decision = (np.array(rows[c], dtype=object) for c in ("category", "decision"))
    return np.isin(category, lookups["category__in"]) & np.isin(decision, lookups["decision__in"])


def _gate(gate: str) -> Dimension:
    def labels(rows: dict) -> np.ndarray:
        failed = np.array([gate in (g or ()) for g in rows["failed_gates"]], dtype=bool)
        return np.where(scored(rows), np.where(failed, "failed", "passed"), NOT_ASSESSED).astype(object)

    def q(value: str, day) -> Q:
        failed = Q(failed_gates__icontains=f'"{gate}"')  # the quoted name matches one element
        return {"failed": DECIDED & failed, "passed": DECIDED & ~failed, NOT_ASSESSED: ~DECIDED}[value]

    return Dimension(f"gate_{gate}", f"{gate} gate", labels, q, ("passed", "failed", NOT_ASSESSED))


def _abs_in(field: str, b: Bucket) -> Q:
    """|field| within b's upper end, or field unknown (an unknown value does not raise the maximum)."""
    if b.hi is None:
        return Q()
    inside = Q(
        **{f"{field}__gte": -b.hi, f"{field}__lte": b.hi}
        if b.hi_closed
        else {f"{field}__gt": -b.hi, f"{field}__lt": b.hi}
    )
    return Q(**{f"{field}__isnull": True}) | inside


def _abs_reaches(field: str, b: Bucket) -> Q:
    """|field| at or beyond b's lower end (known)."""
    if b.lo is None:
        return Q(**{f"{field}__isnull": False})
    if b.lo_closed:
        return Q(**{f"{field}__gte": b.lo}) | Q(**{f"{field}__lte": -b.lo})
    return Q(**{f"{field}__gt": b.lo}) | Q(**{f"{field}__lt": -b.lo})


def _pose() -> Dimension:
    """max(|yaw|, |pitch|) over the known ones."""

    def labels(rows: dict) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            x = np.fmax(np.abs(_floats(rows["yaw"])), np.abs(_floats(rows["pitch"])))
        return _bucket_labels(x, POSE_BUCKETS)

    def q(value: str, day) -> Q:
        if value == UNKNOWN:
            return Q(yaw__isnull=True, pitch__isnull=True)
        b = next(b for b in POSE_BUCKETS if b.label == value)
        return _abs_in("yaw", b) & _abs_in("pitch", b) & (_abs_reaches("yaw", b) | _abs_reaches("pitch", b))

    return Dimension("pose", "pose max(|yaw|, |pitch|)", labels, q, tuple(b.label for b in POSE_BUCKETS) + (UNKNOWN,))


def _resolution() -> Dimension:
    def labels(rows: dict) -> np.ndarray:
        return np.array(
            [
                UNKNOWN if w is None or h is None else f"{w}x{h}"
                for w, h in zip(rows["width"], rows["height"], strict=True)
            ],
            dtype=object,
        )

    def q(value: str, day) -> Q:
        if value == UNKNOWN:
            return Q(width__isnull=True) | Q(height__isnull=True)
        w, h = value.split("x")
        return Q(width=int(w), height=int(h))

    return Dimension("resolution", "resolution", labels, q, None, r"\d+x\d+")


def attack_guess(guesses: dict | None) -> str:
    """The most common attack-type guess of the models (ties: the first by name), or "none"."""
    counts = Counter(v for v in (guesses or {}).values() if v)
    if not counts:
        return NONE
    top = max(counts.values())
    return min(v for v, c in counts.items() if c == top)


def _attack_guess() -> Dimension:
    def labels(rows: dict) -> np.ndarray:
        return np.array([attack_guess(g) for g in rows["attack_guesses"]], dtype=object)

    def q(value: str, day) -> Q:
        """The guesses present on the day, as exact key sets: the images whose guesses give `value`."""
        guesses = Image.objects.filter(day=day).values_list("attack_guesses", flat=True).distinct()
        seen = {json.dumps(g or {}, sort_keys=True) for g in guesses}
        found = [json.loads(s) for s in seen]
        keys = sorted({k for g in found for k in g})
        out = Q(pk__in=[])
        for g in found:
            if attack_guess(g) != value:
                continue
            exact = Q()
            for k in keys:
                if k in g:
                    exact &= Q(Exact(KeyTextTransform(k, "attack_guesses"), g[k]))
                else:
                    exact &= ~Q(attack_guesses__has_key=k)
            out |= exact
        return out

    return Dimension("attack_guess", "attack-type guess", labels, q)


# first attempts, and images not grouped yet (a day whose run has not finished); also what a
# stacked gallery shows (monitor/attempts.py)
FIRST_ATTEMPTS = Q(attempt_index__isnull=True) | Q(attempt_index__lte=1)


def _attempt() -> Dimension:
    def labels(rows: dict) -> np.ndarray:
        return np.array(["first" if i is None or i <= 1 else "retry" for i in rows["attempt_index"]], dtype=object)

    def q(value: str, day) -> Q:
        return FIRST_ATTEMPTS if value == "first" else Q(attempt_index__gt=1)

    return Dimension("attempt", "attempt", labels, q, ("first", "retry"))


DIMENSIONS: dict[str, Dimension] = {
    d.name: d
    for d in (
        _device(),
        _text("site", "site", "site"),
        _hour(),
        _bucketed("face_size", "face size (px)", "face_size", FACE_SIZE_BUCKETS),
        *(_gate(g) for g in GATES),
        _pose(),
        _bucketed("blur", "blur", "blur", BLUR_BUCKETS),
        _resolution(),
        _text("format", "format", "format"),
        _text("box_source", "box source", "box_source", missing=NONE),
        _bucketed("disagreement", "model disagreement", "disagreement", DISAGREEMENT_BUCKETS),
        _attack_guess(),
        _attempt(),
    )
}
# the combinations counted: device and site against every other dimension
PAIRS = [("device", d) for d in DIMENSIONS if d != "device"] + [
    ("site", d) for d in DIMENSIONS if d not in ("device", "site")
]


def join(parts) -> str:
    return SEPARATOR.join(parts)


def check_value(dim: str, value: str) -> str | None:
    """Why `value` is no value of dimension `dim` (None if it is one)."""
    d = DIMENSIONS.get(dim)
    if d is None:
        return f"no dimension {dim!r} (dimensions: {', '.join(DIMENSIONS)})"
    if not value or len(value) > MAX_VALUE_LENGTH:
        return f"{dim}: an empty or too long value"
    if d.values is not None and value not in d.values:
        return f"{dim}: no value {value!r} (values: {', '.join(d.values)})"
    if d.pattern and value != UNKNOWN and not re.fullmatch(d.pattern, value):
        return f"{dim}: {value!r} is not a value like {d.pattern}"
    return None


def parse(text: str) -> list[tuple[str, str]]:
    """ "device:cam-1" or "device|face_size:cam-1|100-109" -> [(dim, value), ...]; ValueError
    with the reason when it names an unknown dimension or value."""
    dims, sep, value = text.partition(":")
    if not sep:
        raise ValueError(f"{text!r} is not dimension:value (e.g. device:cam-1)")
    names = dims.split(SEPARATOR)
    values = value.split(SEPARATOR) if len(names) > 1 else [value]
    if len(values) != len(names):
        raise ValueError(f"{text!r}: {len(names)} dimensions but {len(values)} values")
    for dim, v in zip(names, values, strict=True):
        problem = check_value(dim, v)
        if problem:
            raise ValueError(problem)
    return list(zip(names, values, strict=True))


def q_of(pairs: list[tuple[str, str]], day) -> Q:
    """The images in every one of the (dimension, value) slices."""
    q = Q()
    for dim, value in pairs:
        q &= DIMENSIONS[dim].q(value, day)
    return q
