"""The gallery's filters, sorts and keyset pages, shared by the day gallery, the image detail's
previous/next and the JSON API. The filter state lives in the query string.

Pages are keyset pages: ordered by (sort value, id) and continued "after" the last row of the
previous page, so page 500 costs what page 1 costs. Counts are per category only (one grouped
query on the (day, category, score) index), never per thumbnail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django import forms
from django.db.models import Count, Q, QuerySet
from django.utils.dateparse import parse_datetime

from . import slices
from .models import CATEGORIES, Image

SORTS = {
    "score": ("score", "ascending score (most attack-like first)"),
    "-score": ("-score", "descending score"),
    "disagreement": ("-disagreement", "most model disagreement first"),
    "time": ("captured_at", "capture time"),
    "-time": ("-captured_at", "latest capture first"),
}
SORT_FIELDS = tuple(sorted({field.lstrip("-") for field, _ in SORTS.values()}))  # what `cursor_of` reads
GATES = slices.GATES
LABELS = [("", "any label"), ("genuine", "genuine"), ("attack", "attack"), ("none", "unlabelled")]
PAGE_SIZE = 60


class SliceField(forms.Field):
    """Repeated `slice=dims:value` parameters (monitor/slices.py), e.g. `slice=device:cam-1&slice=
    face_size:100-109`, cleaned to one canonical parameter of them all ("device|face_size:cam-1|100-109",
    "" for none), so the gallery's links carry it as one plain value."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value) -> str:
        texts = [value] if isinstance(value, str) else list(value or [])
        pairs: list[tuple[str, str]] = []
        for text in (t.strip() for t in texts):
            if not text:
                continue
            try:
                pairs += slices.parse(text)
            except ValueError as exc:
                raise forms.ValidationError(str(exc)) from None
        dims = [d for d, _ in pairs]
        twice = sorted({d for d in dims if dims.count(d) > 1})
        if twice:
            raise forms.ValidationError(f"one value per dimension: {', '.join(twice)} given twice")
        if len(pairs) > 1 and any(slices.SEPARATOR in v for _, v in pairs):
            raise forms.ValidationError(f"a value holding {slices.SEPARATOR!r} can only be filtered alone")
        return f"{slices.join(dims)}:{slices.join(v for _, v in pairs)}" if pairs else ""


class BrowseForm(forms.Form):
    category = forms.ChoiceField(choices=[("", "all")] + [(c, c) for c in CATEGORIES], required=False)
    device = forms.CharField(required=False, max_length=100)
    min_score = forms.FloatField(required=False, min_value=0, max_value=1, label="score from")
    max_score = forms.FloatField(required=False, min_value=0, max_value=1, label="score to")
    label = forms.ChoiceField(choices=LABELS, required=False)
    gate = forms.ChoiceField(choices=[("", "any")] + [(g, g) for g in GATES], required=False, label="failed gate")
    min_disagreement = forms.FloatField(required=False, min_value=0, max_value=1, label="disagreement at least")
    sort = forms.ChoiceField(choices=[(k, v[1]) for k, v in SORTS.items()], required=False)
    slice = SliceField(required=False)
    after = forms.CharField(required=False, max_length=100)  # keyset cursor: "<value>|<id>"

    def clean_after(self):
        value = self.cleaned_data["after"]
        if value and not re.fullmatch(r"[^|]*\|\d+", value):
            raise forms.ValidationError("not a page cursor: follow the 'next page' link")
        return value

    def clean(self):
        data = super().clean()
        lo, hi = data.get("min_score"), data.get("max_score")
        if lo is not None and hi is not None and lo > hi:
            raise forms.ValidationError("the score range is empty: 'score from' is above 'score to'")
        data["sort"] = data.get("sort") or "score"
        if data.get("after"):
            raw = data["after"].rpartition("|")[0]
            try:
                value = _cursor_value(_order(data["sort"])[0], raw)
            except ValueError:
                value = None
            if raw and value is None:
                self.add_error("after", "this page cursor belongs to another sort order: start from the first page")
        return data


def filtered(day, data: dict) -> QuerySet:
    """The day's images matching the filters (without the category: see `category_counts`)."""
    qs = Image.objects.filter(day=day)
    if data.get("device"):
        qs = qs.filter(device__name=data["device"])
    if data.get("min_score") is not None:
        qs = qs.filter(score__gte=data["min_score"])
    if data.get("max_score") is not None:
        qs = qs.filter(score__lte=data["max_score"])
    if data.get("label") == "none":
        qs = qs.filter(label="")
    elif data.get("label"):
        qs = qs.filter(label=data["label"])
    if data.get("gate"):  # only low_quality images fail gates; the quoted name matches one element
        qs = qs.filter(category="low_quality", failed_gates__icontains=f'"{data["gate"]}"')
    if data.get("min_disagreement") is not None:
        qs = qs.filter(disagreement__gte=data["min_disagreement"])
    if data.get("slice"):
        qs = qs.filter(slices.q_of(slices.parse(data["slice"]), day))
    return qs


