"""The access log (README "Privacy"): who opened which original image file, when, from where.
Rows are written by the image file view (monitor/views/media.py) while KOALA_ACCESS_LOG is on;
admins read them here, filtered by user, day and image, newest first, a page at a time."""

import datetime as dt
import ipaddress
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from ..access import RUN, require
from ..models import ImageAccess

PER_PAGE = 100


def client_ip(request) -> str | None:
    """The client's address: REMOTE_ADDR, or behind our proxy (KOALA_PROXY_HEADERS=1) the last
    X-Forwarded-For entry, the one that proxy appended (earlier ones are the client's to forge).
    Also django-axes' AXES_CLIENT_IP_CALLABLE."""
    candidates = [request.META.get("REMOTE_ADDR", "")]
    if settings.KOALA_PROXY_HEADERS:
        forwarded = [v.strip() for v in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if v.strip()]
        candidates = forwarded[-1:] + candidates
    for value in candidates:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            continue
    return None


class AccessFilter(forms.Form):
    user = forms.CharField(required=False, max_length=150)
    day = forms.DateField(required=False, input_formats=["%Y-%m-%d"], widget=forms.DateInput(attrs={"type": "date"}))
    image = forms.IntegerField(required=False, min_value=1, label="image id")


def usernames(selected: str) -> list[str]:
    """The users to filter by (the user table is small; the log may be large), and the one
    asked for even if that user has been deleted since."""
    names = list(get_user_model().objects.order_by("username").values_list("username", flat=True))
    return names if not selected or selected in names else sorted([*names, selected])


@require(RUN)
@require_safe
def access_log(request):
    form = AccessFilter(request.GET)
    rows = ImageAccess.objects.select_related("image")
    data = form.cleaned_data if form.is_valid() else {}
    if data.get("user"):
        rows = rows.filter(username=data["user"])
    if data.get("day"):  # the day in TIME_ZONE, as a range on the indexed column
        start, end = (
            timezone.make_aware(dt.datetime.combine(d, dt.time.min))
            for d in (data["day"], data["day"] + dt.timedelta(1))
        )
        rows = rows.filter(at__gte=start, at__lt=end)
    if data.get("image"):
        rows = rows.filter(image_id=data["image"])
    page = Paginator(rows.order_by("-at", "-id"), PER_PAGE).get_page(request.GET.get("page"))
    filters = {k: v for k, v in data.items() if v not in (None, "")}
    ctx = {
        "form": form,
        "page": page,
        "filter_query": urlencode(filters),
        "usernames": usernames(data.get("user", "")),
        "selected_user": data.get("user", ""),
        "enabled": settings.KOALA_ACCESS_LOG,
    }
    return render(request, "monitor/access_log.html", ctx)
