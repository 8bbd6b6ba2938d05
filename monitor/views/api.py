"""JSON API for scripts (session or token auth, see monitor/api_auth.py).

- `GET /api/days?from=&to=`: days with image counts per category, newest first.
- `GET /api/days/<day>/images?<gallery filters>&limit=`: one keyset page of the day's images,
  with exactly the gallery's filters and order (monitor/browse.py); `next` is the URL of the
  following page (or null).
- `GET /api/images/<pk>`: every stored value of one image.
- `GET /api/metrics?from=&to=&device=`: the stored daily figures (DailyMetric) with counts and
  95% Wilson intervals; by default the last 30 days that have figures. A day covers every
  production decision of the day, whichever ensemble and threshold made it (`decided_by`).
  `per_user`: users (attempt groups, monitor/attempts.py), the share rejected at least once and
  on every attempt (also of genuine users), attempts per user.

Dates are YYYY-MM-DD. Rates follow SPEC section 2: positive = attack; flag rate = attack
decisions / decided images; FPR = genuine flagged / genuine; TPR = attacks flagged / attacks.
The top-level rates count the images that passed the quality gates, `all_scored` the same
decisions over every scored image (low quality included); each says so in `counted`.
"""

from __future__ import annotations

import datetime as dt
import re

from django.db.models import Count
from django.http import JsonResponse
from django.urls import reverse

from liveness.iso import UNKNOWN_TYPE
from liveness.metrics import Rate, wilson

from .. import rates
from ..access import get_image_for_user
from ..api_auth import ApiError, api_view
from ..attempts import per_user
from ..browse import BrowseForm, category_counts, page
from ..models import CATEGORIES, DailyMetric, DayFigures, Device, Image
from ..scorings import scorings

DEFAULT_LIMIT, MAX_LIMIT = 100, 500
DEFAULT_METRIC_DAYS = 30


# -- parameters ------------------------------------------------------------------------------


def _date_param(request, name: str) -> dt.date | None:
    text = request.GET.get(name, "").strip()
    if not text:
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ApiError(
            f"'{name}': {text!r} is not a date (expected YYYY-MM-DD)", {name: ["expected a date YYYY-MM-DD"]}
        ) from None


def _date_range(request) -> tuple[dt.date | None, dt.date | None]:
    start, end = _date_param(request, "from"), _date_param(request, "to")
    if start and end and start > end:
        raise ApiError(f"empty range: 'from' ({start}) is after 'to' ({end})", {"__all__": ["'from' is after 'to'"]})
    return start, end


def _limit(request) -> int:
    text = request.GET.get("limit", "").strip()
    if not text:
        return DEFAULT_LIMIT
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 1 <= value <= MAX_LIMIT:
        message = f"an integer from 1 to {MAX_LIMIT}"
        raise ApiError(f"'limit': {text!r} is not {message}", {"limit": [f"expected {message}"]})
    return value


def _form_error(form) -> ApiError:
    parts = [
        f"{'' if field == '__all__' else repr(field) + ': '}{'; '.join(messages)}"
        for field, messages in form.errors.items()
    ]
    return ApiError("bad parameters: " + " / ".join(parts), form.errors)


# -- serialisation ---------------------------------------------------------------------------


def _url(request, name: str, *args) -> str:
    return request.build_absolute_uri(reverse(name, args=args))


def _box(im: Image) -> dict | None:
    if im.box_w is None or im.box_h is None:
        return None
    return {"x": im.box_x, "y": im.box_y, "w": im.box_w, "h": im.box_h}


def _urls(request, im: Image) -> dict:
    return {
        "api": _url(request, "api-image", im.pk),
        "page": _url(request, "image", im.pk),
        "file": None if im.category == "unreadable" else _url(request, "image-file", im.pk),
        "thumbnail": _url(request, "thumb", im.pk) if im.has_thumbnail else None,
    }


def image_summary(request, im: Image) -> dict:
    """An image in a list: what a script needs to choose which ones to look at."""
    return {
        "id": im.pk,
        "day": im.day,
        "device": im.device.name,
        "captured_at": im.captured_at,
        "category": im.category,
        "decision": im.decision,
        "score": im.score,
        "threshold": im.threshold,
        "scores": im.scores,
        "disagreement": im.disagreement,
        "label": im.label,
        "attack_type": im.attack_type,
        "box": _box(im),
        "face_size": im.face_size,
        "yaw": im.yaw,
        "pitch": im.pitch,
        "blur": im.blur,
        "failed_gates": im.failed_gates,
        "urls": _urls(request, im),
    }


def image_detail(request, im: Image) -> dict:
    """Every stored column of the image under its model field name (foreign keys by name or id),
    plus the face box as one object and the URLs of the file, thumbnail and pages."""
    out: dict = {}
    for field in Image._meta.concrete_fields:
        out[field.name] = getattr(im, field.attname)
    out["id"] = im.pk
    out["device"] = im.device.name
    out["scorings"] = scorings(im)  # production's and every shadow run's, with run, versions, threshold
    out["ensemble"] = im.ensemble.name if im.ensemble_id else None
    out["ensemble_id"] = im.ensemble_id
    out["run"] = im.run_id
    out["box"] = _box(im)
    out["urls"] = _urls(request, im)
    return out


# -- views -----------------------------------------------------------------------------------


