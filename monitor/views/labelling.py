"""Admin labelling: the gallery grid with multi-select and a bulk label action, the
per-image label form of the image detail, the CSV label import (preview, then confirm) and the
export of the audit trail. Every change goes through `monitor.labels` (source "labelling" or
"import"), which writes the audit rows and schedules the recomputation of the days' figures.

Only admins label here (the users with ADMIN; reviewers label through the review queue): every
URL of this module answers 403 to reviewers and viewers, GET and POST alike.
"""

from __future__ import annotations

import secrets

from django import forms
from django.contrib import messages
from django.http import HttpResponse, HttpResponseBadRequest, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from .. import browse, label_csv, labels
from ..access import require
from ..models import AttackType, Image, LabelEvent
from .browsing import browse_context

ADMIN = "monitor.change_modelversion"  # the admin group has it; reviewers and viewers do not
MAX_MATCHING = 100_000  # "all matching the filter" labels at most this many images at once
MAX_IMPORT_BYTES = 50 * 1024 * 1024
PREVIEW_ROWS = 500  # changed rows listed in an import preview (all are applied)
PREVIEW_ERRORS = 1000  # error lines listed (all are counted)
HISTORY = 50  # label events shown on the image detail
SESSION_KEY = "labelling_import"
FILTER_PREFIX = "f"  # the filter travels in the bulk POST as f-category, f-device, ...


def admin_only(view):
    """Login (else redirect), then ADMIN (else 403), before anything else, method checks included."""
    return require(ADMIN)(view)


# --- shared bits ------------------------------------------------------------------------------------


def attack_types():
    return list(AttackType.objects.order_by("position", "name"))


def action_choices() -> list[tuple[str, str]]:
    """The label actions: genuine, attack of each type (in menu order), attack of an unknown type."""
    return (
        [("genuine", "genuine")]
        + [(f"attack:{t.name}", f"attack: {t.name}") for t in attack_types()]
        + [("attack:", "attack (type unknown)")]
    )


class ActionForm(forms.Form):
    action = forms.ChoiceField(choices=())
    note = forms.CharField(required=False, max_length=500)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["action"].choices = action_choices()

    def label_and_type(self) -> tuple[str, str]:
        label, _, attack_type = self.cleaned_data["action"].partition(":")
        return label, attack_type

    def describe(self) -> str:
        label, attack_type = self.label_and_type()
        return f"attack ({attack_type})" if attack_type else label


def _errors(form: forms.Form) -> str:
    return "; ".join(
        f"{'' if name == '__all__' else name + ': '}{' '.join(errs)}" for name, errs in form.errors.items()
    )


def _safe_query(text: str) -> str:
    """A query string posted back to us, re-encoded (it only ever follows our own paths)."""
    return QueryDict(text or "").urlencode()


def _with_query(url: str, query: str) -> str:
    return f"{url}?{query}" if query else url


def in_view(day, data: dict):
    """The images the grid shows for a filter, on every page (the filter's category included)."""
    qs = browse.filtered(day, data)
    return qs.filter(category=data["category"]) if data.get("category") else qs


def detail_context(im: Image) -> dict:
    """What templates/monitor/_label_form.html needs on the image detail page."""
    return {
        "history": im.label_events.select_related("user").order_by("-created_at", "-id")[:HISTORY],
        "attack_types": attack_types(),
    }


# --- index ----------------------------------------------------------------------------------------


@admin_only
@require_GET
def index(request):
    days = list(Image.objects.order_by("-day").values_list("day", flat=True).distinct()[:60])
    return render(request, "monitor/labelling.html", {"index": True, "days": days, "export_form": ExportForm()})


# --- the grid ---------------------------------------------------------------------------------------


def _ids(values) -> list[int] | None:
    try:
        return [int(v) for v in values]
    except (TypeError, ValueError):
        return None


@admin_only
@require_http_methods(["GET", "POST"])
def grid(request, day):
    if request.method == "POST":
        return _bulk(request, day)
    ctx = browse_context(request, day)
    data, counts = ctx["data"], ctx["counts"]
    matching = counts.get(data["category"], 0) if data.get("category") else sum(counts.values())
    ctx.update(
        page_query=request.GET.urlencode(),
        filter_fields=[
            (f"{FILTER_PREFIX}-{name}", value)
            for name, value in data.items()
            if name != "after" and name in ctx["form"].fields and value not in (None, "")
        ],
        matching=matching,
        max_matching=MAX_MATCHING,
        too_many=matching > MAX_MATCHING,
        action_form=ActionForm(),
    )
    return render(request, "monitor/labelling.html", ctx)


