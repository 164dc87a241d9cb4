"""C2SP signed notes, transparency-log checkpoints and Ed25519 witness cosignatures.

Implements https://c2sp.org/signed-note with Ed25519 keys (signature type 0x01),
https://c2sp.org/tlog-checkpoint note bodies, and the Ed25519 ``cosignature/v1``
signature type 0x04 of https://c2sp.org/tlog-cosignature. Everything here is pure:
keys come in as objects or text, the clock comes in as an int of seconds, and no
function reads or writes files or the network.

Text forms follow the Go ``golang.org/x/mod/sumdb/note`` package: a verifier key is
``<name>+<hex8 key id>+<base64(type byte || public key)>`` and a signer key is
``PRIVATE+KEY+<name>+<hex8 key id>+<base64(type byte || 32-byte seed)>``. Parsing is
strict: base64 must be canonical and key ids lowercase hex, so one value has one text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "MAX_SIGNATURES",
    "MAX_TIMESTAMP",
    "MAX_TREE_SIZE",
    "SIG_TYPE_COSIGNATURE_V1",
    "SIG_TYPE_ED25519",
    "Checkpoint",
    "CosignerKey",
    "CosignerVerifier",
    "NoteError",
    "NoteSignature",
    "NoteVerifier",
    "SignatureError",
    "Signer",
    "Verifier",
    "add_signatures",
    "compute_key_id",
    "cosign",
    "cosignature_timestamp",
    "note_signatures",
    "open_checkpoint",
    "open_note",
    "sign_checkpoint",
    "sign_note",
    "verify_cosignature",
]

SIG_TYPE_ED25519 = 0x01
"""Signature type byte of plain Ed25519 note signatures (c2sp.org/signed-note)."""
SIG_TYPE_COSIGNATURE_V1 = 0x04
"""Signature type byte of timestamped Ed25519 cosignatures (c2sp.org/tlog-cosignature)."""
MAX_SIGNATURES = 100
"""Most signature lines a note may carry (the spec requires accepting at least 16)."""
MAX_TIMESTAMP = 2**63 - 1
"""Largest cosignature timestamp; the spec says it MUST NOT exceed 2^63 - 1."""
MAX_TREE_SIZE = 2**64 - 1
"""Largest checkpoint tree size accepted (a uint64, as in tlog-cosignature)."""

_DASH = "\u2014 "  # em dash and space: the start of every signature line
_ROOT_HASH_SIZE = 32
_ED25519_SIZE = 64
_COSIGNATURE_SIZE = 8 + _ED25519_SIZE
_SHOW_LIMIT = 48
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")
_HEX8 = re.compile("[0-9a-f]{8}")
_DECIMAL = re.compile("0|[1-9][0-9]{0,19}")


class NoteError(ValueError):
    """Malformed note, key, signature or checkpoint; the message names the problem and input."""


class SignatureError(NoteError):
    """No signature by a trusted key verified, or one by a trusted key name and id failed."""


class NoteVerifier(Protocol):
    """What open_note needs from a trusted key: its name, its key id and a verify method."""

    @property
    def name(self) -> str:
        """Key name as it appears on signature lines."""

    @property
    def key_id(self) -> int:
        """Key id (uint32) as it appears in the first four signature bytes."""

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether signature (the bytes after the key id) is valid for the note text message."""


# --- helpers -------------------------------------------------------------------------------


def _show(value: str) -> str:
    """Quote value for an error message, cut to a readable length."""
    if len(value) <= _SHOW_LIMIT:
        return repr(value)
    return f"{value[:_SHOW_LIMIT]!r}… ({len(value)} chars)"


