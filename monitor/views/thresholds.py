"""The threshold table page ("strategy explorer", SPEC section 5).

GET: the table of a date range (stored images) for an ensemble or one of its models; `?format=csv`
or `?format=json` with the same parameters downloads it. POST (multipart, CSRF): the same from an
uploaded score file; the result page offers the downloads as links carrying the exported text, and
the form's download buttons re-post the file. All numbers come from `monitor.thresholds` (its input from
`monitor.threshold_input`, its downloads from `monitor.threshold_export`), the code behind
`manage.py threshold_table`, so the page and the command agree.
"""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import quote

from django import forms
from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from liveness.scorefile import ScoreFileError

from .. import rates, threshold_export, threshold_input, thresholds
from ..access import VIEW, require
from ..models import Ensemble, Image, ModelVersion

MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # override with settings.KOALA_MAX_SCORE_UPLOAD
MAX_PROBLEMS_SHOWN = 200
DEFAULT_DAYS = 30
DOWNLOADS = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
DATA_URI_TYPES = {"csv": "text/csv;charset=utf-8", "json": "application/json;charset=utf-8"}


def max_upload_bytes() -> int:
    return int(getattr(settings, "KOALA_MAX_SCORE_UPLOAD", MAX_UPLOAD_BYTES))


def _fprs_field() -> forms.CharField:
    return forms.CharField(
        label="Target FPRs",
        required=False,
        max_length=200,
        help_text="fractions or percentages, e.g. 0.1% 1%",
    )


def _threshold_field() -> forms.FloatField:
    return forms.FloatField(
        label="Threshold (ISO figures)",
        required=False,
        min_value=0,
        max_value=1,
        widget=forms.NumberInput(attrs={"step": "any"}),
    )


def _clean_fprs(form: forms.Form) -> tuple[float, ...]:
    try:
        return threshold_input.parse_fprs([form.cleaned_data.get("fpr") or ""])
    except threshold_input.TableError as exc:
        raise forms.ValidationError(str(exc)) from None


