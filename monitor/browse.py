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
from django.db.models import Count, F, Q, QuerySet
from django.utils.dateparse import parse_datetime

from .models import CATEGORIES, Image

SORTS = {
    "score": ("score", "ascending score (most attack-like first)"),
    "-score": ("-score", "descending score"),
    "disagreement": ("-disagreement", "most model disagreement first"),
    "time": ("captured_at", "capture time"),
    "-time": ("-captured_at", "latest capture first"),
}
GATES = ["face_size", "yaw", "pitch", "blur"]
LABELS = [("", "any label"), ("genuine", "genuine"), ("attack", "attack"), ("none", "unlabelled")]
PAGE_SIZE = 60


class BrowseForm(forms.Form):
    category = forms.ChoiceField(choices=[("", "all")] + [(c, c) for c in CATEGORIES], required=False)
    device = forms.CharField(required=False, max_length=100)
    min_score = forms.FloatField(required=False, min_value=0, max_value=1, label="score from")
    max_score = forms.FloatField(required=False, min_value=0, max_value=1, label="score to")
    label = forms.ChoiceField(choices=LABELS, required=False)
    gate = forms.ChoiceField(choices=[("", "any")] + [(g, g) for g in GATES], required=False, label="failed gate")
    min_disagreement = forms.FloatField(required=False, min_value=0, max_value=1, label="disagreement at least")
    sort = forms.ChoiceField(choices=[(k, v[1]) for k, v in SORTS.items()], required=False)
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
    if data.get("gate"):  # a JSON list of gate names; the quoted name matches one element
        qs = qs.filter(failed_gates__icontains=f'"{data["gate"]}"')
    if data.get("min_disagreement") is not None:
        qs = qs.filter(disagreement__gte=data["min_disagreement"])
    return qs


def category_counts(day, data: dict) -> dict[str, int]:
    rows = filtered(day, data).values_list("category").order_by().annotate(n=Count("id"))
    counts = dict.fromkeys(CATEGORIES, 0)
    counts.update(dict(rows))
    return counts


def _order(sort: str) -> tuple[str, bool]:
    field = SORTS[sort][0]
    return field.lstrip("-"), field.startswith("-")


def ordered(qs: QuerySet, sort: str) -> QuerySet:
    field, desc = _order(sort)
    if desc:
        return qs.order_by(F(field).desc(nulls_last=True), "-id")
    return qs.order_by(F(field).asc(nulls_last=True), "id")


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


def after_cursor(qs: QuerySet, sort: str, cursor: str) -> QuerySet:
    """Rows strictly after the cursor row in the sort order (value, id; NULL values last)."""
    field, desc = _order(sort)
    raw, _, pk = cursor.rpartition("|")
    try:
        pk = int(pk)
        value = _cursor_value(field, raw)
    except (TypeError, ValueError):
        return qs.none()
    later_id = Q(id__lt=pk) if desc else Q(id__gt=pk)
    is_null = Q(**{f"{field}__isnull": True})
    if value is None:  # in the NULL tail, only the id orders
        return qs.filter(is_null & later_id)
    beyond = Q(**{f"{field}__lt" if desc else f"{field}__gt": value})
    return qs.filter(beyond | (Q(**{field: value}) & later_id) | is_null)


def cursor_of(im: Image, sort: str) -> str:
    field, _ = _order(sort)
    value = getattr(im, field)
    text = "" if value is None else (value.isoformat() if hasattr(value, "isoformat") else repr(float(value)))
    return f"{text}|{im.pk}"


@dataclass
class Page:
    images: list[Image]
    next_cursor: str | None


def page(day, data: dict, size: int | None = None) -> Page:
    size = size or PAGE_SIZE
    qs = filtered(day, data)
    if data.get("category"):
        qs = qs.filter(category=data["category"])
    qs = ordered(qs, data["sort"])
    if data.get("after"):
        qs = after_cursor(qs, data["sort"], data["after"])
    rows = list(qs.select_related("device")[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return Page(rows, cursor_of(rows[-1], data["sort"]) if more and rows else None)


def before_cursor(qs: QuerySet, sort: str, cursor: str) -> QuerySet:
    """Rows strictly before the cursor row in the sort order, nearest first."""
    field, desc = _order(sort)
    raw, _, pk = cursor.rpartition("|")
    value = _cursor_value(field, raw)
    earlier_id = Q(id__gt=int(pk)) if desc else Q(id__lt=int(pk))
    not_null = Q(**{f"{field}__isnull": False})
    if value is None:
        cond = not_null | (Q(**{f"{field}__isnull": True}) & earlier_id)
    else:
        cond = Q(**{f"{field}__gt" if desc else f"{field}__lt": value}) | (Q(**{field: value}) & earlier_id)
    nearest = (F(field).asc(nulls_first=True), "id") if desc else (F(field).desc(nulls_first=True), "-id")
    return qs.filter(cond).order_by(*nearest)


def neighbours(im: Image, data: dict) -> tuple[Image | None, Image | None]:
    """The previous and next image of `im`'s day in the current filter and sort order."""
    qs = filtered(im.day, data)
    if data.get("category"):
        qs = qs.filter(category=data["category"])
    cursor = cursor_of(im, data["sort"])
    prev = before_cursor(qs, data["sort"], cursor).only("id").first()
    nxt = after_cursor(ordered(qs, data["sort"]), data["sort"], cursor).only("id").first()
    return prev, nxt
