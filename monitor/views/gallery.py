"""The day gallery (category tabs, filters, keyset pages) and the image detail."""

import json
from urllib.parse import urlencode

from django.shortcuts import render

from .. import browse
from ..access import VIEW, get_image_for_user, require
from ..models import CATEGORIES, Device
from . import labelling


def query_string(data: dict, **changes) -> str:
    """The query string of the current filter with some values changed (empty values dropped)."""
    merged = {**{k: v for k, v in data.items() if k != "after"}, **changes}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "")})


def browse_context(request, day) -> dict:
    """What a page of one day's images needs: the filter form, category tabs with counts, one
    keyset page and the links around it. Used by the gallery and the labelling grid."""
    form = browse.BrowseForm(request.GET)
    ok = form.is_valid()
    data = form.cleaned_data if ok else {"sort": "score"}
    counts = browse.category_counts(day, data)
    result = browse.page(day, data) if ok else browse.Page([], None)
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
        "devices": Device.objects.order_by("name").values_list("name", flat=True),
    }


@require(VIEW)
def day_gallery(request, day):
    return render(request, "monitor/gallery.html", browse_context(request, day))


@require(VIEW)
def image_detail(request, pk):
    im = get_image_for_user(request, pk)
    form = browse.BrowseForm(request.GET)
    data = form.cleaned_data if form.is_valid() else {"sort": "score"}
    prev, nxt = browse.neighbours(im, data)
    threshold = im.threshold
    scores = [
        {
            "model": name,
            "score": value,
            "live": threshold is not None and value > threshold,
            "guess": im.attack_guesses.get(name, ""),
            "version": im.model_versions.get(name, ""),
        }
        for name, value in sorted(im.scores.items())
    ]
    overlay = {
        "width": im.width,
        "height": im.height,
        "box": [im.box_x, im.box_y, im.box_w, im.box_h] if im.box_w else None,
        "crops": [(name, x0, y0, x1 - x0, y1 - y0) for name, (x0, y0, x1, y1) in sorted(im.crop_rects.items())],
    }
    ctx = {
        "im": im,
        "scores": scores,
        "overlay": overlay,
        "prev": prev,
        "next": nxt,
        "filter_query": query_string(data),
        "sidecar": json.dumps(im.sidecar, indent=2, ensure_ascii=False) if im.sidecar else "",
        "gates": [
            ("face size", im.face_size, "px", "face_size"),
            ("yaw", im.yaw, "°", "yaw"),
            ("pitch", im.pitch, "°", "pitch"),
            ("roll", im.roll, "°", None),
            ("blur", im.blur, "", "blur"),
        ],
    }
    ctx.update(labelling.detail_context(im))  # label history and, for admins, the label form
    return render(request, "monitor/image.html", ctx)
