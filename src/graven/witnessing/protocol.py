"""The c2sp.org/tlog-witness ``add-checkpoint`` exchange as pure functions: no clock, no files, no network.

A request body is an ``old <size>`` line, up to 63 base64 consistency-proof lines, an empty line,
then a signed checkpoint note. :func:`decide` judges a parsed request against what the witness
knows about the log (the size and root hash it last cosigned) and the log's verifier keys, and
says what to answer. The witness MUST act on the verdict and persist the new state atomically
with the check (see :mod:`graven.witnessing.service`); this module only decides.

Statuses, in the order the checks run:

- 400 the body is malformed, or its old size exceeds the checkpoint's size;
- 404 the checkpoint's origin is not a log this witness serves (the spec's code for an unknown log);
- 403 no signature on the checkpoint verifies under the log's keys, or (with a key history) every
  good signature is by a key not valid at the checkpoint's size (retired after a rotation, or revoked);
- 409 the old size is not the size the witness last cosigned (the body then carries that size,
  ``Content-Type: text/x.tlog.size``), or the checkpoint has the cosigned size but another root
  (a fork);
- 422 the consistency proof from the old size does not verify;
- 200 cosign: the checkpoint extends (or repeats) what the witness saw.

A checkpoint smaller than the cosigned one (a rollback) is always refused: with an honest old
size it is a 400, with any other old size a 409.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from graven.core import merkle
from graven.core.key_history import KeyHistory, OutOfRange, open_trusted
from graven.core.note import (
    MAX_TREE_SIZE,
    Checkpoint,
    NoteError,
    NoteSignature,
    NoteVerifier,
    note_signatures,
    open_checkpoint,
)

MAX_PROOF_LINES = 63
"""Most consistency-proof lines a request may carry (the spec forbids clients to send more)."""
MAX_BODY = 64 * 1024
"""Largest request body accepted, in bytes: a checkpoint, 100 signature lines and 63 proof lines fit."""
SIZE_CONTENT_TYPE = "text/x.tlog.size"
"""Content type of a 409 answer that carries the size the witness last cosigned."""

_DECIMAL = re.compile("0|[1-9][0-9]{0,19}")


class MalformedRequest(ValueError):
    """The body is not an add-checkpoint request; the message names the line and the rule."""


@dataclass(frozen=True)
class AddCheckpoint:
    """A parsed request: the size the client believes was cosigned, the proof and the signed note."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str
    checkpoint: Checkpoint


@dataclass(frozen=True)
class Known:
    """What a witness last cosigned for one log: the tree size and root hash (size 0: nothing yet)."""

    size: int
    root_hash: bytes

    @classmethod
    def nothing(cls) -> Known:
        """The state of a log the witness has never cosigned: the empty tree."""
        return cls(0, merkle.EMPTY_ROOT)


@dataclass(frozen=True)
class Verdict:
    """What to answer: the HTTP status, a kind a program can branch on and a sentence for people.

    ``known_size`` is set on a 409 that carries the cosigned size (``kind == "stale"``).
    """

    status: int
    kind: str
    message: str
    known_size: int | None = None

    @property
    def cosign(self) -> bool:
        return self.status == 200


def _show(text: str, limit: int = 60) -> str:
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}… ({len(text)} chars)"


def _size(text: str, what: str) -> int:
    if _DECIMAL.fullmatch(text) is None or int(text) > MAX_TREE_SIZE:
        raise MalformedRequest(f"{what} must be a decimal from 0 to 2**64 - 1 without leading zeros, got {_show(text)}")
    return int(text)


