"""Server-sent events: new entries pushed to open pages as soon as the log has them.

Each stream polls the log's size in a worker thread (so entries written by other processes show up
too), wakes at once when this process records something (:class:`Pulse`), sends each new entry as
an ``entry`` event whose id is its index (a reconnecting browser resumes from ``Last-Event-ID``),
and ends after a while so that browsers reconnect and a server can stop promptly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from graven.core import jsonlines

POLL_SECONDS = 0.5
STREAM_SECONDS = 25.0
RETRY_MS = 1000
MAX_BATCH = 200


class Pulse:
    """Wakes every waiting stream; fire it from the event loop after recording something."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def fire(self) -> None:
        event, self._event = self._event, None
        if event is not None:
            event.set()

    async def wait(self, timeout: float) -> None:
        if self._event is None:
            self._event = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)


def message(event: str, data: Any, ident: int | None = None) -> bytes:
    """One server-sent event."""
    head = f"id: {ident}\n" if ident is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + jsonlines.dumps(data) + b"\n\n"


async def stream(
    after: int,
    generation: int | None,
    fetch: Callable[[int], Awaitable[tuple[int, list[dict[str, Any]]]]],
    pulse: Pulse,
    disconnected: Callable[[], Awaitable[bool]],
    closing: asyncio.Event,
    *,
    seconds: float = STREAM_SECONDS,
) -> AsyncIterator[bytes]:
    """Entries after index ``after`` as they arrive.

    ``fetch(after)`` returns the log's generation and up to :data:`MAX_BATCH` new entries as event
    data (each with ``index``); a generation other than ``generation`` (the demo was reset since the
    page was drawn) ends the stream with a ``reset`` event.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    yield f"retry: {RETRY_MS}\n\n".encode()
    while loop.time() < deadline and not closing.is_set():
        if await disconnected():
            return
        current, items = await fetch(after)
        if generation is None:
            generation = current
        elif current != generation:
            yield message("reset", {"generation": current})
            return
        for item in items:
            after = int(item["index"])
            yield message("entry", item, after)
        if not items:
            await pulse.wait(POLL_SECONDS)
