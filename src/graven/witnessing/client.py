"""The log's side of tlog-witness: push the newest checkpoint, collect and keep the cosignature.

:func:`push_checkpoint` sends the trail's newest signed checkpoint with a consistency proof from
the size the witness last cosigned (known from the kept copy; on a 409 it reads the witness's size
and retries once). A cosignature is kept only after it parsed (and, given witness keys, verified);
the kept copy beside the signing key MUST only move forward and is replaced atomically.
:func:`fetch_checkpoint` reads what a Graven witness cosigned (its ``GET /checkpoint`` extension).
Every function here is safe to call from a background thread: it only reads the log.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from graven.core.merkle import ProofError
from graven.core.note import (
    Checkpoint,
    CosignerVerifier,
    NoteError,
    NoteSignature,
    Verifier,
    add_signatures,
    note_signatures,
    verify_cosignature,
)
from graven.cosigned_file import CosignedFile, beside, checkpoint_of, kept_notes
from graven.errors import ConfigError, GravenError, IntegrityError, ValidationError
from graven.witnessing.protocol import SIZE_CONTENT_TYPE, MalformedRequest, encode_request, parse_size_body

if TYPE_CHECKING:
    from graven.trail import Trail

DEFAULT_TIMEOUT = 10.0
"""Seconds to wait for a witness to connect and answer."""
_MAX_REPLY = 64 * 1024
_COSIGNATURE_BYTES = 72


class WitnessError(GravenError):
    """A witness could not be reached, or answered something other than a valid cosignature."""

    def __init__(self, message: str, *, url: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class WitnessRefused(WitnessError):
    """The witness refused the checkpoint as inconsistent with what it cosigned before.

    ``kind`` is ``forked`` (a different history) or ``truncated`` (a smaller log than it saw).
    """

    def __init__(self, message: str, *, kind: str, url: str = "", status: int | None = None) -> None:
        super().__init__(message, url=url, status=status)
        self.kind = kind


@dataclass(frozen=True)
class CosignedResult:
    """A checkpoint a witness cosigned: the note with the witness's lines added, and those lines.

    ``fresh`` is False when the kept copy already held this very checkpoint cosigned by the
    witness, so nothing was sent.
    """

    url: str
    checkpoint: Checkpoint
    note: str
    cosignatures: tuple[NoteSignature, ...]
    fresh: bool

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def lines(self) -> str:
        """The cosignature lines, each ending in a newline."""
        return "".join(sig.to_line() for sig in self.cosignatures)


def witness_prefix(url: str, option: str = "--witness") -> str:
    """The submission prefix named by ``url`` (an http(s) URL; a trailing /add-checkpoint is dropped)."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValidationError(option, "must be an http:// or https:// URL without query or fragment", url)
    path = parts.path.rstrip("/").removesuffix("/add-checkpoint")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def parse_witness_urls(text: str, option: str = "GRAVEN_WITNESSES") -> tuple[str, ...]:
    """Witness URLs separated by commas or white space, each checked."""
    return tuple(witness_prefix(u, option) for u in text.replace(",", " ").split())


def cosigned_file(trail: Trail) -> CosignedFile | None:
    """Where a trail keeps its cosigned checkpoints (see :func:`graven.cosigned_file.beside`)."""
    return beside(trail.witness)


def kept_cosigned_notes(trail: Trail) -> list[str]:
    """Every cosigned checkpoint kept beside the trail's key (empty when none)."""
    return kept_notes(trail.witness)


