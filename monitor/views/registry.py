"""The model registry (SPEC sections 6 and 7): ensembles with their members, threshold and
change history; model versions with their files, shapes, preprocessing and speed on this
machine. Admins register a model version (its manifest and ONNX file uploaded, checked as by
`register_models`), make an ensemble of registered versions, activate an ensemble, change its
threshold (with a note saying why) and measure a model's speed; every change of an ensemble is
an EnsembleEvent, shown here and as a marker on the trends."""

from __future__ import annotations

import logging
import tempfile
import tomllib
from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import messages
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from .. import registry, tasks
from ..access import RUN, VIEW, require
from ..models import Ensemble, EnsembleEvent, ModelVersion
from ..shadow import ONE_MODEL_PREFIX, is_one_model

log = logging.getLogger(__name__)

NOTE_MAX = registry.NOTE_MAX
RANGE_ERROR = "the threshold must be in [0, 1]"
MAX_MANIFEST_BYTES = 64 * 1024
MAX_ONNX_BYTES = 1024 * 1024 * 1024  # protobuf files stop at 2 GB; models with external data are not supported


class ActivateForm(forms.Form):
    note = forms.CharField(
        required=False, max_length=NOTE_MAX, label="Note", widget=forms.TextInput(attrs={"placeholder": "why"})
    )


def threshold_field(label: str, **kwargs) -> forms.FloatField:
    """A threshold in [0, 1], with the same messages wherever one is entered."""
    return forms.FloatField(
        min_value=0,
        max_value=1,
        label=label,
        widget=forms.NumberInput(attrs={"step": "any", "min": "0", "max": "1"}),
        error_messages={"min_value": RANGE_ERROR, "max_value": RANGE_ERROR, "invalid": "enter a number in [0, 1]"},
        **kwargs,
    )


class ThresholdForm(forms.Form):
    threshold = threshold_field("New threshold")
    note = forms.CharField(
        max_length=NOTE_MAX,
        label="Note",
        widget=forms.TextInput(attrs={"placeholder": "why (required)"}),
        error_messages={"required": "a note is required: say why the threshold changes"},
    )


class ModelUploadForm(forms.Form):
    manifest = forms.FileField(
        label="Manifest (TOML)",
        widget=forms.FileInput(attrs={"accept": ".toml"}),
        help_text="a [model] manifest; its model.file names the ONNX file below",
    )
    onnx = forms.FileField(label="ONNX file", widget=forms.FileInput(attrs={"accept": ".onnx"}))
    measure = forms.BooleanField(required=False, initial=True, label="measure its speed now")

    def clean_manifest(self):
        upload = self.cleaned_data["manifest"]
        if upload.size > MAX_MANIFEST_BYTES:
            raise forms.ValidationError(
                f"a manifest is at most {MAX_MANIFEST_BYTES // 1024} KB; is this the ONNX file?"
            )
        try:
            return upload.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise forms.ValidationError("not a text file: a manifest is TOML in UTF-8") from None

    def clean_onnx(self):
        upload = self.cleaned_data["onnx"]
        if upload.size > MAX_ONNX_BYTES:
            raise forms.ValidationError(f"the file is larger than {MAX_ONNX_BYTES // 1024**3} GB")
        return upload


class MemberChoice(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj):
        return f"{obj.name} v{obj.version} ({obj.sha256[:12]})"


