"""Secrets of the HTTP service: the server secret, API keys, passwords and session tokens.

The server secret MUST live outside the database (a file beside the signing key, mode 0600): it
keys the HMAC-SHA256 under which API keys and session tokens are stored, so whoever reads the
accounts tables cannot use what they find there. An API key is shown once, when it is created,
and never stored in the clear. Passwords are stored as scrypt hashes with a random salt and the
parameters kept beside the hash, so they can be raised later without breaking old hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from graven.errors import ConfigError, ValidationError
from graven.private_files import make_private_dir

SECRET_NAME = "server.secret"  # noqa: S105 (a file name, not a secret)
MIN_SECRET = 16
KEY_PREFIX = "graven_"
MIN_PASSWORD = 8
MAX_PASSWORD = 1024

# scrypt cost: 2**15 x 8 x 1 needs 32 MiB and about 50 ms here; stored with each hash.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
_MAXMEM = 128 * 1024 * 1024

_KEY = re.compile(r"graven_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_HASH = re.compile(r"scrypt\$n=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)")


def default_secret_path(signing_key: str | Path) -> Path:
    """Where the server secret lives by default: beside the log's signing key."""
    return Path(signing_key).with_name(SECRET_NAME)


def load_secret(path: Path, *, create: bool = True) -> bytes:
    """The server secret in ``path``, created (32 random bytes, hex, mode 0600) when absent and allowed."""
    try:
        data = path.read_bytes().strip()
    except FileNotFoundError:
        if not create:
            raise ConfigError(
                f"server secret {path} does not exist; `graven serve` or `graven keys create` makes one"
            ) from None
        return _create_secret(path)
    except OSError as exc:
        raise ConfigError(f"cannot read server secret {path}: {exc.strerror}") from None
    if len(data) < MIN_SECRET:
        raise ConfigError(f"server secret {path} must hold at least {MIN_SECRET} bytes; it has {len(data)}")
    return data


def _create_secret(path: Path) -> bytes:
    data = secrets.token_hex(32).encode()
    make_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return load_secret(path, create=False)
    except OSError as exc:
        raise ConfigError(f"cannot create server secret {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return data


def keyed_hash(secret: bytes, purpose: str, value: str) -> str:
    """HMAC-SHA256 of ``value`` for one purpose ("apikey", "session", "csrf"), as hex."""
    return hmac.new(secret, f"{purpose}\n{value}".encode(), hashlib.sha256).hexdigest()


def new_api_key() -> tuple[str, str]:
    """A new key's public id and its full text ``graven_<id>_<secret>`` (shown to the user once)."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def api_key_id(text: str) -> str | None:
    """The public id inside a presented key, or None when the text is not shaped like a Graven key."""
    match = _KEY.fullmatch(text)
    return match.group(1) if match else None


def check_password_rules(password: str) -> None:
    """Reject a password that is too short or too long (ValidationError naming the field)."""
    if not isinstance(password, str):
        raise ValidationError("password", "must be a string", password)
    if len(password) < MIN_PASSWORD:
        raise ValidationError(
            "password", f"must be at least {MIN_PASSWORD} characters", f"<{len(password)} characters>"
        )
    if len(password) > MAX_PASSWORD:
        raise ValidationError("password", f"must be at most {MAX_PASSWORD} characters", f"<{len(password)} characters>")


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$n=..,r=..,p=..$salt$hash`` for a password (random 16-byte salt)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    return f"scrypt$n={n},r={r},p={p}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches a stored hash. Without a hash it still spends the same time,
    so a missing user cannot be told apart from a wrong password by timing."""
    match = _HASH.fullmatch(stored or "")
    if match is None:
        hashlib.scrypt(password.encode(), salt=b"\0" * 16, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=_MAXMEM)
        return False
    n, r, p = (int(match.group(i)) for i in (1, 2, 3))
    salt, expected = base64.b64decode(match.group(4)), base64.b64decode(match.group(5))
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=len(expected))
    return hmac.compare_digest(digest, expected)


def new_token() -> str:
    """A random session token (256 bits)."""
    return secrets.token_urlsafe(32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