@api_view
def days(request):
    """Days with images, newest first, with per-category counts (one grouped query)."""
    start, end = _date_range(request)
    qs = Image.objects.all()
    if start:
        qs = qs.filter(day__gte=start)
    if end:
        qs = qs.filter(day__lte=end)
    rows = qs.values_list("day", "category").annotate(n=Count("id")).order_by("-day")
    by_day: dict[dt.date, dict[str, int]] = {}
    for day, category, n in rows:
        by_day.setdefault(day, dict.fromkeys(CATEGORIES, 0))[category] = n
    return JsonResponse(
        {
            "from": start,
            "to": end,
            "days": [
                {
                    "day": day,
                    "images": sum(counts.values()),
                    "counts": counts,
                    "images_url": _url(request, "api-day-images", day),
                }
                for day, counts in by_day.items()
            ],
        }
    )


@api_view
def day_images(request, day: dt.date):
    """One page of the day's images with the gallery's filters, sort and keyset cursor."""
    form = BrowseForm(request.GET)
    limit = _limit(request)
    if not form.is_valid():
        raise _form_error(form)
    data = form.cleaned_data
    result = page(day, data, limit)
    next_url = None
    if result.next_cursor:
        params = request.GET.copy()
        params["after"] = result.next_cursor
        next_url = request.build_absolute_uri(f"{reverse('api-day-images', args=[day])}?{params.urlencode()}")
    return JsonResponse(
        {
            "day": day,
            "filters": {k: v for k, v in data.items() if k != "after" and v not in (None, "")},
            "counts": category_counts(day, data),
            "images": [image_summary(request, im) for im in result.images],
            "next": next_url,
        }
    )


@api_view
def image(request, pk: int):
    return JsonResponse(image_detail(request, get_image_for_user(request, pk)))


@api_view
def metrics(request):
    """Per day (oldest first) the stored figures of all ensembles that scored it, for all devices
    or one (`device=<name>`)."""
    start, end = _date_range(request)
    device_name = request.GET.get("device", "").strip()
    if "\x00" in device_name or len(device_name) > 100:
        raise ApiError("'device': not a device name", {"device": ["not a device name"]})
    qs = DailyMetric.objects.select_related("ensemble")
    if device_name:
        device = Device.objects.filter(name=device_name).first()
        if device is None:
            raise ApiError(f"'device': no device named {device_name!r}", {"device": ["unknown device"]})
        qs = qs.filter(device=device)
    else:
        qs = qs.filter(device=None)
    if start:
        qs = qs.filter(day__gte=start)
    if end:
        qs = qs.filter(day__lte=end)
    if not start:  # the last 30 days that have figures (up to `to`), or everything from `from`
        recent = qs.values_list("day", flat=True).distinct().order_by("-day")[:DEFAULT_METRIC_DAYS]
        days_with_data = list(recent)
        if days_with_data:
            qs = qs.filter(day__gte=min(days_with_data))
    return JsonResponse(
        {
            "from": start,
            "to": end,
            "device": device_name or None,
            "days": [_day_figures(m.day, m) for m in qs.order_by("day", "id")],
        }
    )


def _figures(fig: DayFigures) -> dict:
    """One way of counting a day's decisions: rates with counts and Wilson intervals, and the
    ISO/IEC 30107-3 figures (APCER per type; the reported APCER is the worst named type, untyped
    attacks are reported apart and never set it)."""
    worst = fig.apcer
    per_type = fig.apcer_per_type
    untyped = per_type.get(UNKNOWN_TYPE) if worst is None or worst[0] != UNKNOWN_TYPE else None
    return {
        "counted": fig.counted_text,
        "scored": fig.scored,
        "flag_rate": rates.for_json(wilson(fig.flagged, fig.scored)),
        "fpr": rates.for_json(wilson(fig.fp, fig.genuine)),
        "tpr": rates.for_json(wilson(fig.tp, fig.attacks)),
        "apcer_per_type": {name: rates.for_json(r) for name, r in per_type.items()},
        "apcer": worst[1].value if worst else None,
        "apcer_type": worst[0] if worst else None,
        "apcer_rate": rates.for_json(worst[1]) if worst else None,
        "untyped_attacks": rates.for_json(untyped) if untyped else None,
        "bpcer": fig.fpr.value if fig.genuine else None,  # = FPR
        "acer": fig.acer,
        "acer_too_few": fig.acer_too_few,
    }


def _day_figures(day: dt.date, m: DailyMetric) -> dict:
    """One day's figures: every production decision of the day, whichever ensemble made it
    (`decided_by`), counted on the images that passed the gates (the top-level rates) and on all
    scored images (`all_scored`)."""
    return {
        "day": day,
        "images": m.images,
        "counts": dict.fromkeys(CATEGORIES, 0) | m.counts,
        **_figures(m.figures(DailyMetric.GATED)),
        "all_scored": _figures(m.figures(DailyMetric.ALL)),
        "histogram": m.histogram,  # scored images per score bin (10 equal bins over [0, 1]), gated
        # per user (an attempt group: one user's tries seconds apart), over every decided image
        "per_user": {k: rates.for_json(v) if isinstance(v, Rate) else v for k, v in per_user(m).items()},
        "threshold": m.threshold,  # of most of the day's decisions; all of them in decided_by
        "thresholds": m.thresholds,
        "mixed": m.mixed,
        "decided_by": [{k: v for k, v in d.items() if k != "ensemble_id"} for d in m.decided_by],
        "model_versions": m.model_versions,
        "ensemble": m.ensemble.name if m.ensemble else None,
        "ensembles": sorted({d["ensemble"] for d in m.decided_by if d.get("ensemble")}),
    }