def parse_request(body: bytes) -> AddCheckpoint:
    """Parse an add-checkpoint body strictly; raises MalformedRequest naming what is wrong.

    The body MUST be UTF-8 of at most MAX_BODY bytes; every proof line MUST be canonical base64
    of a 32-byte hash; the note MUST be a well-formed signed checkpoint (signatures unchecked).
    """
    if len(body) > MAX_BODY:
        raise MalformedRequest(f"request body must be at most {MAX_BODY} bytes, got {len(body)}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest(f"request body must be UTF-8; byte 0x{body[exc.start]:02x} at {exc.start}") from None
    head, blank, note = text.partition("\n\n")
    if not blank:
        raise MalformedRequest("request body must be an 'old N' line, proof lines, an empty line, then the checkpoint")
    lines = head.split("\n")
    first = lines[0]
    if not first.startswith("old "):
        raise MalformedRequest(f"the first line must be 'old <size>', got {_show(first)}")
    old_size = _size(first[4:], "the old size")
    proof_lines = lines[1:]
    if len(proof_lines) > MAX_PROOF_LINES:
        raise MalformedRequest(f"at most {MAX_PROOF_LINES} consistency proof lines are allowed, got {len(proof_lines)}")
    proof = []
    for number, line in enumerate(proof_lines, start=2):
        try:
            value = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            value = b""
        if len(value) != merkle.HASH_SIZE or base64.b64encode(value).decode() != line:
            raise MalformedRequest(f"line {number} must be the base64 of one 32-byte hash, got {_show(line)}")
        proof.append(value)
    try:
        note_text, _ = note_signatures(note)
        checkpoint = Checkpoint.parse(note_text)
    except NoteError as exc:
        raise MalformedRequest(f"the checkpoint is malformed: {exc}") from None
    return AddCheckpoint(old_size, tuple(proof), note, checkpoint)


def encode_request(old_size: int, proof: Sequence[bytes], note: str) -> bytes:
    """The body a client sends: the inverse of :func:`parse_request`."""
    if len(proof) > MAX_PROOF_LINES:
        raise MalformedRequest(f"a consistency proof has at most {MAX_PROOF_LINES} hashes, got {len(proof)}")
    lines = [f"old {old_size}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode("utf-8")


@dataclass(frozen=True)
class Evidence:
    """What a witness keeps of a refused request whose checkpoint the log really signed.

    ``body`` is a request body (it parses with :func:`parse_request`) holding the old size, the
    proof and the checkpoint with only the log's verified signature lines: nothing else the client
    added. ``name`` is the SHA-256 (hex) of that signed checkpoint alone, so one checkpoint is kept
    once, whatever proof or padding the requests around it carried.
    """

    name: str
    body: bytes


def evidence_of(request: AddCheckpoint, signatures: Sequence[NoteSignature]) -> Evidence:
    """The evidence of a refused request; ``signatures`` MUST be the log's verified ones (non-empty)."""
    if not signatures:
        raise ValueError("evidence needs at least one verified signature of the log")
    text, _ = note_signatures(request.note)
    note = text + "\n" + "".join(s.to_line() for s in signatures)
    name = hashlib.sha256(note.encode("utf-8")).hexdigest()
    return Evidence(name, encode_request(request.old_size, request.proof, note))


def parse_size_body(body: bytes) -> int:
    """The cosigned size in a 409 ``text/x.tlog.size`` answer: a decimal and a newline."""
    text = body.decode("ascii", errors="replace")
    if not text.endswith("\n"):
        raise MalformedRequest(f"a {SIZE_CONTENT_TYPE} body must end with a newline, got {_show(text)}")
    return _size(text[:-1], f"the {SIZE_CONTENT_TYPE} body")


def decide(
    request: AddCheckpoint, verifiers: Sequence[NoteVerifier] | KeyHistory | None, known: Known | None
) -> Verdict:
    """Judge one request. ``verifiers`` are the log's keys, or its key history (None: not a log this
    witness serves); ``known`` is what was last cosigned for the origin (None: nothing yet).

    MUST NOT return a 200 for a checkpoint that is smaller than the cosigned one, that has the
    cosigned size but another root, or that no proof links to the cosigned one; nor, given a key
    history, for one whose only good signatures are by keys not valid at its size.
    """
    checkpoint = request.checkpoint
    origin = checkpoint.origin
    if verifiers is None:
        return Verdict(404, "unknown-log", f"this witness does not serve the log {origin!r}")
    try:
        if isinstance(verifiers, KeyHistory):
            open_trusted(request.note, verifiers)
        else:
            open_checkpoint(request.note, verifiers)
    except OutOfRange as exc:
        return Verdict(403, "key-out-of-range", f"{exc}: a retired or revoked key of {origin!r} signed it")
    except NoteError as exc:
        return Verdict(403, "bad-signature", f"the checkpoint is not signed by a key of {origin!r}: {exc}")
    if request.old_size > checkpoint.size:
        return Verdict(
            400, "rollback" if known is not None and checkpoint.size < known.size else "malformed",
            f"the old size {request.old_size} is larger than the checkpoint's size {checkpoint.size}",
        )  # fmt: skip
    state = known or Known.nothing()
    if request.old_size != state.size:
        return Verdict(
            409, "stale",
            f"the old size {request.old_size} is not the size last cosigned for {origin!r} ({state.size})",
            known_size=state.size,
        )  # fmt: skip
    if checkpoint.size == state.size:
        if request.proof:
            return Verdict(
                422, "bad-proof", f"old size and checkpoint size are both {state.size}: the proof must be empty"
            )
        if checkpoint.root_hash != state.root_hash:
            return Verdict(
                409, "forked",
                f"a checkpoint of size {state.size} with another root hash was already cosigned for {origin!r}: "
                "the log's history forked",
            )  # fmt: skip
        return Verdict(200, "cosign", f"cosigned {origin!r} at size {checkpoint.size} again")
    if not merkle.verify_consistency(state.size, checkpoint.size, state.root_hash, checkpoint.root_hash, request.proof):
        return Verdict(
            422, "bad-proof",
            f"the consistency proof from size {state.size} to {checkpoint.size} does not verify: the checkpoint "
            f"does not extend the one cosigned for {origin!r}",
        )  # fmt: skip
    return Verdict(200, "cosign", f"cosigned {origin!r} at size {checkpoint.size}")
