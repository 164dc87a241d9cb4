"""Signing and verifier keys on disk.

The signing key MUST live outside the log's database (whoever can edit the database must not be
able to re-sign it): it is a file of its own, created with mode 0600 and never overwritten.
"""

from __future__ import annotations

import os
from pathlib import Path

from graven.core.note import NoteError, Signer, Verifier
from graven.errors import ConfigError
from graven.private_files import make_private_dir

DEFAULT_DIR = Path(".graven")
DEFAULT_DB = DEFAULT_DIR / "trail.db"
DEFAULT_KEY = DEFAULT_DIR / "signing.key"


def create_signing_key(path: Path, name: str) -> Signer:
    """Generate a new Ed25519 key named ``name`` and write it to ``path`` (mode 0600, never overwrites)."""
    signer = Signer.generate(name)
    make_private_dir(path.parent)
    write_key_file(path, signer.to_text(), "signing key", "")
    return signer


def write_key_file(path: Path, text: str, what: str, option: str) -> None:
    """Create ``path`` holding ``text`` (mode 0600, fsynced); MUST never overwrite an existing key."""
    where = f"{option}: " if option else ""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{where}{path} already exists; refusing to overwrite a {what}") from None
    except OSError as exc:
        raise ConfigError(f"{where}cannot create {what} {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_key_file(path: Path, what: str, option: str = "") -> str:
    """The text of the key file ``path``, stripped; every reason it cannot be used as a key file
    (missing, a directory, unreadable, not UTF-8 text, empty) is one :class:`ConfigError` line
    naming the option (if any), the file and what is wrong. The content is never shown."""
    where = f"{option}: " if option else ""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{where}{what} {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}{what} {path} is a directory, not a key file") from None
    except OSError as exc:
        raise ConfigError(f"{where}cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(
            f"{where}{what} {path} is not a key file: it holds {len(data)} bytes of binary data, not key text"
        ) from None
    if not text:
        raise ConfigError(f"{where}{what} {path} is empty")
    return text


def load_signing_key(path: Path) -> Signer:
    """Read a signing key file written by :func:`create_signing_key` (one clear line if it cannot be used)."""
    if not path.exists() and not path.is_symlink():
        raise ConfigError(f"signing key {path} does not exist; create the log with `graven init`")
    text = read_key_file(path, "signing key")
    try:
        return Signer.from_text(text)
    except NoteError as exc:
        raise ConfigError(f"{path} is not a Graven signing key: {one_line(exc)}") from None


def load_verifier(value: str | Path | Verifier) -> Verifier:
    """A verifier key given as its text form (``name+keyid+base64``) or as a file holding it."""
    if isinstance(value, Verifier):
        return value
    text = str(value).strip()
    path = Path(text)
    source = "the key given"
    if "+" not in text or path.is_file():
        if not path.exists() and "+" not in text:
            raise ConfigError(f"{value!s}: neither a verifier key (name+keyid+base64) nor an existing file holding one")
        text = read_key_file(path, "verifier key file")
        source = str(path)
    if text.startswith("PRIVATE+KEY+"):
        raise ConfigError(f"{source} is a private signing key, not a verifier key (print that with `graven key`)")
    try:
        return Verifier.from_text(text)
    except NoteError as exc:
        raise ConfigError(f"{source} is not a verifier key (name+keyid+base64): {one_line(exc)}") from None


def one_line(exc: Exception) -> str:
    """An error's message on one line (a key parser may quote multi-line input)."""
    return " ".join(str(exc).split())