class RangeForm(forms.Form):
    """A date range of stored images, an ensemble or one of its models."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        date = forms.DateInput(attrs={"type": "date"})
        self.fields["from"] = forms.DateField(label="From", widget=date)
        self.fields["to"] = forms.DateField(label="To", widget=date)
        names = list(Ensemble.objects.order_by("-is_active", "name").values_list("name", flat=True))
        self.fields["ensemble"] = forms.ChoiceField(label="Ensemble", choices=[(n, n) for n in names])
        models = sorted(set(ModelVersion.objects.filter(ensembles__isnull=False).values_list("name", flat=True)))
        self.fields["model"] = forms.ChoiceField(
            label="Scores",
            required=False,
            choices=[("", "ensemble score")] + [(m, f"model {m}") for m in models],
        )
        self.fields["fpr"] = _fprs_field()
        self.fields["threshold"] = _threshold_field()

    def clean_fpr(self):
        return _clean_fprs(self)

    def clean(self):
        data = super().clean()
        start, end = data.get("from"), data.get("to")
        if start and end and start > end:
            raise forms.ValidationError(f"the range is empty: from {start} is after to {end}")
        return data


class UploadForm(forms.Form):
    scores = forms.FileField(label="Score file (CSV)")
    model = forms.CharField(
        label="Model column", required=False, max_length=100, help_text="empty: the score column; m: score_m"
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["fpr"] = _fprs_field()
        self.fields["threshold"] = _threshold_field()

    def clean_fpr(self):
        return _clean_fprs(self)

    def clean_scores(self):
        f = self.cleaned_data["scores"]
        if f.size > max_upload_bytes():
            raise forms.ValidationError(f"the file is too large ({_size(f.size)}; at most {_size(max_upload_bytes())})")
        return f


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n} bytes"


def _range_defaults(ensemble: Ensemble | None) -> dict:
    qs = Image.objects.exclude(label="")
    if ensemble is not None:
        qs = qs.filter(ensemble=ensemble)
    last = qs.order_by("-day").values_list("day", flat=True).first() or dt.date.today()
    return {
        "from": (last - dt.timedelta(days=DEFAULT_DAYS - 1)).isoformat(),
        "to": last.isoformat(),
        "ensemble": ensemble.name if ensemble else "",
        "model": "",
        "fpr": "0.1% 1%",
    }


def _download(result: thresholds.TableResult, fmt: str, name: str) -> HttpResponse:
    body = threshold_export.FORMATS[fmt](result)
    response = HttpResponse(body, content_type=DOWNLOADS[fmt])
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "thresholds"
    response["Content-Disposition"] = f'attachment; filename="{safe}.{fmt}"'
    return response


def _context(request, **extra) -> dict:
    active = Ensemble.objects.filter(is_active=True).first()
    return {
        "range_form": None,
        "upload_form": UploadForm(initial={"fpr": "0.1% 1%"}),
        "result": None,
        "errors": [],
        "problems": [],
        "problems_more": 0,
        "downloads": {},
        "active": active,
        "has_ensembles": Ensemble.objects.exists(),
        "max_upload": _size(max_upload_bytes()),
        **extra,
    }


def _form_errors(form: forms.Form) -> list[str]:
    out = []
    for name, errs in form.errors.items():
        label = "" if name == "__all__" else f"{form.fields[name].label}: "
        out += [f"{label}{e}" for e in errs]
    return out


def _result_context(result: thresholds.TableResult) -> dict:
    groups = []
    for f, rows in result.groups():
        shown = [
            {
                "best": r.best,
                "minface": "none" if r.minface is None else r.minface,
                "quality": "on" if r.quality else "off",
                "threshold": thresholds.threshold_text(r.threshold),
                "tpr": rates.for_page(r.tpr_rate, r.tpr),
                "fpr": rates.for_page(r.fpr_rate, r.fpr, 3),
                "attack": r.attack,
                "genuine": r.genuine,
                "tp": r.tp,
                "fp": r.fp,
            }
            for r in rows
        ]
        groups.append({"label": threshold_export.fpr_label(f), "target": f, "rows": shown})
    return {"result": result, "groups": groups, "bpcer": _bpcer_context(result), "iso": _iso_context(result)}


def _bpcer_context(result: thresholds.TableResult) -> list[dict]:
    out = []
    for name, p in (("BPCER20", result.bpcer20), ("BPCER100", result.bpcer100)):
        row = {"name": name, "point": p, "rate": None if p is None else rates.for_page(p.bpcer, p.bpcer.value)}
        if p is not None:
            row |= {
                "threshold": thresholds.threshold_text(p.threshold),
                "apcer": rates.pct(p.apcer),
                "apcer_type": p.apcer_type,
                "untyped": p.untyped,
            }
        out.append(row)
    return out


def _iso_context(result: thresholds.TableResult) -> dict | None:
    """The ISO block at one threshold: what it applies, reported APCER and ACER with their counts
    and greying, each PAI species, the untyped attacks apart, and production's decisions beside it."""
    i = result.iso
    if i is None:
        return None
    apcer = i["apcer_rate"]
    return {
        "threshold": thresholds.threshold_text(result.threshold),
        "applied": result.applied,
        "flagged": threshold_export.flagged_text(result),
        "production": threshold_export.production_text(result),
        "apcer": rates.for_page(apcer, apcer.value) if apcer else None,
        "apcer_type": i["apcer_type"],
        "bpcer": rates.for_page(i["bpcer_rate"], i["bpcer_rate"].value) if i["bpcer"] is not None else None,
        "acer": rates.pct(i["acer"]),
        "acer_too_few": result.acer_too_few,
        "per_type": [
            {"type": threshold_export.species_name(t), **rates.for_page(r, r.value)} for t, r in result.species
        ],
        "untyped": rates.for_page(i["untyped"], i["untyped"].value) if i["untyped"] else None,
        "untyped_note": threshold_export.UNTYPED_NOTE,
    }


