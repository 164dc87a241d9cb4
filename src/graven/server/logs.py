"""The service's own log: one line per request and per notable event, as JSON or plain text.

Everything goes through the standard :mod:`logging` under the ``graven`` logger. :func:`configure`
(called by ``graven serve``: ``--log-format json|text`` or ``GRAVEN_LOG_FORMAT``, and
``--access-log`` for the request lines) gives it one handler on standard error, with
:class:`JsonFormatter` (one JSON object per line: ``time``, ``level``, ``logger``, ``message``,
``request_id`` and the event's own fields) or :class:`TextFormatter`. :class:`RequestLog` writes
the request lines (logger ``graven.http``: method, path, route, status, duration, client) and
gives each request an id (its ``X-Request-ID``, or a new one, returned in the response) that every
line logged while serving it carries. MUST NOT log a request's body, query string, headers or
credentials.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

from graven.capture.request import clean
from graven.server.limits import ASGIApp, Message, Receive, Scope, Send

FORMATS = ("text", "json")
REQUEST_ID: ContextVar[str | None] = ContextVar("graven_log_request_id", default=None)
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_HANDLER_NAME = "graven-serve"
http_log = logging.getLogger("graven.http")


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The line's fields: the standard ones, the request id in force, and what ``extra=`` added."""
    out: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "message": record.getMessage(),
    }
    request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
    if request_id:
        out["request_id"] = request_id
    for key, value in vars(record).items():
        if key not in _STANDARD and key != "request_id" and not key.startswith("_"):
            out[key] = value
    if record.exc_info and record.exc_info[0] is not None:
        out["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line (values that are not JSON become their text)."""

    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps(fields_of(record), default=str).decode()


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER MESSAGE key=value ...`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        found = fields_of(record)
        head = f"{found.pop('time')} {found.pop('level').upper():7} {found.pop('logger')} {found.pop('message')}"
        rest = " ".join(f"{k}={_plain(v)}" for k, v in found.items())
        return f"{head} {rest}" if rest else head


def _plain(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return orjson.dumps(text).decode() if (not text or any(c.isspace() or c == '"' for c in text)) else text


def configure(fmt: str, *, requests: bool = False, level: int = logging.INFO) -> None:
    """Send the ``graven`` loggers' lines to standard error in ``fmt`` (``json`` or ``text``), with a
    line per request when ``requests``; idempotent."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    logger = logging.getLogger("graven")
    for handler in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    http_log.setLevel(level if requests else max(level, logging.WARNING))


class RequestLog:
    """ASGI middleware: a request id per request, and one ``graven.http`` line when its answer ends."""

    def __init__(self, app: ASGIApp, header: str = "x-request-id") -> None:
        self.app = app
        self.header = header.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: Mapping[bytes, bytes] = dict(scope.get("headers") or [])
        request_id = clean(headers.get(self.header), 200) or uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = [500]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
                message["headers"] = [*message.get("headers", []), (self.header, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if http_log.isEnabledFor(logging.INFO):
                route = getattr(scope.get("route"), "path", None)
                http_log.info(
                    "%s %s %d", scope.get("method"), scope.get("path"), status[0],
                    extra={"method": scope.get("method"), "path": scope.get("path"), "route": route,
                           "status": status[0], "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                           "client": (scope.get("client") or (None,))[0]},
                )  # fmt: skip
            REQUEST_ID.reset(token)