def _bulk(request, day):
    back = _with_query(reverse("labelling:grid", args=[day]), _safe_query(request.POST.get("query", "")))
    action = ActionForm(request.POST)
    if not action.is_valid():
        messages.error(request, f"Nothing labelled: {_errors(action)}")
        return redirect(back)

    if request.POST.get("scope") == "filter":
        flt = browse.BrowseForm(request.POST, prefix=FILTER_PREFIX)
        if not flt.is_valid():
            messages.error(request, f"Nothing labelled: the filter is not valid ({_errors(flt)})")
            return redirect(back)
        data = {k: v for k, v in flt.cleaned_data.items() if k != "after"}
        selection = in_view(day, data)
        n = selection.count()
        if n > MAX_MATCHING:
            messages.error(
                request,
                f"Nothing labelled: the filter matches {n:,} images and at most {MAX_MATCHING:,} can be "
                "labelled at once. Narrow the filter (device, score range, category) and label in parts.",
            )
            return redirect(back)
        ids = list(selection.values_list("pk", flat=True))
        what = f"all {n:,} images matching the filter"
    else:
        ids = _ids(request.POST.getlist("ids"))
        if ids is None:
            return HttpResponseBadRequest("ids must be image ids")
        if not ids:
            messages.error(request, "Nothing labelled: select images first (or all matching the filter).")
            return redirect(back)
        found = set(Image.objects.filter(day=day, pk__in=ids).values_list("pk", flat=True))
        if len(found) != len(set(ids)):
            messages.error(
                request,
                f"Nothing labelled: {len(set(ids)) - len(found)} of the selected images are not images of "
                f"{day.isoformat()} (or no longer exist). Reload the page.",
            )
            return redirect(back)
        n = len(found)
        what = f"{n:,} selected image{'s' if n != 1 else ''}"

    if not ids:
        messages.warning(request, "No images match the filter: nothing labelled.")
        return redirect(back)
    changed = _set_labels(request, ids, action, "Nothing labelled")
    if changed is None:
        return redirect(back)
    same = n - changed
    tail = f" ({same:,} of {what} already had that label)" if same else f" ({what})"
    messages.success(request, f"{changed:,} images labelled {action.describe()}{tail}.")
    return redirect(back)


def _set_labels(request, ids, action: ActionForm, refused: str) -> int | None:
    """Label the images as the action says (source: labelling); None, with a message, if refused."""
    label, attack_type = action.label_and_type()
    try:
        return labels.set_labels(
            ids, label, attack_type, user=request.user, source=LabelEvent.LABELLING, note=action.cleaned_data["note"]
        )
    except labels.LabelError as exc:
        messages.error(request, f"{refused}: {exc}")
        return None


# --- one image ------------------------------------------------------------------------------------


@admin_only
@require_POST
def image(request, pk):
    im = get_object_or_404(Image, pk=pk)
    back = _with_query(reverse("image", args=[im.pk]), _safe_query(request.POST.get("query", "")))
    action = ActionForm(request.POST)
    if not action.is_valid():
        messages.error(request, f"Not labelled: {_errors(action)}")
        return redirect(back)
    changed = _set_labels(request, [im.pk], action, "Not labelled")
    if changed is None:
        return redirect(back)
    if changed:
        messages.success(request, f"Labelled {action.describe()}.")
    else:
        messages.info(request, f"Already labelled {action.describe()}: nothing changed.")
    return redirect(back)


# --- CSV import -----------------------------------------------------------------------------------


class UploadForm(forms.Form):
    file = forms.FileField(required=False, label="CSV file")
    text = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 6, "cols": 80}), label="or paste CSV")

    def clean(self):
        data = super().clean()
        upload = data.get("file")
        if upload:
            if upload.size > MAX_IMPORT_BYTES:
                raise forms.ValidationError(f"the file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB: split it")
            try:
                data["csv"] = upload.read().decode("utf-8-sig")
            except UnicodeDecodeError:
                raise forms.ValidationError("the file is not UTF-8 text: save it as CSV (UTF-8)") from None
            data["name"] = upload.name
        elif (data.get("text") or "").strip():
            data["csv"], data["name"] = data["text"], "pasted text"
        else:
            raise forms.ValidationError("choose a CSV file or paste its text")
        return data