@require(VIEW)
@csrf_exempt  # POST is CSRF-checked in _upload, after the size check (CSRF would read the body first)
def table(request):
    if request.method == "POST":
        length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            too_large = int(length) > max_upload_bytes() + 64 * 1024
        except ValueError:
            too_large = True
        if too_large:
            msg = f"the upload is too large (at most {_size(max_upload_bytes())})"
            return _page(request, status=413, errors=[msg], range_form=_range_form(request, {}))
        return _upload(request)
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD, POST"})
    return _from_range(request)


def _range_form(request, data: dict | None) -> RangeForm:
    active = Ensemble.objects.order_by("-is_active", "name").first()
    defaults = _range_defaults(active)
    if data is None:
        return RangeForm(initial=defaults)
    return RangeForm({**defaults, **{k: v for k, v in data.items() if k != "format"}})


def _page(request, status: int = 200, **extra):
    ctx = _context(request, **extra)
    return render(request, "monitor/thresholds.html", ctx, status=status)


def _from_range(request):
    params = request.GET.dict()
    fmt = params.get("format", "")
    form = _range_form(request, params)
    if not form.fields["ensemble"].choices:
        return _page(request, range_form=_range_form(request, None))
    if not form.is_valid():
        return _page(request, status=400, range_form=form, errors=_form_errors(form))
    d = form.cleaned_data
    try:
        inp = threshold_input.database_input(d["from"], d["to"], ensemble=d["ensemble"], model=d["model"] or None)
        result = thresholds.threshold_table(inp, d["fpr"], threshold=d["threshold"])
    except threshold_input.TableError as exc:
        return _page(request, status=400, range_form=form, errors=[str(exc)])
    if fmt in DOWNLOADS:
        return _download(result, fmt, f"thresholds_{d['ensemble']}_{d['from']}_{d['to']}")
    query = request.GET.copy()
    query.pop("format", None)
    for k, v in form.cleaned_data.items():
        if k not in query and k not in ("fpr", "threshold") and v:
            query[k] = v.isoformat() if isinstance(v, dt.date) else v
    base = query.urlencode()
    downloads = {f: f"?{base}&format={f}" if base else f"?format={f}" for f in DOWNLOADS}
    return _page(request, range_form=form, downloads=downloads, **_result_context(result))


@csrf_protect
def _upload(request):
    fmt = request.POST.get("format", "")
    range_form = _range_form(request, None)
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return _page(request, status=400, range_form=range_form, upload_form=form, errors=_form_errors(form))
    d = form.cleaned_data
    upload = d["scores"]
    try:
        inp = threshold_input.file_input(upload.read(), model=d["model"] or None, name=upload.name)
        result = thresholds.threshold_table(inp, d["fpr"], threshold=d["threshold"])
    except ScoreFileError as exc:
        shown = exc.problems[:MAX_PROBLEMS_SHOWN]
        return _page(
            request,
            status=400,
            range_form=range_form,
            upload_form=form,
            errors=[f"{upload.name} is malformed: {len(exc.problems)} problem(s)"],
            problems=shown,
            problems_more=len(exc.problems) - len(shown),
        )
    except threshold_input.TableError as exc:
        return _page(request, status=400, range_form=range_form, upload_form=form, errors=[str(exc)])
    stem = upload.name.rsplit(".", 1)[0] or "scores"
    if fmt in DOWNLOADS:
        return _download(result, fmt, f"thresholds_{stem}")
    # the file is not kept: the downloads carry the exported text themselves
    downloads = {f: f"data:{DATA_URI_TYPES[f]},{quote(threshold_export.FORMATS[f](result))}" for f in DOWNLOADS}
    return _page(
        request,
        range_form=range_form,
        upload_form=form,
        downloads=downloads,
        download_name=re.sub(r"[^A-Za-z0-9._-]+", "_", f"thresholds_{stem}"),
        **_result_context(result),
    )
