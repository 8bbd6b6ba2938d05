"""Who may see and do what. Every view goes through these helpers; nothing is public.

Roles are groups (migration 0002): viewer sees everything, reviewer also changes labels,
admin also starts runs and manages models.
"""

from __future__ import annotations

import functools

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404

from .models import Image

VIEW = "monitor.view_image"
LABEL = "monitor.change_image"
RUN = "monitor.add_run"


def require(perm: str):
    """Login required (anonymous: redirect to login), then the permission (else 403)."""

    def decorator(view):
        @login_required
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.has_perm(perm):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def get_image_for_user(request, pk: int) -> Image:
    if not request.user.has_perm(VIEW):
        raise PermissionDenied
    return get_object_or_404(Image.objects.select_related("device", "ensemble"), pk=pk)
