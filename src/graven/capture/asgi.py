"""ASGI middleware (Starlette, FastAPI, any ASGI app): a context per request, and every refusal recorded.

For each HTTP request it sets the trail's context: the actor (from a callable you give), the
client's IP address (``X-Forwarded-For`` is believed only when the connection comes from a
configured proxy), the user agent, the route and a request id (the ``X-Request-ID`` header, or a
new one, returned in the response). Every 401 and 403 response is recorded as a ``denied`` entry
naming the route, unless the refusal of this request is already in the trail (a ``trail.action()``
block that was denied, :func:`graven.fastapi.handle_denied`'s answer, a failed
``trail.login_attempt()``): one attempt, one entry. A :class:`graven.Denied` escaping the
application before its answer started is answered 403 with a JSON error (when the middleware runs
inside the framework's error handling, as ``app.add_middleware`` puts it).
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

import orjson

from graven import context
from graven.capture.request import DENIED_STATUSES, Attempt, TrustedProxies, attempt, clean

if TYPE_CHECKING:
    from graven.trail import Trail

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AuditMiddleware:
    """``app = AuditMiddleware(app, trail, actor=lambda scope: ..., trusted_proxies=["10.0.0.1"])``."""

    def __init__(
        self,
        app: ASGIApp,
        trail: Trail,
        *,
        actor: Callable[[Scope], Any] | None = None,
        trusted_proxies: Iterable[str] = (),
        request_id_header: str = "x-request-id",
        source: str = "web",
    ) -> None:
        self.app = app
        self.trail = trail
        self.actor = actor
        self.addresses = ClientAddresses(trusted_proxies)
        self.header = request_id_header.lower().encode()
        self.source = source

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        request_id = _clean(headers.get(self.header)) or uuid.uuid4().hex
        status: list[int] = []

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
                message["headers"] = [*message.get("headers", []), (self.header, request_id.encode())]
            await send(message)

        async def refuse(exc: BaseException) -> None:
            """A denial the application did not answer: 403 JSON, recorded once."""
            await record_denial(self.trail, scope, current, str(exc).strip() or "denied", actor=actor)
            body = orjson.dumps({"error": "denied", "message": str(exc).strip() or "denied"})
            await send_with_id({"type": "http.response.start", "status": 403,
                                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
            await send_with_id({"type": "http.response.body", "body": body})

        actor = await self._actor(scope)
        where = {
            "ip": self.addresses.client_ip(scope, headers),
            "user_agent": _clean(headers.get(b"user-agent"), 1024),
            "request_id": request_id,
            "source": self.source,
        }
        with self.trail.context(actor=actor, **where), attempt() as current:
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as exc:
                if status or not self.trail.is_denial(exc):
                    raise
                await refuse(exc)
            if status and status[0] in DENIED_STATUSES:
                reason = f"HTTP {DENIED_STATUSES[status[0]]}"
                await record_denial(self.trail, scope, current, reason, status=status[0], actor=actor)

    async def _actor(self, scope: Scope) -> Any:
        if self.actor is None:
            return None
        found = self.actor(scope)
        return await found if inspect.isawaitable(found) else found


STATE_KEY = "graven"  # in the ASGI scope's "state": what graven.fastapi.audit_context set for the request


async def record_denial(
    trail: Trail, scope: Scope, current: Attempt | None, reason: str, *, status: int = 403, actor: Any = None
) -> None:
    """Record the refusal of this request as ``http.request`` ``denied``, unless it is already in the trail."""
    if current is not None and current.denied_recorded:
        return
    saved = (scope.get("state") or {}).get(STATE_KEY) or {}
    route, method = _route(scope), scope.get("method", "GET")
    with context.scope(**saved.get("context", {})):
        actor = actor or context.current().get("actor") or {"type": "anonymous"}
        await trail.arecord(
            action="http.request",
            actor=actor,
            outcome="denied",
            reason=reason,
            targets=[{"type": "route", "id": f"{method} {route}"}],
            context={"route": route, "method": method, "status": status},
        )
    if current is not None:
        current.denied_recorded = True


class ClientAddresses:
    """Who is at the other end of an ASGI connection (see :class:`graven.capture.request.TrustedProxies`)."""

    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        self.resolver = TrustedProxies(trusted_proxies)
        self.proxies = self.resolver.networks

    def client_ip(self, scope: Scope, headers: dict[bytes, bytes]) -> str | None:
        """The peer's address, or the first untrusted address in X-Forwarded-For behind a trusted proxy."""
        peer = (scope.get("client") or (None, None))[0]
        forwarded = headers.get(b"x-forwarded-for")
        return self.resolver.client_ip(peer, forwarded.decode("latin-1") if forwarded else None)


def _clean(value: bytes | None, limit: int = 200) -> str | None:
    return clean(value, limit)


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None) or getattr(route, "path_format", None)
    return str(path or scope.get("path") or "/")
