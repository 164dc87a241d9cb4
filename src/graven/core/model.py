"""The entry model, schema version 1: validation, normalisation and the leaf bytes.

An event arrives as a plain dict in the JSON shape of the design (or as keyword arguments, or as an
:class:`Event`). :func:`prepare` checks every rule before anything is written and returns a
:class:`Prepared` entry whose ``leaf`` is the RFC 8785 encoding of every stored field: the exact
bytes the Merkle leaf hashes. Pure: the clock and the id generator are passed in. Events of the
common shape take a fast path that MUST build the very document (and so the very leaf) the full
checks build, and MUST leave every rejection, and its message, to the full checks.

MUST: a value that breaks a rule raises :class:`~graven.errors.ValidationError` naming the field,
the rule and what was given. MUST NOT: silently change a value's meaning (NaN, lone surrogates,
naive timestamps and numbers beyond what RFC 8785 carries exactly are refused, not coerced).

Identifiers (``id``, ``actor.id``, ``actor.session``, ``targets[].type``, ``targets[].id``,
``tenant``, ``changes[].field``, ``changes[].fingerprint``; ``action`` and ``source`` are ASCII
words anyway) MUST NOT hold control characters (U+0000..U+001F, U+007F..U+009F), line or paragraph
separators (U+2028, U+2029), zero-width characters (U+200B..U+200D, U+2060..U+2064, U+FEFF) or
bidirectional controls (U+061C, U+200E, U+200F, U+202A..U+202E, U+2066..U+2069), and are stored in
Unicode NFC, so two spellings of one name are one identifier (queries are normalised alike, see
:func:`identifier`). Names (``actor.name``, ``targets[].name``) and ``actor.user_agent`` are display
text, kept exactly as given except that U+0000 is refused. Free text (``reason``, ``context``,
``metadata``, change values) is kept exactly as given, U+0000 included.

Numbers: an integer (anywhere, however deeply nested) MUST lie within +-(2**53 - 1), the range
RFC 8785 and I-JSON carry exactly; so MUST a whole-number float below 1e21, which RFC 8785 writes
as integer digits. Larger floats (written with an exponent) and fractions are IEEE doubles as given.
A float that is a whole number within the range is the same JSON number as that integer.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import ipaddress
import json
import math
import re
import socket
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeGuard

import msgspec
import orjson

from graven.core import canonical, merkle, schema
from graven.core.schema import (
    ACTION_RE,
    ACTOR_FIELDS,
    ACTOR_TYPES,
    CHANGE_FIELDS,
    IDENTIFIER_RULE,
    INPUT_FIELDS,
    INTEGER_RULE,
    MAX_ACTION,
    MAX_CHANGES,
    MAX_DEPTH,
    MAX_ENTRY,
    MAX_FIELD,
    MAX_METADATA,
    MAX_NAME,
    MAX_SAFE_INTEGER,
    MAX_SOURCE,
    MAX_STRING,
    MAX_TARGETS,
    MAX_USER_AGENT,
    OUTCOMES,
    REFUSED_IN_IDENTIFIERS,
    SCHEMA_VERSION,
    SOURCE_RE,
    TARGET_FIELDS,
)
from graven.errors import ValidationError

_EXPONENT_FORM = 1e21  # RFC 8785 writes floats at least this large with an exponent, smaller ones as digits
_ACTOR_TYPE_SET: Final = frozenset(ACTOR_TYPES)
_OUTCOME_SET: Final = frozenset(OUTCOMES)
_TARGET_FIELD_SET: Final = frozenset(TARGET_FIELDS)
_CHANGE_FIELD_SET: Final = frozenset(CHANGE_FIELDS)
_ACTOR_FIELD_SET: Final = frozenset(ACTOR_FIELDS)
# The schema's constants, still importable from here.
__all__ = [
    "ACTION_RE", "ACTOR_FIELDS", "ACTOR_TYPES", "IDENTIFIER_RULE", "INPUT_FIELDS", "INTEGER_RULE", "MAX_ACTION",
    "MAX_CHANGES", "MAX_DEPTH", "MAX_ENTRY", "MAX_METADATA", "MAX_NAME", "MAX_SAFE_INTEGER", "MAX_STRING",
    "MAX_TARGETS", "OUTCOMES", "REFUSED_IN_IDENTIFIERS", "SCHEMA_VERSION", "SOURCE_RE", "TARGET_FIELDS",
    "Actor", "Change", "Entry", "Event", "Prepared", "Target", "change_dict", "event_from", "format_time",
    "identifier", "load_json", "nfc", "parse_time", "prepare", "safe_identifier", "target_of",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted, and from where. ``id`` and ``session`` are identifiers (see :func:`identifier`:
    no control, zero-width or bidi characters; stored in NFC); ``name`` and ``user_agent`` are
    display text, kept as given except that U+0000 is refused."""

    type: str = "user"
    id: str | None = None
    name: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    session: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """What an action was done to. ``type`` and ``id`` are identifiers (see :func:`identifier`);
    ``name`` is display text, kept as given except that U+0000 is refused."""

    type: str
    id: str
    name: str | None = None


