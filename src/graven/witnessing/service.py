"""A tlog-witness: the state it keeps per log on disk, and the add-checkpoint handler around it.

State is one file per log origin in the state directory, holding the newest checkpoint note the
witness cosigned (the log's verified signatures and the witness's cosignature). For one origin,
reading the state, judging the request and writing the new state MUST happen as one step: they
run under an exclusive lock on that origin's file, so concurrent requests (threads or processes
sharing the directory) are serialised and a smaller checkpoint can never overwrite a larger one.
The new state MUST be durable (fsync, rename, fsync of the directory) before the cosignature is
returned. An unreadable state file is an error, never "nothing cosigned yet".

Refusals of a checkpoint the log really signed (a fork, a bad proof, a rollback) are kept in
``evidence/`` for the operator. Nothing is written for a request whose checkpoint does not verify
under a key of the log: anyone can send those. What is kept is bounded (:class:`EvidenceLimits`):
only the checkpoint with its verified signatures, the old size and the proof; each signed
checkpoint once; per client address a number of files and bytes per window; and in all a number
of files and bytes, beyond which evidence is counted and logged, not stored.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson

from graven.core.key_history import KeyHistory, open_trusted, trusted_verifiers
from graven.core.note import (
    CosignerKey,
    NoteError,
    Verifier,
    cosign,
    note_signatures,
    open_checkpoint,
)
from graven.cosigned_file import checkpoint_of, locked, replace_atomically
from graven.errors import ConfigError, GravenError
from graven.private_files import make_private_dir
from graven.witnessing.protocol import (
    SIZE_CONTENT_TYPE,
    AddCheckpoint,
    Known,
    MalformedRequest,
    Verdict,
    decide,
    evidence_of,
    parse_request,
)

log = logging.getLogger("graven.witness")

EVIDENCE_KINDS = frozenset({"forked", "bad-proof", "rollback", "key-out-of-range"})
"""Refusals of a checkpoint the log really signed: kept as evidence that the log (or whoever holds
one of its retired or revoked keys) misbehaved."""


DROP_LOG_SECONDS = 60.0
"""At most one log line per this many seconds about evidence that was not kept."""


@dataclass(frozen=True)
class EvidenceLimits:
    """How much evidence a witness keeps. Per client address, within ``window`` seconds, at most
    ``client_files`` new files holding ``client_bytes`` bytes; in the evidence folder in all, at
    most ``max_files`` files and ``max_bytes`` bytes (counted on disk, so shared by every process
    serving the state directory and kept across restarts)."""

    client_files: int = 16
    client_bytes: int = 256 * 1024
    window: float = 3600.0
    max_files: int = 1024
    max_bytes: int = 32 * 1024 * 1024


class StateError(GravenError):
    """The witness's record of a log cannot be read; it refuses to cosign until an operator looks."""


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, content type and body, plus the verdict behind it."""

    status: int
    content_type: str
    body: bytes
    verdict: Verdict


class WitnessState:
    """The directory holding one cosigned checkpoint note per log origin."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            make_private_dir(directory)
        except OSError as exc:
            raise ConfigError(f"--state: cannot create the state directory {directory}: {exc.strerror}") from None
        if not directory.is_dir():
            raise ConfigError(f"--state: {directory} is not a directory")

    def path(self, origin: str) -> Path:
        """The file of one origin: named by the SHA-256 of the origin, so any origin is a safe name."""
        return self.directory / f"{hashlib.sha256(origin.encode('utf-8')).hexdigest()}.checkpoint"

    @contextmanager
    def transaction(self, origin: str) -> Iterator[None]:
        """Hold the origin's lock: read, decide and write inside it."""
        with locked(self.path(origin)):
            yield

    def read(self, origin: str) -> str | None:
        """The cosigned note kept for ``origin``, or None if the witness never cosigned it."""
        path = self.path(origin)
        try:
            note = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise StateError(f"witness state {path} for {origin!r} is unreadable: {exc}") from None
        try:
            checkpoint = checkpoint_of(note)
        except NoteError as exc:
            raise StateError(f"witness state {path} for {origin!r} is damaged: {exc}") from None
        if checkpoint.origin != origin:
            raise StateError(f"witness state {path} holds origin {checkpoint.origin!r}, expected {origin!r}")
        return note

    def known(self, origin: str) -> Known | None:
        """The size and root last cosigned for ``origin``."""
        note = self.read(origin)
        if note is None:
            return None
        checkpoint = checkpoint_of(note)
        return Known(checkpoint.size, checkpoint.root_hash)

    def write(self, origin: str, note: str) -> None:
        """Make ``note`` the origin's state, durably. Call inside :meth:`transaction`."""
        replace_atomically(self.path(origin), note.encode("utf-8"))

    @property
    def evidence_folder(self) -> Path:
        return self.directory / "evidence"

    def has_evidence(self, name: str) -> bool:
        """Whether evidence of this name (see :class:`~graven.witnessing.protocol.Evidence`) is kept."""
        return (self.evidence_folder / f"{name}.txt").exists()

    def evidence_usage(self) -> tuple[int, int]:
        """The number of evidence files and their total size in bytes."""
        files = size = 0
        try:
            entries = list(self.evidence_folder.iterdir())
        except FileNotFoundError:
            return 0, 0
        for path in entries:
            if path.suffix == ".txt":
                try:
                    size += path.stat().st_size
                except FileNotFoundError:
                    continue
                files += 1
        return files, size

    def keep_evidence(self, name: str, data: bytes, *, max_files: int, max_bytes: int) -> bool | None:
        """Store ``data`` as evidence ``name`` unless the folder would then exceed ``max_files`` files
        or ``max_bytes`` bytes: True when stored, False when already kept, None when full.

        The check and the write happen under one lock shared by every process on this directory.
        """
        folder = self.evidence_folder
        make_private_dir(folder)
        path = folder / f"{name}.txt"
        with locked(self.directory / "evidence"):
            if path.exists():
                return False
            files, size = self.evidence_usage()
            if files + 1 > max_files or size + len(data) > max_bytes:
                return None
            replace_atomically(path, data)
        return True

    def notes(self) -> list[str]:
        """Every kept note, in file-name order."""
        out = []
        for path in sorted(self.directory.glob("*.checkpoint")):
            try:
                out.append(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError):
                continue
        return out


