"""Request context shared by the web integrations (ASGI, Django, and any WSGI framework).

Framework-neutral pieces: who is at the other end (:class:`TrustedProxies`), a cleaned header
value, a keyed hash of a session key, and the *attempt* of the current request, which remembers
whether a denial was already recorded for it so that an integration that sees the same refusal
twice (an ``action()`` block raising a permission error, then the 403 response it becomes)
records it once. MUST NOT store a session key or any header value longer than its limit.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["Attempt", "TrustedProxies", "attempt", "clean", "current_attempt", "note_denied", "session_hash"]

DENIED_STATUSES = {401: "401 Unauthorized", 403: "403 Forbidden"}


class TrustedProxies:
    """Resolve the client's address: the peer, or past the trusted proxies, the address they forwarded for."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks = [ipaddress.ip_network(p, strict=False) for p in networks]

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The first untrusted address walking back from ``peer`` through ``X-Forwarded-For``."""
        chain = [peer] if peer else []
        if peer and forwarded_for and self.trusted(peer):
            chain = [p.strip() for p in forwarded_for.split(",") if p.strip()] + [peer]
        for address in reversed(chain):  # walk back from the nearest hop past our own proxies
            if not self.trusted(address):
                return address if _is_ip(address) else None
        return chain[0] if chain and _is_ip(chain[0]) else None

    def trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def clean(value: str | bytes | None, limit: int = 200) -> str | None:
    """A header value fit for an entry: printable, stripped, at most ``limit`` characters, else None."""
    if not value:
        return None
    text = (value.decode("latin-1") if isinstance(value, bytes) else value).strip()
    return text[:limit] if text and text.isprintable() else None


def session_hash(session_key: str | None, key: bytes) -> str | None:
    """A keyed hash (HMAC-SHA256, 16 hex digits) naming a session without revealing its key."""
    if not session_key:
        return None
    return hmac.new(key, session_key.encode(), hashlib.sha256).hexdigest()[:16]


@dataclass(slots=True)
class Attempt:
    """One request being handled: whether a denial of it is already in the trail."""

    denied_recorded: bool = False


_attempt: ContextVar[Attempt | None] = ContextVar("graven_attempt", default=None)


@contextmanager
def attempt() -> Iterator[Attempt]:
    """Mark the block as one request; integrations inside report denials with :func:`note_denied`."""
    current = Attempt()
    token = _attempt.set(current)
    try:
        yield current
    finally:
        _attempt.reset(token)


def current_attempt() -> Attempt | None:
    return _attempt.get()


def note_denied() -> None:
    """Say that a denial of the current request has been recorded (nothing outside a request)."""
    current = _attempt.get()
    if current is not None:
        current.denied_recorded = True


def begin_attempt() -> Attempt:
    """Mark the rest of the current contextvars context as one request, for a context made for it alone
    (the WSGI middleware runs each request in its own copy, thrown away afterwards: nothing to undo)."""
    current = Attempt()
    _attempt.set(current)
    return current
