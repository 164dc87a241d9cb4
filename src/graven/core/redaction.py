"""Keep secret values out of entries: redact changes and free-form mappings by field name.

A *segment* (one key name, or one part of a dotted change path as :mod:`graven.core.diff` writes
it) is secret when one of the policy's patterns matches it. Matching ignores case and the
separators ``_``, ``-``, ``.`` and spaces, so ``Api-Key``, ``apiKey`` and ``API_KEY`` all match
``api_key``. A pattern of four or more letters matches anywhere in the segment
(``user_password_hash``); a shorter one (``pan``, ``ssn``, ``cvv``, ``pwd``) must be a whole word
of it, words being split at separators and, additionally, at case and letter/digit changes
(``card_pan``, ``ssnLast4``, ``SSNLast4``, ``cvv2`` match; ``company`` and ``classname`` do not).

Guarantees:

- MUST NOT let a value through whose own key or any enclosing key or path segment is secret:
  :meth:`RedactionPolicy.changes` turns a change on a secret path into
  ``{"field", "redacted": true[, "fingerprint"]}`` and replaces the value of every secret key
  nested inside other changes' ``old``/``new`` by ``"[redacted]"``; :meth:`RedactionPolicy.mapping`
  does the same to any JSON value, at any depth (inside lists too).
- Values under non-secret keys are returned unchanged (as copies); inputs are never mutated.
- A fingerprint is present only when ``fingerprint_key`` is set. It is the first 16 hex digits
  of HMAC-SHA256(key, RFC 8785 encoding of the NEW value), so whoever holds the key can tell
  whether two redacted values were equal; a removed field (no new value) has none. 64 bits of
  a keyed hash: low-entropy secrets (PINs) can still be guessed by a holder of the key.
- Pure: no I/O; the key is passed in. Error messages never contain a secret value.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from graven.core import canonical
from graven.core.diff import split_path

__all__ = ["DEFAULT_PATTERNS", "REDACTED", "RedactionPolicy"]

REDACTED: Final = "[redacted]"

# Names that, in real schemas, hold credentials or regulated card/identity data. Over-matching
# (e.g. "max_tokens") only hides a value; under-matching leaks one, so fragments are broad.
DEFAULT_PATTERNS: Final[tuple[str, ...]] = (
    "password", "passwd", "passphrase", "pwd",  # login secrets
    "secret",  # client_secret, secret_key, webhook_secret
    "token",  # access/refresh/session/CSRF tokens
    "api_key", "apikey",  # the same after normalisation; both listed for readers
    "private_key",  # PEM keys, signing keys
    "credential",  # credentials blobs (cloud, database)
    "authorization", "cookie",  # HTTP headers that carry bearer tokens and session ids
    "card_number", "cardnumber", "card_no", "pan",  # PCI DSS: primary account number
    "cvv", "cvc",  # PCI DSS: card verification codes (must never be stored)
    "ssn",  # US social security number
)  # fmt: skip

_SEPARATORS: Final = re.compile(r"[_\-.\s]+")
# Word boundaries inside a name: aB, ABc (SSNLast -> SSN Last), a1 and 1a (cvv2 -> cvv 2).
_CAMEL: Final = re.compile(
    r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])"
)
_WHOLE_WORD_BELOW: Final = 4


def _normal(name: str) -> str:
    return _SEPARATORS.sub("", name).lower()


def _words(name: str) -> set[str]:
    """Words split at separators, plus words split at case and digit changes too ("sSn" stays one)."""
    plain = _SEPARATORS.split(name)
    return {w.lower() for w in (*plain, *_SEPARATORS.split(_CAMEL.sub(" ", name))) if w}


_KNOWN_LIMIT = 10_000


@dataclass(frozen=True)
class RedactionPolicy:
    """Which names are secret, and the optional key for fingerprints of redacted values."""

    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    fingerprint_key: bytes | None = field(default=None, repr=False)
    _fragments: frozenset[str] = field(init=False, repr=False, compare=False)
    _whole_words: frozenset[str] = field(init=False, repr=False, compare=False)
    _known: dict[str, bool] = field(init=False, repr=False, compare=False)  # names seen: they recur
    _paths: dict[str, bool] = field(init=False, repr=False, compare=False)  # change paths seen

    def __post_init__(self) -> None:
        if self.fingerprint_key is not None and (
            not isinstance(self.fingerprint_key, bytes) or not self.fingerprint_key
        ):
            raise ValueError("fingerprint_key must be non-empty bytes (or None for no fingerprints)")
        normal = tuple(_normal(p) for p in self.patterns)
        if not all(normal):
            raise ValueError("patterns must not be empty or only separators")
        object.__setattr__(self, "_fragments", frozenset(p for p in normal if len(p) >= _WHOLE_WORD_BELOW))
        object.__setattr__(self, "_whole_words", frozenset(p for p in normal if len(p) < _WHOLE_WORD_BELOW))
        object.__setattr__(self, "_known", {})
        object.__setattr__(self, "_paths", {})

    def is_secret_key(self, name: str) -> bool:
        """Whether one key name (a single segment, not split at dots) is secret."""
        known = self._known.get(name)
        if known is None:
            if len(self._known) >= _KNOWN_LIMIT:
                self._known.clear()
            known = self._known[name] = self._match(name)
        return known

    def _match(self, name: str) -> bool:
        normal = _normal(name)
        if any(f in normal for f in self._fragments):
            return True
        return bool(self._whole_words) and not self._whole_words.isdisjoint(_words(name))

    def is_secret(self, path: str) -> bool:
        """Whether any segment of a dotted change path is secret."""
        known = self._paths.get(path)
        if known is None:
            if len(self._paths) >= _KNOWN_LIMIT:
                self._paths.clear()
            known = self._paths[path] = self.is_secret_key(path) or any(
                self.is_secret_key(part) for part in split_path(path)
            )
        return known

    def fingerprint(self, value: Any) -> str | None:
        """The fingerprint of a value, or None without a key."""
        if self.fingerprint_key is None:
            return None
        try:
            data = canonical.canonical(value)
        except canonical.CanonicalError:
            raise ValueError("a redacted value is not JSON, so it cannot be fingerprinted") from None
        return hmac.new(self.fingerprint_key, data, hashlib.sha256).hexdigest()[:16]

    def changes(self, changes: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Redacted copies of ``{field, old, new}`` changes (already-redacted ones pass through)."""
        out: list[dict[str, Any]] = []
        for change in changes:
            name = change["field"]
            redacted = change.get("redacted") is True
            if redacted or self.is_secret(str(name)):
                item: dict[str, Any] = {"field": name, "redacted": True}
                if redacted:
                    if change.get("fingerprint") is not None:
                        item["fingerprint"] = change["fingerprint"]
                elif "new" in change and self.fingerprint_key is not None:
                    item["fingerprint"] = self.fingerprint(change["new"])
                out.append(item)
                continue
            item = {k: v for k, v in change.items() if k != "old" and k != "new"}
            if "old" in change:
                old = change["old"]
                item["old"] = old if type(old) in _SCALARS else self.mapping(old)
            if "new" in change:
                new = change["new"]
                item["new"] = new if type(new) in _SCALARS else self.mapping(new)
            out.append(item)
        return out

    def mapping(self, value: Any) -> Any:
        """A deep copy of a JSON value with the value of every secret key replaced, at any depth."""
        kind = type(value)
        if kind in _SCALARS:
            return value
        if kind is dict:
            known = self._known
            out = {}
            for k, v in value.items():
                # The verdicts of plain-text keys already seen are read straight from the cache.
                secret = known.get(k) if type(k) is str else None
                if secret is None:
                    secret = self.is_secret_key(str(k))
                out[k] = REDACTED if secret else v if type(v) in _SCALARS else self.mapping(v)
            return out
        if isinstance(value, str | int | float | bool) or value is None:
            return value
        if isinstance(value, Mapping):
            return {k: REDACTED if self.is_secret_key(str(k)) else self.mapping(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.mapping(v) for v in value]
        return value


_SCALARS: Final = frozenset({str, int, float, bool, type(None)})  # exact types returned as they are
