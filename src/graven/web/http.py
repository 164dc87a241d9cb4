"""HTTP plumbing of the web UI: reading forms, cursors and cookies, refusing cross-site posts, headers.

Pure request/response helpers with no access to the log.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import unicodedata
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import Request
from fastapi.responses import Response
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graven.errors import GravenError, ValidationError
from graven.trail import MAX_INDEX
from graven.web import pretend

COOKIE = "graven_demo"
DEFAULT_PERSONA = "u-17"  # the story's support agent
MAX_BODY = 16 * 1024


class Refused(GravenError):
    """A state-changing request that a browser sent on behalf of another site."""


def is_ip(text: str | None) -> bool:
    try:
        ipaddress.ip_address(text or "")
    except ValueError:
        return False
    return True


def base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept or request.url.path.endswith(("/export", "/bundle", "/events"))


def same_origin(request: Request) -> None:
    """Refuse a state-changing request that a browser sent on behalf of another site."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise Refused("cross-site requests are refused")
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise Refused(f"requests from {origin} are refused; use the page itself")


async def read_form(request: Request) -> dict[str, str]:
    """A form or JSON object of text fields (at most 16 KiB)."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ValidationError("body", f"must be at most {MAX_BODY} bytes", f"{len(body)} bytes")
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind == "application/json":
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise ValidationError("body", "must be a JSON object", body[:40].decode(errors="replace")) from None
        if not isinstance(data, dict):
            raise ValidationError("body", "must be a JSON object of text fields", type(data).__name__)
        for key, value in data.items():
            if not isinstance(value, str):
                raise ValidationError(str(key), "must be text", value)
        return dict(data)
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True))
    except UnicodeDecodeError:
        raise ValidationError("body", "must be UTF-8 form data", f"{len(body)} bytes") from None


_UNSAFE = ("Cc", "Cf", "Cs", "Zl", "Zp")  # control, format, surrogate, line and paragraph separators
_ATTR_CHARS = "!#$&+-.^_`|~"  # RFC 8187 attr-char besides letters and digits: sent as they are


def attachment(filename: str) -> str:
    """A ``Content-Disposition`` value that downloads ``filename`` (RFC 6266 with RFC 8187).

    Any text may come in (it is often built from a search): control characters and path separators
    become ``_``; ``filename`` carries an ASCII stand-in (non-ASCII, quotes, backslashes, ``;`` and
    ``%`` replaced) for old clients, ``filename*`` the name itself as percent-encoded UTF-8. The
    value is always ASCII, so it can always be sent as a header.
    """
    name = "".join("_" if unicodedata.category(c) in _UNSAFE or c in "/\\" else c for c in filename)
    name = name.strip(" .") or "download"
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\;%' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe=_ATTR_CHARS)}"


def parse_index(given: str) -> int:
    if not given.isdigit() or int(given) > MAX_INDEX:
        raise ValidationError("index", f"must be a whole number from 0 to {MAX_INDEX}", given)
    return int(given)


def parse_cursor(given: str) -> int:
    if given == "-1":
        return -1
    return parse_index(given)


def demo_cookie(request: Request, world: pretend.World) -> tuple[str, str]:
    """The visitor's session id and chosen persona, from the cookie (new ones if absent or odd)."""
    session, _, persona = request.cookies.get(COOKIE, "").partition(".")
    if len(session) != 16 or not session.isalnum():
        session = secrets.token_hex(8)
    return session, persona if persona in world.people else DEFAULT_PERSONA


def set_demo_cookie(response: Response, session: str, persona: str) -> None:
    response.set_cookie(COOKIE, f"{session}.{persona}", httponly=True, samesite="strict", max_age=7 * 24 * 3600)


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
