"""Authentication for the JSON API: a session user, or `Authorization: Bearer <token>`.

Tokens are made by `manage.py create_api_token USER --name NAME`; only their sha256 is stored
(`ApiToken.token_sha256`), so a leaked database does not leak usable tokens.

Every API view goes through `api_view`, which answers in JSON, never with the HTML login page:

- not a GET -> 405 (the API only reads; this is also why the views can be exempt from CSRF:
  no request that could change state ever reaches them);
- a Bearer token that matches no token, or whose user is inactive -> 401;
- no token and no session -> 401;
- authenticated without the `monitor.view_image` permission -> 403;
- `ApiError` raised by a view -> its status with `{"error": message, "errors": {...}}`;
- `Http404` / `PermissionDenied` raised by a view -> 404 / 403 in JSON.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets

from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, JsonResponse
from django.utils import timezone
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views.decorators.csrf import csrf_exempt

from .access import VIEW
from .models import ApiToken

TOKEN_TOUCH_INTERVAL = dt.timedelta(minutes=1)  # last_used_at is written at most this often


class ApiError(Exception):
    """A request the API refuses with a readable message (400 unless told)."""

    def __init__(self, message: str, errors: dict | None = None, status: int = 400):
        super().__init__(message)
        self.message, self.errors, self.status = message, errors, status


def new_token() -> tuple[str, str]:
    """(token to show once, its sha256 to store)."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def error(message: str, status: int, errors: dict | None = None) -> JsonResponse:
    body: dict = {"error": message}
    if errors is not None:
        body["errors"] = errors
    return JsonResponse(body, status=status)


def _unauthorized(message: str) -> JsonResponse:
    response = error(message, 401)
    response["WWW-Authenticate"] = 'Bearer realm="koala-monitor"'
    return response


def bearer_token(request) -> str | None:
    """The token of an `Authorization: Bearer ...` header; "" for a Bearer header without one;
    None when there is no Bearer header (other schemes, e.g. a proxy's Basic, are not ours)."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


def user_for_token(token: str):
    """The active user owning the token, or None. Records the use (at most once a minute)."""
    if not token:
        return None
    found = ApiToken.objects.select_related("user").filter(token_sha256=hash_token(token)).first()
    if found is None or not found.user.is_active:
        return None
    now = timezone.now()
    if found.last_used_at is None or now - found.last_used_at >= TOKEN_TOUCH_INTERVAL:
        # conditional update: concurrent requests of one script write the row once
        stale = Q(last_used_at=None) | Q(last_used_at__lte=now - TOKEN_TOUCH_INTERVAL)
        ApiToken.objects.filter(stale, pk=found.pk).update(last_used_at=now)
    return found.user


def api_view(view):
    """GET-only JSON view for a session user or a Bearer token holding the view permission."""

    @csrf_exempt  # safe: every method but GET is refused below, before any work
    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if request.method != "GET":
            response = error(f"method {request.method} not allowed: the API is read-only (GET)", 405)
            response["Allow"] = "GET"
            return _finish(response)
        token = bearer_token(request)
        if token is not None:
            user = user_for_token(token)
            if user is None:
                return _finish(_unauthorized("invalid API token"))
            request.user = user
        elif not request.user.is_authenticated:
            return _finish(_unauthorized("authentication required: log in, or send 'Authorization: Bearer <token>'"))
        if not request.user.has_perm(VIEW):
            return _finish(error(f"permission denied: {VIEW} is required", 403))
        try:
            response = view(request, *args, **kwargs)
        except ApiError as exc:
            response = error(exc.message, exc.status, exc.errors)
        except Http404 as exc:
            response = error(str(exc) or "not found", 404)
        except PermissionDenied:
            response = error("permission denied", 403)
        return _finish(response)

    return wrapped


def _finish(response):
    # biometric data: never stored by shared caches; the answer depends on who asks
    patch_cache_control(response, private=True, no_store=True)
    patch_vary_headers(response, ["Authorization", "Cookie"])
    return response
