"""Watching the log from the server: wake live tails when it grows, hand new checkpoints to hooks.

One background task per app looks at the log's size and newest checkpoint every ``poll`` seconds
(in a worker thread: two indexed reads), and at once when the server itself appended. It sees
entries and checkpoints written by other processes too. Hooks (the witness pushers) run in a
worker thread with the note text of each checkpoint newer than the last one seen; a hook that
fails is logged and does not stop the others. (The tail of a quiet log is signed, and so pushed to
witnesses, by the trail's background signer: see :mod:`graven.signing`.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from graven.errors import GravenError

if TYPE_CHECKING:
    from graven.trail import Trail

log = logging.getLogger("graven.server")
REPEAT_EVERY = 60.0  # seconds between log lines about the same ongoing failure


def one_line(exc: BaseException) -> str:
    """An error as one log line: the project's own errors by their message, others with their type too."""
    text = " ".join(str(exc).split()) or "(no message)"
    return text if isinstance(exc, GravenError) else f"{type(exc).__name__}: {text}"


class LogWatcher:
    """Tracks the log's size; ``wait_beyond(n)`` returns once it exceeds ``n`` (or on timeout)."""

    def __init__(self, trail: Trail, poll: float, hooks: list[Callable[[str], None]]) -> None:
        self.trail = trail
        self.poll = poll
        self.hooks = hooks
        self.size = -1
        self.checkpoint_size = -1
        self._grown: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._users = 0

    async def start(self) -> None:
        """Start watching (once: an app whose lifespan runs twice shares one watcher)."""
        self._users += 1
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._grown, self._wake = asyncio.Event(), asyncio.Event()
        latest = await asyncio.to_thread(self.trail.store.latest_checkpoint)
        self.checkpoint_size = -1 if latest is None else latest.size
        self.size = await asyncio.to_thread(self.trail.store.size)
        self._task = asyncio.create_task(self._run(), name="graven-log-watcher")

    async def stop(self) -> bool:
        """Stop when the last user stops; returns whether it stopped."""
        self._users -= 1
        if self._users > 0:
            return False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        return True

    def _mine(self) -> bool:
        """Whether the caller runs on the watcher's event loop (tests may drive an app from others)."""
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def poke(self, size: int | None = None) -> None:
        """The server appended (and knows the log has at least ``size`` entries): wake the tails now."""
        if self._wake is None or self._loop is None:
            return
        if not self._mine():
            self._loop.call_soon_threadsafe(self.poke, size)
            return
        if size is not None and size > self.size:
            self._grew(size)  # no need to read the size back
            if not self.hooks:
                return
        self._wake.set()

    def _grew(self, size: int) -> None:
        self.size = size
        assert self._grown is not None
        grown, self._grown = self._grown, asyncio.Event()
        grown.set()

    async def wait_beyond(self, size: int, timeout: float) -> None:
        """Return when the log has more than ``size`` entries, or after ``timeout`` seconds."""
        grown = self._grown
        if grown is None or self._task is None or not self._mine():
            await asyncio.sleep(min(timeout, self.poll))  # not watching from this loop: plain polling
            return
        if self.size > size:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(grown.wait(), timeout)

    async def _run(self) -> None:
        assert self._wake is not None
        failing: str | None = None  # the message of the ongoing failure
        failures, said_at = 0, 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll)
            self._wake.clear()
            try:
                await self._look()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a dropped connection must not end the watcher; the next look retries
                # One line, no traceback: when it starts or changes, then once a minute while it lasts.
                message, failures = one_line(exc), failures + 1
                if message != failing or time.monotonic() - said_at >= REPEAT_EVERY:
                    again = f" (failed {failures} times so far)" if message == failing else ""
                    log.error("graven: could not read the log's size: %s%s", message, again)
                    failing, said_at = message, time.monotonic()
                continue
            if failing is not None:
                log.warning("graven: reading the log's size again after %d failed attempts", failures)
                failing, failures = None, 0

    async def _look(self) -> None:
        size = await asyncio.to_thread(self.trail.store.size)
        if size > self.size:
            self._grew(size)
        if not self.hooks:
            return
        latest = await asyncio.to_thread(self.trail.store.latest_checkpoint)
        if latest is not None and latest.size > self.checkpoint_size:
            self.checkpoint_size = latest.size
            for hook in self.hooks:
                try:
                    await asyncio.to_thread(hook, latest.note)
                except Exception:
                    log.exception("graven: a checkpoint hook failed for the checkpoint of size %d", latest.size)