def _request(url: str, body: bytes | None, timeout: float) -> tuple[int, str, bytes]:
    request = urllib.request.Request(  # noqa: S310 (witness_prefix allows http and https only)
        url, data=body, method="POST" if body is not None else "GET",
        headers={"Content-Type": "text/plain; charset=utf-8", "User-Agent": "graven-witness-client"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (scheme checked)
            return response.status, response.headers.get("Content-Type", ""), response.read(_MAX_REPLY)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read(_MAX_REPLY)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise WitnessError(f"cannot reach the witness at {url}: {reason}", url=url) from None


def _message(body: bytes) -> tuple[str, str]:
    """The (kind, message) of a JSON error body, or ("", text) for anything else."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "", body.decode("utf-8", errors="replace").strip()[:300]
    if isinstance(value, dict):
        return str(value.get("kind", "")), str(value.get("error", ""))[:300]
    return "", str(value)[:300]


def _proof(trail: Trail, old: int, size: int) -> list[bytes]:
    if old in (0, size):
        return []
    try:
        return trail.consistency(old, size)
    except (ValidationError, ProofError) as exc:
        raise IntegrityError(f"cannot prove the log's size {size} extends size {old}: {exc}") from None


def _valid(text: str, signatures: Sequence[NoteSignature], keys: Sequence[CosignerVerifier]) -> list[NoteSignature]:
    """The cosignature/v1 lines among ``signatures``; with ``keys``, only those verifying under one."""
    found = [sig for sig in signatures if len(sig.signature) == _COSIGNATURE_BYTES]
    if keys:
        found = [sig for sig in found if any(verify_cosignature(text, sig, key) is not None for key in keys)]
    return found


def _cosignatures(text: str, body: bytes, keys: Sequence[CosignerVerifier], url: str) -> list[NoteSignature]:
    """The cosignature lines of a 200 answer: parsed, and verified under ``keys`` when given."""
    try:
        _, lines = note_signatures(text + "\n" + body.decode("utf-8"))
    except (UnicodeDecodeError, NoteError) as exc:
        raise WitnessError(f"the witness at {url} answered 200 without cosignature lines: {exc}", url=url) from None
    found = _valid(text, lines, keys)
    if not found:
        by = " by " + ", ".join(key.to_text() for key in keys) if keys else ""
        raise WitnessError(f"the witness at {url} answered 200 without a valid cosignature{by}", url=url)
    return found


def _refusal(url: str, status: int, body: bytes, old: int, checkpoint: Checkpoint) -> WitnessError:
    kind, message = _message(body)
    said = f" ({message})" if message else ""
    if status == 422 or (status == 409 and kind == "forked"):
        return WitnessRefused(
            f"the witness at {url} refused the checkpoint of size {checkpoint.size}: it does not extend the "
            f"checkpoint of size {old} the witness cosigned, so the log's history was rewritten (forked){said}",
            kind="forked", url=url, status=status,
        )  # fmt: skip
    if status == 400 and kind == "rollback":
        return WitnessRefused(
            f"the witness at {url} cosigned a larger log than this one (size {checkpoint.size}): entries were cut "
            f"off or the log was replaced{said}", kind="truncated", url=url, status=status,
        )  # fmt: skip
    if status == 404:
        return WitnessError(
            f"the witness at {url} does not serve the log {checkpoint.origin!r}; start it with "
            "--log <this log's verifier key> (see `graven key`)", url=url, status=status,
        )  # fmt: skip
    if status == 403:
        return WitnessError(
            f"the witness at {url} rejected the log's signature: its key for {checkpoint.origin!r} is not this "
            f"log's key{said}", url=url, status=status,
        )  # fmt: skip
    return WitnessError(f"the witness at {url} answered HTTP {status}{said}", url=url, status=status)


def push_checkpoint(
    trail: Trail,
    url: str,
    *,
    keys: Sequence[CosignerVerifier] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> CosignedResult:
    """Push the trail's newest signed checkpoint to the witness at ``url`` and keep its cosignature.

    With ``keys``, only cosignatures verifying under them are accepted (others MUST be ignored).
    Raises WitnessRefused when the witness finds the log inconsistent with what it cosigned,
    WitnessError when it cannot be reached or answers otherwise; nothing is kept then.
    """
    prefix = witness_prefix(url)
    note = trail.latest_checkpoint()
    if note is None:
        raise ConfigError("the log has no signed checkpoint yet; record something or run `graven checkpoint`")
    text, _ = note_signatures(note)
    checkpoint = Checkpoint.parse(text)
    kept_file = cosigned_file(trail)
    kept = kept_file.get(prefix) if kept_file is not None else None
    old = 0
    if kept is not None:
        previous = checkpoint_of(kept)
        if previous.size > checkpoint.size:
            raise WitnessRefused(
                f"the witness at {prefix} cosigned size {previous.size} but the log's newest checkpoint has size "
                f"{checkpoint.size}: entries were cut off or the log was replaced", kind="truncated", url=prefix,
            )  # fmt: skip
        if previous.size == checkpoint.size and previous.root_hash != checkpoint.root_hash:
            raise WitnessRefused(
                f"the witness at {prefix} cosigned another tree of size {previous.size}: the log's history was "
                "rewritten (forked)", kind="forked", url=prefix,
            )  # fmt: skip
        already = _valid(text, note_signatures(kept)[1], keys) if previous == checkpoint else []
        if already:
            return CosignedResult(prefix, checkpoint, kept, tuple(already), fresh=False)
        old = previous.size
    for attempt in (1, 2):
        body = encode_request(old, _proof(trail, old, checkpoint.size), note)
        status, content_type, reply = _request(prefix + "/add-checkpoint", body, timeout)
        if status == 200:
            break
        if status == 409 and content_type.startswith(SIZE_CONTENT_TYPE) and attempt == 1:
            try:
                old = parse_size_body(reply)
            except MalformedRequest as exc:
                raise WitnessError(f"the witness at {prefix} answered 409 with {exc}", url=prefix, status=409) from None
            if old > checkpoint.size:
                raise WitnessRefused(
                    f"the witness at {prefix} cosigned size {old} but the log's newest checkpoint has size "
                    f"{checkpoint.size}: entries were cut off or the log was replaced",
                    kind="truncated", url=prefix, status=409,
                )  # fmt: skip
            continue
        raise _refusal(prefix, status, reply, old, checkpoint)
    cosignatures = _cosignatures(text, reply, keys, prefix)
    cosigned_note = add_signatures(note, cosignatures)
    if kept_file is not None:
        kept_file.put(prefix, cosigned_note)
    return CosignedResult(prefix, checkpoint, cosigned_note, tuple(cosignatures), fresh=True)


def fetch_checkpoint(url: str, origin: str, *, timeout: float = DEFAULT_TIMEOUT) -> str:
    """The newest checkpoint a Graven witness cosigned for ``origin`` (its GET /checkpoint extension)."""
    prefix = witness_prefix(url)
    target = f"{prefix}/checkpoint?{urllib.parse.urlencode({'origin': origin})}"
    status, _, body = _request(target, None, timeout)
    if status != 200:
        _, message = _message(body)
        raise WitnessError(f"the witness at {prefix} has no checkpoint of {origin!r} (HTTP {status}: {message})",
                           url=prefix, status=status)  # fmt: skip
    try:
        note = body.decode("utf-8")
        checkpoint_of(note)
    except (UnicodeDecodeError, NoteError) as exc:
        raise WitnessError(f"the witness at {prefix} answered with a malformed checkpoint: {exc}", url=prefix) from None
    return note


def witness_evidence(
    trail: Trail,
    *,
    keys: Sequence[CosignerVerifier] = (),
    urls: Sequence[str] = (),
    log_key: Verifier | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[str]:
    """Cosigned checkpoints to hold the log against: those kept beside its key and those fetched.

    Witnesses are asked for the log's origin and for the name of its trusted key (``log_key``, else
    the trail's signing key), which is the origin they know it by: a replaced database cannot hide
    behind a new origin. A fetched checkpoint MUST carry a valid cosignature by one of ``keys``
    (when given), and each key MUST have cosigned at least one checkpoint found, else WitnessError
    says which is missing. Whether a checkpoint is signed by the log and matches it is for
    verification to judge.
    """
    kept = kept_cosigned_notes(trail)
    signer = trail.signer or trail.trusted_signer
    log_verifier = log_key or (signer.verifier() if signer is not None else None)
    origins = list(dict.fromkeys([*([log_verifier.name] if log_verifier is not None else []), trail.origin]))
    fetched = {witness_prefix(url): _fetch_any(url, origins, timeout) for url in urls}
    if keys:
        for prefix, note in fetched.items():
            if not _cosigned_by(note, keys):
                trusted = ", ".join(key.to_text() for key in keys)
                raise WitnessError(f"the checkpoint from the witness at {prefix} is not cosigned by {trusted}",
                                   url=prefix)  # fmt: skip
        for key in keys:
            if not any(_cosigned_by(note, [key]) for note in [*kept, *fetched.values()]):
                where = cosigned_file(trail)
                raise WitnessError(
                    f"--witness-key {key.to_text()}: no checkpoint cosigned by this key was found (kept in "
                    f"{where.path if where else 'nothing'}; fetched from {', '.join(fetched) or 'no --witness'})"
                )
    return list(dict.fromkeys([*kept, *fetched.values()]))


def _fetch_any(url: str, origins: Sequence[str], timeout: float) -> str:
    """The first checkpoint the witness has for one of ``origins``."""
    failure: WitnessError | None = None
    for origin in origins:
        try:
            return fetch_checkpoint(url, origin, timeout=timeout)
        except WitnessError as exc:
            if exc.status is None:
                raise  # unreachable: asking again will not help
            failure = exc
    assert failure is not None
    raise failure


def _cosigned_by(note: str, keys: Sequence[CosignerVerifier]) -> bool:
    try:
        text, signatures = note_signatures(note)
    except NoteError:
        return False
    return bool(_valid(text, signatures, keys))


def witnesses_from_env() -> tuple[str, ...]:
    """The witness URLs in ``GRAVEN_WITNESSES`` (comma or space separated), checked."""
    return parse_witness_urls(os.environ.get("GRAVEN_WITNESSES", ""))


__all__ = [
    "CosignedResult",
    "WitnessError",
    "WitnessRefused",
    "cosigned_file",
    "fetch_checkpoint",
    "kept_cosigned_notes",
    "parse_witness_urls",
    "push_checkpoint",
    "witness_evidence",
    "witness_prefix",
]
