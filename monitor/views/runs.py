"""Runs: history with counts, durations and errors; progress; "score this day now" for admins,
with the active ensemble (a normal run) or another one (a shadow run, monitor/shadow.py)."""

import datetime as dt

from django import forms
from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from .. import services, shadow, tasks
from ..access import RUN, VIEW, require
from ..models import Ensemble, Run


class StartForm(forms.Form):
    day = forms.DateField(input_formats=["%Y-%m-%d"], widget=forms.DateInput(attrs={"type": "date"}))
    ensemble = forms.ModelChoiceField(
        queryset=Ensemble.objects.order_by("-is_active", "name"),
        to_field_name="name",
        required=False,
        empty_label=None,
        label="ensemble",
        help_text="another than the active one: a shadow run (scores only, images and folders unchanged)",
    )
    rescore = forms.BooleanField(required=False, label="score already scored images again")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        active = Ensemble.objects.filter(is_active=True).first()
        if active is not None and "ensemble" not in self.initial:
            self.initial["ensemble"] = active.name

    def clean_day(self):
        day = self.cleaned_data["day"]
        if day > timezone.localdate():
            raise forms.ValidationError("that day has not happened yet")
        return day


@require(VIEW)
def run_list(request):
    default_day = timezone.localdate() - dt.timedelta(days=1)
    ctx = {
        "runs": Run.objects.select_related("ensemble")[:100],
        "form": StartForm(initial={"day": default_day}),
        "can_run": request.user.has_perm(RUN),
    }
    return render(request, "monitor/runs.html", ctx)


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
    form = StartForm(request.POST)
    if not form.is_valid():
        ctx = {"runs": Run.objects.select_related("ensemble")[:100], "form": form, "can_run": True}
        return render(request, "monitor/runs.html", ctx, status=400)
    chosen = form.cleaned_data["ensemble"]
    if chosen is not None and not chosen.is_active:
        return _start_shadow(request, form.cleaned_data["day"], chosen, form.cleaned_data["rescore"])
    try:
        run = services.start_run(
            form.cleaned_data["day"], trigger="manual", rescore=form.cleaned_data["rescore"], ensemble=chosen
        )
    except services.JobError as exc:  # no active ensemble, a broken face detector manifest
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
    except services.JobError as exc:
        messages.error(request, str(exc))
        return redirect("runs")
    try:
        tasks.shadow_day.delay(run.day.isoformat(), ensemble.pk, run_id=run.pk)  # in-process without a broker
    except Exception as exc:  # noqa: BLE001 - the run row shows it; the page must not 500
        messages.error(request, f"the shadow run failed: {exc}")
    return redirect("run", pk=run.pk)