def _utf8(text: str, what: str) -> bytes:
    """Encode text as UTF-8; str values with unpaired surrogates are not valid UTF-8."""
    if not isinstance(text, str):
        raise NoteError(f"{what} must be text (str), got {type(text).__name__}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise NoteError(f"{what} is not valid UTF-8 (unpaired surrogate at index {exc.start}): {_show(text)}") from None


def _check_chars(text: str, what: str) -> bytes:
    """Return text as UTF-8, rejecting ASCII control characters other than newline."""
    data = _utf8(text, what)
    bad = _CONTROL.search(text)
    if bad is not None:
        raise NoteError(
            f"{what} contains control character U+{ord(bad.group()):04X} at index {bad.start()}: {_show(text)}"
        )
    return data


def _check_line(line: str, what: str) -> None:
    """Reject a single line that is empty or holds a newline or control character."""
    _check_chars(line, what)
    if not line:
        raise NoteError(f"{what} must not be empty")
    if "\n" in line:
        raise NoteError(f"{what} must be a single line: {_show(line)}")


def _check_name(name: str, what: str, *, secret: bool = False) -> None:
    """Reject a key name that is empty or holds a space, '+' or control character."""
    shown = "" if secret else f": {_show(name) if isinstance(name, str) else repr(name)}"
    if not isinstance(name, str) or not name:
        raise NoteError(f"{what} must be a non-empty string{shown}")
    for index, char in enumerate(name):
        if char == "+" or char < " " or char.isspace():
            raise NoteError(
                f"{what} must not contain spaces, '+' or control characters (U+{ord(char):04X} at index {index}){shown}"
            )
        if "\ud800" <= char <= "\udfff":
            raise NoteError(f"{what} is not valid UTF-8 (unpaired surrogate at index {index}){shown}")


def _b64decode(text: str, what: str, *, secret: bool = False) -> bytes:
    """Decode standard padded base64, accepting only its canonical encoding."""
    shown = "" if secret else f": {_show(text)}"
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not valid base64{shown}") from None
    if base64.b64encode(data).decode("ascii") != text:
        raise NoteError(f"{what} is not canonical base64{shown}")
    return data


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _parse_key_id(text: str, what: str, *, secret: bool = False) -> int:
    if _HEX8.fullmatch(text) is None:
        shown = "" if secret else f": {_show(text)}"
        raise NoteError(f"{what} must be 8 lowercase hex digits{shown}")
    return int(text, 16)


def _public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes_raw()


def _check_key_type(raw: bytes, sig_type: int, what: str) -> None:
    if not raw:
        raise NoteError(f"{what} is empty")
    if raw[0] != sig_type:
        raise NoteError(f"{what} has signature type 0x{raw[0]:02x}, expected 0x{sig_type:02x}")
    if len(raw) != 33:
        raise NoteError(f"{what} has {len(raw) - 1} key bytes after the type byte, expected 32 (Ed25519)")


def _parse_vkey(text: str, sig_type: int, kind: str) -> tuple[str, Ed25519PublicKey]:
    """Parse '<name>+<hex8 key id>+<base64(type || public key)>' and check the key id."""
    if not isinstance(text, str):
        raise NoteError(f"{kind} must be text (str), got {type(text).__name__}")
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise NoteError(f"{kind} must be <name>+<hex8 key id>+<base64 key>: {_show(text)}")
    name, id_text, key_text = parts
    _check_name(name, f"{kind} name")
    key_id = _parse_key_id(id_text, f"{kind} key id")
    raw = _b64decode(key_text, f"{kind} public key")
    computed = int.from_bytes(hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4], "big")
    if computed != key_id:
        raise NoteError(f"{kind} key id {key_id:08x} does not match the key (computed {computed:08x}): {_show(text)}")
    _check_key_type(raw, sig_type, f"{kind} public key")
    return name, Ed25519PublicKey.from_public_bytes(raw[1:])


