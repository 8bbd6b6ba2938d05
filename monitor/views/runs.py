"""Runs: history with counts, durations and errors; progress; "score this day now" for admins."""

import datetime as dt

from django import forms
from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from .. import services, tasks
from ..access import RUN, VIEW, require
from ..models import Run


class StartForm(forms.Form):
    day = forms.DateField(input_formats=["%Y-%m-%d"], widget=forms.DateInput(attrs={"type": "date"}))
    rescore = forms.BooleanField(required=False, label="score already scored images again")

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
    try:
        ensemble = services.active_ensemble()
    except services.JobError as exc:
        messages.error(request, str(exc))
        return redirect("runs")
    run = services.start_run(
        form.cleaned_data["day"], trigger="manual", rescore=form.cleaned_data["rescore"], ensemble=ensemble
    )
    try:
        tasks.score_day.delay(run.day.isoformat(), run_id=run.pk)  # in-process when there is no broker
    except Exception as exc:  # noqa: BLE001 - the run row shows it; the page must not 500
        messages.error(request, f"the run failed: {exc}")
    return redirect("run", pk=run.pk)
