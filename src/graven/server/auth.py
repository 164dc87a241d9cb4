"""Who is asking: API keys (``Authorization: Bearer``), signed-in people (session cookie), roles, CSRF.

For the UI and the API alike: ``current_principal(request)`` (None when anonymous), the
dependencies ``require(role)`` and ``csrf_token(request)``. Roles: ``writer`` ingests only;
``reader`` reads (queries, entries, proofs, checkpoints, tail); ``auditor`` also verifies and
exports; ``admin`` also manages keys and users. Every refused request is recorded as a ``denied``
entry naming the route and the key or user that tried, before the refusal is sent.

A request carrying a session cookie that changes anything MUST carry the session's CSRF token
(the ``X-CSRF-Token`` header or the ``csrf_token`` form field). Failed authentication is counted
per key, per user and per client IP; past the limit the answer is 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from fastapi import Request

from graven.server import credentials
from graven.server.config import ServerState

SESSION_COOKIE = "graven_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
GRANTS: dict[str, frozenset[str]] = {
    "writer": frozenset({"writer"}),
    "reader": frozenset({"reader", "auditor", "admin"}),
    "auditor": frozenset({"auditor", "admin"}),
    "admin": frozenset({"admin"}),
    "any": frozenset({"writer", "reader", "auditor", "admin"}),
}
_UNSET: Any = object()


class ApiError(Exception):
    """An HTTP error answered as ``{"error", "message", ...}`` JSON."""

    def __init__(self, status: int, error: str, message: str, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers
        self.extra = extra


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: an API key or a signed-in user, and where the request came from."""

    kind: str  # "key" or "user"
    id: str  # the key's id, or the user's name
    name: str  # the key's name, or the user's name
    role: str
    ip: str | None = None
    user_agent: str | None = None
    session_token: str | None = field(default=None, repr=False)
    expires_at: str | None = None

    @property
    def actor(self) -> dict[str, str]:
        """The actor of entries this caller causes."""
        actor = {"type": "service" if self.kind == "key" else "user", "id": self.name}
        if self.ip:
            actor["ip"] = self.ip
        if self.user_agent:
            actor["user_agent"] = self.user_agent
        return actor

    @property
    def source(self) -> str:
        return "api" if self.kind == "key" else "web"

    def may(self, role: str) -> bool:
        return self.role in GRANTS[role]


def state(request: Request) -> ServerState:
    found: ServerState = request.app.state.graven
    return found


def client_of(request: Request) -> tuple[str | None, str | None]:
    """The client's IP address (X-Forwarded-For only behind trusted proxies) and user agent."""
    headers = {k.lower(): v for k, v in request.scope.get("headers") or []}
    ip = state(request).addresses.client_ip(request.scope, headers)
    agent = request.headers.get("user-agent", "").strip()
    return ip, agent[:1024] if agent and agent.isprintable() else None


def route_of(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "path", None) or request.url.path)


async def current_principal(request: Request) -> Principal | None:
    """The caller (API key first, else session cookie), or None for an anonymous request.

    Raises ApiError 401 for a key that is malformed, unknown, revoked or wrong; 429 while the
    client or the key is throttled; 403 for a session request that changes state without its
    CSRF token.
    """
    cached = getattr(request.state, "graven_principal", _UNSET)
    if cached is not _UNSET:
        found: Principal | None = cached
        return found
    principal = await _authenticate(request)
    request.state.graven_principal = principal
    return principal


async def _authenticate(request: Request) -> Principal | None:
    st = state(request)
    ip, agent = client_of(request)
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        key_id = credentials.api_key_id(token) if scheme.lower() == "bearer" else None
        subjects = [("ip", ip or "unknown"), *([("key", key_id)] if key_id else [])]
        await throttle(request, subjects)
        if scheme.lower() != "bearer" or not token:
            await _fail(request, subjects, "the Authorization header must be `Bearer <API key>`")
        check = await asyncio.to_thread(st.accounts.key_for, token)
        if check.key is None:
            tried = {"key_id": check.key_id} if check.key_id else {}
            if check.known is not None:
                tried["key_name"] = check.known.name
            await _fail(request, subjects, check.reason, tried)
        return Principal("key", check.key.id, check.key.name, check.key.role, ip, agent)
    await throttle(request, [("ip", ip or "unknown")])
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    found = await asyncio.to_thread(st.accounts.session_user, cookie)
    if found is None:
        return None  # expired or signed out: anonymous (the sign-in page says so)
    session, user = found
    principal = Principal("user", user.name, user.name, user.role, ip, agent, cookie, session.expires_at)
    if request.method not in SAFE_METHODS:
        await check_csrf(request, principal)
    return principal


