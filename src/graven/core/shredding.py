"""Crypto-shredding: personal values sealed per data subject, so destroying one key erases them.

A field declared personal (by name, matched like redaction: case and separators ignored, at any
depth) is stored as a *sealed value*: the text ``genc1.<subject>.<key id>.<sealed>``, where
``subject`` is the data subject (``type:id``, base64url), ``key id`` names which of the subject's
keys sealed it, and ``sealed`` is base64url(nonce || AES-256-GCM ciphertext || tag) of the RFC 8785
encoding of the value. The associated data binds the ciphertext to its subject and key id.

Guarantees:

- The leaf covers the sealed text, never the plaintext: destroying a subject's keys leaves every
  entry byte-identical, so verification still passes, while the values become unreadable.
- MUST seal with a fresh 96-bit random nonce per value (never reused under a key).
- Sealing needs a data subject: the target (or, failing that, the actor) whose type is declared
  a subject type. A personal value with no subject is refused, never stored in clear.
- Opening never raises on a destroyed or unknown key: the value reads as :data:`ERASED`.
- Pure apart from the random nonce: keys are passed in by the caller (see
  :mod:`graven.subject_keys` for the key store kept apart from the entries).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from graven.core import canonical
from graven.core.diff import split_path
from graven.errors import ValidationError

__all__ = [
    "DEFAULT_PERSONAL_FIELDS",
    "ERASED",
    "PREFIX",
    "PersonalData",
    "SubjectKey",
    "is_sealed",
    "open_entry",
    "seal_event",
]

PREFIX: Final = "genc1."
ERASED: Final = "[erased]"
NONCE_BYTES: Final = 12
DEFAULT_PERSONAL_FIELDS: Final = (
    "email", "phone", "name", "full_name", "first_name", "last_name", "address", "birth_date", "date_of_birth",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SubjectKey:
    """One AES-256 key of a data subject, with the short id that sealed values name."""

    key_id: str
    key: bytes


def _normal(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


@dataclass(frozen=True)
class PersonalData:
    """Which fields are personal and whose they are.

    ``fields`` are matched against every key and dotted-path segment, ignoring case and
    separators (``Email``, ``e-mail`` and ``contact.email`` all match ``email``).
    ``subjects`` are the target and actor types that are data subjects (``customer``, ``user``).
    """

    fields: tuple[str, ...] = DEFAULT_PERSONAL_FIELDS
    subjects: tuple[str, ...] = ("customer", "user")

    def __post_init__(self) -> None:
        if not self.fields or not all(isinstance(f, str) and _normal(f) for f in self.fields):
            raise ValidationError("personal.fields", "must be a non-empty list of field names", self.fields)
        if not self.subjects or not all(isinstance(s, str) and s for s in self.subjects):
            raise ValidationError("personal.subjects", "must be a non-empty list of types", self.subjects)
        object.__setattr__(self, "_names", frozenset(_normal(f) for f in self.fields))

    def is_personal(self, name: str) -> bool:
        """True when ``name`` (a key or a dotted path) has a personal segment."""
        names: frozenset[str] = self._names  # type: ignore[attr-defined]
        return any(_normal(part) in names for part in split_path(name))


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _aad(subject: str, key_id: str) -> bytes:
    return f"{PREFIX}{subject}.{key_id}".encode()


def seal(value: Any, subject: str, key: SubjectKey) -> str:
    """The sealed text of one JSON value under ``subject``'s ``key``."""
    if is_sealed(value):
        return str(value)  # sealed already (a re-recorded entry): never sealed twice
    nonce = os.urandom(NONCE_BYTES)
    data = AESGCM(key.key).encrypt(nonce, canonical.canonical(value), _aad(subject, key.key_id))
    return f"{PREFIX}{_b64(subject.encode())}.{key.key_id}.{_b64(nonce + data)}"


_GONE: Final = object()


def _open(text: str, lookup: Callable[[str, str], bytes | None]) -> Any:
    """The value inside ``text``, or ``_GONE`` when its key is destroyed (or the text is damaged)."""
    try:
        _, subject_b64, key_id, payload = text.split(".", 3)
        subject = _unb64(subject_b64).decode()
        raw = _unb64(payload)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return _GONE
    key = lookup(subject, key_id)
    if key is None or len(raw) <= NONCE_BYTES:
        return _GONE
    try:
        plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(subject, key_id))
    except (InvalidTag, ValueError):
        return _GONE
    return orjson.loads(plain)


