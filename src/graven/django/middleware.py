"""``graven.django.middleware.AuditMiddleware``: the trail's context per request, and every refusal recorded.

Put it after ``AuthenticationMiddleware``. For each request it sets, for everything recorded
inside: the actor from ``request.user`` (``{"type": "anonymous"}`` for visitors), the client's IP
address (``X-Forwarded-For`` believed only from ``GRAVEN["TRUSTED_PROXIES"]``), the user agent, a
keyed hash of the session key (never the key), the request id (``X-Request-ID``, or a new one,
returned in the response) and the resolved route, URL name and view. A ``PermissionDenied``, an
``Http404`` raised by a view (``RECORD_404``) and any 401 or 403 response are recorded as one
``http.request`` entry with outcome ``denied`` naming the route; MUST NOT record an attempt twice:
when the application already recorded its denial (an ``action()`` block), nothing more is added.
A :class:`graven.Denied` escaping a view becomes a 403 response.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden
from django.urls import Resolver404, resolve

from graven.action import Denied
from graven.capture import request as web
from graven.django import conf

__all__ = ["AuditMiddleware", "actor_of_user", "current_view_class"]

_view_class: ContextVar[type | None] = ContextVar("graven_django_view_class", default=None)


def current_view_class() -> type | None:
    """The class-based view handling the current request, if any (password resets are told apart by it)."""
    return _view_class.get()


def actor_of_user(user: Any) -> dict[str, Any]:
    """An actor for a Django user: ``{"type": "user", "id": pk, "name": username}``, or anonymous."""
    if user is None or not getattr(user, "is_authenticated", False):
        return {"type": "anonymous"}
    actor = {"type": "user", "id": str(user.pk)}
    name = user.get_username() if hasattr(user, "get_username") else None
    if name:
        actor["name"] = str(name)[:200]
    return actor


def _session_key() -> bytes:
    return hashlib.sha256(b"graven.django.session\x00" + str(django_settings.SECRET_KEY).encode()).digest()


class AuditMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        settings = conf.settings()
        trail = conf.trail()
        meta = request.META
        request_id = web.clean(meta.get("HTTP_X_REQUEST_ID")) or uuid.uuid4().hex
        route, url_name, view, view_class = _resolved(request)
        session = getattr(request, "session", None)
        fields = {
            "actor": actor_of_user(getattr(request, "user", None)),
            "ip": web.TrustedProxies(settings.trusted_proxies).client_ip(
                meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR")
            ),
            "user_agent": web.clean(meta.get("HTTP_USER_AGENT"), 1024),
            "session": web.session_hash(getattr(session, "session_key", None), _session_key()),
            "request_id": request_id,
            "route": route,
            "url_name": url_name,
            "view": view,
            "method": request.method,
            "source": settings.source,
        }
        token = _view_class.set(view_class)
        try:
            with web.attempt() as attempt, trail.context(**fields):
                request.graven_attempt = attempt  # type: ignore[attr-defined]
                request.graven_route = route  # type: ignore[attr-defined]
                response = self.get_response(request)
                status = response.status_code
                if status in web.DENIED_STATUSES and not attempt.denied_recorded:
                    _record_denial(request, f"HTTP {web.DENIED_STATUSES[status]}", status)
        finally:
            _view_class.reset(token)
        response["X-Request-ID"] = request_id
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        attempt = getattr(request, "graven_attempt", None)
        if isinstance(exception, Denied):
            if attempt is not None and not attempt.denied_recorded:
                _record_denial(request, str(exception) or "Denied", 403)
            return HttpResponseForbidden()
        denied = isinstance(exception, PermissionDenied) or (
            isinstance(exception, Http404) and conf.settings().record_404 and getattr(request, "graven_route", None)
        )
        if denied and attempt is not None and not attempt.denied_recorded:
            status = 404 if isinstance(exception, Http404) else 403
            kind = "Http404" if status == 404 else "PermissionDenied"
            _record_denial(request, f"{kind}: {exception}" if str(exception) else kind, status)
        return None


def _record_denial(request: HttpRequest, reason: str, status: int) -> None:
    route = getattr(request, "graven_route", None) or request.path
    conf.trail().record(
        action="http.request",
        outcome="denied",
        reason=reason[:1000],
        targets=[{"type": "route", "id": f"{request.method} {route}"[:500]}],
        context={"status": status},
    )
    web.note_denied()


def _resolved(request: HttpRequest) -> tuple[str | None, str | None, str | None, type | None]:
    """The matched route pattern, URL name, view and view class (None when nothing matches)."""
    try:
        match = resolve(request.path_info, getattr(request, "urlconf", None))
    except Resolver404:
        return None, None, None, None
    view_class = getattr(match.func, "view_class", None)
    route = "/" + match.route.lstrip("^").rstrip("$") if match.route else request.path
    return route, match.view_name or None, match._func_path, view_class if isinstance(view_class, type) else None