def category_counts(day, data: dict, where: Q = Q()) -> dict[str, int]:
    # COUNT(*), not COUNT(id): PostgreSQL answers it from the (day, category, ...) indexes alone
    rows = filtered(day, data).filter(where).values_list("category").order_by().annotate(n=Count("*"))
    counts = dict.fromkeys(CATEGORIES, 0)
    counts.update(dict(rows))
    return counts


def _order(sort: str) -> tuple[str, bool]:
    field = SORTS[sort][0]
    return field.lstrip("-"), field.startswith("-")


def _cursor_value(field: str, text: str):
    """The sort value stored in a cursor (None for the NULL tail); ValueError if it is not one."""
    if text == "":
        return None
    if field == "captured_at":
        value = parse_datetime(text)
        if value is None:
            raise ValueError(f"not a time: {text!r}")
        return value
    return float(text)


def cursor_of(im: Image | dict, sort: str) -> str:
    """The cursor after `im` (an Image, or a row of values with its "id")."""
    field, _ = _order(sort)
    value, pk = (im[field], im["id"]) if isinstance(im, dict) else (getattr(im, field), im.pk)
    text = "" if value is None else (value.isoformat() if hasattr(value, "isoformat") else repr(float(value)))
    return f"{text}|{pk}"


def _keyset_parts(qs: QuerySet, sort: str, cursor: str | None, forward: bool) -> list[QuerySet]:
    """The rows after (forward) or before (backward) the cursor, nearest first, as querysets to
    read in turn. The order is (value, id) with NULL values last, so the rows with a value and
    the NULL tail are read separately: each part is a plain range on a (day, ..., value, id)
    index that starts at the cursor, never a walk from the start of the day."""
    field, desc = _order(sort)
    up = desc != forward  # values (and ids) increasing in the reading direction
    by = (field, "id") if up else (f"-{field}", "-id")
    by_id = "id" if up else "-id"
    has_value = qs.filter(**{f"{field}__isnull": False}).order_by(*by)
    tail = qs.filter(**{f"{field}__isnull": True}).order_by(by_id)
    if cursor is None:
        return [has_value, tail]
    raw, _, pk = cursor.rpartition("|")
    value, pk = _cursor_value(field, raw), int(pk)
    beyond_id = {"id__gt": pk} if up else {"id__lt": pk}
    if value is None:  # the cursor sits in the NULL tail
        rest = tail.filter(**beyond_id)
        return [rest] if forward else [rest, has_value]
    at_least = {f"{field}__gte" if up else f"{field}__lte": value}
    beyond = Q(**{f"{field}__gt" if up else f"{field}__lt": value}) | Q(**beyond_id)
    rest = has_value.filter(**at_least).filter(beyond)
    return [rest, tail] if forward else [rest]


def _take(parts: list[QuerySet], n: int, fields: tuple[str, ...] = ()) -> list:
    """The first n rows of the parts in turn: Image instances, or with `fields` dicts of those
    values and the sort values (no model instances: a third of the cost of a page of rows)."""
    rows: list = []
    for part in parts:
        if len(rows) >= n:
            break
        part = part.values(*dict.fromkeys(("id", *fields, *SORT_FIELDS))) if fields else part.select_related("device")
        rows += list(part[: n - len(rows)])
    return rows


@dataclass
class Page:
    images: list  # Image instances, or dicts of values (`page(..., fields=...)`)
    next_cursor: str | None


def _in_view(day, data: dict) -> QuerySet:
    qs = filtered(day, data)
    return qs.filter(category=data["category"]) if data.get("category") else qs


def page(day, data: dict, size: int | None = None, fields: tuple[str, ...] = (), where: Q = Q()) -> Page:
    """One page of the gallery in the current filter and sort, after `data["after"]` if given.
    `fields`: the rows as dicts of only these values (and the sort values), not Image instances
    with every column (scores, boxes, sidecars). `where`: a further condition (the stacked
    gallery's first attempts); the cursors stay those of the plain gallery."""
    size = size or PAGE_SIZE
    rows = _take(
        _keyset_parts(_in_view(day, data).filter(where), data["sort"], data.get("after") or None, forward=True),
        size + 1,
        fields,
    )
    more = len(rows) > size
    rows = rows[:size]
    return Page(rows, cursor_of(rows[-1], data["sort"]) if more and rows else None)


def neighbours(im: Image, data: dict) -> tuple[Image | None, Image | None]:
    """The previous and next image of `im`'s day in the current filter and sort order."""
    qs = _in_view(im.day, data)
    cursor = cursor_of(im, data["sort"])
    prev = _take(_keyset_parts(qs, data["sort"], cursor, forward=False), 1)
    nxt = _take(_keyset_parts(qs, data["sort"], cursor, forward=True), 1)
    return (prev[0] if prev else None), (nxt[0] if nxt else None)
