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


def load_signing_key(path: Path) -> Signer:
    """Read a signing key file written by :func:`create_signing_key`."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise ConfigError(f"signing key {path} does not exist; create the log with `graven init`") from None
    except OSError as exc:
        raise ConfigError(f"cannot read signing key {path}: {exc.strerror}") from None
    try:
        return Signer.from_text(text)
    except NoteError as exc:
        raise ConfigError(f"{path} is not a Graven signing key: {exc}") from None


def load_verifier(value: str | Path | Verifier) -> Verifier:
    """A verifier key given as its text form (``name+keyid+base64``) or as a file holding it."""
    if isinstance(value, Verifier):
        return value
    text = str(value).strip()
    path = Path(text)
    if "+" not in text or path.is_file():
        try:
            text = path.read_text().strip()
        except OSError:
            raise ConfigError(
                f"{value!s}: neither a verifier key (name+keyid+base64) nor a readable file holding one"
            ) from None
    try:
        return Verifier.from_text(text)
    except NoteError as exc:
        raise ConfigError(f"not a verifier key: {exc}") from None
