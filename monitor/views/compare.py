"""The compare page: two ensembles over the same images and date range.

GET form: ensemble A (default: the active one), ensemble B (default: the most recently
shadow-scored other one), from/to (default: the last 30 days with shadow scores), device, target
FPRs. All numbers come from `monitor.compare`, which builds on the threshold table's code.
"""

from __future__ import annotations

from django import forms
from django.shortcuts import render
from django.views.decorators.http import require_safe

from .. import compare as service
from .. import rates, threshold_export, threshold_input, thresholds
from ..access import VIEW, require
from ..models import Device, Ensemble, ShadowScore
from ..shadow import ONE_MODEL_PREFIX, is_one_model


class CompareForm(forms.Form):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        date = forms.DateInput(attrs={"type": "date"})
        choices = _choices()
        self.fields["a"] = forms.ChoiceField(label="Ensemble or model A", choices=choices)
        self.fields["b"] = forms.ChoiceField(label="Ensemble or model B", choices=choices)
        self.fields["from"] = forms.DateField(label="From", widget=date)
        self.fields["to"] = forms.DateField(label="To", widget=date)
        devices = Device.objects.order_by("name").values_list("name", flat=True)
        self.fields["device"] = forms.ChoiceField(
            label="Device", required=False, choices=[("", "all devices")] + [(d, d) for d in devices]
        )
        self.fields["fpr"] = forms.CharField(
            label="Target FPRs", required=False, max_length=200, help_text="fractions or percentages, e.g. 0.1% 1%"
        )

    def clean_fpr(self):
        try:
            return threshold_input.parse_fprs([self.cleaned_data.get("fpr") or ""])
        except threshold_input.TableError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self):
        data = super().clean()
        if data.get("a") and data.get("a") == data.get("b"):
            raise forms.ValidationError("pick two different ensembles")
        start, end = data.get("from"), data.get("to")
        if start and end and start > end:
            raise forms.ValidationError(f"the range is empty: from {start} is after to {end}")
        return data


def _choices() -> list:
    """The ensembles admins made, then each model run alone (`score_day --model`) by its version."""
    ensembles, models = [], []
    for e in Ensemble.objects.order_by("-is_active", "name"):
        if is_one_model(e):
            models.append((e.name, f"{e.name.removeprefix(ONE_MODEL_PREFIX)} alone (t={e.threshold:g})"))
        else:
            ensembles.append((e.name, str(e)))
    return [("Ensembles", ensembles)] + ([("Single models", models)] if models else [])


def _defaults() -> dict:
    a, b = service.default_pair()
    start, end = service.default_range(a, b)
    return {
        "a": a.name if a else "",
        "b": b.name if b else "",
        "from": start.isoformat(),
        "to": end.isoformat(),
        "device": "",
        "fpr": "0.1% 1%",
    }


def _errors(form: forms.Form) -> list[str]:
    out = []
    for name, errs in form.errors.items():
        label = "" if name == "__all__" else f"{form.fields[name].label}: "
        out += [f"{label}{e}" for e in errs]
    return out


def _row(r) -> dict:
    return {
        "best": r.best,
        "threshold": thresholds.threshold_text(r.threshold),
        "tpr": rates.for_page(r.tpr_rate, r.tpr),
        "fpr": rates.for_page(r.fpr_rate, r.fpr, 3),
        "tp": r.tp,
        "fp": r.fp,
        "attack": r.attack,
        "genuine": r.genuine,
    }


def _provenance(side: service.Side) -> str:
    """Whether the side's figures at its threshold are what production decided, or a what-if."""
    n, done = len(side.scores), side.as_decided
    at = f"{side.name} at {thresholds.threshold_text(side.threshold)}"
    if not side.what_if:
        return f"as decided: production decided all {n} images with {at}"
    if not done:
        return f"what-if: {at} (its threshold now) applied to these scores; production decided none of them with {at}"
    return f"what-if for {n - done} of {n} images: production decided {done} of them with {at}"


def _side(side: service.Side) -> dict:
    c = side.at_threshold
    return {
        "name": side.name,
        "threshold": thresholds.threshold_text(side.threshold),
        "what_if": side.what_if,
        "provenance": _provenance(side),
        "shadow_at": ", ".join(d.text for d in side.shadow_at),
        "tp": c.tp,
        "fn": c.fn,
        "fp": c.fp,
        "tn": c.tn,
        "tpr": rates.for_page(c.tpr),
        "fpr": rates.for_page(c.fpr, digits=3),
        "flagged": side.flagged,
    }


def _result_context(c: service.Comparison) -> dict:
    groups = []
    for f in c.target_fprs:
        pairs = c.strategy_pairs(f)
        groups.append(
            {
                "label": threshold_export.fpr_label(f),
                "target": f,
                "headline": [_row(c.a.row(f)) | {"side": "a"}, _row(c.b.row(f)) | {"side": "b"}],
                "rows": [
                    {
                        "minface": "none" if ra.minface is None else ra.minface,
                        "quality": "on" if ra.quality else "off",
                        "pair": [_row(ra) | {"side": "a"}, _row(rb) | {"side": "b"}],
                    }
                    for ra, rb in pairs
                ],
            }
        )
    disagreements = [
        {
            "image": d.image,
            "score_a": f"{d.score_a:.4f}",
            "score_b": f"{d.score_b:.4f}",
            "decision_a": "live" if d.score_a > c.a.threshold else "attack",
            "decision_b": "live" if d.score_b > c.b.threshold else "attack",
            "diff": f"{d.diff:+.4f}",
        }
        for d in c.disagreements
    ]
    return {
        "comparison": c,
        "groups": groups,
        "side_a": _side(c.a),
        "side_b": _side(c.b),
        "sides": [_side(c.a) | {"side": "a", "letter": "A"}, _side(c.b) | {"side": "b", "letter": "B"}],
        "disagreements": disagreements,
        "production": c.production,
    }


@require(VIEW)
@require_safe
def compare(request):
    ctx = {
        "form": None,
        "errors": [],
        "comparison": None,
        "enough_ensembles": Ensemble.objects.count() >= 2,
        "has_shadow": ShadowScore.objects.exists(),
    }
    if not ctx["enough_ensembles"]:
        return render(request, "monitor/compare.html", ctx)
    defaults = _defaults()
    params = {k: v for k, v in request.GET.items() if k in defaults}
    form = CompareForm({**defaults, **params})
    ctx["form"] = form
    if not form.is_valid():
        return render(request, "monitor/compare.html", ctx | {"errors": _errors(form)}, status=400)
    d = form.cleaned_data
    if not ctx["has_shadow"]:
        return render(request, "monitor/compare.html", ctx)
    a, b = Ensemble.objects.get(name=d["a"]), Ensemble.objects.get(name=d["b"])
    device = Device.objects.get(name=d["device"]) if d["device"] else None
    try:
        c = service.compare(a, b, d["from"], d["to"], device=device, target_fprs=d["fpr"])
    except service.CompareError as exc:
        return render(request, "monitor/compare.html", ctx | {"errors": [str(exc)]}, status=400)
    ctx |= {"a": a, "b": b, "device": device, "empty": c.images == 0}
    if c.images:
        ctx |= _result_context(c)
    else:
        ctx["comparison"] = c
    return render(request, "monitor/compare.html", ctx)
