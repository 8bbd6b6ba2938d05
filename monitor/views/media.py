"""Protected image files: originals and thumbnails go through a permission check, never a
static path. Behind nginx (KOALA_X_ACCEL_REDIRECT=1) the file is sent by nginx from an
internal location; otherwise by Django (FileResponse).

The URLs take an image id, never a path; the stored path is resolved (links followed) and must
stay inside the inbox (thumbnails: the thumbnail folder), so a tampered row cannot reach another
file. An image whose files retention purged answers 410 Gone. Opening an original is recorded
in the access log (KOALA_ACCESS_LOG)."""

from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponse, HttpResponseGone
from django.utils.cache import get_conditional_response
from django.views.decorators.http import require_safe

from ..access import VIEW, get_image_for_user, require
from ..models import Image, ImageAccess
from .access_log import client_ip

CACHE_CONTROL = "private, max-age=3600"  # biometric images: never in a shared cache
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}


def inside(root: Path, relpath: str) -> Path | None:
    """root/relpath with links resolved, or None when that is not a file inside root (`..`, an
    absolute path, a link pointing out)."""
    if not relpath or "\x00" in relpath:
        return None
    root = root.resolve()
    path = (root / relpath).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


def _send(root: Path, relpath: str, internal_prefix: str, content_type: str):
    path = inside(root, relpath)
    if path is None:
        raise Http404("no such file")
    if settings.KOALA_X_ACCEL_REDIRECT:
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = f"{internal_prefix}/{path.relative_to(root.resolve()).as_posix()}"
    else:
        response = FileResponse(open(path, "rb"), content_type=content_type)
    response["Cache-Control"] = CACHE_CONTROL
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _gone(im: Image) -> HttpResponseGone:
    return HttpResponseGone(
        f"the files of this image were purged on {im.purged_at:%Y-%m-%d} (retention)", content_type="text/plain"
    )


@require(VIEW)
@require_safe
def image_file(request, pk: int):
    im = get_image_for_user(request, pk)
    if im.purged_at is not None:
        return _gone(im)
    if im.category == "unreadable":
        raise Http404("this file is not a readable image")
    content_type = CONTENT_TYPES.get(im.format, "application/octet-stream")
    response = _send(settings.INBOX_DIR, im.path, "/protected/inbox", content_type)
    if settings.KOALA_ACCESS_LOG:
        ImageAccess.objects.create(
            user=request.user, username=request.user.get_username(), image=im, image_path=im.path, ip=client_ip(request)
        )
    return response


@require(VIEW)
@require_safe
def thumbnail(request, pk: int):
    im = get_image_for_user(request, pk)
    if im.purged_at is not None:
        return _gone(im)
    if not im.has_thumbnail:
        raise Http404("no thumbnail")
    # the thumbnail is named by the image's sha256: that names its content too, so a browser that
    # has it revalidates without the file being sent again (after the permission check above)
    etag = f'"{im.sha256}"'
    response = get_conditional_response(request, etag=etag) or _send(
        settings.THUMBS_DIR, im.thumb_relpath, "/protected/thumbs", "image/jpeg"
    )
    response["ETag"] = etag
    response["Cache-Control"] = CACHE_CONTROL
    return response