class EnsembleForm(forms.Form):
    name = forms.CharField(max_length=Ensemble._meta.get_field("name").max_length, label="Name")
    members = MemberChoice(
        queryset=ModelVersion.objects.order_by("name", "-created_at"),
        widget=forms.CheckboxSelectMultiple,
        label="Members",
        error_messages={"required": "pick at least one model version"},
    )
    threshold = threshold_field("Threshold", initial=0.5)
    note = forms.CharField(
        required=False, max_length=NOTE_MAX, label="Note", widget=forms.TextInput(attrs={"placeholder": "why"})
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
    # its ensembles, and "run alone" for its hidden one-model ensemble (not an ensemble to manage)
    mv.memberships = [
        {"name": "run alone" if is_one_model(e) else e.name, "active": e.is_active, "threshold": e.threshold}
        for e in sorted(mv.ensembles.all(), key=lambda e: (not e.is_active, is_one_model(e), e.name))
    ]
    return mv


def _ensembles(bound: dict | None = None) -> list[Ensemble]:
    """Every ensemble (the active one first) with members, history and, for admins, forms; the
    form that failed (`bound`: {"pk", "activate" or "threshold": form}) keeps its input and errors."""
    bound = bound or {}
    # the hidden one-model ensembles of `score_day --model` follow the active threshold and are
    # never activated: they show on the runs and compare pages, by their model
    ensembles = list(
        Ensemble.objects.exclude(name__startswith=ONE_MODEL_PREFIX)
        .order_by("-is_active", "name")
        .prefetch_related(
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
    """The page; `bound` holds the form that failed, with its input and errors (for the
    ensemble rows: {"pk", "activate" or "threshold": form}; or "model_form", "ensemble_form")."""
    bound = bound or {}
    ctx = {
        "ensembles": _ensembles(bound),
        "model_versions": [_with_details(mv) for mv in ModelVersion.objects.prefetch_related("ensembles")],
        "can_manage": request.user.has_perm(RUN),
        "model_form": bound.get("model_form") or ModelUploadForm(),
        "ensemble_form": bound.get("ensemble_form") or EnsembleForm(),
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
        "can_manage": request.user.has_perm(RUN),
    }
    return render(request, "monitor/model.html", ctx)


def _get_ensemble(pk: int) -> Ensemble:
    """An ensemble admins manage; 404 for a hidden one-model ensemble (it follows the active one)."""
    return get_object_or_404(Ensemble.objects.exclude(name__startswith=ONE_MODEL_PREFIX), pk=pk)


@require_POST
@require(RUN)
def activate(request, pk):
    ens = _get_ensemble(pk)
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
    ens = _get_ensemble(pk)
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


def _save_upload(upload, folder: Path) -> Path:
    path = folder / "upload.onnx"
    with open(path, "wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
    return path


def _measure_new(request, mv: ModelVersion) -> None:
    """Measure the new model's speed as a job (in-process without a broker, else on a worker);
    registered all the same when that fails: the Measure speed button retries."""
    try:
        tasks.measure_model.delay(mv.pk)
    except Exception as exc:  # noqa: BLE001 - the model is registered; say why it has no speed yet
        messages.error(request, f"{mv.label} is registered, but its speed was not measured: {exc}")
        return
    mv.refresh_from_db()
    if mv.measured_at is None:
        messages.info(request, f"The speed of {mv.label} is being measured by a worker; reload in a minute.")
    else:
        messages.success(
            request,
            f"{mv.label}: {mv.latency_ms:.2f} ms/image (batch 1, one core), "
            f"{mv.throughput:.0f} images/s at batch {mv.best_batch} (all cores).",
        )


@require_POST
@require(RUN)
def register_model(request):
    """Register a model version from its uploaded manifest and ONNX file. The file is checked in
    a temporary folder (removed afterwards, whatever happens) and stored by content only when
    every check passed; a problem is shown next to the upload at fault."""
    form = ModelUploadForm(request.POST, request.FILES)
    if form.is_valid():
        upload = form.cleaned_data["onnx"]
        try:
            with tempfile.TemporaryDirectory(prefix="koala-upload-", dir=settings.FILE_UPLOAD_TEMP_DIR) as tmp:
                path = _save_upload(upload, Path(tmp))
                mv, created = registry.register_upload(
                    form.cleaned_data["manifest"], path, onnx_name=upload.name, user=request.user
                )
        except registry.UploadError as exc:
            form.add_error(exc.field, str(exc))
        else:
            if not created:
                messages.info(request, f"{mv.label} was registered already, with this file and manifest.")
                return redirect("models")
            log.info("model %s registered by %s from %s", mv.label, request.user.get_username(), upload.name)
            messages.success(request, f"Model {mv.name} v{mv.version} registered (sha256 {mv.sha256}).")
            if form.cleaned_data["measure"]:
                _measure_new(request, mv)
            return redirect("models")
    return _list_page(request, {"model_form": form}, status=400)


@require_POST
@require(RUN)
def register_ensemble(request):
    """Make a (not active) ensemble of registered model versions; recorded as a "registered"
    event with who, when and the note."""
    form = EnsembleForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            ens = registry.register_ensemble(
                data["name"], data["members"], data["threshold"], user=request.user, note=data["note"]
            )
        except registry.FieldError as exc:
            form.add_error(exc.field, str(exc))
        else:
            messages.success(
                request,
                f"Ensemble {ens.name} registered with threshold {ens.threshold:g}; activate it to score with it.",
            )
            return redirect("models")
    return _list_page(request, {"ensemble_form": form}, status=400)
