"""What a page of one day's images needs, for the gallery and the labelling grid: the filter form,
the category tabs with their counts, one keyset page (monitor/browse.py) and the links around it."""

from urllib.parse import urlencode

from django import forms
from django.db.models import Q

from .. import attempts, browse, slices
from ..models import CATEGORIES, Device


class GalleryForm(browse.BrowseForm):
    """The browse filter and the gallery's own choice: one tile per attempt group (`stack=1`)."""

    stack = forms.ChoiceField(choices=[("", "no"), ("1", "yes")], required=False, label="stack attempts")


def query_string(data: dict, **changes) -> str:
    """The query string of the current filter with some values changed (empty values dropped, a
    list as repeated parameters)."""
    merged = {**{k: v for k, v in data.items() if k != "after"}, **changes}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "", [], ())}, doseq=True)


def browse_context(request, day, fields: tuple[str, ...] = (), form_class=browse.BrowseForm) -> dict:
    """What a page of one day's images needs: the filter form, category tabs with counts, one
    keyset page and the links around it. Used by the gallery and the labelling grid. `fields`:
    the page's rows as dicts of these values (default: Image instances). With the gallery's form
    and `stack`, the tabs count attempt groups and the page shows each group's first image."""
    form = form_class(request.GET)
    ok = form.is_valid()
    data = form.cleaned_data if ok else {"sort": "score"}
    counts = browse.category_counts(day, data)
    where = Q()
    if data.get("stack"):
        counts, where = attempts.stacked_counts(day, data, counts), attempts.FIRST_ATTEMPTS
    result = browse.page(day, data, fields=fields, where=where) if ok else browse.Page([], None)
    tabs = [(c, counts[c], query_string(data, category=c)) for c in CATEGORIES]
    return {
        "day": day,
        "form": form,
        "ok": ok,
        "data": data,
        "counts": counts,
        "tabs": [("", sum(counts.values()), query_string(data, category=""))] + tabs,
        "images": result.images,
        "next_query": query_string(data, after=result.next_cursor) if result.next_cursor else None,
        "first_query": query_string(data) if data.get("after") else None,
        "filter_query": query_string(data),
        "unsliced_query": query_string(data, slice=""),
        "slice_text": slice_text(data.get("slice") or ""),
        "devices": Device.objects.order_by("name").values_list("name", flat=True),
    }


def slice_text(value: str) -> str:
    """A cleaned `slice` filter ("device|face_size:cam-1|100-109") as "device = cam-1, face_size = 100-109"."""
    return ", ".join(f"{d} = {v}" for d, v in slices.parse(value)) if value else ""