def unseal(text: str, lookup: Callable[[str, str], bytes | None]) -> Any:
    """The value inside ``text``, or :data:`ERASED` when its key is gone (or the text is damaged)."""
    value = _open(text, lookup)
    return ERASED if value is _GONE else value


def _subject_of(doc: Mapping[str, Any], policy: PersonalData) -> str | None:
    """The entry's data subject: its first target of a subject type, else such an actor."""
    for target in doc.get("targets", ()):
        if target["type"] in policy.subjects:
            return f"{target['type']}:{target['id']}"
    actor = doc.get("actor")
    if isinstance(actor, Mapping) and actor.get("type") in policy.subjects and actor.get("id") is not None:
        return f"{actor['type']}:{actor['id']}"
    return None


def seal_event(event: dict[str, Any], policy: PersonalData, key_for: Callable[[str], SubjectKey]) -> dict[str, Any]:
    """A validated entry ``event`` with every personal value sealed under its subject's key.

    The input is not mutated; targets, actor and changes are in their validated (dict) form.

    Sealed: ``old``/``new`` of changes on a personal field (and personal keys nested in them),
    personal keys in ``context`` and ``metadata``, and the ``name`` of an actor or target that is
    itself a data subject.
    """
    subject = _subject_of(event, policy)
    out = dict(event)
    looked_up: dict[str, SubjectKey] = {}

    def key_of(name: str) -> SubjectKey:  # one key-store lookup per subject and event
        if name not in looked_up:
            looked_up[name] = key_for(name)
        return looked_up[name]

    def sealed(value: Any, where: str) -> str:
        if subject is None:
            raise ValidationError(
                where,
                "is personal data but the entry names no data subject (a target or actor of type "
                + " or ".join(policy.subjects)
                + ")",
                "<withheld>",
            )
        return seal(value, subject, key_of(subject))

    def walk(value: Any, where: str) -> Any:
        if isinstance(value, Mapping):
            return {
                k: sealed(v, at) if policy.is_personal(str(k)) and v is not None else walk(v, at)
                for k, v in value.items()
                for at in (f"{where}.{k}",)
            }
        if isinstance(value, list | tuple):
            return [walk(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    changes = event.get("changes")
    if isinstance(changes, list | tuple):
        items = []
        for i, change in enumerate(changes):
            if not isinstance(change, Mapping) or not isinstance(change.get("field"), str):
                items.append(change)  # malformed: validation names it
                continue
            item = dict(change)
            personal = policy.is_personal(change["field"])
            for part in ("old", "new"):
                if part in item and item[part] is not None:
                    where = f"changes[{i}].{part}"
                    item[part] = sealed(item[part], where) if personal else walk(item[part], where)
            items.append(item)
        out["changes"] = items
    for key in ("context", "metadata"):
        if isinstance(event.get(key), Mapping):
            out[key] = walk(event[key], key)
    actor = event.get("actor")
    if isinstance(actor, Mapping) and actor.get("type") in policy.subjects and actor.get("name") is not None:
        own = f"{actor['type']}:{actor.get('id')}"
        out["actor"] = {**actor, "name": seal(actor["name"], own, key_of(own))}
    targets = event.get("targets", ())
    if any(t.get("name") is not None and t["type"] in policy.subjects for t in targets):
        out["targets"] = [
            {**t, "name": seal(t["name"], f"{t['type']}:{t['id']}", key_of(f"{t['type']}:{t['id']}"))}
            if t.get("name") is not None and t["type"] in policy.subjects
            else t
            for t in targets
        ]
    return out


def open_entry(data: dict[str, Any], lookup: Callable[[str, str], bytes | None]) -> dict[str, Any]:
    """A stored entry with sealed values opened; a change whose value is gone gets ``erased: true``."""
    gone = False

    def walk(value: Any) -> Any:
        nonlocal gone
        if is_sealed(value):
            opened = _open(value, lookup)
            if opened is _GONE:
                gone = True
                return ERASED
            return opened
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    out = {k: walk(v) for k, v in data.items() if k != "changes"}
    if "changes" in data:
        changes = []
        for change in data["changes"]:
            gone = False
            item = walk(change)
            if gone and isinstance(item, dict):
                item["erased"] = True
            changes.append(item)
        out["changes"] = changes
    return out
