"""Pushing new checkpoints to witnesses from one background thread, off the write path.

:meth:`Pusher.notify` only raises a flag, so the sequencer can call it right after signing a
checkpoint without waiting for the network. The thread then pushes the trail's newest checkpoint
to every witness; notifications that arrive meanwhile collapse into one more round, because only
the newest checkpoint matters. A failed push is logged and remembered, never raised into the
writer; the next checkpoint is pushed with a proof from what the witness really knows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from graven.core.note import CosignerVerifier
from graven.errors import GravenError
from graven.witnessing.client import DEFAULT_TIMEOUT, CosignedResult, WitnessRefused, push_checkpoint

if TYPE_CHECKING:
    from graven.trail import Trail

log = logging.getLogger("graven.witness")

CLOSE_TIMEOUT = 15.0
"""Seconds :meth:`Pusher.close` waits for the last round of pushes."""


class Pusher:
    """Pushes a trail's newest checkpoint to ``urls`` in a daemon thread started on first notify."""

    def __init__(
        self,
        trail: Trail,
        urls: Sequence[str],
        *,
        keys: Sequence[CosignerVerifier] = (),
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.trail = trail
        self.urls = tuple(urls)
        self.keys = tuple(keys)
        self.timeout = timeout
        self.results: dict[str, CosignedResult | GravenError] = {}
        """The outcome of the latest push to each witness URL."""
        self._cond = threading.Condition()
        self._pending = False
        self._busy = False
        self._closing = False
        self._thread: threading.Thread | None = None

    def notify(self) -> None:
        """A new checkpoint was signed: push it soon. Never blocks on the network."""
        with self._cond:
            if self._closing and self._thread is None:
                return
            self._pending = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="graven-witness-pusher", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def push_all(self) -> dict[str, CosignedResult | GravenError]:
        """Push the newest checkpoint to every witness now, in the caller's thread."""
        for url in self.urls:
            try:
                self.results[url] = push_checkpoint(self.trail, url, keys=self.keys, timeout=self.timeout)
            except WitnessRefused as exc:
                self.results[url] = exc
                log.error("witness refused the checkpoint: %s", exc)
            except GravenError as exc:
                self.results[url] = exc
                log.warning("could not push the checkpoint to a witness: %s", exc)
        return dict(self.results)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no push is pending or running; False if ``timeout`` ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closing)
                if not self._pending:
                    return
                self._pending, self._busy = False, True
            try:
                self.push_all()
            except Exception:  # a bug must not kill the thread silently
                log.exception("witness pusher failed")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Finish the pending round (waiting at most ``timeout`` seconds), then stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)


def attach(trail: Trail, urls: Sequence[str]) -> Pusher | None:
    """Push each of ``trail``'s new checkpoints to ``urls`` in the background (None when there are none).

    Wired through the trail's hooks: a signed checkpoint wakes the pusher (never blocking the write
    path), and closing the trail waits for the last round of pushes before its store closes.
    """
    if not urls:
        return None
    pusher = Pusher(trail, urls)
    trail.witnesses = tuple(urls)
    trail.pusher = pusher
    trail.on_signed(lambda _checkpoint: pusher.notify())
    trail.on_close(pusher.close)
    return pusher
