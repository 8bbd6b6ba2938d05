"""The model registry (SPEC sections 6 and 7): ensembles with their members, threshold and
change history; model versions with their files, shapes, preprocessing and speed on this
machine. Admins activate an ensemble, change its threshold (with a note saying why) and measure
a model's speed; every change is an EnsembleEvent, shown here and as a marker on the trends."""

from __future__ import annotations

import tomllib

from django import forms
from django.contrib import messages
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from .. import registry
from ..access import RUN, VIEW, require
from ..models import Ensemble, EnsembleEvent, ModelVersion

NOTE_MAX = registry.NOTE_MAX
RANGE_ERROR = "the threshold must be in [0, 1]"


class ActivateForm(forms.Form):
    note = forms.CharField(
        required=False, max_length=NOTE_MAX, label="Note", widget=forms.TextInput(attrs={"placeholder": "why"})
    )


class ThresholdForm(forms.Form):
    threshold = forms.FloatField(
        min_value=0,
        max_value=1,
        label="New threshold",
        widget=forms.NumberInput(attrs={"step": "any", "min": "0", "max": "1"}),
        error_messages={"min_value": RANGE_ERROR, "max_value": RANGE_ERROR, "invalid": "enter a number in [0, 1]"},
    )
    note = forms.CharField(
        max_length=NOTE_MAX,
        label="Note",
        widget=forms.TextInput(attrs={"placeholder": "why (required)"}),
        error_messages={"required": "a note is required: say why the threshold changes"},
    )


def _preprocessing(mv: ModelVersion) -> dict:
    """Layout, size, colour and scale from the stored manifest (empty if it does not parse)."""
    try:
        doc = tomllib.loads(mv.manifest)
    except tomllib.TOMLDecodeError:
        return {}
    inp = doc.get("input") if isinstance(doc.get("input"), dict) else {}
    out = doc.get("output") if isinstance(doc.get("output"), dict) else {}
    size = inp.get("size")
    kind, activation = out.get("type", "logits"), out.get("activation", "softmax")
    classes = out.get("classes")
    return {
        "layout": inp.get("layout", "NCHW"),
        "size": "×".join(str(v) for v in size) if isinstance(size, list) else "",
        "color": inp.get("color", "RGB"),
        "scale": inp.get("scale", "unit"),
        "output": f"{kind} ({activation})" if kind == "logits" else str(kind),
        "classes": ", ".join(str(c) for c in classes) if isinstance(classes, list) else "",
    }


def _shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]" if shape else "—"


def _with_details(mv: ModelVersion) -> ModelVersion:
    mv.pre = _preprocessing(mv)
    mv.input_text = _shape(mv.input_shape)
    mv.output_text = _shape(mv.output_shape)
    return mv


def _ensembles(bound: dict | None = None) -> list[Ensemble]:
    """Every ensemble (the active one first) with members, history and, for admins, forms; the
    form that failed (`bound`: {"pk", "activate" or "threshold": form}) keeps its input and errors."""
    bound = bound or {}
    ensembles = list(
        Ensemble.objects.order_by("-is_active", "name").prefetch_related(
            Prefetch("members", queryset=ModelVersion.objects.order_by("name")),
            Prefetch("events", queryset=EnsembleEvent.objects.select_related("user").order_by("-created_at", "-id")),
        )
    )
    for ens in ensembles:
        mine = bound.get("pk") == ens.pk
        ens.activate_form = bound["activate"] if mine and "activate" in bound else ActivateForm()
        ens.threshold_form = (
            bound["threshold"] if mine and "threshold" in bound else ThresholdForm(initial={"threshold": ens.threshold})
        )
        ens.failed = mine
    return ensembles


def _list_page(request, bound: dict | None = None, status: int = 200):
    ctx = {
        "ensembles": _ensembles(bound),
        "model_versions": [_with_details(mv) for mv in ModelVersion.objects.prefetch_related("ensembles")],
        "can_manage": request.user.has_perm(RUN),
    }
    return render(request, "monitor/models.html", ctx, status=status)


@require(VIEW)
def model_list(request):
    return _list_page(request)


@require(VIEW)
def model_detail(request, pk):
    mv = _with_details(get_object_or_404(ModelVersion, pk=pk))
    ctx = {
        "mv": mv,
        "ensembles": list(mv.ensembles.order_by("-is_active", "name")),
        "can_manage": request.user.has_perm(RUN),
    }
    return render(request, "monitor/model.html", ctx)


@require_POST
@require(RUN)
def activate(request, pk):
    ens = get_object_or_404(Ensemble, pk=pk)
    form = ActivateForm(request.POST)
    if not form.is_valid():
        return _list_page(request, {"pk": ens.pk, "activate": form}, status=400)
    if registry.activate_ensemble(ens, user=request.user, note=form.cleaned_data["note"]):
        messages.success(request, f"Ensemble {ens.name} is now the active one; the next runs score with it.")
    else:
        messages.info(request, f"Ensemble {ens.name} already was the active one.")
    return redirect("models")


@require_POST
@require(RUN)
def threshold(request, pk):
    ens = get_object_or_404(Ensemble, pk=pk)
    form = ThresholdForm(request.POST)
    if form.is_valid():
        old = ens.threshold
        try:
            registry.set_threshold(
                ens, form.cleaned_data["threshold"], user=request.user, note=form.cleaned_data["note"]
            )
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Threshold of {ens.name}: {old:g} → {ens.threshold:g}.")
            return redirect("models")
    return _list_page(request, {"pk": ens.pk, "threshold": form}, status=400)


@require_POST
@require(RUN)
def measure(request, pk):
    mv = get_object_or_404(ModelVersion, pk=pk)
    try:
        registry.measure_model(mv)
    except Exception as exc:  # noqa: BLE001 - a missing or broken file: say so, do not 500
        messages.error(request, f"Could not measure {mv.label}: {exc}")
    else:
        messages.success(
            request,
            f"{mv.label}: {mv.latency_ms:.2f} ms/image (batch 1, one core), "
            f"{mv.throughput:.0f} images/s at batch {mv.best_batch} (all cores).",
        )
    if request.POST.get("back") == "model":
        return redirect("model", pk=mv.pk)
    return redirect("models")