_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class Change:
    """One field's old and new value; a redacted change keeps neither."""

    field: str
    old: Any = _UNSET
    new: Any = _UNSET
    redacted: bool = False
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """An event as the caller describes it (schema v1); the log adds index and recorded_at."""

    action: str
    actor: Actor | Mapping[str, Any] | str
    targets: Iterable[Target | Mapping[str, Any] | tuple[str, str]] = ()
    outcome: str = "success"
    reason: str | None = None
    changes: Iterable[Change | Mapping[str, Any]] = ()
    source: str | None = None
    context: Mapping[str, Any] | None = None
    tenant: str | None = None
    metadata: Mapping[str, Any] | None = None
    id: str | None = None
    occurred_at: datetime | str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The event in its JSON shape, ready for :func:`prepare`."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "actor" and isinstance(value, Actor):
                value = {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
            elif f.name == "targets":
                value = [_target_dict(t) for t in value]
            elif f.name == "changes":
                value = [change_dict(c) for c in value]
            out[f.name] = value
        return out


def _target_dict(t: Any) -> Any:
    if isinstance(t, Target):
        return {k: v for k, v in dataclasses.asdict(t).items() if v is not None}
    return t


def change_dict(c: Any) -> Any:
    """A Change object as its JSON shape (anything else is returned as it is)."""
    if not isinstance(c, Change):
        return c
    out: dict[str, Any] = {"field": c.field}
    if c.redacted:
        out["redacted"] = True
    if c.fingerprint is not None:
        out["fingerprint"] = c.fingerprint
    if c.old is not _UNSET:
        out["old"] = c.old
    if c.new is not _UNSET:
        out["new"] = c.new
    return out


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated entry: its stored fields, the leaf bytes and the leaf hash."""

    doc: dict[str, Any]
    leaf: bytes
    leaf_hash: bytes = field(repr=False)

    @property
    def id(self) -> str:
        return str(self.doc["id"])


def event_from(value: Any = None, /, **kwargs: Any) -> dict[str, Any]:
    """Turn a dict, an :class:`Event` or keyword arguments into the JSON-shaped dict.

    Keyword arguments may name one target as ``target=`` (added to ``targets``), and a target, there
    or in ``targets=``, may be written ``("file", file_id)`` or ``"file:f-1"`` (see :func:`target_of`).
    """
    if value is None:
        event = dict(kwargs)
        targets = event.get("targets")
        if type(targets) is list and any(type(t) is str for t in targets):
            event["targets"] = targets = [target_of(t, f"targets[{i}]") if type(t) is str else t
                                          for i, t in enumerate(targets)]  # fmt: skip
        if "target" in event:
            named = event.pop("target")
            if named is not None and targets is not None and type(targets) is not list:
                raise ValidationError("targets", "must be a list when target= names one too", targets)
            if named is not None:
                event["targets"] = [*(targets or ()), target_of(named)]
        return event
    if kwargs:
        raise TypeError("pass an event or keyword arguments, not both")
    if isinstance(value, Event):
        return value.to_dict()
    if isinstance(value, Mapping):
        return dict(value)
    raise ValidationError("event", "must be a dict, an Event or keyword arguments", value)


def target_of(value: Any, name: str = "target") -> Any:
    """One target as its JSON shape: ``"type:id"`` and ``(type, id)`` become ``{"type", "id"}``; a
    dict or a :class:`Target` is returned as it is (validation checks every target the same way)."""
    if isinstance(value, str):
        kind, sep, ident = value.partition(":")
        if not sep or not kind or not ident:
            raise ValidationError(name, "must be type:id such as file:f-1, (type, id) or {type, id}", value)
        return {"type": kind, "id": ident}
    if isinstance(value, tuple | list) and len(value) == 2:
        return {"type": value[0], "id": value[1]}
    if isinstance(value, tuple) and len(value) == 3:  # (type, id, name)
        return {"type": value[0], "id": value[1], "name": value[2]}
    return value


def prepare(event: Mapping[str, Any], *, now: datetime, new_id: Callable[[], str]) -> Prepared:
    """Validate and normalise one event; ``now`` becomes recorded_at (and occurred_at if absent).

    The common shape (plain dicts, text and small numbers) takes the schema's fast path (msgspec);
    anything else, and every event that breaks a rule, takes the full checks, which alone raise.
    """
    if type(event) is dict:
        fast = prepare_fast(event, now)
        if fast is not None:
            doc, flags = fast
            ident = doc["id"]
            if ident is None:
                doc["id"] = new_id()
            return _finish(doc, flags)
    return _prepare_full(event, now=now, new_id=new_id)


def _prepare_full(event: Mapping[str, Any], *, now: datetime, new_id: Callable[[], str]) -> Prepared:
    """Every rule checked in order; the first broken one raises."""
    unknown = set(event) - INPUT_FIELDS
    if unknown:
        name = sorted(map(str, unknown))[0]
        if name in ("recorded_at", "index"):
            raise ValidationError(name, "is set by the log, not by the caller", event[name])
        raise ValidationError(
            name, "is not a field of schema v1 (" + ", ".join(sorted(INPUT_FIELDS)) + ")", event[name]
        )
    version = event.get("v", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise ValidationError("v", f"must be {SCHEMA_VERSION} (the only schema version)", version)
    recorded_at = _format_now(now)
    doc: dict[str, Any] = {"v": SCHEMA_VERSION}
    doc["id"] = identifier(event["id"], "id") if event.get("id") is not None else new_id()
    occurred = event.get("occurred_at")
    doc["occurred_at"] = recorded_at if occurred is None else parse_time(occurred, "occurred_at")
    doc["recorded_at"] = recorded_at
    doc["actor"] = _actor(event.get("actor"))
    doc["action"] = _action(event.get("action"))
    doc["targets"] = _targets(event.get("targets", ()))
    doc["outcome"] = _choice(event.get("outcome", "success"), "outcome", OUTCOMES)
    flags = _Flags()
    doc["changes"] = _changes(event.get("changes", ()), flags)
    for key in ("reason", "source", "tenant", "context", "metadata"):
        value = event.get(key)
        if value is None:
            continue
        if key == "reason":
            doc[key] = _string(value, key)
        elif key == "source":
            doc[key] = _source(value)
        elif key == "tenant":
            doc[key] = identifier(value, key)
        else:
            if type(value) is not dict and not isinstance(value, Mapping):
                raise ValidationError(key, "must be a JSON object", value)
            doc[key] = value
    # One walk over the free-form parts (depth, strings, numbers) returns plain copies.
    for key in ("context", "metadata"):
        if key in doc:
            doc[key] = _walk_at(doc[key], key, 1, flags)
    return _finish(doc, flags)


def _finish(doc: dict[str, Any], flags: _Flags) -> Prepared:
    """The size limits and the leaf bytes of a checked document."""
    if "metadata" in doc:
        size = len(orjson.dumps(doc["metadata"]))
        if size > MAX_METADATA:
            raise ValidationError("metadata", f"must encode to at most {MAX_METADATA} bytes", f"<{size} bytes>")
    try:
        if not flags.keys_safe:
            leaf = canonical.encode_reference(doc)
        elif flags.floats:
            leaf = orjson.dumps(_with_fragments(doc), option=orjson.OPT_SORT_KEYS)
        else:
            leaf = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, canonical.CanonicalError) as exc:
        raise _diagnose(doc) from exc
    if len(leaf) > MAX_ENTRY:
        raise ValidationError("entry", f"must encode to at most {MAX_ENTRY} bytes", f"<{len(leaf)} bytes>")
    return Prepared(doc, leaf, merkle.leaf_hash(leaf))


# --- JSON text ---------------------------------------------------------------------------------

_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_LONG_DIGITS_TEXT = re.compile("[0-9]{19}")


def load_json(data: bytes | str) -> Any:
    """Parse JSON text (an event, a batch, metadata) keeping every integer exact.

    orjson reads an integer literal beyond 64 bits as a float (``18446744073709551617`` becomes
    ``1.8446744073709552e+19``), which would be stored as a different number. Such literals have
    at least 19 digits: text with a run of 19 digits (rare, and often inside a string) is read again
    by :mod:`json`, whose integers are exact, so that :func:`prepare` refuses the number, naming
    where it is. Raises ``orjson.JSONDecodeError`` for text that is not JSON.
    """
    value = orjson.loads(data)
    long = _LONG_DIGITS.search(data) if isinstance(data, bytes) else _LONG_DIGITS_TEXT.search(data)
    if long is None:
        return value
    try:
        return json.loads(data)  # the text is valid JSON (orjson read it), so NaN and Infinity are absent
    except RecursionError:  # ~1000 levels deep: far beyond MAX_DEPTH, so prepare refuses it anyway
        return value


# --- scalar fields ---------------------------------------------------------------------------


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STORED_TIME: Final = re.compile(schema.STORED_TIME_PATTERN)


@functools.lru_cache(maxsize=16)
def _format_now(now: datetime) -> str:
    """recorded_at for a batch: one clock reading formatted once."""
    return format_time(now, "recorded_at")


def format_time(moment: datetime, name: str, given: Any = None) -> str:
    """A timezone-aware datetime as UTC ISO 8601 with microseconds and a ``Z`` (1970..9999)."""
    if moment.tzinfo is UTC and moment >= EPOCH:  # the clock's own readings: one formatting, no conversion
        return moment.isoformat(timespec="microseconds")[:-6] + "Z"
    shown = moment.isoformat() if given is None else given
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValidationError(name, "must be timezone-aware (naive datetimes are ambiguous)", shown)
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        raise ValidationError(name, "must be between 1970-01-01 and 9999-12-31 UTC", shown) from None
    if utc < EPOCH:
        raise ValidationError(name, "must not be before 1970-01-01 UTC", shown)
    return utc.isoformat(timespec="microseconds")[:-6] + "Z"  # "+00:00" off: as strftime's %Y-%m-%dT%H:%M:%S.%fZ


def parse_time(value: Any, name: str) -> str:
    """Accept a timezone-aware datetime or ISO 8601 text with an offset; return the stored form."""
    if isinstance(value, datetime):
        return format_time(value, name)
    if type(value) is str and len(value) == 27 and _STORED_TIME.fullmatch(value):  # already the stored form
        try:
            if datetime.fromisoformat(value[:-1] + "+00:00") >= EPOCH:
                return value
        except ValueError:
            pass
    if not isinstance(value, str):
        raise ValidationError(name, "must be an ISO 8601 timestamp with a timezone", value)
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise ValidationError(name, "must be an ISO 8601 timestamp with a timezone", value) from None
    return format_time(moment, name, value)


def _good(value: Any, limit: int = MAX_NAME) -> TypeGuard[str]:
    """The common case, checked cheaply: non-blank printable ASCII within ``limit`` (valid as is
    for every name and identifier: printable ASCII holds no refused character and is NFC)."""
    return (
        type(value) is str and 0 < len(value) <= limit and value.isascii() and value.isprintable()
        and not value.isspace()
    )  # fmt: skip


def _name(value: Any, name: str, limit: int = MAX_NAME) -> str:
    """A name (display text): a non-empty string within ``limit``, kept as given; U+0000 is refused."""
    if not isinstance(value, str):
        raise ValidationError(name, "must be a string", value)
    if not value or value.isspace():
        raise ValidationError(name, "must not be empty", value)
    if len(value) > limit:
        raise ValidationError(name, f"must be at most {limit} characters", f"<{len(value)} characters>")
    _unicode(value, name)
    if "\x00" in value:
        raise ValidationError(name, f"must not hold U+0000 (found at position {value.index(chr(0))})", _given(value))
    return value


def identifier(value: Any, name: str, limit: int = MAX_NAME) -> str:
    """An identifier as stored and compared, in Unicode NFC; raises ValidationError unless it is a
    non-empty string of at most ``limit`` characters (once normalised) holding no character of
    :data:`REFUSED_IN_IDENTIFIERS`. Queries pass their ids through it too, so that a composed and a
    decomposed spelling of one name find the same entries."""
    if _good(value, limit):
        return value
    if not isinstance(value, str):
        raise ValidationError(name, "must be a string", value)
    if not value or value.isspace():
        raise ValidationError(name, "must not be empty", _given(value))
    normal = value if value.isascii() else unicodedata.normalize("NFC", value)
    if len(normal) > limit:
        raise ValidationError(name, f"must be at most {limit} characters", f"<{len(normal)} characters>")
    _unicode(value, name)
    found = REFUSED_IN_IDENTIFIERS.search(value)
    if found is not None:
        char = found.group()
        label = unicodedata.name(char, "a control character")
        raise ValidationError(
            name, f"{IDENTIFIER_RULE} (found U+{ord(char):04X} {label} at position {found.start()})", _given(value)
        )
    return normal


def nfc(value: str) -> str:
    """``value`` in Unicode NFC, as identifiers are stored: what a query's identifier filters are
    compared in. Nothing is refused here (an id with a refused character matches only entries
    written before the rules); the service checks its query parameters with :func:`identifier`."""
    return value if value.isascii() else unicodedata.normalize("NFC", value)


def safe_identifier(value: str, limit: int = MAX_NAME) -> str:
    """``value`` as :func:`identifier` returns it when it is one; otherwise a readable stand-in that
    always is one, for recording what someone attempted (a user name tried at sign-in, say).

    The stand-in writes refused characters, lone surrogates and backslashes as ``\\uXXXX`` (all of
    a blank text's characters too), and past ``limit`` is cut, ending in ``~`` and 16 hex digits of
    the SHA-256 of the whole, so that different attempts stay apart.
    """
    try:
        return identifier(value, "value", limit)
    except ValidationError:
        pass

    def escaped(c: str) -> bool:
        return c == "\\" or "\ud800" <= c <= "\udfff" or REFUSED_IN_IDENTIFIERS.match(c) is not None

    text = "".join(f"\\u{ord(c):04x}" if escaped(c) else c for c in value)
    if text.isspace():
        text = "".join(f"\\u{ord(c):04x}" for c in text)
    text = unicodedata.normalize("NFC", text) or "<empty>"
    if len(text) > limit:
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        text = text[: limit - 17] + "~" + digest
    return text


def _given(value: str) -> str:
    """A refused text as ValidationError shows it: repr-escaped (never a raw control character)."""
    return f"<{value!r}>" if value.startswith("<") else value


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(name, "must be a string", value)
    _check_str(value, name)
    return value


def _check_str(value: str, name: str) -> None:
    if len(value) > MAX_STRING // 4 and len(value.encode("utf-8", "surrogatepass")) > MAX_STRING:
        size = len(value.encode("utf-8", "surrogatepass"))
        raise ValidationError(name, f"must be at most {MAX_STRING} bytes of UTF-8", f"<{size} bytes>")
    _unicode(value, name)


def _unicode(value: str, name: str) -> None:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(name, "must be valid Unicode (no lone surrogates)", value) from None


def _choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices or not isinstance(value, str):
        raise ValidationError(name, "must be one of " + ", ".join(choices), value)
    return value


def _action(value: Any) -> str:
    if value is None:
        raise ValidationError("action", "is required (a dotted noun.verb such as user.password.change)")
    action = _name(value, "action", MAX_ACTION)
    if not ACTION_RE.fullmatch(action):
        raise ValidationError(
            "action", "must be dotted words such as user.password.change (letters, digits, _ and -)", value
        )
    return action


def _source(value: Any) -> str:
    source = _name(value, "source", MAX_SOURCE)
    if not SOURCE_RE.fullmatch(source):
        raise ValidationError("source", "must be a lower-case word such as web, api, cli, job or db", value)
    return source


def _actor(value: Any) -> dict[str, str]:
    if value is None:
        raise ValidationError("actor", "is required (who did it: an object with at least a type)")
    if isinstance(value, Actor):
        value = {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
    elif isinstance(value, str):
        value = {"type": "user", "id": value}
    if not isinstance(value, Mapping):
        raise ValidationError("actor", 'must be an object such as {"type": "user", "id": "u-1"}', value)
    if value.keys() - _ACTOR_FIELD_SET:
        key = next(k for k in value if k not in _ACTOR_FIELD_SET)
        raise ValidationError(f"actor.{key}", "is not an actor field (" + ", ".join(ACTOR_FIELDS) + ")", value[key])
    kind = value.get("type", "user")
    known = type(kind) is str and kind in _ACTOR_TYPE_SET  # (a list or dict cannot be looked up in a set)
    out: dict[str, str] = {"type": kind if known else _choice(kind, "actor.type", ACTOR_TYPES)}
    for key in ACTOR_FIELDS[1:]:
        item = value.get(key)
        if item is None:
            continue
        if key == "ip":
            out[key] = _ip(item)
        elif key == "user_agent":
            out[key] = item if _good(item, MAX_USER_AGENT) else _name(item, "actor.user_agent", MAX_USER_AGENT)
        elif key == "name":
            out[key] = item if _good(item) else _name(item, "actor.name")
        else:
            out[key] = item if _good(item) else identifier(item, f"actor.{key}")
    if "id" not in out and out["type"] in ("user", "service"):
        raise ValidationError("actor.id", f"is required for a {out['type']} actor")
    return out


def _ip(value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError("actor.ip", "must be an IPv4 or IPv6 address as text", value)
    if "." in value and ":" not in value:
        try:  # the common case: dotted IPv4 already in canonical form, checked in C
            if socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, value)) == value:
                return value
        except OSError:
            pass
    normal = _normal_ip(value)
    if normal is None:
        raise ValidationError("actor.ip", "must be an IPv4 or IPv6 address", value)
    return normal


@functools.lru_cache(maxsize=4096)
def _normal_ip(value: str) -> str | None:
    """The canonical text of an IP address (cached: the same addresses recur)."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def _targets(value: Any) -> list[dict[str, str]]:
    if type(value) is not list and (isinstance(value, Mapping | Target) or (
        isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str)
        and isinstance(value[1], str | int)
    )):  # fmt: skip
        value = [value]
    if type(value) is not list and (isinstance(value, str | bytes) or not isinstance(value, Iterable)):
        raise ValidationError("targets", "must be a list of {type, id, name} objects", value)
    out: list[dict[str, str]] = []
    for i, item in enumerate(value):
        if i >= MAX_TARGETS:
            raise ValidationError("targets", f"must have at most {MAX_TARGETS} items", "<more>")
        if type(item) is dict:
            pass
        elif isinstance(item, Target):
            item = _target_dict(item)
        elif isinstance(item, tuple | list) and len(item) in (2, 3):
            item = dict(zip(TARGET_FIELDS, item, strict=False))
        if type(item) is not dict and not isinstance(item, Mapping):
            raise ValidationError(f"targets[{i}]", "must be an object with type and id", item)
        if item.keys() - _TARGET_FIELD_SET:
            key = next(k for k in item if k not in _TARGET_FIELD_SET)
            raise ValidationError(f"targets[{i}].{key}", "is not a target field (type, id, name)", item[key])
        kind, ident, name = item.get("type"), _idtext(item.get("id")), item.get("name")
        target: dict[str, str] = {
            "type": kind if _good(kind) else identifier(kind, f"targets[{i}].type"),
            "id": ident if _good(ident) else identifier(ident, f"targets[{i}].id"),
        }
        if name is not None:
            target["name"] = name if _good(name) else _name(name, f"targets[{i}].name")
        if out and any(t["type"] == target["type"] and t["id"] == target["id"] for t in out):
            raise ValidationError(f"targets[{i}]", "must not repeat a target already named",
                                  f"{target['type']}:{target['id']}")  # fmt: skip
        out.append(target)
    return out


def _idtext(value: Any) -> Any:
    """Integer ids are common (primary keys); store them as text so queries match either way."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _changes(value: Any, flags: _Flags) -> list[dict[str, Any]]:
    if type(value) is not list and (isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable)):
        raise ValidationError("changes", "must be a list of {field, old, new} objects", value)
    out = []
    for i, item in enumerate(value):
        if i >= MAX_CHANGES:
            raise ValidationError("changes", f"must have at most {MAX_CHANGES} items", "<more>")
        if type(item) is not dict:
            if isinstance(item, Change):
                item = change_dict(item)
            if not isinstance(item, Mapping):
                raise ValidationError(f"changes[{i}]", "must be an object with field, old and new", item)
        if item.keys() - _CHANGE_FIELD_SET:
            key = next(k for k in item if k not in _CHANGE_FIELD_SET)
            raise ValidationError(
                f"changes[{i}].{key}", "is not a change field (field, old, new, redacted, fingerprint)", item[key]
            )
        name = item.get("field")
        if not _good(name, MAX_FIELD):
            name = identifier(name, f"changes[{i}].field", MAX_FIELD)
        change: dict[str, Any] = {"field": name}
        redacted = item.get("redacted", False)
        if redacted is False:
            if "fingerprint" in item:
                raise ValidationError(f"changes[{i}].fingerprint", "is only allowed on a redacted change")
            if "old" not in item and "new" not in item:
                raise ValidationError(f"changes[{i}]", "must have old, new, or redacted: true")
            for part in ("old", "new"):
                if part in item:
                    change[part] = _walk_at(item[part], f"changes[{i}].{part}", 3, flags)
        elif redacted is True:
            if "old" in item or "new" in item:
                raise ValidationError(f"changes[{i}]", "a redacted change must not carry old or new values")
            change["redacted"] = True
            if item.get("fingerprint") is not None:
                change["fingerprint"] = identifier(item["fingerprint"], f"changes[{i}].fingerprint")
        else:
            raise ValidationError(f"changes[{i}].redacted", "must be true or false", redacted)
        out.append(change)
    return out


# --- free-form JSON ----------------------------------------------------------------------------


class _Flags:
    """What one walk found: floats (need JCS number text) and keys that orjson may sort wrongly."""

    __slots__ = ("floats", "keys_safe")

    def __init__(self) -> None:
        self.floats = False
        self.keys_safe = True


class _Invalid(Exception):
    """A rule broken deep inside a free-form value; ``parts`` grows into its path while unwinding."""

    def __init__(self, rule: str, given: Any) -> None:
        super().__init__(rule)
        self.rule = rule
        self.given = given
        self.parts: list[str | int] = []


def _walk_at(value: Any, path: str, depth: int, flags: _Flags) -> Any:
    """:func:`_walk`, turning a failure into a ValidationError that names the exact path."""
    try:
        return _walk(value, depth, flags)
    except _Invalid as bad:
        where = path + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in reversed(bad.parts))
        raise ValidationError(where, bad.rule, bad.given) from None


def _walk(value: Any, depth: int, flags: _Flags) -> Any:
    """Check one free-form JSON value and return a plain copy (dicts, lists, str, int, float...).

    Integral floats become ints (the same JSON number); other floats set ``flags.floats``. Keys
    with characters at or above U+D800, where UTF-8 byte order and UTF-16 order may differ,
    clear ``flags.keys_safe`` so that the reference encoder is used. Paths are only built on
    failure (see :class:`_Invalid`), so the common case allocates nothing but the copy.
    """
    kind = type(value)
    if kind is str:
        if not value.isascii() or len(value) > MAX_STRING // 4:
            _check_free_str(value)
        return value
    if value is None or value is True or value is False:
        return value
    if kind is int or (isinstance(value, int) and not isinstance(value, bool)):
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return int(value)
        raise _Invalid(INTEGER_RULE, value)
    if kind is dict or isinstance(value, Mapping):
        if depth > MAX_DEPTH:
            raise _Invalid(f"must not nest deeper than {MAX_DEPTH} levels", "<deeper>")
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    raise _Invalid("object keys must be strings", key)
                key = str(key)
            if not key.isascii():
                try:
                    _check_free_str(key)
                except _Invalid as bad:
                    bad.parts.append("<key>")
                    raise
                if max(key) >= "\ud800":
                    flags.keys_safe = False
            try:
                out[key] = _walk(item, depth + 1, flags)
            except _Invalid as bad:
                bad.parts.append(key)
                raise
        return out
    if kind is list or kind is tuple or isinstance(value, list | tuple):
        if depth > MAX_DEPTH:
            raise _Invalid(f"must not nest deeper than {MAX_DEPTH} levels", "<deeper>")
        items = []
        for i, item in enumerate(value):
            try:
                items.append(_walk(item, depth + 1, flags))
            except _Invalid as bad:
                bad.parts.append(i)
                raise
        return items
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise _Invalid("must be a finite number (no NaN or Infinity)", value)
        if value.is_integer() and abs(value) <= MAX_SAFE_INTEGER:
            return int(value)
        if MAX_SAFE_INTEGER < abs(value) < _EXPONENT_FORM:  # RFC 8785 would write integer digits
            raise _Invalid(INTEGER_RULE, value)
        flags.floats = True
        return float(value)
    raise _Invalid("must be JSON (object, array, string, number, true, false or null)", value)


def _check_free_str(value: str) -> None:
    try:
        _check_str(value, "")
    except ValidationError as exc:
        raise _Invalid(exc.rule, exc.value) from None


def _with_fragments(value: Any) -> Any:
    """A copy in which every float is its RFC 8785 number text, for orjson to splice in."""
    if isinstance(value, float):
        return orjson.Fragment(canonical.format_number(value).encode())
    if isinstance(value, dict):
        return {k: _with_fragments(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_fragments(v) for v in value]
    return value


def _diagnose(doc: Mapping[str, Any]) -> ValidationError:
    """Find the first string that cannot be encoded (orjson only says that something failed)."""

    def find(value: Any, path: str) -> ValidationError | None:
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return ValidationError(path, "must be valid Unicode (no lone surrogates)", value)
            return None
        if isinstance(value, Mapping):
            for key, item in value.items():
                found = find(key, f"{path}.<key>") or find(item, f"{path}.{key}" if path else key)
                if found:
                    return found
        if isinstance(value, list | tuple):
            for i, item in enumerate(value):
                found = find(item, f"{path}[{i}]")
                if found:
                    return found
        return None

    return find(doc, "") or ValidationError("entry", "must be encodable as canonical JSON", "<unencodable>")


@dataclass(frozen=True, slots=True)
class Entry:
    """An entry as read back from the log: its position and its stored fields, each an attribute
    (entry schema v1, :class:`graven.core.schema.EntryV1`; an absent optional field reads as None)."""

    index: int
    data: dict[str, Any]

    @property
    def v(self) -> int:
        return int(self.data["v"])

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def action(self) -> str:
        return str(self.data["action"])

    @property
    def outcome(self) -> str:
        return str(self.data["outcome"])

    @property
    def actor(self) -> dict[str, str]:
        return dict(self.data["actor"])

    @property
    def targets(self) -> list[dict[str, str]]:
        return list(self.data["targets"])

    @property
    def changes(self) -> list[dict[str, Any]]:
        return list(self.data["changes"])

    @property
    def occurred_at(self) -> datetime:
        return datetime.fromisoformat(self.data["occurred_at"])

    @property
    def recorded_at(self) -> datetime:
        return datetime.fromisoformat(self.data["recorded_at"])

    @property
    def reason(self) -> str | None:
        return self.data.get("reason")

    @property
    def source(self) -> str | None:
        return self.data.get("source")

    @property
    def tenant(self) -> str | None:
        return self.data.get("tenant")

    @property
    def context(self) -> dict[str, Any] | None:
        value = self.data.get("context")
        return None if value is None else dict(value)

    @property
    def metadata(self) -> dict[str, Any] | None:
        value = self.data.get("metadata")
        return None if value is None else dict(value)

    def get(self, key: str, default: Any = None) -> Any:
        """A stored field, or ``default`` when the entry does not have it."""
        return self.data.get(key, default)

    def to_json(self) -> dict[str, Any]:
        """The stored fields plus ``index``: the form ``graven log --json`` prints."""
        return {"index": self.index, **self.data}


# --- the fast path ---------------------------------------------------------------------------
# Most events are plain dicts of the common shape. ``msgspec.convert`` into the schema's EventV1
# checks their structure in C (names, types, choices, lengths, counts); the few rules left (text
# rules, free-form values, a change's parts) reuse the helpers above. MUST: build the very document,
# in the same key order, that the full checks build (so the very leaf). MUST NOT raise nor call
# anything with side effects: on anything unusual or wrong it returns None, and the full checks
# run from the start and alone name what is wrong. tests/core/test_fast_path.py holds it to both.

_FREE_LIMIT: Final = MAX_STRING // 4  # longer text goes through the UTF-8 byte count
_KNOWN_LIMIT: Final = 4096
_known_actions: set[str] = set()  # action and source texts already checked: they recur
_known_sources: set[str] = set()
_UNSET_VALUE: Final = msgspec.UNSET


def _plain(value: Any) -> bool:
    """A free-form value the walk would return unchanged: ASCII text, a safe int, bool, null."""
    kind = type(value)
    if kind is str:
        return len(value) <= _FREE_LIMIT and value.isascii()
    if kind is int:
        return -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER  # type: ignore[no-any-return]
    return value is None or kind is bool


def prepare_fast(event: dict[str, Any], now: datetime) -> tuple[dict[str, Any], _Flags] | None:
    """The full checks' document for a common, valid event (``id`` None when one must be made)."""
    occurred = event.get("occurred_at")
    if occurred is not None and type(occurred) is not str:
        event = {**event, "occurred_at": None}  # a datetime: parsed below, not by msgspec
    try:
        shaped = msgspec.convert(event, schema.EventV1, strict=True)
    except Exception:  # a ValidationError, or UnicodeEncodeError while it describes a lone surrogate
        return None
    try:
        return _document(shaped, occurred, now)
    except Exception:
        return None


def _document(event: schema.EventV1, occurred: Any, now: datetime) -> tuple[dict[str, Any], _Flags] | None:
    recorded_at = _format_now(now)
    ident = event.id
    if ident is not None and not _good(ident):
        ident = identifier(ident, "id")
    doc: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "id": ident,
        "occurred_at": recorded_at if occurred is None else parse_time(occurred, "occurred_at"),
        "recorded_at": recorded_at,
    }
    actor = event.actor
    if type(actor) is str:
        doc["actor"] = {"type": "user", "id": actor if _good(actor) else identifier(actor, "actor.id")}
    else:
        who = _fast_actor(actor)  # type: ignore[arg-type]
        if who is None:
            return None
        doc["actor"] = who
    action = event.action
    if action not in _known_actions:
        _action(action)
        if len(_known_actions) >= _KNOWN_LIMIT:
            _known_actions.clear()
        _known_actions.add(action)
    doc["action"] = action
    doc["targets"] = _fast_targets(event.targets) if event.targets else []
    doc["outcome"] = event.outcome
    flags = _Flags()
    doc["changes"] = _fast_changes(event.changes, flags) if event.changes else []
    if event.reason is not None:
        doc["reason"] = _string(event.reason, "reason")
    source = event.source
    if source is not None:
        if source not in _known_sources:
            _source(source)
            if len(_known_sources) >= _KNOWN_LIMIT:
                _known_sources.clear()
            _known_sources.add(source)
        doc["source"] = source
    tenant = event.tenant
    if tenant is not None:
        doc["tenant"] = tenant if _good(tenant) else identifier(tenant, "tenant")
    if event.context is not None:
        doc["context"] = _fast_object(event.context, flags)
    if event.metadata is not None:
        doc["metadata"] = _fast_object(event.metadata, flags)
    return doc, flags


