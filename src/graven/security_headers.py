"""Browser-facing headers every Graven HTTP service sends: the log's server, its web UI and a witness.

Sits below the web layers so that any of them can wrap its application without importing the others.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
     b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),  # frame-ancestors for browsers that predate it
]  # fmt: skip


class SecurityHeaders:
    """ASGI middleware: no inline script or style, nothing from other hosts, no framing, no sniffing.

    A header the response already has is left as it is.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present_names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in SECURITY_HEADERS if n not in present_names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def secure(app: Starlette) -> None:
    """Make :class:`SecurityHeaders` the outermost layer of ``app``, so that every response has them:
    pages, API answers, assets, redirects, 404s and 405s, and the 500 of an unhandled error too
    (Starlette's error middleware sits outside any middleware added with ``add_middleware``)."""
    build = app.build_middleware_stack

    def built() -> ASGIApp:
        return SecurityHeaders(build())

    app.build_middleware_stack = built  # type: ignore[method-assign]