async def check_csrf(request: Request, principal: Principal) -> None:
    """Refuse (403, recorded) a state-changing session request without the session's CSRF token."""
    assert principal.session_token is not None
    expected = state(request).accounts.csrf_token(principal.session_token)
    given: str | None = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        await deny(request, principal, 403, "csrf", "missing or wrong CSRF token: send the session's token "
                   f"(GET /auth/me) as the {CSRF_HEADER} header or the {CSRF_FIELD} form field")  # fmt: skip


async def throttle(request: Request, subjects: list[tuple[str, str]]) -> None:
    """Answer 429 while any subject is over its failure limit; report each new suspect once per window."""
    st = state(request)
    wait, suspects = st.limiter.throttled(subjects)
    for kind, value, failures in suspects:
        ip, _ = client_of(request)
        actor: dict[str, str] = {"type": "anonymous"}
        if ip:
            actor["ip"] = ip
        await asyncio.to_thread(st.trail.record, {
            "action": "auth.bruteforce_suspected", "actor": actor, "outcome": "denied", "source": "api",
            "reason": f"more than {st.limiter.limit} failed authentications by {kind} {value} "
                      f"within {st.limiter.window:g} s",
            "targets": [{"type": {"ip": "ip_address", "key": "apikey"}.get(kind, kind), "id": value}],
            "context": {"route": route_of(request), "method": request.method},
            "metadata": {"subject": kind, "value": value, "failures": failures, "window_seconds": st.limiter.window},
        })  # fmt: skip
    if wait > 0:
        seconds = max(1, int(wait + 0.999))
        raise ApiError(429, "too_many_failures", f"too many failed authentications; retry after {seconds} s",
                       headers={"Retry-After": str(seconds)}, limit=st.limiter.limit)  # fmt: skip


async def _fail(request: Request, subjects: list[tuple[str, str]], message: str,
                tried: dict[str, str] | None = None) -> NoReturn:  # fmt: skip
    state(request).limiter.failed(subjects)
    await deny(request, None, 401, "unauthorized", message, tried=tried)


async def deny(request: Request, principal: Principal | None, status: int, error: str, message: str, *,
               action: str = "http.request", tried: dict[str, str] | None = None) -> NoReturn:  # fmt: skip
    """Record the refusal as a ``denied`` entry, then raise the ApiError that answers it."""
    st = state(request)
    if principal is not None:
        actor = principal.actor
    else:
        ip, agent = client_of(request)
        actor = {"type": "anonymous", **({"ip": ip} if ip else {}), **({"user_agent": agent} if agent else {})}
    route = route_of(request)
    context: dict[str, Any] = {"route": route, "method": request.method, "status": status, **(tried or {})}
    await asyncio.to_thread(st.trail.record, {
        "action": action, "actor": actor, "outcome": "denied", "reason": message,
        "source": principal.source if principal is not None else "api",
        "targets": [{"type": "route", "id": f"{request.method} {route}"}], "context": context,
    })  # fmt: skip
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    raise ApiError(status, error, message, headers=headers)


def require(role: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the caller, who must hold ``role`` (or a role that includes it); else 401/403."""
    if role not in GRANTS:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(GRANTS)}")
    allowed = GRANTS[role]

    async def dependency(request: Request) -> Principal:
        principal = await current_principal(request)
        if principal is None:
            ip, _ = client_of(request)
            state(request).limiter.failed([("ip", ip or "unknown")])
            await deny(request, None, 401, "unauthorized",
                       "sign in, or send an API key as `Authorization: Bearer <key>`")  # fmt: skip
        if principal.role not in allowed:
            await deny(request, principal, 403, "forbidden",
                       f"the {principal.role} role may not use this route (it needs {role})",
                       action="audit.access")  # fmt: skip
        return principal

    dependency.__name__ = f"require_{role}"
    return dependency


async def csrf_token(request: Request) -> str | None:
    """A dependency: the CSRF token of the signed-in session (None without one), for forms."""
    principal = await current_principal(request)
    if principal is None or principal.session_token is None:
        return None
    return state(request).accounts.csrf_token(principal.session_token)
