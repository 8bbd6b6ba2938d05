"""The on-call review queue (SPEC section 7): one flagged image at a time, a verdict per
key, skip, undo and progress. Reviewers and admins only (viewers get 403, on GET and on POST).

The queue and the claims live in monitor/review_queue.py, the audit trail in monitor/labels.py;
this module keeps two small per-session lists: the images skipped in this session (left out of the queue until the list is
cleared) and the trail of images reviewed or skipped (what `k`, previous, steps back through).
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from .. import labels, review_queue
from ..access import LABEL, require
from ..labels import LabelError
from ..models import Device, Image, LabelEvent

SKIP_KEY = "review_skip"
TRAIL_KEY = "review_trail"
SESSION_LIST_MAX = 500


class QueueFilter(forms.Form):
    day_from = forms.DateField(required=False, label="from day", widget=forms.DateInput(attrs={"type": "date"}))
    day_to = forms.DateField(required=False, label="to day", widget=forms.DateInput(attrs={"type": "date"}))
    device = forms.CharField(required=False, max_length=100)

    def clean(self):
        data = super().clean()
        if data.get("day_from") and data.get("day_to") and data["day_from"] > data["day_to"]:
            raise forms.ValidationError("the first day is after the last day")
        return data


def _filters(params) -> tuple[QueueFilter, dict, str]:
    """(form, keyword arguments for review_queue.review_queue / claim_next, query string to carry along).
    An invalid filter is reported on the page and ignored."""
    form = QueueFilter(params)
    if not form.is_valid():
        return form, {}, ""
    data = {k: form.cleaned_data.get(k) or None for k in ("day_from", "day_to", "device")}
    query = urlencode({k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in data.items() if v})
    return form, data, query


def _queue_url(query: str = "", **extra) -> str:
    params = "&".join(p for p in (query, urlencode(extra) if extra else "") if p)
    return reverse("review:queue") + (f"?{params}" if params else "")


def _session_list(request, key: str) -> list[int]:
    return [int(i) for i in request.session.get(key, [])]


def _set_session_list(request, key: str, values: list[int]) -> None:
    request.session[key] = values[-SESSION_LIST_MAX:]


def _remember(request, pk: int, *, skipped: bool) -> None:
    """Put the image at the end of the trail; a skipped image joins the skip list, a reviewed one leaves it."""
    trail = [i for i in _session_list(request, TRAIL_KEY) if i != pk] + [pk]
    _set_session_list(request, TRAIL_KEY, trail)
    skip = [i for i in _session_list(request, SKIP_KEY) if i != pk]
    if skipped:
        skip.append(pk)
    _set_session_list(request, SKIP_KEY, skip)


def _last_review(user) -> LabelEvent | None:
    """The verdict `u` would undo (review_queue.undo_last_review picks the same one)."""
    return (
        LabelEvent.objects.filter(user=user, source=LabelEvent.REVIEW, undone=False)
        .exclude(note=review_queue.UNDO_NOTE)
        .order_by("-created_at", "-id")
        .first()
    )


def _image_context(im: Image) -> dict:
    threshold = im.threshold
    scores = [
        {
            "model": name,
            "score": value,
            "live": threshold is not None and value is not None and value > threshold,
            "guess": (im.attack_guesses or {}).get(name, ""),
            "version": (im.model_versions or {}).get(name, ""),
        }
        for name, value in sorted((im.scores or {}).items())
    ]
    overlay = {
        "width": im.width,
        "height": im.height,
        "box": [im.box_x, im.box_y, im.box_w, im.box_h] if im.box_w else None,
    }
    quality = [
        ("face size", im.face_size, "px", "face_size"),
        ("yaw", im.yaw, "°", "yaw"),
        ("pitch", im.pitch, "°", "pitch"),
        ("roll", im.roll, "°", None),
        ("blur", im.blur, "", "blur"),
    ]
    return {"scores": scores, "overlay": overlay, "quality": quality}


@require(LABEL)
def queue(request):
    user = request.user
    form, data, query = _filters(request.GET)
    skip = _session_list(request, SKIP_KEY)
    trail = _session_list(request, TRAIL_KEY)

    history = False
    im = None
    at = request.GET.get("at", "")
    if at.isdigit() and int(at) in trail:  # looking back at an image reviewed or skipped in this session
        im = Image.objects.select_related("device", "ensemble", "reviewed_by").filter(pk=int(at)).first()
        history = im is not None
    if im is None:
        im = review_queue.current_image(user, skip, **data)

    now = timezone.now()
    if im is None:
        position, prev_pk, next_url = None, (trail[-1] if trail else None), None
    elif history:
        position = trail.index(im.pk)
        prev_pk = trail[position - 1] if position > 0 else None
        next_url = _queue_url(query, at=trail[position + 1]) if position + 1 < len(trail) else _queue_url(query)
    else:
        position = None
        earlier = [i for i in trail if i != im.pk]
        prev_pk, next_url = (earlier[-1] if earlier else None), None

    held_by_other = im is not None and review_queue.held_by_other(
        im.review_claimed_by_id, im.review_claim_until, user, now
    )
    reviewable = im is not None and im.decision == "attack" and im.reviewed_at is None and not held_by_other
    last = _last_review(user)
    progress = review_queue.review_progress(
        user, day_from=data.get("day_from"), day_to=data.get("day_to"), device=data.get("device")
    )
    ctx = {
        "im": im,
        "history": history,
        "reviewable": reviewable,
        "held_by_other": held_by_other,
        "skipped": im is not None and im.pk in skip,
        "form": form,
        "filter_query": query,
        "devices": Device.objects.order_by("name").values_list("name", flat=True),
        "attack_types": labels.attack_type_names(),
        "progress": progress,
        "prev_url": _queue_url(query, at=prev_pk) if prev_pk is not None else None,
        "next_url": next_url,
        "last_review": last,
        "skip_count": len(skip),
        "claim_seconds": review_queue.claim_seconds(),
    }
    if im is not None:
        ctx.update(_image_context(im))
    return render(request, "monitor/review.html", ctx)


def _wants_json(request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _done(request, url: str, message: str, **data):
    if _wants_json(request):
        return JsonResponse({"ok": True, "next": url, "message": message, **data})
    messages.success(request, message)
    return redirect(url)


def _refused(request, url: str, message: str, status: int = 409):
    if _wants_json(request):
        return JsonResponse({"ok": False, "next": url, "error": message}, status=status)
    messages.error(request, message)
    return redirect(url)


@require_POST
@require(LABEL)
def verdict(request, pk):
    _, _, query = _filters(request.GET)
    url = _queue_url(query)
    im = get_object_or_404(Image, pk=pk)
    if im.decision != "attack":
        return _refused(request, url, f"Image #{pk} was not flagged: it is not in the review queue.")
    try:
        event = review_queue.review(
            pk,
            request.POST.get("verdict", ""),
            user=request.user,
            attack_type=request.POST.get("attack_type", ""),
            note=request.POST.get("note", ""),
        )
    except LabelError as exc:
        return _refused(request, url, f"Image #{pk}: {exc}")
    _remember(request, pk, skipped=False)
    what = "genuine (a false positive)" if event.new_label == "genuine" else f"attack ({event.new_text})"
    return _done(
        request,
        url,
        f"Image #{pk}: {what}. Press u to undo.",
        image=pk,
        event=event.pk,
        label=event.new_label,
        attack_type=event.new_attack_type,
    )


@require_POST
@require(LABEL)
def skip(request, pk):
    _, _, query = _filters(request.GET)
    im = get_object_or_404(Image, pk=pk)
    _remember(request, pk, skipped=True)
    if im.review_claimed_by_id == request.user.pk:
        review_queue.release_claims(request.user)  # back to the others at once (a reviewer holds one claim)
    return _done(request, _queue_url(query), f"Image #{pk} skipped for this session.", image=pk)


@require_POST
@require(LABEL)
def undo(request):
    _, data, query = _filters(request.GET)
    url = _queue_url(query)
    try:
        im = review_queue.undo_last_review(request.user)
    except LabelError as exc:
        return _refused(request, url, f"Cannot undo: {exc}")
    if im is None:
        return _refused(request, url, "Nothing to undo.", status=404)
    _set_session_list(request, TRAIL_KEY, [i for i in _session_list(request, TRAIL_KEY) if i != im.pk])
    _set_session_list(request, SKIP_KEY, [i for i in _session_list(request, SKIP_KEY) if i != im.pk])
    message = f"Undone: image #{im.pk} is back in the queue{', with its earlier label' if im.label else ''}."
    if data and not review_queue.review_queue(request.user, **data).filter(pk=im.pk).exists():
        url = _queue_url()  # outside the current filter: show it anyway, without the filter
        message += " The filter was cleared to show it."
    return _done(request, url, message, image=im.pk)


@require_POST
@require(LABEL)
def clear_skips(request):
    _, _, query = _filters(request.GET)
    count = len(_session_list(request, SKIP_KEY))
    _set_session_list(request, SKIP_KEY, [])
    return _done(request, _queue_url(query), f"{count} skipped image{'s' if count != 1 else ''} back in your queue.")
