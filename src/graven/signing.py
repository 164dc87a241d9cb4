"""The background signer: every entry covered by a signed, kept checkpoint within a bounded delay.

Writes sign a checkpoint inside their transaction at most once per ``interval``; a burst followed by
silence would leave its tail unsigned for good, and an operator who can write the database could
rewrite those entries (and their tree hashes) before anything vouches for them. So a trail with a
signing key owns one :class:`BackgroundSigner`, a daemon thread started on the first commit:

- it MUST sign a checkpoint covering every entry this process committed once the oldest entry no
  checkpoint covers is ``interval`` seconds old (at once when a caller waits for
  ``durable="signed"``), with or without witnesses;
- it MUST keep each newly signed checkpoint in the checkpoint file beside the key (the reference a
  rewrite of the database cannot reach), and MUST NOT keep one inconsistent with the kept one;
- nothing it does after a commit fails that commit: a checkpoint that cannot be signed or kept (a
  full disk, a locked database) puts the signer in a *degraded* state (:class:`SigningStatus`),
  logged once per change of state, and is retried with backoff until it succeeds (logged as
  recovered).

The window that remains: between a commit and its checkpoint (at most ``interval``, plus the time to
sign) someone with write access to the database can rewrite unsigned entries undetected.
``durable="signed"`` closes it for the callers that wait; witnesses close the wider window of a
rewrite of everything, the kept file included.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from graven.checkpoint_file import CheckpointFile, kept_size
from graven.core import merkle
from graven.core.note import Checkpoint, NoteError, note_signatures
from graven.errors import GravenError
from graven.store import StoredCheckpoint

if TYPE_CHECKING:
    from graven.sequencer import Sequencer

log = logging.getLogger("graven.signing")

RETRY_FIRST = 0.25
"""Seconds before the first retry of a failed signing or keeping; doubled up to :data:`RETRY_MAX`."""
RETRY_MAX = 5.0
SIGNED_WAIT = 30.0
"""Seconds ``durable="signed"`` waits for a kept checkpoint before raising :class:`NotYetSigned`."""


class NotYetSigned(GravenError):
    """The entries ARE committed (``indices``), but no kept checkpoint covers them yet.

    Raised only to callers who asked for ``durable="signed"``. Do not record them again: the
    signer keeps retrying and covers them once it can.
    """

    def __init__(self, indices: list[int], reason: str) -> None:
        self.indices = indices
        first, last = min(indices), max(indices)
        where = f"entry {first}" if first == last else f"entries {first}..{last}"
        super().__init__(f"{where} committed (do not record again), but no kept checkpoint covers them yet: {reason}")


@dataclass(frozen=True, slots=True)
class SigningStatus:
    """How far signing and keeping have got in this process, and whether they are failing.

    Sizes are tree sizes (-1: none yet). ``unsigned_for`` is how long the oldest entry this process
    committed has waited for a checkpoint (None when every one is covered).
    """

    enabled: bool
    degraded: bool
    reason: str | None
    since: datetime | None
    committed: int
    signed: int
    kept: int
    keeps: bool
    interval: float
    unsigned_for: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled, "degraded": self.degraded, "reason": self.reason,
            "since": None if self.since is None else self.since.isoformat(),
            "committed": self.committed, "signed": self.signed, "kept": self.kept, "keeps": self.keeps,
            "interval": self.interval, "unsigned_for": self.unsigned_for,
        }  # fmt: skip


def disabled_status(interval: float) -> SigningStatus:
    """The status of a trail without a signing key: nothing is signed, nothing can fail."""
    return SigningStatus(False, False, None, None, -1, -1, -1, False, interval, None)


class BackgroundSigner:
    """Signs the unsigned tail of one trail and keeps every new checkpoint; see the module doc."""

    def __init__(
        self,
        sequencer: Sequencer,
        kept: CheckpointFile | None,
        interval: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sequencer = sequencer
        self.kept_file = kept
        self.interval = max(0.0, interval)
        self._now = monotonic
        self._cond = threading.Condition()
        self._keep_lock = threading.Lock()  # one signer-and-keeper at a time (this thread or a caller)
        self._committed = -1
        self._signed = -1
        self._note: str | None = None
        self._kept = -1
        self._unsigned_since: float | None = None
        self._urgent = 0
        self._closing = False
        self._thread: threading.Thread | None = None
        self._reason: str | None = None
        self._since: datetime | None = None
        self._retry_at = -math.inf
        self._backoff = RETRY_FIRST

    # --- hooks the sequencer calls after a commit (memory only: never I/O, never raise) ---------

    def committed(self, size: int) -> None:
        """Entries up to ``size`` are committed; wake the thread if they start an unsigned tail."""
        with self._cond:
            if size <= self._committed:
                return
            self._committed = size
            if size > self._signed and self._unsigned_since is None:
                self._unsigned_since = self._now()
                self._start()
                self._cond.notify_all()

    def signed(self, stored: StoredCheckpoint) -> None:
        """A checkpoint was signed (and committed): remember it to keep it."""
        with self._cond:
            if stored.size > self._signed:
                self._signed, self._note = stored.size, stored.note
            if self._signed >= self._committed:
                self._unsigned_since = None
            if self.kept_file is not None and self._signed > self._kept:
                self._start()
            self._cond.notify_all()

    # --- callers -------------------------------------------------------------------------------

    def sign_now(self) -> StoredCheckpoint | None:
        """Sign the current tree (unless a checkpoint covers it) and keep it, in this thread.

        Signing errors are raised (nothing was signed); a failure to keep is not: it degrades the
        status and the background thread retries it.
        """
        with self._keep_lock:
            stored = self._sign()
            try:
                self._keep()
            except Exception as exc:
                self._failed(self._keep_reason(exc))
            else:
                self._succeeded()
        return stored

    def wait_covered(self, indices: list[int], timeout: float = SIGNED_WAIT) -> None:
        """Return once a kept checkpoint covers ``indices``; raise :class:`NotYetSigned` after ``timeout``."""
        size = max(indices) + 1
        deadline = self._now() + timeout
        with self._cond:
            self._committed = max(self._committed, size)
            if self._covered() < size and self._unsigned_since is None:
                self._unsigned_since = self._now()
            self._urgent += 1
            self._start()
            self._cond.notify_all()
            try:
                while self._covered() < size:
                    left = deadline - self._now()
                    if left <= 0 or self._closing:
                        raise NotYetSigned(indices, self._reason or "the signer has not caught up yet")
                    self._cond.wait(left)
            finally:
                self._urgent -= 1

    def status(self) -> SigningStatus:
        with self._cond:
            waited = None if self._unsigned_since is None else max(0.0, self._now() - self._unsigned_since)
            return SigningStatus(
                True, self._reason is not None, self._reason, self._since, self._committed, self._signed,
                self._kept, self.kept_file is not None, self.interval, waited,
            )  # fmt: skip

    def close(self, sign_tail: bool) -> None:
        """Stop the thread; then sign the tail (when ``sign_tail``) and keep the newest checkpoint.

        Signing errors are raised; a failure to keep is logged and left in the status.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
        with self._cond:
            behind = self._committed > self._signed
        if sign_tail or behind:
            self.sign_now()
            return
        with self._keep_lock:
            try:
                self._keep()
            except Exception as exc:
                self._failed(self._keep_reason(exc))

    # --- the thread ------------------------------------------------------------------------------

    def _covered(self) -> int:
        return self._signed if self.kept_file is None else min(self._signed, self._kept)

    def _start(self) -> None:
        """Start the thread (under ``_cond``) unless it runs or the trail is closing."""
        if self._thread is None and not self._closing:
            self._thread = threading.Thread(target=self._run, name="graven-signer", daemon=True)
            self._thread.start()

    def _wait_for_work(self) -> bool:
        """Block (under ``_cond``) until there is work; False when closing or when nothing is left
        to do. The thread then ends (the next commit starts another), so an idle trail that its
        owner dropped without ``close()`` is not kept alive, connections and all, by its signer."""
        while not self._closing:
            now = self._now()
            sign_at = math.inf
            if self._committed > self._signed:
                since = self._unsigned_since if self._unsigned_since is not None else now
                sign_at = now if self._urgent else since + self.interval
            keep_at = now if self.kept_file is not None and self._signed > self._kept else math.inf
            due = max(min(sign_at, keep_at), self._retry_at)
            if due == math.inf:
                self._thread = None
                return False
            if due <= now:
                return True
            self._cond.wait(due - now)
        return False

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._wait_for_work():
                    return
                sign = self._committed > self._signed
            with self._keep_lock:
                try:
                    if sign:
                        self._sign()
                except Exception as exc:
                    self._failed(f"cannot sign a checkpoint: {_message(exc)}")
                    continue
                try:
                    self._keep()
                except Exception as exc:
                    self._failed(self._keep_reason(exc))
                    continue
                self._succeeded()

    def _sign(self) -> StoredCheckpoint | None:
        """Sign the current tree unless a checkpoint (perhaps another process's) already covers it."""
        stored = self.sequencer.checkpoint()
        if stored is not None:
            self.signed(stored)
        with self._cond:
            if self._committed > self._signed:
                raise GravenError(
                    f"the log has only {self._signed} entries but this process committed {self._committed}: "
                    "entries were removed; run `graven verify`"
                )
        return stored

    # --- keeping --------------------------------------------------------------------------------

    def _keep(self) -> None:
        """Keep the newest signed checkpoint in the kept file (caller holds ``_keep_lock``).

        MUST NOT replace the kept checkpoint with one inconsistent with it: that is a rewritten
        history, which is refused (and reported) rather than made the new reference.
        """
        kept_file = self.kept_file
        with self._cond:
            note, size = self._note, self._signed
        if kept_file is None or note is None or size <= self._kept:
            return
        current = kept_file.read()
        current_size = kept_size(current)
        if current is not None and 0 <= current_size < size:
            self._check_consistent(current, current_size, note, size)
        kept_file.push(note)
        with self._cond:
            self._kept = max(self._kept, size, current_size)
            self._cond.notify_all()

    def _check_consistent(self, old_note: str, old_size: int, note: str, size: int) -> None:
        old_root, new_root = _root(old_note), _root(note)
        if old_root is None or new_root is None:
            return  # a kept note that cannot be parsed is left for `graven verify` to judge
        nodes = merkle.consistency_nodes(old_size, size)
        _, hashes = self.sequencer.store.tree_hashes(nodes)
        proof = merkle.consistency_proof(old_size, size, hashes)
        if not merkle.verify_consistency(old_size, size, old_root, new_root, proof):
            raise GravenError(
                f"the checkpoint of size {size} is not consistent with the kept checkpoint of size "
                f"{old_size}: the log was rewritten; run `graven verify`"
            )

    def _keep_reason(self, exc: Exception) -> str:
        where = self.kept_file.path if self.kept_file is not None else "(none)"
        return f"cannot keep the newest checkpoint in {where}: {_message(exc)}"

    # --- state ----------------------------------------------------------------------------------

    def _failed(self, reason: str) -> None:
        with self._cond:
            if reason != self._reason:
                log.error("graven: checkpoint signing degraded: %s", reason)
            if self._reason is None:
                self._since = datetime.now(UTC)
            self._reason = reason
            self._retry_at = self._now() + self._backoff
            self._backoff = min(self._backoff * 2, RETRY_MAX)
            self._cond.notify_all()

    def _succeeded(self) -> None:
        with self._cond:
            if self._reason is not None and self._covered() >= self._signed:
                log.warning(
                    "graven: checkpoint signing recovered: the checkpoint of size %d is signed%s",
                    self._signed, "" if self.kept_file is None else f" and kept in {self.kept_file.path}",
                )  # fmt: skip
                self._reason, self._since = None, None
            self._retry_at, self._backoff = -math.inf, RETRY_FIRST
            self._cond.notify_all()


def _root(note: str) -> bytes | None:
    try:
        text, _ = note_signatures(note)
        return Checkpoint.parse(text).root_hash
    except NoteError:
        return None


def _message(exc: BaseException) -> str:
    """One line saying what went wrong (no traceback)."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    text = " ".join(str(exc).split())
    return text if isinstance(exc, GravenError) else f"{type(exc).__name__}: {text}"


__all__ = ["BackgroundSigner", "NotYetSigned", "SigningStatus", "disabled_status"]
