"""A tlog-witness: the state it keeps per log on disk, and the add-checkpoint handler around it.

State is one file per log origin in the state directory, holding the newest checkpoint note the
witness cosigned (the log's verified signatures and the witness's cosignature). For one origin,
reading the state, judging the request and writing the new state MUST happen as one step: they
run under an exclusive lock on that origin's file, so concurrent requests (threads or processes
sharing the directory) are serialised and a smaller checkpoint can never overwrite a larger one.
The new state MUST be durable (fsync, rename, fsync of the directory) before the cosignature is
returned. An unreadable state file is an error, never "nothing cosigned yet".
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson

from graven.core.note import (
    CosignerKey,
    NoteError,
    Verifier,
    cosign,
    note_signatures,
    open_checkpoint,
)
from graven.errors import ConfigError, GravenError
from graven.private_files import make_private_dir
from graven.witnessing.files import checkpoint_of, locked, replace_atomically
from graven.witnessing.protocol import (
    SIZE_CONTENT_TYPE,
    Known,
    MalformedRequest,
    Verdict,
    decide,
    parse_request,
)

EVIDENCE_KINDS = frozenset({"forked", "bad-proof", "rollback"})
"""Refusals of a checkpoint the log really signed: kept as evidence that the log misbehaved."""


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

    def keep_evidence(self, body: bytes) -> Path:
        """Store a refused but log-signed request body (named by its hash) and return its path."""
        folder = self.directory / "evidence"
        make_private_dir(folder)
        path = folder / f"{hashlib.sha256(body).hexdigest()}.txt"
        if not path.exists():
            replace_atomically(path, body)
        return path

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
        logs: Sequence[Verifier],
        state: WitnessState,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not logs:
            raise ConfigError("--log: a witness needs at least one log verifier key to serve")
        self.key = key
        self.state = state
        self.clock = clock
        self.logs: dict[str, list[Verifier]] = {}
        for verifier in logs:
            self.logs.setdefault(verifier.name, []).append(verifier)

    @property
    def verifier_key(self) -> str:
        """The witness's public cosigner key (vkey text)."""
        return self.key.verifier().to_text()

    def add_checkpoint(self, body: bytes) -> Reply:
        """Answer one add-checkpoint request; a 200 is sent only after the new state is durable."""
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
                        self.state.keep_evidence(body)
                    return _error(verdict)
                _, signatures = open_checkpoint(request.note, verifiers)
                text, _ = note_signatures(request.note)
                cosignature = cosign(text, self.key, int(self.clock()))
                kept = text + "\n" + "".join(s.to_line() for s in [*signatures, cosignature])
                self.state.write(origin, kept)
        except StateError as exc:
            return _error(Verdict(500, "state-error", str(exc)))
        return Reply(200, "text/plain; charset=utf-8", cosignature.to_line().encode("utf-8"), verdict)

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