def _parse_skey(text: str, sig_type: int, kind: str) -> tuple[str, Ed25519PrivateKey]:
    """Parse 'PRIVATE+KEY+<name>+<hex8>+<base64(type || seed)>'; errors never echo the text."""
    if not isinstance(text, str):
        raise NoteError(f"{kind} must be text (str), got {type(text).__name__}")
    parts = text.split("+", 4)
    if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
        raise NoteError(
            f"{kind} must be PRIVATE+KEY+<name>+<hex8 key id>+<base64 seed> "
            "(the given text is not shown because it may hold a secret)"
        )
    name, id_text, seed_text = parts[2:]
    _check_name(name, f"{kind} name", secret=True)
    key_id = _parse_key_id(id_text, f"{kind} key id", secret=True)
    raw = _b64decode(seed_text, f"{kind} seed", secret=True)
    _check_key_type(raw, sig_type, f"{kind} seed")
    private_key = Ed25519PrivateKey.from_private_bytes(raw[1:])
    computed = compute_key_id(name, sig_type, _public_bytes(private_key.public_key()))
    if computed != key_id:
        raise NoteError(f"{kind} key id {key_id:08x} does not match the key (computed {computed:08x})")
    return name, private_key


def _format_skey(name: str, key_id: int, sig_type: int, key: Ed25519PrivateKey) -> str:
    seed = key.private_bytes_raw()
    return f"PRIVATE+KEY+{name}+{key_id:08x}+{_b64(bytes([sig_type]) + seed)}"


def _format_vkey(name: str, key_id: int, sig_type: int, key: Ed25519PublicKey) -> str:
    return f"{name}+{key_id:08x}+{_b64(bytes([sig_type]) + _public_bytes(key))}"


def _check_timestamp(timestamp: int) -> None:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise NoteError(f"cosignature timestamp must be an int, got {type(timestamp).__name__}")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise NoteError(f"cosignature timestamp must be from 0 to 2**63 - 1, got {timestamp}")


def _cosigned_message(checkpoint: bytes, timestamp: int) -> bytes:
    return b"cosignature/v1\ntime %d\n" % timestamp + checkpoint


def compute_key_id(name: str, sig_type: int, public_key: bytes) -> int:
    """Key id: first 4 bytes, big-endian, of SHA-256(name || 0x0A || type byte || public key)."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([sig_type]) + public_key)
    return int.from_bytes(digest.digest()[:4], "big")


# --- keys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verifier:
    """An Ed25519 note verifier key (signature type 0x01) with its key name."""

    name: str
    public_key: Ed25519PublicKey = field(hash=False)
    key_id: int = field(init=False)

    def __post_init__(self) -> None:
        """Check the name and key type and derive the key id."""
        _check_name(self.name, "verifier name")
        if not isinstance(self.public_key, Ed25519PublicKey):
            raise TypeError(f"public_key must be Ed25519PublicKey, got {type(self.public_key)}")
        raw = _public_bytes(self.public_key)
        object.__setattr__(self, "key_id", compute_key_id(self.name, SIG_TYPE_ED25519, raw))

    @classmethod
    def from_text(cls, text: str) -> Self:
        """Parse a vkey; MUST reject a key id not matching the key, or a type byte not 0x01."""
        name, key = _parse_vkey(text, SIG_TYPE_ED25519, "vkey")
        return cls(name, key)

    def to_text(self) -> str:
        """The vkey text '<name>+<hex8 key id>+<base64(0x01 || public key)>'."""
        return _format_vkey(self.name, self.key_id, SIG_TYPE_ED25519, self.public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether signature is this key's Ed25519 signature of message."""
        if len(signature) != _ED25519_SIZE:
            return False
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"Verifier({self.to_text()!r})"


