"""Runs: history with counts, durations and errors; progress; "score this day now" for admins,
with the active ensemble (a normal run) or another one (a shadow run, monitor/shadow.py), or
"score with one model": a shadow run of one registered model version alone."""

import datetime as dt

from django import forms
from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from .. import errors, runs, shadow, tasks
from ..access import RUN, VIEW, require
from ..models import Ensemble, ModelVersion, Run


class DayForm(forms.Form):
    day = forms.DateField(input_formats=["%Y-%m-%d"], widget=forms.DateInput(attrs={"type": "date"}))
    rescore = forms.BooleanField(required=False, label="score already scored images again")

    def clean_day(self):
        day = self.cleaned_data["day"]
        if day > timezone.localdate():
            raise forms.ValidationError("that day has not happened yet")
        return day


class StartForm(DayForm):
    field_order = ["day", "ensemble", "rescore"]
    ensemble = forms.ModelChoiceField(
        # the hidden one-model ensembles are offered by their model, in OneModelForm
        queryset=Ensemble.objects.exclude(name__startswith=shadow.ONE_MODEL_PREFIX).order_by("-is_active", "name"),
        to_field_name="name",
        required=False,
        empty_label=None,
        label="ensemble",
        help_text="another than the active one: a shadow run (scores only, images and folders unchanged)",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        active = Ensemble.objects.filter(is_active=True).first()
        if active is not None and "ensemble" not in self.initial:
            self.initial["ensemble"] = active.name


class OneModelForm(DayForm):
    """A shadow run of one model version alone, without making an ensemble by hand."""

    field_order = ["day", "model", "rescore"]
    model = forms.ModelChoiceField(
        queryset=ModelVersion.objects.order_by("name", "-created_at"),
        empty_label=None,
        label="model",
        help_text="a shadow run of this model alone, at the active ensemble's threshold",
    )

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "id_one_%s")  # on the same page as StartForm: ids of its own
        super().__init__(*args, **kwargs)
        self.fields["model"].label_from_instance = lambda mv: mv.label


@require(VIEW)
def run_list(request):
    default_day = timezone.localdate() - dt.timedelta(days=1)
    shown = {"form": StartForm(initial={"day": default_day}), "model_form": OneModelForm(initial={"day": default_day})}
    return _page(request, shown, can_run=request.user.has_perm(RUN))


def _page(request, shown: dict, *, can_run: bool = True, status: int = 200):
    """The runs page with the forms in `shown` (e.g. one with its errors), the others blank."""
    ctx = {"runs": Run.objects.select_related("ensemble")[:100], "can_run": can_run, **shown}
    ctx.setdefault("form", StartForm())
    ctx.setdefault("model_form", OneModelForm())
    return render(request, "monitor/runs.html", ctx, status=status)


@require(VIEW)
def run_detail(request, pk):
    run = get_object_or_404(Run.objects.select_related("ensemble"), pk=pk)
    return render(request, "monitor/run.html", {"run": run})


@require(VIEW)
def status(request, pk):
    run = get_object_or_404(Run, pk=pk)
    return JsonResponse(
        {
            "id": run.pk,
            "status": run.status,
            "processed": run.processed,
            "total": run.total,
            "progress": round(run.progress, 4),
            "counts": run.counts,
            "new_images": run.new_images,
            "duplicates": run.duplicates,
            "failed_files": run.failed_files,
        }
    )


@require_POST
@require(RUN)
def start(request):
    if "model" in request.POST:
        return _start_one_model(request)
    form = StartForm(request.POST)
    if not form.is_valid():
        return _page(request, {"form": form}, status=400)
    chosen = form.cleaned_data["ensemble"]
    if chosen is not None and not chosen.is_active:
        return _start_shadow(request, form.cleaned_data["day"], chosen, form.cleaned_data["rescore"])
    try:
        run = runs.start_run(
            form.cleaned_data["day"], trigger="manual", rescore=form.cleaned_data["rescore"], ensemble=chosen
        )
    except errors.JobError as exc:  # no active ensemble, a broken face detector manifest
        messages.error(request, str(exc))
        return redirect("runs")
    try:
        tasks.score_day.delay(run.day.isoformat(), run_id=run.pk)  # in-process when there is no broker
    except Exception as exc:  # noqa: BLE001 - the run row shows it; the page must not 500
        messages.error(request, f"the run failed: {exc}")
    return redirect("run", pk=run.pk)


def _start_shadow(request, day, ensemble: Ensemble, rescore: bool):
    try:
        run = shadow.start_shadow_run(day, ensemble, trigger="manual", rescore=rescore)
    except errors.JobError as exc:
        messages.error(request, str(exc))
        return redirect("runs")
    try:
        tasks.shadow_day.delay(run.day.isoformat(), ensemble.pk, run_id=run.pk)  # in-process without a broker
    except Exception as exc:  # noqa: BLE001 - the run row shows it; the page must not 500
        messages.error(request, f"the shadow run failed: {exc}")
    return redirect("run", pk=run.pk)


def _start_one_model(request):
    form = OneModelForm(request.POST)
    if not form.is_valid():
        return _page(request, {"model_form": form}, status=400)
    try:
        ens = shadow.one_model_ensemble(form.cleaned_data["model"], user=request.user)
    except errors.JobError as exc:
        messages.error(request, str(exc))
        return redirect("runs")
    return _start_shadow(request, form.cleaned_data["day"], ens, form.cleaned_data["rescore"])
