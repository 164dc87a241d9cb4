"""Limits against bad input and abuse: request body size, JSON depth, failed authentication.

The body limit is an ASGI middleware: a declared ``Content-Length`` over the limit is answered 413
before anything is read, and a body sent in chunks is cut off as soon as it passes the limit.
Failed authentication is counted in fixed windows by ``FailureLimiter``; which counts refuse
(429 with ``Retry-After`` until the window ends) and which only watch is decided by the server's
auth code (see :mod:`graven.server.auth`). Each subject passing its limit is reported once per
window (the app records it as ``auth.bruteforce_suspected``). Counters live in this process's memory.
"""

from __future__ import annotations

import ipaddress
import re
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import orjson

from graven.core.model import load_json
from graven.errors import ValidationError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLarge(Exception):
    """The request body passed the limit."""

    def __init__(self, limit: int, given: str) -> None:
        super().__init__(f"the request body must be at most {limit} bytes; got {given}")
        self.limit = limit
        self.given = given


def error_body(error: str, message: str, **extra: Any) -> bytes:
    return orjson.dumps({"error": error, "message": message, **{k: v for k, v in extra.items() if v is not None}})


class BodyLimit:
    """ASGI middleware: request bodies of at most ``limit`` bytes, else 413 naming the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers") or []:
            if name.lower() == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.limit:
                    await _too_large(send, BodyTooLarge(self.limit, f"a Content-Length of {declared} bytes"))
                    return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit, f"more than {self.limit} bytes (the body was cut off there)")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await _too_large(send, exc)


async def _too_large(send: Send, exc: BodyTooLarge) -> None:
    body = error_body("body_too_large", str(exc), field="body", limit=exc.limit, given=exc.given)
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string, escapes included
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def check_depth(raw: bytes, limit: int, field: str = "body") -> None:
    """Raise ValidationError when valid JSON text nests objects and arrays deeper than ``limit``.

    Works on the text (strings removed, then a running sum over the brackets) at C speed: about
    a microsecond per 500-byte event, where walking the parsed value costs over ten.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    deepest = max(accumulate(map(_STEP.__getitem__, brackets)), default=0)
    if deepest > limit:
        raise ValidationError(field, f"must nest JSON objects and arrays at most {limit} levels deep",
                              f"<{deepest} levels>")  # fmt: skip


def json_body(raw: bytes, depth_limit: int) -> Any:
    """Parse a request body as JSON within the depth limit, or ValidationError naming ``body``."""
    try:
        value = load_json(raw)  # integers exact, so that one beyond 2**53 is refused, not rounded
    except orjson.JSONDecodeError as exc:
        raise ValidationError("body", "must be JSON", f"<invalid JSON: {exc}>") from None
    if type(value) is dict or type(value) is list:
        check_depth(raw, depth_limit)  # the text is valid JSON now, so its strings are well formed
    return value


Subject = tuple[str, ...]  # ("ip", "203.0.113.7"), ("key", id), ("user", name), ("user_ip", name, address)
Report = tuple[Subject, int]  # a subject that just passed its limit, and its failures in this window


def address_subject(ip: str | None) -> Subject:
    """The counter of a client address: an IPv6 client is counted by its /64 (one host's usual share,
    whose low bits it picks at will); an IPv4-mapped address as IPv4; no address at all as "unknown"."""
    if ip is None:
        return ("ip", "unknown")
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ("ip", ip)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return ("ip", str(address.ipv4_mapped))
        return ("ip", str(ipaddress.IPv6Network((address, 64), strict=False)))
    return ("ip", str(address))


@dataclass
class _Window:
    start: float
    failures: int = 0
    reported: bool = False


class FailureLimiter:
    """Counts failed authentications per subject in fixed windows of ``window`` seconds.

    What a subject's count does is the caller's choice: ``throttled`` refuses the subjects it is
    given once they have failed ``limit`` times (so callers MUST pass only subjects the attacker
    cannot choose for somebody else: the client's address, an unknown key id, a user from one
    address); ``failed`` counts every subject given and reports each one once per window when it
    passes the limit, which is how a subject that must never be refused (a real key, a user
    from all addresses) is still watched. Memory is bounded by ``max_subjects``: expired windows are
    forgotten first, then windows that refuse nothing, oldest first.
    """

    def __init__(self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic,
                 max_subjects: int = 100_000) -> None:  # fmt: skip
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_subjects = max_subjects
        self._windows: dict[Subject, _Window] = {}
        self._lock = threading.Lock()

    def _live(self, subject: Subject, now: float) -> _Window | None:
        found = self._windows.get(subject)
        return None if found is None or now - found.start >= self.window else found

    def _current(self, subject: Subject, now: float) -> _Window:
        found = self._live(subject, now)
        if found is None:
            if subject not in self._windows and len(self._windows) >= self.max_subjects:
                self._sweep(now)
            found = self._windows[subject] = _Window(now)
        return found

    def _sweep(self, now: float) -> None:
        for key in [k for k, w in self._windows.items() if now - w.start >= self.window]:
            del self._windows[key]
        if len(self._windows) < self.max_subjects:
            return
        # Still full: forget a tenth of the table (so the next sweeps are far apart), windows that
        # refuse nothing first, oldest first.
        order = sorted(self._windows, key=lambda k: (self._windows[k].failures >= self.limit, self._windows[k].start))
        for key in order[: len(self._windows) - self.max_subjects + max(1, self.max_subjects // 10)]:
            del self._windows[key]

    def throttled(self, subjects: list[Subject]) -> tuple[float, list[Report]]:
        """Seconds to wait (0 when allowed), and the subjects to report now as brute-force suspects.

        A refused attempt counts as one more failure of each throttled subject.
        """
        now = self.clock()
        wait = 0.0
        report: list[Report] = []
        with self._lock:
            for subject in subjects:
                window = self._live(subject, now)
                if window is None or window.failures < self.limit:
                    continue
                window.failures += 1
                wait = max(wait, window.start + self.window - now)
                if not window.reported:
                    window.reported = True
                    report.append((subject, window.failures))
        return wait, report

    def failed(self, subjects: list[Subject]) -> list[Report]:
        """Count one failed authentication against each subject; returns those that just passed the
        limit in this window (each reported once per window, here or by ``throttled``)."""
        now = self.clock()
        report: list[Report] = []
        with self._lock:
            for subject in subjects:
                window = self._current(subject, now)
                window.failures += 1
                if window.failures > self.limit and not window.reported:
                    window.reported = True
                    report.append((subject, window.failures))
        return report

    def over(self, subject: Subject) -> bool:
        """Whether ``subject`` has passed the limit in its current window."""
        with self._lock:
            window = self._live(subject, self.clock())
            return window is not None and window.failures > self.limit