@dataclass(frozen=True, eq=False)
class Signer:
    """An Ed25519 note signing key (signature type 0x01) with its key name; equal only to itself."""

    name: str
    private_key: Ed25519PrivateKey = field(repr=False)
    key_id: int = field(init=False)

    def __post_init__(self) -> None:
        """Check the name and key type and derive the key id."""
        _check_name(self.name, "signer name")
        if not isinstance(self.private_key, Ed25519PrivateKey):
            raise TypeError(f"private_key must be Ed25519PrivateKey, got {type(self.private_key)}")
        raw = _public_bytes(self.private_key.public_key())
        object.__setattr__(self, "key_id", compute_key_id(self.name, SIG_TYPE_ED25519, raw))

    @classmethod
    def generate(cls, name: str) -> Self:
        """A new random signing key named name."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_text(cls, text: str) -> Self:
        """Parse an skey; MUST reject a key id not matching the key, or a type byte not 0x01."""
        name, key = _parse_skey(text, SIG_TYPE_ED25519, "skey")
        return cls(name, key)

    def to_text(self) -> str:
        """The secret skey text 'PRIVATE+KEY+<name>+<hex8 key id>+<base64(0x01 || seed)>'."""
        return _format_skey(self.name, self.key_id, SIG_TYPE_ED25519, self.private_key)

    def verifier(self) -> Verifier:
        """The matching public verifier."""
        return Verifier(self.name, self.private_key.public_key())

    def sign(self, message: bytes) -> bytes:
        """The raw 64-byte Ed25519 signature of message."""
        return self.private_key.sign(message)

    def __repr__(self) -> str:
        return f"Signer(name={self.name!r}, key_id=0x{self.key_id:08x})"


@dataclass(frozen=True)
class CosignerVerifier:
    """A witness's Ed25519 cosignature/v1 verifier key (signature type 0x04) with its name."""

    name: str
    public_key: Ed25519PublicKey = field(hash=False)
    key_id: int = field(init=False)

    def __post_init__(self) -> None:
        """Check the name and key type and derive the key id."""
        _check_name(self.name, "cosigner name")
        if not isinstance(self.public_key, Ed25519PublicKey):
            raise TypeError(f"public_key must be Ed25519PublicKey, got {type(self.public_key)}")
        raw = _public_bytes(self.public_key)
        object.__setattr__(self, "key_id", compute_key_id(self.name, SIG_TYPE_COSIGNATURE_V1, raw))

    @classmethod
    def from_text(cls, text: str) -> Self:
        """Parse a vkey; MUST reject a key id not matching the key, or a type byte not 0x04."""
        name, key = _parse_vkey(text, SIG_TYPE_COSIGNATURE_V1, "cosigner vkey")
        return cls(name, key)

    def to_text(self) -> str:
        """The vkey text '<name>+<hex8 key id>+<base64(0x04 || public key)>'."""
        return _format_vkey(self.name, self.key_id, SIG_TYPE_COSIGNATURE_V1, self.public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether signature is timestamp || Ed25519 sig over the cosigned form of message.

        MUST NOT accept a signature that is not exactly 72 bytes or whose timestamp exceeds
        2^63 - 1.
        """
        if len(signature) != _COSIGNATURE_SIZE:
            return False
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            return False
        try:
            self.public_key.verify(signature[8:], _cosigned_message(message, timestamp))
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"CosignerVerifier({self.to_text()!r})"


@dataclass(frozen=True, eq=False)
class CosignerKey:
    """A witness's Ed25519 cosigning key (signature type 0x04); it signs only via cosign()."""

    name: str
    private_key: Ed25519PrivateKey = field(repr=False)
    key_id: int = field(init=False)

    def __post_init__(self) -> None:
        """Check the name and key type and derive the key id."""
        _check_name(self.name, "cosigner name")
        if not isinstance(self.private_key, Ed25519PrivateKey):
            raise TypeError(f"private_key must be Ed25519PrivateKey, got {type(self.private_key)}")
        raw = _public_bytes(self.private_key.public_key())
        object.__setattr__(self, "key_id", compute_key_id(self.name, SIG_TYPE_COSIGNATURE_V1, raw))

    @classmethod
    def generate(cls, name: str) -> Self:
        """A new random cosigning key named name."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_text(cls, text: str) -> Self:
        """Parse an skey; MUST reject a key id not matching the key, or a type byte not 0x04."""
        name, key = _parse_skey(text, SIG_TYPE_COSIGNATURE_V1, "cosigner skey")
        return cls(name, key)

    def to_text(self) -> str:
        """The secret skey text 'PRIVATE+KEY+<name>+<hex8 key id>+<base64(0x04 || seed)>'."""
        return _format_skey(self.name, self.key_id, SIG_TYPE_COSIGNATURE_V1, self.private_key)

    def verifier(self) -> CosignerVerifier:
        """The matching public cosigner verifier."""
        return CosignerVerifier(self.name, self.private_key.public_key())

    def __repr__(self) -> str:
        return f"CosignerKey(name={self.name!r}, key_id=0x{self.key_id:08x})"


# --- signed notes --------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key id and the signature bytes after the key id."""

    name: str
    key_id: int
    signature: bytes

    def __post_init__(self) -> None:
        """Check the name, that key_id is a uint32 and that the signature is non-empty bytes."""
        _check_name(self.name, "signature key name")
        if isinstance(self.key_id, bool) or not isinstance(self.key_id, int):
            raise NoteError(f"signature key id must be an int, got {type(self.key_id).__name__}")
        if not 0 <= self.key_id < 2**32:
            raise NoteError(f"signature key id must be a uint32, got {self.key_id}")
        if not isinstance(self.signature, bytes) or not self.signature:
            raise NoteError(f"signature must be non-empty bytes, got {self.signature!r}")

    def to_line(self) -> str:
        """The signature line '— <name> <base64(key id || signature)>' with its newline."""
        raw = self.key_id.to_bytes(4, "big") + self.signature
        return f"{_DASH}{self.name} {_b64(raw)}\n"


def _parse_signature_line(line: str, number: int) -> NoteSignature:
    what = f"signature line {number}"
    if not line.startswith(_DASH):
        raise NoteError(f"{what} does not start with an em dash and a space: {_show(line)}")
    name, _, encoded = line[len(_DASH) :].partition(" ")
    _check_name(name, f"{what} key name")
    raw = _b64decode(encoded, f"{what} signature")
    if len(raw) < 5:
        raise NoteError(f"{what} has {len(raw)} signature bytes, need a 4-byte key id and a signature: {_show(line)}")
    return NoteSignature(name, int.from_bytes(raw[:4], "big"), raw[4:])


def _split_note(note: str | bytes) -> tuple[str, list[NoteSignature]]:
    if isinstance(note, bytes):
        data = note
        try:
            note = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            shown = _show(data.decode("utf-8", errors="replace"))
            raise NoteError(
                f"note is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}): {shown}"
            ) from None
    _check_chars(note, "note")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError(f"note has no blank line before its signature lines: {_show(note)}")
    text, block = note[: split + 1], note[split + 2 :]
    if not block:
        raise NoteError(f"note has no signature lines after its last blank line: {_show(note)}")
    if not block.endswith("\n"):
        raise NoteError(f"note does not end with a newline: {_show(note[-_SHOW_LIMIT:])}")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has {len(lines)} signature lines, at most {MAX_SIGNATURES} are accepted")
    return text, [_parse_signature_line(line, n) for n, line in enumerate(lines, start=1)]


def note_signatures(note: str | bytes) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its text and all its signatures, verifying nothing.

    The text MUST NOT be trusted on the strength of this call; use open_note.
    """
    return _split_note(note)


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """Sign text: text, a blank line, then one signature line per distinct signer.

    The text MUST end with a newline and be valid note text (UTF-8 without control
    characters other than newline); there MUST be 1 to MAX_SIGNATURES signers.
    """
    message = _check_chars(text, "note text")
    if not text.endswith("\n"):
        raise NoteError(f"note text must end with a newline: {_show(text[-_SHOW_LIMIT:])}")
    if not signers:
        raise NoteError("sign_note needs at least one signer")
    lines = {NoteSignature(signer.name, signer.key_id, signer.sign(message)).to_line(): None for signer in signers}
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"{len(lines)} signers, at most {MAX_SIGNATURES} are allowed")
    return text + "\n" + "".join(lines)


def _index_verifiers(verifiers: Sequence[NoteVerifier]) -> dict[tuple[str, int], NoteVerifier]:
    known: dict[tuple[str, int], NoteVerifier] = {}
    for verifier in verifiers:
        key = (verifier.name, verifier.key_id)
        if key in known and known[key] != verifier:
            raise NoteError(f"two different verifiers share key {key[0]}+{key[1]:08x}")
        known[key] = verifier
    return known


def open_note(note: str | bytes, verifiers: Sequence[NoteVerifier]) -> tuple[str, list[NoteSignature]]:
    """Verify a signed note; return its text and the distinct signatures by trusted keys.

    A trusted key matches a signature line on both key name and key id; lines by other
    keys MUST be ignored. Raises SignatureError if a line by a trusted key fails to
    verify or if no line by a trusted key verifies, and NoteError if the note is malformed
    (no blank line, bad base64, more than MAX_SIGNATURES lines, control characters...).
    """
    text, signatures = _split_note(note)
    known = _index_verifiers(verifiers)
    message = text.encode("utf-8")
    verified: list[NoteSignature] = []
    for sig in signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        if not verifier.verify(message, sig.signature):
            raise SignatureError(f"invalid signature for key {sig.name}+{sig.key_id:08x}")
        if sig not in verified:
            verified.append(sig)
    if not verified:
        signed_by = ", ".join(f"{s.name}+{s.key_id:08x}" for s in signatures)
        trusted = ", ".join(f"{name}+{key_id:08x}" for name, key_id in known)
        raise SignatureError(
            f"note has no signature by a trusted key: signed by {_show(signed_by)}, trusted {_show(trusted)}"
        )
    return text, verified


def add_signatures(note: str | bytes, signatures: Sequence[NoteSignature]) -> str:
    """Append signature lines to a signed note, one line per key name and id.

    A new signature replaces an existing line by the same key name and id in place.
    Nothing is verified here; the result MUST still hold at most MAX_SIGNATURES lines.
    """
    text, existing = _split_note(note)
    lines = {(s.name, s.key_id): s for s in existing}
    for sig in signatures:
        if not isinstance(sig, NoteSignature):
            raise TypeError(f"signatures must be NoteSignature, got {type(sig).__name__}")
        lines[(sig.name, sig.key_id)] = sig
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note would have {len(lines)} signature lines, at most {MAX_SIGNATURES} are allowed")
    return text + "\n" + "".join(sig.to_line() for sig in lines.values())


# --- checkpoints ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint note body: origin, tree size, root hash and extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Check every field so that to_text always yields text that parse accepts."""
        _check_line(self.origin, "checkpoint origin")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise NoteError(f"checkpoint tree size must be an int, got {type(self.size).__name__}")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise NoteError(f"checkpoint tree size must be from 0 to 2**64 - 1, got {self.size}")
        if not isinstance(self.root_hash, bytes | bytearray):
            raise NoteError(f"checkpoint root hash must be bytes, got {type(self.root_hash).__name__}")
        if len(self.root_hash) != _ROOT_HASH_SIZE:
            raise NoteError(f"checkpoint root hash must be {_ROOT_HASH_SIZE} bytes, got {len(self.root_hash)}")
        object.__setattr__(self, "root_hash", bytes(self.root_hash))
        if isinstance(self.extensions, str):
            raise NoteError("checkpoint extensions must be a sequence of lines, not one str")
        extensions = tuple(self.extensions)
        for number, line in enumerate(extensions, start=1):
            _check_line(line, f"checkpoint extension line {number}")
        object.__setattr__(self, "extensions", extensions)

    def to_text(self) -> str:
        """The note text: origin, size, base64 root hash and extension lines, each + newline."""
        lines = [self.origin, str(self.size), _b64(self.root_hash), *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse a checkpoint body strictly.

        The origin MUST be non-empty, the size MUST be ASCII decimal without leading zeros
        (except "0"), the root hash MUST be canonical base64 of 32 bytes, extension lines
        MUST be non-empty, and the text MUST end with a newline.
        """
        _check_chars(text, "checkpoint")
        if not text.endswith("\n"):
            raise NoteError(f"checkpoint must end with a newline: {_show(text)}")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError(
                f"checkpoint has {len(lines)} line(s), needs origin, tree size and root hash: {_show(text)}"
            )
        origin, size_text, root_text, *extensions = lines
        if not origin:
            raise NoteError(f"checkpoint origin line is empty: {_show(text)}")
        if _DECIMAL.fullmatch(size_text) is None:
            raise NoteError(f"checkpoint tree size must be decimal digits without leading zeros: {_show(size_text)}")
        size = int(size_text)
        if size > MAX_TREE_SIZE:
            raise NoteError(f"checkpoint tree size {size} exceeds 2**64 - 1")
        root_hash = _b64decode(root_text, "checkpoint root hash")
        if len(root_hash) != _ROOT_HASH_SIZE:
            raise NoteError(
                f"checkpoint root hash must be {_ROOT_HASH_SIZE} bytes, got {len(root_hash)}: {_show(root_text)}"
            )
        for number, line in enumerate(extensions, start=4):
            if not line:
                raise NoteError(f"checkpoint line {number} (an extension line) is empty")
        return cls(origin, size, root_hash, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> str:
    """The checkpoint's text signed by the log's signer, as a signed note."""
    return sign_note(checkpoint.to_text(), [signer])


def open_checkpoint(note: str | bytes, verifiers: Sequence[NoteVerifier]) -> tuple[Checkpoint, list[NoteSignature]]:
    """Verify a signed checkpoint note with open_note, then parse its text.

    The verifiers MUST be the log's keys: a checkpoint is accepted on any one of them.
    """
    text, signatures = open_note(note, verifiers)
    return Checkpoint.parse(text), signatures


# --- cosignatures --------------------------------------------------------------------------


def cosign(checkpoint_text: str, key: CosignerKey, timestamp: int) -> NoteSignature:
    """Cosign a checkpoint body at timestamp (POSIX seconds) per tlog-cosignature v1.

    The signed message is "cosignature/v1\\ntime <timestamp>\\n" + checkpoint_text and the
    signature bytes are the 8-byte big-endian timestamp then the 64-byte Ed25519 signature.
    The text MUST parse as a checkpoint and the timestamp MUST be in 0..2^63 - 1.
    """
    Checkpoint.parse(checkpoint_text)
    _check_timestamp(timestamp)
    message = _cosigned_message(checkpoint_text.encode("utf-8"), timestamp)
    signature = key.private_key.sign(message)
    return NoteSignature(key.name, key.key_id, timestamp.to_bytes(8, "big") + signature)


def cosignature_timestamp(signature: NoteSignature) -> int:
    """The timestamp a cosignature/v1 signature claims, read without verifying it."""
    size = len(signature.signature)
    if size != _COSIGNATURE_SIZE:
        raise NoteError(
            f"cosignature by {signature.name}+{signature.key_id:08x} has {size} signature bytes, "
            f"expected {_COSIGNATURE_SIZE} (8-byte timestamp and Ed25519 signature)"
        )
    timestamp = int.from_bytes(signature.signature[:8], "big")
    if timestamp > MAX_TIMESTAMP:
        raise NoteError(f"cosignature timestamp {timestamp} exceeds 2**63 - 1")
    return timestamp


def verify_cosignature(checkpoint_text: str, signature: NoteSignature, verifier: CosignerVerifier) -> int | None:
    """The cosignature's timestamp if it is verifier's valid cosignature of checkpoint_text.

    MUST NOT accept a signature whose key name or key id differs from the verifier's;
    returns None for those and for any signature that fails to verify.
    """
    if signature.name != verifier.name or signature.key_id != verifier.key_id:
        return None
    if not verifier.verify(_utf8(checkpoint_text, "checkpoint"), signature.signature):
        return None
    return int.from_bytes(signature.signature[:8], "big")
