"""Protected image files: originals and thumbnails go through a permission check, never a
static path. Behind nginx (KOALA_X_ACCEL_REDIRECT=1) the file is sent by nginx from an
internal location; otherwise by Django (FileResponse)."""

from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponse

from ..access import VIEW, get_image_for_user, require

CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}


def _send(path: Path, root: Path, internal_prefix: str, content_type: str):
    path = path.resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        raise Http404("no such file")
    if settings.KOALA_X_ACCEL_REDIRECT:
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = f"{internal_prefix}/{path.relative_to(root.resolve()).as_posix()}"
    else:
        response = FileResponse(open(path, "rb"), content_type=content_type)
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require(VIEW)
def image_file(request, pk: int):
    im = get_image_for_user(request, pk)
    if im.category == "unreadable":
        raise Http404("this file is not a readable image")
    content_type = CONTENT_TYPES.get(im.format, "application/octet-stream")
    return _send(settings.INBOX_DIR / im.path, settings.INBOX_DIR, "/protected/inbox", content_type)


@require(VIEW)
def thumbnail(request, pk: int):
    im = get_image_for_user(request, pk)
    if not im.has_thumbnail:
        raise Http404("no thumbnail")
    return _send(settings.THUMBS_DIR / im.thumb_relpath, settings.THUMBS_DIR, "/protected/thumbs", "image/jpeg")
