"""The day gallery (category tabs, filters, keyset pages) and the image detail."""

import json

from django.shortcuts import render
from django.template.defaultfilters import date, floatformat
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.utils.timezone import template_localtime

from .. import attempts, browse
from ..access import VIEW, get_image_for_user, require
from ..models import DailyMetric
from ..scorings import scorings
from . import labelling
from .browsing import GalleryForm, browse_context, query_string

COPIES_SHOWN = 20  # exact copies of earlier days' images listed on the gallery (all are counted)


# the values a thumbnail of the gallery shows
THUMB_FIELDS = (
    "id",
    "category",
    "path",
    "has_thumbnail",
    "purged_at",
    "score",
    "label",
    "attack_type",
    "device__name",
    "attempt_group",
    "attempt_size",
)


def url_maker(name: str):
    """pk -> reverse(name, args=[pk]), reversing once: a page of 60 thumbnails needs 120 links."""
    sentinel = "9081726354"
    head, found, tail = reverse(name, args=[int(sentinel)]).rpartition(sentinel)
    if not found:  # not a plain <int:pk> route: reverse each time
        return lambda pk: reverse(name, args=[pk])
    return lambda pk: f"{head}{pk}{tail}"


# One thumbnail of the gallery, as the template's {% for %} rendered it (tests/test_gallery.py
# compares the two), with the values escaped as the template escaped them: a page of thumbnails
# costs a third of the template's time this way (bench/README.md, day gallery).
THUMB_HTML = """
  <li class="thumb cat-{category}"{group}>
    <a href="{url}?{query}" title="{path}">
      {picture}
    </a>
    <span class="meta">
      {attempts}{score}
      {label}
      <span class="device">{device}</span>
    </span>
  </li>
  """
IMG_HTML = '<img src="{src}" alt="{device} {category}" loading="lazy" width="160" height="160">\n      '
PURGED_HTML = '<span class="nothumb purged" title="image purged on {day}">purged</span>\n      '
# a stacked tile (one per attempt group): its size and the group's worst decision
GROUP_HTML = ' data-group="{group}" data-attempts="{size}"'
ATTEMPTS_HTML = (
    '<span class="attempts" title="{size} attempts of one user; worst decision {worst}">×{size}</span>'
    '<span class="worst worst-{worst}">worst: {worst}</span>\n      '
)


def stack_html(r: dict, worst: dict[int, str] | None) -> tuple[str, str]:
    """The tile's attempt group attribute and badge, for a stacked gallery (`worst` given) only."""
    if worst is None or not r.get("attempt_group"):
        return "", ""
    size = r["attempt_size"] or 1
    group = GROUP_HTML.format(group=r["attempt_group"], size=size)
    if size < 2:
        return group, ""
    return group, ATTEMPTS_HTML.format(size=size, worst=escape(worst.get(r["attempt_group"], "none")))


def thumbs_html(rows: list[dict], filter_query: str, worst: dict[int, str] | None = None) -> str:
    """The gallery's thumbnails from rows of THUMB_FIELDS: links built by `url_maker`, the score
    formatted by the template's `floatformat:3`, the purge day by its `date:'Y-m-d'`. `worst`
    (stacked: {attempt group: worst decision}) adds each group's "×N" badge."""
    image_url, thumb_url = url_maker("image"), url_maker("thumb")
    query = escape(filter_query)
    out = []
    for r in rows:
        category, device = escape(r["category"]), escape(r["device__name"])
        if r["has_thumbnail"]:
            picture = IMG_HTML.format(src=escape(thumb_url(r["id"])), device=device, category=category)
        elif r["purged_at"]:
            picture = PURGED_HTML.format(day=escape(date(template_localtime(r["purged_at"]), "Y-m-d")))
        else:
            picture = f'<span class="nothumb">{category}</span>'
        score = "" if r["score"] is None else f'<span class="score">{floatformat(r["score"], 3)}</span>'
        label = ""
        if r["label"]:
            kind = f": {escape(r['attack_type'])}" if r["attack_type"] else ""
            label = f'<span class="label label-{escape(r["label"])}">{escape(r["label"])}{kind}</span>'
        group, badge = stack_html(r, worst)
        out.append(
            THUMB_HTML.format(
                category=category,
                group=group,
                attempts=badge,
                url=escape(image_url(r["id"])),
                query=query,
                path=escape(r["path"]),
                picture=picture,
                score=score,
                label=label,
                device=device,
            )
        )
    return mark_safe("".join(out))  # every value above is escaped


def day_figures(day, device_name: str = "") -> DailyMetric | None:
    """The day's stored figures for one device or all devices (None before the day finished)."""
    scope = {"device__name": device_name} if device_name else {"device": None}
    return DailyMetric.objects.select_related("ensemble").filter(day=day, **scope).first()


@require(VIEW)
def day_gallery(request, day):
    ctx = browse_context(request, day, fields=THUMB_FIELDS, form_class=GalleryForm)
    stacked = bool(ctx["data"].get("stack"))
    worst = attempts.worst_decisions(day, [r["attempt_group"] for r in ctx["images"]]) if stacked else None
    ctx["thumbs_html"] = thumbs_html(ctx["images"], ctx["filter_query"], worst)
    ctx["figures"] = day_figures(day, ctx["data"].get("device") or "")
    ctx["stack_query"] = query_string(ctx["data"], stack="" if stacked else "1")
    copies = attempts.earlier_copies(day)
    ctx["copies_count"] = copies.count()
    ctx["copies"] = list(copies[:COPIES_SHOWN]) if ctx["copies_count"] else []
    return render(request, "monitor/gallery.html", ctx)


@require(VIEW)
def image_detail(request, pk):
    im = get_image_for_user(request, pk)
    form = GalleryForm(request.GET)  # keeps `stack` in the way back to the gallery
    data = form.cleaned_data if form.is_valid() else {"sort": "score"}
    prev, nxt = browse.neighbours(im, data)
    every = scorings(im)
    scores = every[0]["models"] if every and every[0]["kind"] == "production" else []
    overlay = {
        "width": im.width,
        "height": im.height,
        "box": [im.box_x, im.box_y, im.box_w, im.box_h] if im.box_w else None,
        "crops": [(name, x0, y0, x1 - x0, y1 - y0) for name, (x0, y0, x1, y1) in sorted(im.crop_rects.items())],
    }
    ctx = {
        "im": im,
        "scores": scores,
        "shadow_scorings": [s for s in every if s["kind"] == "shadow"],
        "overlay": overlay,
        "prev": prev,
        "next": nxt,
        "filter_query": query_string(data),
        "sidecar": json.dumps(im.sidecar, indent=2, ensure_ascii=False) if im.sidecar else "",
        "attempts": attempts.group_images(im),
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
