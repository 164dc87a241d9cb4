"""Signing and verifier keys on disk, and the key history of a log that rotated its key.

The signing key MUST live outside the log's database (whoever can edit the database must not be
able to re-sign it): it is a file of its own, created with mode 0600 and never overwritten.
After a rotation (:mod:`graven.rotation`) the files beside it are ``<key>.history`` (the key
history, see :mod:`graven.core.key_history`) and ``<key>.<key id>``, a previous key kept for its
overlap period. The history is replaced atomically (written aside, fsynced, renamed), never edited
in place.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from graven.core.key_history import HEADER, KeyHistory, Trust
from graven.core.note import NoteError, Signer, Verifier
from graven.errors import ConfigError
from graven.private_files import make_private_dir, sync_dir

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


def history_path(key_path: Path) -> Path:
    """Where the key history of the log signed by ``key_path`` is kept: beside the key."""
    return key_path.with_name(key_path.name + ".history")


def retired_path(key_path: Path, key_id: int) -> Path:
    """Where a previous signing key is kept for its overlap period after a rotation."""
    return key_path.with_name(f"{key_path.name}.{key_id:08x}")


def load_history(path: Path, option: str = "") -> KeyHistory:
    """Read a key history file (one clear line if it cannot be used)."""
    text = read_key_file(path, "key history", option)
    try:
        return KeyHistory.parse(text)
    except NoteError as exc:
        where = f"{option}: " if option else ""
        raise ConfigError(f"{where}{path} is not a usable key history: {one_line(exc)}") from None


def write_history(path: Path, history: KeyHistory) -> None:
    """Replace the key history at ``path`` atomically: a crash leaves the old or the new one whole."""
    aside = path.with_name(path.name + ".new")
    aside.unlink(missing_ok=True)
    write_key_file(aside, history.to_text().rstrip("\n"), "key history", "")
    os.replace(aside, path)
    sync_dir(path.parent)


def load_trust(value: str | Path | Verifier | Trust) -> Trust:
    """What a verifier trusts: a key history (a file written by ``graven key rotate``) or one key."""
    if isinstance(value, KeyHistory):
        return value
    if not isinstance(value, str | Path | Verifier):
        return list(value)
    if isinstance(value, str | Path) and Path(str(value).strip()).is_file():
        path = Path(str(value).strip())
        text = read_key_file(path, "verifier key file")
        if text.startswith((HEADER, "key ")):
            return load_history(path)
    return [load_verifier(value)]


def stored_keys(settings: Mapping[str, str]) -> list[str]:
    """The verifier keys a log's settings name, oldest first: ``verifier_key``, then one
    ``verifier_key.N`` per rotation (settings are only ever added, never changed)."""
    keys = [settings["verifier_key"]] if settings.get("verifier_key") else []
    numbered = sorted(
        (int(name.rpartition(".")[2]), value)
        for name, value in settings.items()
        if name.startswith("verifier_key.") and name.rpartition(".")[2].isdigit()
    )
    return keys + [value for _, value in numbered]


def current_stored_key(settings: Mapping[str, str]) -> str | None:
    """The verifier key the log signs with now, as its settings say (None: none on record)."""
    keys = stored_keys(settings)
    return keys[-1] if keys else None


def one_line(exc: Exception) -> str:
    """An error's message on one line (a key parser may quote multi-line input)."""
    return " ".join(str(exc).split())
