"""Who is asking: API keys (``Authorization: Bearer``), signed-in people (session cookie), roles, CSRF.

For the UI and the API alike: ``current_principal(request)`` (None when anonymous), the
dependencies ``require(role)`` and ``csrf_token(request)``. Roles: ``writer`` ingests only;
``reader`` reads (queries, entries, proofs, checkpoints, tail); ``auditor`` also verifies and
exports; ``admin`` also manages keys and users. Every refused request is recorded as a ``denied``
entry naming the route and the key or user that tried, before the refusal is sent.

A request carrying a session cookie that changes anything MUST carry the session's CSRF token
(the ``X-CSRF-Token`` header or the ``csrf_token`` form field).

Throttling keys only on what the attacker cannot choose for somebody else, so nobody's guesses
lock out an owner. A failed authentication (a bad, unknown or revoked key, a wrong password)
counts against the client's address (an IPv6 client by its /64); past ``auth_failure_limit`` in
``auth_failure_window`` seconds that address gets 429 with ``Retry-After`` for whatever it sends
until its window ends. An unknown key id and a
(user, address) pair are throttled the same way. A real key's id and a user name across all
addresses are only watched: a key is checked before anything is counted against it, and a
correct key or password from an address that is not throttled is never refused. Every subject
passing its limit is recorded once per window as ``auth.bruteforce_suspected``. A request with no
credential at all is no guess and is never counted against its address (see ``deny_anonymous``).
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from fastapi import Request

from graven.server.config import ServerState
from graven.server.limits import Report, Subject, address_subject

SESSION_COOKIE = "graven_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
GRANTS: dict[str, frozenset[str]] = {
    "writer": frozenset({"writer"}),
    "reader": frozenset({"reader", "auditor", "admin"}),
    "auditor": frozenset({"auditor", "admin"}),
    "admin": frozenset({"admin"}),
    "metrics": frozenset({"metrics", "admin"}),
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
    address = address_subject(ip)
    await throttle(request, [address])
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            await _fail(request, [address], "the Authorization header must be `Bearer <API key>`")
        check = await asyncio.to_thread(st.accounts.key_for, token)
        if check.key is not None:
            return Principal("key", check.key.id, check.key.name, check.key.role, ip, agent)
        tried = {"key_id": check.key_id} if check.key_id else {}
        if check.known is not None:  # a real key's id with a wrong secret, or revoked: watched, never refused
            tried["key_name"] = check.known.name
            await _fail(request, [address], check.reason, tried, watch=[("key", check.known.id)])
        unknown: list[Subject] = [("key", check.key_id)] if check.key_id else []
        await throttle(request, unknown)
        await _fail(request, [address, *unknown], check.reason, tried)
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


async def throttle(request: Request, subjects: list[Subject]) -> None:
    """Answer 429 while any subject is over its failure limit; report each new suspect once per window.

    Callers MUST pass only subjects an attacker cannot fill for somebody else (see the module's rules).
    """
    st = state(request)
    wait, suspects = st.limiter.throttled(subjects)
    await report(request, suspects, throttled=True)
    if wait > 0:
        st.metrics.throttled.inc()
        seconds = max(1, int(wait + 0.999))
        raise ApiError(429, "too_many_failures", f"too many failed authentications; retry after {seconds} s",
                       headers={"Retry-After": str(seconds)}, limit=st.limiter.limit)  # fmt: skip


async def failed(request: Request, subjects: Sequence[Subject], watch: Sequence[Subject] = ()) -> None:
    """Count a failed authentication against each subject (``watch``: subjects that are counted and
    reported but never refused), recording any that just passed the limit."""
    suspects = state(request).limiter.failed([*subjects, *watch])
    await report(request, [s for s in suspects if s[0] not in watch], throttled=True)
    await report(request, [s for s in suspects if s[0] in watch], throttled=False)


_TARGET_TYPES = {"ip": ("ip_address",), "key": ("apikey",), "user": ("user",), "user_ip": ("user", "ip_address")}


async def report(request: Request, suspects: list[Report], *, throttled: bool) -> None:
    """Record each suspect as an ``auth.bruteforce_suspected`` entry (the limiter reports each once per window)."""
    st = state(request)
    for subject, failures in suspects:
        kind, values = subject[0], subject[1:]
        ip, _ = client_of(request)
        actor: dict[str, str] = {"type": "anonymous"}
        if ip:
            actor["ip"] = ip
        named = " from ".join(values)
        effect = (f"its attempts are refused (429) until its {st.limiter.window:g} s window ends" if throttled
                  else "watched only: a correct credential is never refused for it")  # fmt: skip
        await asyncio.to_thread(st.trail.record, {
            "action": "auth.bruteforce_suspected", "actor": actor, "outcome": "denied", "source": "api",
            "reason": f"more than {st.limiter.limit} failed authentications by {kind} {named} "
                      f"within {st.limiter.window:g} s; {effect}",
            "targets": [{"type": t, "id": v} for t, v in zip(_TARGET_TYPES.get(kind, (kind,)), values, strict=False)],
            "context": {"route": route_of(request), "method": request.method},
            "metadata": {"subject": kind, "value": named, "failures": failures, "window_seconds": st.limiter.window,
                         "throttled": throttled},
        })  # fmt: skip


async def _fail(request: Request, subjects: list[Subject], message: str, tried: dict[str, str] | None = None,
                *, watch: Sequence[Subject] = ()) -> NoReturn:  # fmt: skip
    await failed(request, subjects, watch)
    await deny(request, None, 401, "unauthorized", message, tried=tried)


async def deny_anonymous(request: Request, status: int, error: str, message: str, *,
                         action: str = "http.request") -> NoReturn:  # fmt: skip
    """Refuse (and record) a request that presented no credential to check: no guess, so it MUST NOT
    count against the client's address, since a page on another site can make a visitor's browser
    send such requests (an image, a form) to get the visitor throttled. To keep a flood from filling
    the log, an address gets ``limit`` recorded refusals per window; past that, one
    ``http.flood_suspected`` entry, then refusals without an entry each until its window ends."""
    st = state(request)
    ip, _ = client_of(request)
    subject = ("anonymous", address_subject(ip)[1])
    for _, refusals in st.limiter.failed([subject]):
        await asyncio.to_thread(st.trail.record, {
            "action": "http.flood_suspected", "actor": {"type": "anonymous", **({"ip": ip} if ip else {})},
            "outcome": "denied", "source": "api", "targets": [{"type": "ip_address", "id": subject[1]}],
            "reason": f"more than {st.limiter.limit} requests without credentials refused for {subject[1]} within "
                      f"{st.limiter.window:g} s; further ones are refused without an entry each until the window "
                      "ends (the address is not throttled)",
            "context": {"route": route_of(request), "method": request.method},
            "metadata": {"subject": "anonymous", "value": subject[1], "failures": refusals,
                         "window_seconds": st.limiter.window},
        })  # fmt: skip
    if st.limiter.over(subject):
        raise ApiError(status, error, message, headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)
    await deny(request, None, status, error, message, action=action)


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
            await deny_anonymous(request, 401, "unauthorized",
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
