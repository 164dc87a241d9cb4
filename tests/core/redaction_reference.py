"""Redaction exactly as it was before the fast paths: the oracle for the tests. Do not edit.

A frozen copy of ``RedactionPolicy`` from graven.core.redaction (commit 4c3dda4), and of
``Trail._redacted`` as the function :func:`redacted`.
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
from graven.core.model import change_dict
from graven.errors import ValidationError

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
        key = "\x00path:" + path  # a prefix no key name can start with, in the same cache
        known = self._known.get(key)
        if known is None:
            if len(self._known) >= _KNOWN_LIMIT:
                self._known.clear()
            known = self._known[key] = self.is_secret_key(path) or any(
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
            if change.get("redacted") is True or self.is_secret(str(name)):
                item: dict[str, Any] = {"field": name, "redacted": True}
                if change.get("redacted") is True:
                    if change.get("fingerprint") is not None:
                        item["fingerprint"] = change["fingerprint"]
                elif "new" in change and self.fingerprint_key is not None:
                    item["fingerprint"] = self.fingerprint(change["new"])
                out.append(item)
                continue
            item = {k: v for k, v in change.items() if k not in ("old", "new")}
            for part in ("old", "new"):
                if part in change:
                    item[part] = self.mapping(change[part])
            out.append(item)
        return out

    def mapping(self, value: Any) -> Any:
        """A deep copy of a JSON value with the value of every secret key replaced, at any depth."""
        if isinstance(value, str | int | float | bool) or value is None:
            return value
        if isinstance(value, Mapping):
            return {k: REDACTED if self.is_secret_key(str(k)) else self.mapping(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.mapping(v) for v in value]
        return value


_CHANGE_KEYS = frozenset({"field", "old", "new", "redacted", "fingerprint"})


def redacted(policy: RedactionPolicy | None, event: dict[str, Any]) -> dict[str, Any]:
    """``Trail._redacted`` as it was."""
    if policy is None:
        return event
    changes = event.get("changes")
    if changes:
        items = [c if isinstance(c, Mapping) else change_dict(c) for c in _as_list(changes)]
        well_formed = all(
            isinstance(c, Mapping) and isinstance(c.get("field"), str) and not (c.keys() - _CHANGE_KEYS) for c in items
        )
        event["changes"] = policy.changes(items) if well_formed else items
    for key in ("context", "metadata"):
        if isinstance(event.get(key), Mapping):
            event[key] = policy.mapping(event[key])
    return event


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    raise ValidationError("changes", "must be a list of {field, old, new} objects", value)
