"""HTTP plumbing of the web UI: reading forms, cursors and cookies, refusing cross-site posts, headers.

Pure request/response helpers with no access to the log.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import secrets
import socket
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

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


WILDCARDS = ("0.0.0.0", "::", "")  # noqa: S104 (names of "every interface", compared, not bound)
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True)
class Hosts:
    """The ``Host`` headers a server answers: the names it is served under, with its port.

    A browser sends the name it connected to; a page of another site that re-points its own name
    at this server (DNS rebinding) still sends that site's name, and is refused. Bound to every
    interface, the server also takes any IP address with its port (an address cannot be rebound).
    """

    names: frozenset[str]
    port: int
    any_address: bool = False

    def allows(self, header: str) -> bool:
        host = header.strip().lower()
        if host.startswith("["):
            name, _, rest = host.partition("]")
            name, port = name + "]", rest.removeprefix(":") if rest.startswith(":") else rest or ""
        else:
            name, _, port = host.partition(":")
        name, port = name.rstrip("."), port or "80"
        if f"{name}:{port}" in self.names:
            return True
        return self.any_address and port == str(self.port) and is_ip(name.removeprefix("[").removesuffix("]"))


_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?", re.IGNORECASE)


def check_host_name(given: str) -> str:
    """A host name or IP address as ``--allowed-host`` takes it (no scheme, port or path)."""
    if _HOST_NAME.fullmatch(given) or is_ip(given.removeprefix("[").removesuffix("]")):
        return given
    raise ValidationError("--allowed-host", "must be a host name or IP address, without scheme, port or path", given)


def served_hosts(bound: str, port: int, extra: Iterable[str] = ()) -> Hosts:
    """The names a server bound to ``bound:port`` is reached by: the loopback names, ``bound`` itself
    (bound to every interface: this machine's host names and any IP address), and ``extra`` names."""
    wildcard = bound in WILDCARDS
    names = [*LOOPBACK_NAMES, *(check_host_name(name) for name in extra)]
    names = [f"[{n}]" if ":" in n and not n.startswith("[") else n for n in names]
    if wildcard:
        names += [socket.gethostname(), socket.getfqdn()]
    else:
        names.append(f"[{bound}]" if ":" in bound and not bound.startswith("[") else bound)
    accepted = set()
    for name in names:
        name = name.strip().lower().rstrip(".")
        if name:
            accepted.add(f"{name}:{port}")
    return Hosts(frozenset(accepted), port, any_address=wildcard)


class HostCheck:
    """ASGI middleware: a request whose ``Host`` is not one of ``hosts`` gets 400 and the page ``page(message)``."""

    def __init__(self, app: ASGIApp, hosts: Hosts, page: Callable[[str], str]) -> None:
        self.app = app
        self.hosts = hosts
        self.page = page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
        if self.hosts.allows(given):
            await self.app(scope, receive, send)
            return
        shown = given[:100] or "(none)"
        message = (
            f"Host {shown!r} is not a name this demo is served under; open it at one of "
            f"{', '.join(sorted(self.hosts.names))}, or start it with --allowed-host NAME"
        )
        body = self.page(message).encode()
        await send({"type": "http.response.start", "status": 400, "headers": [
            (b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


class PerClient:
    """At most ``limit`` requests per client address in any ``window`` seconds (a sliding window).

    Memory stays bounded: at most ``max_clients`` addresses are tracked, the longest idle dropped first.
    """

    def __init__(self, limit: int, window: float = 60.0, *, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 10_000) -> None:  # fmt: skip
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_clients = max_clients
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str) -> int:
        """Count one request of ``client``: 0 if allowed, else the whole seconds to wait (not counted)."""
        now = self.clock()
        with self._lock:
            times = self._seen.pop(client, None) or deque()
            while times and times[0] <= now - self.window:
                times.popleft()
            self._seen[client] = times  # re-inserted: the dict's order is the order of last use
            if len(times) >= self.limit:
                return max(1, math.ceil(times[0] + self.window - now))
            times.append(now)
            while len(self._seen) > self.max_clients:
                del self._seen[next(iter(self._seen))]
            return 0


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
