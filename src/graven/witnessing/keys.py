"""Witness cosigner keys on disk, and verifier keys given as text or as a file holding the text.

A cosigner key file MUST be created with mode 0600 and MUST never be overwritten: a witness that
loses or replaces its key loses its identity, and with it the value of every cosignature it gave.
"""

from __future__ import annotations

from pathlib import Path

from graven.core.key_history import KeyHistory
from graven.core.note import CosignerKey, CosignerVerifier, NoteError, Verifier
from graven.errors import ConfigError
from graven.keys import load_trust, one_line, read_key_file, write_key_file


def create_cosigner_key(path: Path, name: str) -> CosignerKey:
    """Generate a cosigner key named ``name`` and write it to ``path`` (mode 0600, never overwrites)."""
    try:
        key = CosignerKey.generate(name)
    except NoteError as exc:
        raise ConfigError(f"--name: {exc}") from None
    write_key_file(path, key.to_text(), "witness key", "--out")
    return key


def load_cosigner_key(path: Path) -> CosignerKey:
    """Read a key file written by :func:`create_cosigner_key`."""
    text = read_key_file(path, "witness key", "--key")
    try:
        return CosignerKey.from_text(text)
    except NoteError as exc:
        raise ConfigError(
            f"--key: {path} is not a witness key (create one with `graven witness key`): {one_line(exc)}"
        ) from None


def _text(value: str, option: str) -> tuple[str, str]:
    """The key text itself, or the content of the file it names; and where it came from."""
    text = value.strip()
    path = Path(text)
    if "+" not in text or path.is_file():
        if not path.exists() and "+" not in text:
            raise ConfigError(f"{option}: {value!r} is neither a key (name+keyid+base64) nor an existing file")
        text = read_key_file(path, "key file", option)
        if text.startswith("PRIVATE+KEY+"):
            raise ConfigError(f"{option}: {path} is a private key; give the public (verifier) key")
        return text, str(path)
    return text, "the key given"


def load_cosigner_verifier(value: str | CosignerVerifier, option: str = "--witness-key") -> CosignerVerifier:
    """A witness's public key (type 0x04), as text or as a file holding it."""
    if isinstance(value, CosignerVerifier):
        return value
    text, source = _text(value, option)
    try:
        return CosignerVerifier.from_text(text)
    except NoteError as exc:
        raise ConfigError(f"{option}: {source} is not a witness verifier key: {one_line(exc)}") from None


def load_log_verifier(value: str | Verifier, option: str = "--log") -> Verifier:
    """A log's public key (type 0x01), as text or as a file holding it; its name is the log's origin."""
    if isinstance(value, Verifier):
        return value
    text, source = _text(value, option)
    try:
        return Verifier.from_text(text)
    except NoteError as exc:
        raise ConfigError(f"{option}: {source} is not a log verifier key: {one_line(exc)}") from None


def load_log_trust(value: str, option: str = "--log") -> Verifier | KeyHistory:
    """A log's public key as :func:`load_log_verifier` reads it, or its key history file (``graven
    key history``): a witness keeps cosigning across rotations, each key only for the tree sizes the
    history gives it (a retired or revoked key cannot get a larger checkpoint cosigned)."""
    path = Path(value.strip())
    if path.is_file():
        trust = load_trust(path)
        if isinstance(trust, KeyHistory):
            return trust
    return load_log_verifier(value, option)
