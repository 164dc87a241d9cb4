"""FastAPI: the request's audit context as a dependency, and ``Denied`` answered 403.

    app = FastAPI(dependencies=[Depends(graven.fastapi.audit_context(trail, actor=current_user_id))])
    graven.fastapi.handle_denied(app, trail)

:func:`audit_context` works for sync and async routes alike. It is an *async* ``yield``
dependency on purpose: FastAPI runs the two halves of a sync ``yield`` dependency in two different
worker-thread contexts, so ``with trail.context(...)`` entered there fails on leaving ("Token was
created in a different Context") and its fields never reach the route. An async dependency runs
in the request's own task, whose context the route (or the worker thread of a sync route) copies.

:func:`handle_denied` installs an exception handler: a :class:`graven.Denied` (or a type given as
``denied=`` to ``graven.open``) escaping a route is answered 403 ``{"error": "denied", "message"}``
and recorded as ``http.request`` ``denied`` naming the route, unless the refusal is already in the
trail (a denied ``trail.action()`` block). MUST record one denial per request, however many of
Graven's integrations see it.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from graven import context
from graven.capture.asgi import STATE_KEY, ClientAddresses, record_denial
from graven.capture.request import attempt, clean, current_attempt

if TYPE_CHECKING:
    from graven.trail import Trail

__all__ = ["audit_context", "handle_denied"]


def audit_context(
    trail: Trail,
    *,
    actor: Callable[..., Any] | None = None,
    trusted_proxies: Iterable[str] = (),
    request_id_header: str = "x-request-id",
    source: str = "web",
) -> Callable[..., AsyncIterator[None]]:
    """A dependency that sets the trail's context for the request it serves.

    ``actor`` is itself a FastAPI dependency (it may take ``Depends(...)`` parameters of its own)
    returning ``"u-17"``, ``"service:billing"``, a mapping, or None for an anonymous visitor. The
    context also gets the client's IP address (``X-Forwarded-For`` believed only from
    ``trusted_proxies``), the user agent, the request id (the header, or the one
    :class:`~graven.capture.asgi.AuditMiddleware` set, or a new one), the route and ``source``.
    """
    addresses = ClientAddresses(trusted_proxies)
    header = request_id_header.lower()

    async def dependency(request: Request, who: Any = None) -> AsyncIterator[None]:
        if inspect.isawaitable(who):
            who = await who
        outer = context.current()
        route = getattr(request.scope.get("route"), "path", None) or request.url.path
        fields: dict[str, Any] = {
            "actor": who,
            "source": outer.get("source") or source,
            "request_id": outer.get("request_id") or clean(request.headers.get(header)) or uuid.uuid4().hex,
            "route": route,
        }
        if "ip" not in outer:
            peer_headers = {k.lower(): v for k, v in request.scope.get("headers") or []}
            fields["ip"] = addresses.client_ip(request.scope, peer_headers)
        if "user_agent" not in outer:
            fields["user_agent"] = clean(request.headers.get("user-agent"), 1024)
        fresh = current_attempt() is None
        with context.scope(**fields), attempt() if fresh else nullcontext():
            # Kept on the request: an exception handler runs after this scope has ended.
            kept = {"context": {k: v for k, v in fields.items() if v is not None}, "attempt": current_attempt()}
            setattr(request.state, STATE_KEY, kept)
            yield

    if actor is not None:
        parameters = [
            inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
            inspect.Parameter("who", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=Depends(actor)),
        ]
        dependency.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    else:
        dependency.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)]
        )
    return dependency


def handle_denied(app: FastAPI, trail: Trail) -> None:
    """Answer a denial escaping a route 403 with a JSON error, and record it once."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        saved = getattr(request.state, STATE_KEY, None) or {}
        current = current_attempt() or saved.get("attempt")
        message = str(exc).strip() or "denied"
        await record_denial(trail, request.scope, current, message)
        return JSONResponse({"error": "denied", "message": message}, status_code=403)

    for kind in trail.denied_types:
        if issubclass(kind, Exception):
            app.add_exception_handler(kind, handler)
