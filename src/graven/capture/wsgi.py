"""WSGI middleware (Flask, Bottle, Pyramid, Falcon, any WSGI app): a context per request, every refusal recorded.

For each request it sets the trail's context, as the ASGI middleware does: the actor (from a
callable you give), the client's IP address (``X-Forwarded-For`` believed only when the peer is a
configured proxy), the user agent, the request id (the ``X-Request-ID`` header, or a new one,
returned in the response), the method and the route (from a callable you give; the path when
none). A 401 or 403 response is recorded as one ``denied`` ``http.request`` entry naming the route;
MUST NOT record an attempt twice: when something inside already recorded the denial (an
``action()`` block, graven.flask's handlers), nothing more is added.

Each request runs in its own copy of the :mod:`contextvars` context, the response body too (a
streamed body's code sees the request's context), so nothing set during one request reaches the
next request the server's thread handles.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from graven import context
from graven.capture.request import (
    DENIED_STATUSES,
    TrustedProxies,
    begin_attempt,
    clean,
    current_attempt,
    note_denied,
)

if TYPE_CHECKING:
    from graven.trail import Trail

__all__ = ["AuditMiddleware", "record_denial"]

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]


class StartResponse(Protocol):
    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = ..., /
    ) -> Callable[[bytes], object]: ...


WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class AuditMiddleware:
    """``app.wsgi_app = AuditMiddleware(app.wsgi_app, trail, actor=lambda environ: ..., trusted_proxies=[...])``.

    ``actor(environ)`` names who is asking (an id, ``"TYPE:ID"``, a mapping or None);
    ``route(environ)`` the matched route pattern, such as ``/customers/<id>`` (None: the path).
    """

    def __init__(
        self,
        app: WSGIApp,
        trail: Trail,
        *,
        actor: Callable[[Environ], Any] | None = None,
        route: Callable[[Environ], str | None] | None = None,
        trusted_proxies: Iterable[str] = (),
        request_id_header: str = "X-Request-ID",
        source: str = "web",
    ) -> None:
        self.app = app
        self.trail = trail
        self.actor = actor
        self.route = route
        self.proxies = TrustedProxies(trusted_proxies)
        self.header = request_id_header
        self.environ_key = "HTTP_" + request_id_header.upper().replace("-", "_")
        self.source = source

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        run = contextvars.copy_context()
        return run.run(self._start, run, environ, start_response)

    def _start(self, run: contextvars.Context, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        request_id = clean(environ.get(self.environ_key)) or uuid.uuid4().hex
        method = str(environ.get("REQUEST_METHOD") or "GET")
        route = (self.route(environ) if self.route else None) or _path(environ)
        request = _Request(self.trail, method, route)

        def start(status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None) -> Any:
            request.status = _status_code(status)
            mine = self.header.lower()
            headers = [(k, v) for k, v in headers if k.lower() != mine] + [(self.header, request_id)]
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        # This context is the request's alone and is dropped with it: what is set here needs no undoing.
        begin_attempt()
        context.push(
            actor=self.actor(environ) if self.actor else None,
            ip=self.proxies.client_ip(environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR")),
            user_agent=clean(environ.get("HTTP_USER_AGENT"), 1024),
            request_id=request_id,
            route=route,
            method=method,
            source=self.source,
        )
        body = self.app(environ, start)
        if request.status is not None:
            request.settle()
            if isinstance(body, list | tuple):
                return body  # nothing left to run: the server keeps its own handling of a list
        return _Body(body, run, request)


class _Request:
    """One request in flight: its status once known, and whether its refusal was looked at."""

    def __init__(self, trail: Trail, method: str, route: str) -> None:
        self.trail = trail
        self.method = method
        self.route = route
        self.status: int | None = None
        self.settled = False

    def settle(self) -> None:
        """Record the refusal the status tells of, unless already recorded (once per request)."""
        if self.settled:
            return
        self.settled = True
        if self.status in DENIED_STATUSES:
            found = current_attempt()
            if found is None or not found.denied_recorded:
                record_denial(self.trail, f"HTTP {DENIED_STATUSES[self.status]}", self.status, self.method, self.route)


class _Body:
    """The application's response body, produced and closed inside the request's context."""

    def __init__(self, body: Iterable[bytes], run: contextvars.Context, request: _Request) -> None:
        self.body = body
        self.run = run
        self.request = request
        self.chunks: Iterator[bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return self.run.run(self._next)

    def _next(self) -> bytes:
        if self.chunks is None:
            self.chunks = iter(self.body)
        chunk = next(self.chunks)  # StopIteration ends the body; close() settles then
        if self.request.status is not None:
            self.request.settle()
        return chunk

    def close(self) -> None:
        self.run.run(self._close)

    def _close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            if self.request.status is not None:
                self.request.settle()


def record_denial(trail: Trail, reason: str, status: int, method: str, route: str) -> int:
    """Record one refused request (``http.request``, ``denied``) naming the route, and mark the attempt.

    The actor is the context's, or ``anonymous`` when the context names nobody.
    """
    index = trail.record(
        action="http.request",
        actor=None if context.current().get("actor") else {"type": "anonymous"},
        outcome="denied",
        reason=reason[:1000],
        targets=[{"type": "route", "id": f"{method} {route}"[:500]}],
        context={"status": status},
    )
    note_denied()
    return index


def _status_code(status: str) -> int | None:
    code = status.split(" ", 1)[0]
    return int(code) if code.isdigit() else None


def _path(environ: Environ) -> str:
    path = str(environ.get("SCRIPT_NAME") or "") + str(environ.get("PATH_INFO") or "")
    return (clean(path.encode("latin-1", "replace").decode("utf-8", "replace"), 500) or "/") if path else "/"
