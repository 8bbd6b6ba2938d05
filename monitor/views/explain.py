"""What changed on a day (monitor/explain.py): the page and its JSON.

Query parameters, the same for both: `device` (a device name: only its images), `measure`
(flag_rate, fpr, tpr or low_quality; default flag_rate), `window` (days before the day; default
KOALA_EXPLAIN_WINDOW_DAYS). Bad ones: the page shows the form's errors (400), the API answers
400 with them.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import reverse

from liveness.explain import CLEAR_FACTOR

from .. import explain, rates
from ..access import VIEW, require
from ..api_auth import ApiError, api_view
from ..models import Device

MAX_WINDOW_DAYS = 365

SLICES_SHOWN = 15  # ranked slices shown at once on the page; the API lists every one


class ExplainForm(forms.Form):
    device = forms.CharField(required=False, max_length=100)
    measure = forms.ChoiceField(
        choices=[(k, m.label) for k, m in explain.MEASURES.items()], required=False, initial="flag_rate"
    )
    window = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_WINDOW_DAYS,
        label="window (days)",
        widget=forms.NumberInput(attrs={"placeholder": settings.KOALA_EXPLAIN_WINDOW_DAYS}),
    )

    def clean_device(self):
        name = self.cleaned_data["device"].strip()
        if name and not Device.objects.filter(name=name).exists():
            raise forms.ValidationError(f"no device named {name!r}")
        return name

    def clean(self):
        data = super().clean()
        data["measure"] = data.get("measure") or "flag_rate"
        data["window"] = data.get("window") or settings.KOALA_EXPLAIN_WINDOW_DAYS
        return data


def _get_explanation(request, day) -> tuple[ExplainForm, explain.DayExplanation | None]:
    form = ExplainForm(request.GET)
    if not form.is_valid():
        return form, None
    d = form.cleaned_data
    return form, explain.explain_day(day, d["measure"], d["device"], d["window"])


def gallery_url(day, device: str, dims: str, value: str) -> str:
    """The day gallery filtered to exactly one slice (and the device of the explanation)."""
    params = {"device": device} if device else {}
    params["slice"] = explain.gallery_slice(dims, value)
    return f"{reverse('gallery', args=[day])}?{urlencode(params)}"


def _slice(request, e: explain.DayExplanation, s) -> dict:
    return {
        "dims": s.dims,
        "value": s.value,
        "day": rates.for_json(s.day),
        "window": rates.for_json(s.window),
        "risk_ratio_rest": s.rest_ratio,
        "risk_ratio_window": s.window_ratio,
        "excess": s.excess,
        "share": s.share,
        "shift": s.shift,
        "share_beyond_size": s.beyond,
        "p_value": s.p_value,
        "p_adjusted": s.p_adjusted,
        "significant": s.significant,
        "too_few": s.too_few,
        "new": s.new,
        "psi": s.psi,
        "gallery": request.build_absolute_uri(gallery_url(e.day, e.device, s.dims, s.value)),
    }


def as_json(request, e: explain.DayExplanation) -> dict:
    o = e.result.overall
    return {
        "day": e.day,
        "device": e.device or None,
        "measure": e.measure.name,
        "window": {"days": e.window_days, "from": e.window_from, "to": e.window_to, "days_with_data": e.days_with_data},
        "stored": e.stored,
        "figures": {
            f.measure.name: {"day": rates.for_json(f.day), "window": rates.for_json(f.window)} for f in e.figures
        },
        "overall": {
            "excess": o.excess,
            "direction": o.direction,
            "p_value": o.p_value,
            "significant": o.significant,
        },
        "distribution": {"day": e.histogram, "window": e.window_histogram, "psi": o.psi},
        "tested": {"slices": e.result.tested_slices, "combinations": e.result.tested_combinations},
        "nothing_significant": e.nothing_significant,
        "slices": [_slice(request, e, s) for s in e.result.slices],
        "combinations": [_slice(request, e, s) for s in e.result.combinations],
    }


def _distribution(e: explain.DayExplanation) -> list[dict]:
    """Per score bin the day's and the window's share of scored images."""
    day_total, window_total = sum(e.histogram), sum(e.window_histogram)
    bins = len(e.histogram)
    return [
        {
            "low": i / bins,
            "high": (i + 1) / bins,
            "day": e.histogram[i] / day_total if day_total else None,
            "window": e.window_histogram[i] / window_total if window_total else None,
        }
        for i in range(bins)
    ]


@require(VIEW)
def day_explain(request, day):
    form, e = _get_explanation(request, day)
    devices = Device.objects.order_by("name").values_list("name", flat=True)
    ctx = {"day": day, "form": form, "e": e, "clear_factor": CLEAR_FACTOR, "devices": devices}
    if e is None:
        return render(request, "monitor/explain.html", ctx, status=400)
    ranked = [(s, gallery_url(day, e.device, s.dims, s.value)) for s in e.result.slices]
    # the slices that explain most first; the rest, ranked below them, one click away
    ctx["slices"], ctx["more_slices"] = ranked[:SLICES_SHOWN], ranked[SLICES_SHOWN:]
    ctx["more_from"] = SLICES_SHOWN
    ctx["combinations"] = [(s, gallery_url(day, e.device, s.dims, s.value)) for s in e.result.combinations]
    ctx["distribution"] = _distribution(e)
    return render(request, "monitor/explain.html", ctx)


@api_view
def api_day_explain(request, day):
    form, e = _get_explanation(request, day)
    if e is None:
        messages = " / ".join(f"{field!r}: {'; '.join(errs)}" for field, errs in form.errors.items())
        raise ApiError(f"bad parameters: {messages}", form.errors)
    return JsonResponse(as_json(request, e))
