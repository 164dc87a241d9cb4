"""ASGI middleware (Starlette, FastAPI, any ASGI app): a context per request, and every refusal recorded.

For each HTTP request it sets the trail's context: the actor (from a callable you give), the
client's IP address (``X-Forwarded-For`` is believed only when the connection comes from a
configured proxy), the user agent, the route and a request id (the ``X-Request-ID`` header, or a
new one, returned in the response). Every 401 and 403 response is recorded as a ``denied`` entry
naming the route, whether or not the application recorded anything itself.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from graven.capture.request import DENIED_STATUSES, TrustedProxies, clean

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

        actor = await self._actor(scope)
        where = {
            "ip": self.addresses.client_ip(scope, headers),
            "user_agent": _clean(headers.get(b"user-agent"), 1024),
            "request_id": request_id,
            "source": self.source,
        }
        with self.trail.context(actor=actor, **where):
            await self.app(scope, receive, send_with_id)
            if status and status[0] in DENIED_STATUSES:
                route = _route(scope)
                await self.trail.arecord(
                    action="http.request",
                    actor=actor or {"type": "anonymous"},
                    outcome="denied",
                    reason=f"HTTP {DENIED_STATUSES[status[0]]}",
                    targets=[{"type": "route", "id": f"{scope.get('method', 'GET')} {route}"}],
                    context={"route": route, "method": scope.get("method", "GET"), "status": status[0]},
                )

    async def _actor(self, scope: Scope) -> Any:
        if self.actor is None:
            return None
        found = self.actor(scope)
        return await found if inspect.isawaitable(found) else found


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