def _fast_actor(actor: schema.Actor) -> dict[str, str] | None:
    who: dict[str, str] = {"type": actor.type}
    item = actor.id
    if item is not None:
        who["id"] = item if _good(item) else identifier(item, "actor.id")
    item = actor.name
    if item is not None:
        who["name"] = item if _good(item) else _name(item, "actor.name")
    item = actor.ip
    if item is not None:
        who["ip"] = _ip(item)
    item = actor.user_agent
    if item is not None:
        who["user_agent"] = item if _good(item, MAX_USER_AGENT) else _name(item, "actor.user_agent", MAX_USER_AGENT)
    item = actor.session
    if item is not None:
        who["session"] = item if _good(item) else identifier(item, "actor.session")
    if "id" not in who and actor.type in ("user", "service"):
        return None
    return who


def _fast_targets(targets: list[schema.Target]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for target in targets:
        kind, ident, name = target.type, target.id, target.name
        if type(ident) is int:
            ident = str(ident)
        if not (_good(kind) and _good(ident)):
            raise ValueError("an unusual type or id")  # NFC and its length: the full checks
        if out and any(t["type"] == kind and t["id"] == ident for t in out):
            raise ValueError("a repeated target")
        if name is None:
            out.append({"type": kind, "id": ident})
        else:
            out.append({"type": kind, "id": ident, "name": name if _good(name) else _name(name, "name")})
    return out


def _fast_changes(changes: list[schema.Change], flags: _Flags) -> list[dict[str, Any]]:
    out = []
    for item in changes:
        name = item.field
        if not _good(name, MAX_FIELD):
            name = identifier(name, "field", MAX_FIELD)
        old, new, fingerprint = item.old, item.new, item.fingerprint
        change: dict[str, Any] = {"field": name}
        if item.redacted:
            if old is not _UNSET_VALUE or new is not _UNSET_VALUE:
                raise ValueError("a redacted change with values")
            change["redacted"] = True
            if fingerprint is not None and fingerprint is not _UNSET_VALUE:
                change["fingerprint"] = fingerprint if _good(fingerprint) else identifier(fingerprint, "-")
            out.append(change)
            continue
        if fingerprint is not _UNSET_VALUE:
            raise ValueError("a fingerprint on a change that is not redacted")
        if old is not _UNSET_VALUE:
            change["old"] = old if _plain(old) else _walk(old, 3, flags)
        elif new is _UNSET_VALUE:
            raise ValueError("a change with no value")
        if new is not _UNSET_VALUE:
            change["new"] = new if _plain(new) else _walk(new, 3, flags)
        out.append(change)
    return out


def _fast_object(value: dict[str, Any], flags: _Flags) -> dict[str, Any]:
    """context or metadata: as it is when every key is ASCII and every value plain."""
    for key, item in value.items():
        if not key.isascii() or not _plain(item):
            return _walk(value, 1, flags)  # type: ignore[no-any-return]
    return value