class WitnessService:
    """Cosigns checkpoints of the logs it serves, one at a time per log. Safe to share between threads."""

    def __init__(
        self,
        key: CosignerKey,
        logs: Sequence[Verifier | KeyHistory],
        state: WitnessState,
        *,
        clock: Callable[[], float] = time.time,
        evidence: EvidenceLimits | None = None,
    ) -> None:
        if not logs:
            raise ConfigError("--log: a witness needs at least one log verifier key to serve")
        self.key = key
        self.state = state
        self.clock = clock
        self.evidence = evidence or EvidenceLimits()
        self.evidence_dropped = 0
        """Evidence not kept since start, for a limit (per client or in all)."""
        self._evidence_lock = threading.Lock()
        self._kept_by: dict[str, deque[tuple[float, int]]] = {}
        self._dropped_logged_at: float | None = None
        self.logs: dict[str, list[Verifier] | KeyHistory] = {}
        """Each served origin's trust: plain keys (valid at every size) or its key history."""
        for item in logs:
            origin = item.current.verifier.name if isinstance(item, KeyHistory) else item.name
            served = self.logs.get(origin)
            if isinstance(item, KeyHistory) or isinstance(served, KeyHistory):
                if served is not None:
                    raise ConfigError(
                        f"--log: {origin!r} is given twice, and once as a key history: give its key history "
                        "alone (it names every key of the log and the sizes each may sign)"
                    )
                self.logs[origin] = item if isinstance(item, KeyHistory) else [item]
            else:
                self.logs.setdefault(origin, [])
                served = self.logs[origin]
                assert isinstance(served, list)
                served.append(item)

    @property
    def verifier_key(self) -> str:
        """The witness's public cosigner key (vkey text)."""
        return self.key.verifier().to_text()

    def add_checkpoint(self, body: bytes, *, client: str = "local") -> Reply:
        """Answer one add-checkpoint request; a 200 is sent only after the new state is durable.

        ``client`` (the sender's address) is what the per-client evidence limits count against.
        """
        try:
            request = parse_request(body)
        except MalformedRequest as exc:
            return _error(Verdict(400, "malformed", str(exc)))
        origin = request.checkpoint.origin
        verifiers = self.logs.get(origin)
        if verifiers is None:
            return _error(decide(request, None, None))
        try:
            with self.state.transaction(origin):
                verdict = decide(request, verifiers, self.state.known(origin))
                if not verdict.cosign:
                    if verdict.kind in EVIDENCE_KINDS:
                        self._keep_evidence(request, verifiers, client)
                    return _error(verdict)
                _, signatures = open_trusted(request.note, verifiers)
                text, _ = note_signatures(request.note)
                cosignature = cosign(text, self.key, int(self.clock()))
                kept = text + "\n" + "".join(s.to_line() for s in [*signatures, cosignature])
                self.state.write(origin, kept)
        except StateError as exc:
            return _error(Verdict(500, "state-error", str(exc)))
        return Reply(200, "text/plain; charset=utf-8", cosignature.to_line().encode("utf-8"), verdict)

    def _keep_evidence(self, request: AddCheckpoint, verifiers: list[Verifier] | KeyHistory, client: str) -> None:
        """Keep a refused request's evidence within the limits; only a log-signed checkpoint gets here."""
        try:
            _, signatures = open_checkpoint(request.note, trusted_verifiers(verifiers))
        except NoteError:
            return  # decide() checked the signature; never store what the log did not sign
        item = evidence_of(request, signatures)
        if self.state.has_evidence(item.name):
            return
        limits = self.evidence
        with self._evidence_lock:
            now = self.clock()
            kept = self._recent(client, now)
            files, size = len(kept), sum(n for _, n in kept)
            if files + 1 > limits.client_files or size + len(item.body) > limits.client_bytes:
                self._dropped(now, f"client {client} reached its limit of {limits.client_files} files or "
                                   f"{limits.client_bytes} bytes per {limits.window:g} s")  # fmt: skip
                return
            try:
                stored = self.state.keep_evidence(
                    item.name, item.body, max_files=limits.max_files, max_bytes=limits.max_bytes
                )
            except OSError as exc:  # a full disk must not turn the refusal into a server error
                self._dropped(now, f"it cannot be written: {exc.strerror or exc}")
                return
            if stored is None:
                full = f"the evidence folder is full ({limits.max_files} files or {limits.max_bytes} bytes)"
                self._dropped(now, full)
            elif stored:
                kept.append((now, len(item.body)))
                self._kept_by[client] = kept

    def _recent(self, client: str, now: float) -> deque[tuple[float, int]]:
        """The evidence ``client`` had kept within the window; forgets clients whose window passed."""
        horizon = now - self.evidence.window
        for other in [c for c, kept in self._kept_by.items() if not kept or kept[-1][0] <= horizon]:
            del self._kept_by[other]
        kept = self._kept_by.get(client, deque())
        while kept and kept[0][0] <= horizon:
            kept.popleft()
        return kept

    def _dropped(self, now: float, why: str) -> None:
        self.evidence_dropped += 1
        last = self._dropped_logged_at
        if last is None or now - last >= DROP_LOG_SECONDS or now < last:
            self._dropped_logged_at = now
            log.warning(f"witness: evidence of a refused checkpoint not kept: {why}; "
                        f"{self.evidence_dropped} not kept since start")  # fmt: skip

    def latest(self, origin: str) -> str | None:
        """The newest checkpoint cosigned for ``origin`` (a note with the log's and this witness's lines)."""
        return self.state.read(origin)

    def known_logs(self) -> list[dict[str, object]]:
        """Each served origin with the size last cosigned (0 when never)."""
        out: list[dict[str, object]] = []
        for origin in sorted(self.logs):
            known = self.state.known(origin)
            out.append({"origin": origin, "size": 0 if known is None else known.size})
        return out


def _error(verdict: Verdict) -> Reply:
    if verdict.known_size is not None:
        return Reply(verdict.status, SIZE_CONTENT_TYPE, f"{verdict.known_size}\n".encode(), verdict)
    body = orjson.dumps({"error": verdict.message, "kind": verdict.kind}) + b"\n"
    return Reply(verdict.status, "application/json", body, verdict)