def _preview_rows(result: label_csv.ImportResult) -> tuple[list[dict], int]:
    """The rows that would change (old -> new), the first PREVIEW_ROWS of them, and how many in all."""
    current: dict[int, tuple[str, str, str]] = {}
    ids = [r.image_id for r in result.rows]
    for start in range(0, len(ids), labels.CHUNK):
        chunk = ids[start : start + labels.CHUNK]
        for pk, path, label, attack_type in Image.objects.filter(pk__in=chunk).values_list(
            "pk", "path", "label", "attack_type"
        ):
            current[pk] = (path, label, attack_type)
    changes, total = [], 0
    for r in result.rows:
        path, old_label, old_type = current.get(r.image_id, ("", r.old_label, ""))
        if (old_label, old_type) == (r.new_label, r.attack_type):
            continue
        total += 1
        if len(changes) < PREVIEW_ROWS:
            changes.append(
                {
                    "line": r.line,
                    "pk": r.image_id,
                    "path": path,
                    "old": LabelEvent._text(old_label, old_type),
                    "new": LabelEvent._text(r.new_label, r.attack_type),
                }
            )
    return changes, total


@admin_only
@require_http_methods(["GET", "POST"])
def import_labels(request):
    if request.method == "GET":
        return render(request, "monitor/label_import.html", {"form": UploadForm(), "export_form": ExportForm()})
    if "confirm" in request.POST:
        return _apply_import(request)

    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return render(request, "monitor/label_import.html", {"form": form, "export_form": ExportForm()}, status=400)
    text, name = form.cleaned_data["csv"], form.cleaned_data["name"]
    result = label_csv.import_labels(text, user=request.user, dry_run=True)
    changes, n_changes = _preview_rows(result)
    token = ""
    if result.ok:
        # the text waits in the session for the confirm (one pending import per session)
        token = secrets.token_urlsafe(16)
        request.session[SESSION_KEY] = {"token": token, "name": name, "text": text}
    else:
        request.session.pop(SESSION_KEY, None)
    ctx = {
        "form": UploadForm(),
        "export_form": ExportForm(),
        "result": result,
        "name": name,
        "changes": changes,
        "n_changes": n_changes,
        "more_changes": n_changes - len(changes),
        "errors": result.errors[:PREVIEW_ERRORS],
        "more_errors": len(result.errors) - PREVIEW_ERRORS,
        "token": token,
    }
    return render(request, "monitor/label_import.html", ctx)


def _apply_import(request):
    pending = request.session.get(SESSION_KEY)
    if not pending or not secrets.compare_digest(pending.get("token", ""), request.POST.get("token", "")):
        messages.error(request, "This preview is out of date (or was applied already): upload the file again.")
        return redirect("labelling:import")
    result = label_csv.import_labels(pending["text"], user=request.user, dry_run=False)
    if not result.written:
        # the labels changed since the preview and the file no longer applies cleanly: show why
        request.session.pop(SESSION_KEY, None)
        changes, n_changes = _preview_rows(result)
        ctx = {
            "form": UploadForm(),
            "export_form": ExportForm(),
            "result": result,
            "name": pending["name"],
            "changes": changes,
            "n_changes": n_changes,
            "more_changes": n_changes - len(changes),
            "errors": result.errors[:PREVIEW_ERRORS],
            "more_errors": len(result.errors) - PREVIEW_ERRORS,
            "token": "",
            "stale": True,
        }
        return render(request, "monitor/label_import.html", ctx, status=409)
    request.session.pop(SESSION_KEY, None)
    messages.success(
        request,
        f"{result.changed:,} images labelled from {pending['name']} "
        f"({len(result.rows):,} rows, {result.unchanged:,} already had their label).",
    )
    return redirect("labelling:import")


# --- export ---------------------------------------------------------------------------------------


class ExportForm(forms.Form):
    day_from = forms.DateField(
        required=False, input_formats=["%Y-%m-%d"], label="images of day from", widget=forms.DateInput({"type": "date"})
    )
    day_to = forms.DateField(
        required=False, input_formats=["%Y-%m-%d"], label="to", widget=forms.DateInput({"type": "date"})
    )

    def clean(self):
        data = super().clean()
        lo, hi = data.get("day_from"), data.get("day_to")
        if lo and hi and lo > hi:
            raise forms.ValidationError("the day range is empty: 'from' is after 'to'")
        return data


@admin_only
@require_GET
def export(request):
    """The audit trail (every label event, oldest first) as CSV; optionally only the events of the
    images collected in a day range."""
    form = ExportForm(request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest(f"Bad day range: {_errors(form)} (use YYYY-MM-DD)", content_type="text/plain")
    events = LabelEvent.objects.all()
    lo, hi = form.cleaned_data.get("day_from"), form.cleaned_data.get("day_to")
    if lo:
        events = events.filter(image__day__gte=lo)
    if hi:
        events = events.filter(image__day__lte=hi)
    name = "labels" + (f"-from-{lo.isoformat()}" if lo else "") + (f"-to-{hi.isoformat()}" if hi else "") + ".csv"
    response = HttpResponse(label_csv.labels_csv(events), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
