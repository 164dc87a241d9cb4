"""Entry schema version 1, declared once: limits, text rules and the shape of every field.

The :mod:`msgspec` Structs below are the one definition of an entry. From them come the structural
checks of :func:`graven.core.model.prepare` (``msgspec.convert`` into :class:`EventV1`: field
names, types, choices, lengths and counts, in C), the published JSON Schema of a stored entry
(:func:`entry_json_schema`, shipped as ``graven/schemas/entry-v1.json`` and served at
``/api/v1/schema/entry-v1.json``), the service's request and response schemas in its OpenAPI
document, and the attributes of :class:`graven.core.model.Entry`.

Rules a JSON Schema cannot carry (identifiers stored in Unicode NFC, text measured in UTF-8 bytes,
integers within +-(2**53 - 1) and nesting depth inside free-form values, a change that is either
redacted or has values) are applied by :mod:`graven.core.model` from the constants here; the JSON
Schema describes them in each field's description and, where a pattern can, in a pattern. The
published schema MUST accept every entry the log stores (it may be looser, never stricter).

Pure: nothing here reads a file or a clock.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

import msgspec

SCHEMA_VERSION: Final = 1
SCHEMA_ID: Final = "urn:graven:schema:entry:v1"

MAX_ACTION: Final = 200
MAX_NAME: Final = 200  # ids, types, names, sources, tenants
MAX_FIELD: Final = 1000  # a changed field's path
MAX_USER_AGENT: Final = 1024
MAX_SOURCE: Final = 64
MAX_STRING: Final = 64 * 1024  # any other string, in UTF-8 bytes
MAX_METADATA: Final = 64 * 1024  # metadata, encoded
MAX_ENTRY: Final = 1024 * 1024  # the whole entry, encoded
MAX_DEPTH: Final = 32  # nesting of objects and arrays inside an entry
MAX_TARGETS: Final = 100
MAX_CHANGES: Final = 1000
MAX_SAFE_INTEGER: Final = 2**53 - 1

ACTOR_TYPES: Final = ("user", "service", "system", "anonymous")
OUTCOMES: Final = ("success", "denied", "failure")

# Written as regular-expression text that Python's re and ECMA-262 (JSON Schema) read alike.
_REFUSED_CLASS: Final = r"\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
ACTION_PATTERN: Final = r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+$"
SOURCE_PATTERN: Final = r"^[a-z][a-z0-9_.-]*$"
IDENTIFIER_PATTERN: Final = f"^[^{_REFUSED_CLASS}]+$"
NAME_PATTERN: Final = r"^[^\x00]+$"
STORED_TIME_PATTERN: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$"

# Characters no identifier may hold: controls, line separators, zero-width and bidi controls.
REFUSED_IN_IDENTIFIERS: Final = re.compile(f"[{_REFUSED_CLASS}]")
ACTION_RE: Final = re.compile(ACTION_PATTERN[1:-1])
SOURCE_RE: Final = re.compile(SOURCE_PATTERN[1:-1])

IDENTIFIER_RULE: Final = (
    "must not hold control characters, line separators, zero-width characters or bidirectional controls"
)
INTEGER_RULE: Final = (
    "integers must be within ±(2^53-1) = ±9007199254740991 (RFC 8785 / I-JSON); send larger numbers as strings"
)

# --- field types ---------------------------------------------------------------------------------
# Lengths are counted in characters (identifiers once in NFC); patterns live in the JSON Schema
# only, the model checking the same rules faster in Python (printable ASCII first).


Identifier = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=MAX_NAME, extra_json_schema={"pattern": IDENTIFIER_PATTERN},
                 description="an identifier: no control, zero-width or bidi characters; stored in Unicode NFC"),
]  # fmt: skip
Name = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=MAX_NAME, extra_json_schema={"pattern": NAME_PATTERN},
                 description="display text, kept as given (U+0000 refused)"),
]  # fmt: skip
FieldPath = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=MAX_FIELD, extra_json_schema={"pattern": IDENTIFIER_PATTERN},
                 description="the changed field (a dotted path for nested values), an identifier"),
]  # fmt: skip
Action = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=MAX_ACTION, extra_json_schema={"pattern": ACTION_PATTERN},
                 description="dotted noun.verb, e.g. user.password.change"),
]  # fmt: skip
Source = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=MAX_SOURCE, extra_json_schema={"pattern": SOURCE_PATTERN},
                 description="how it came: web, api, cli, job, db (a trigger), ..."),
]  # fmt: skip
UserAgent = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=MAX_USER_AGENT, extra_json_schema={"pattern": NAME_PATTERN},
                 description="the client's User-Agent, kept as given (U+0000 refused)"),
]  # fmt: skip
Text = Annotated[str, msgspec.Meta(description=f"free text of at most {MAX_STRING} bytes of UTF-8")]
FreeJson = Annotated[
    dict[str, Any],
    msgspec.Meta(description=f"a JSON object: at most {MAX_DEPTH} levels deep, integers within ±(2^53-1)"),
]
Moment = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"}, description="ISO 8601 with an offset")]
StoredMoment = Annotated[
    str, msgspec.Meta(pattern=STORED_TIME_PATTERN, description="UTC, microseconds: 2026-11-26T09:30:00.250000Z")
]


class _Shape(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Every part of an entry refuses fields it does not declare."""


class Actor(_Shape):
    """Who acted, and from where (``id`` required for a user or a service)."""

    type: Literal["user", "service", "system", "anonymous"] = "user"
    id: Identifier | None = None
    name: Name | None = None
    ip: Annotated[str, msgspec.Meta(description="an IPv4 or IPv6 address, stored in canonical form")] | None = None
    user_agent: UserAgent | None = None
    session: Identifier | None = None


class Target(_Shape):
    """What the action was done to; one (type, id) at most once per entry."""

    type: Identifier
    id: Identifier | Annotated[int, msgspec.Meta(description="an integer id, stored as its text")]
    name: Name | None = None


class Change(_Shape):
    """One field's old and new value; a secret field is ``redacted`` and keeps neither."""

    field: FieldPath
    old: Any = msgspec.UNSET
    new: Any = msgspec.UNSET
    redacted: bool = False
    fingerprint: Identifier | msgspec.UnsetType | None = msgspec.UNSET


_REDACTED_OR_VALUES: Final = {
    "anyOf": [
        {"required": ["old"], "properties": {"redacted": {"const": False}}, "not": {"required": ["fingerprint"]}},
        {"required": ["new"], "properties": {"redacted": {"const": False}}, "not": {"required": ["fingerprint"]}},
        {"required": ["redacted"], "properties": {"redacted": {"const": True}},
         "not": {"anyOf": [{"required": ["old"]}, {"required": ["new"]}]}},
    ]
}  # fmt: skip
OneChange = Annotated[Change, msgspec.Meta(extra_json_schema=_REDACTED_OR_VALUES)]
Targets = Annotated[list[Target], msgspec.Meta(max_length=MAX_TARGETS, description="zero or more, each at most once")]
Changes = Annotated[list[OneChange], msgspec.Meta(max_length=MAX_CHANGES)]
Outcome = Literal["success", "denied", "failure"]


class EventV1(_Shape):
    """An event as a caller sends it (library, HTTP or capture); the log adds recorded_at and index."""

    action: Action
    actor: Actor | Identifier  # a bare id is a user
    v: Literal[1] = 1
    id: Identifier | None = None
    occurred_at: Moment | None = None
    targets: Targets = msgspec.field(default_factory=list)
    outcome: Outcome = "success"
    reason: Text | None = None
    changes: Changes = msgspec.field(default_factory=list)
    source: Source | None = None
    context: FreeJson | None = None
    tenant: Identifier | None = None
    metadata: FreeJson | None = None


class EntryV1(_Shape):
    """An entry as stored: the leaf is the RFC 8785 encoding of exactly these fields."""

    v: Literal[1]
    id: Identifier
    occurred_at: StoredMoment
    recorded_at: StoredMoment
    actor: Actor
    action: Action
    targets: Targets
    outcome: Outcome
    changes: Changes
    reason: Text | msgspec.UnsetType = msgspec.UNSET
    source: Source | msgspec.UnsetType = msgspec.UNSET
    context: FreeJson | msgspec.UnsetType = msgspec.UNSET
    tenant: Identifier | msgspec.UnsetType = msgspec.UNSET
    metadata: FreeJson | msgspec.UnsetType = msgspec.UNSET


INPUT_FIELDS: Final = frozenset(EventV1.__struct_fields__)
FIELDS: Final = frozenset(EntryV1.__struct_fields__)
ACTOR_FIELDS: Final = Actor.__struct_fields__
TARGET_FIELDS: Final = Target.__struct_fields__
CHANGE_FIELDS: Final = Change.__struct_fields__


# --- JSON Schema -------------------------------------------------------------------------------


def entry_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a stored entry of version 1, self-contained."""
    schema = inline(msgspec.json.schema(EntryV1))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "Graven entry, schema version 1",
        "description": "Every stored field of an entry; the leaf hash covers exactly these (RFC 8785, JCS).",
    }


def openapi_components(ref: str = "#/components/schemas/{name}") -> dict[str, Any]:
    """Schemas for an OpenAPI document: ``Event`` (what clients send), ``Entry`` (as stored) and
    their parts, referring to each other through ``ref``."""
    (_, _), components = msgspec.json.schema_components((EventV1, EntryV1), ref_template=ref)
    components["Event"] = components.pop("EventV1")
    components["Entry"] = components.pop("EntryV1")
    return {k: _retarget(v, ref) for k, v in components.items()}


def inline(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with every ``$ref`` to its ``$defs`` replaced by the definition (no cycles here)."""
    defs = schema.get("$defs", {})

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if "$ref" in value:
                target = walk(defs[value["$ref"].rsplit("/", 1)[1]])
                return {**target, **{k: walk(v) for k, v in value.items() if k != "$ref"}}
            return {k: walk(v) for k, v in value.items() if k != "$defs"}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(schema)  # type: ignore[no-any-return]


def _retarget(value: Any, ref: str) -> Any:
    """Renamed components (EventV1 -> Event, EntryV1 -> Entry) referred to by their new names."""
    if isinstance(value, dict):
        out = {k: _retarget(v, ref) for k, v in value.items()}
        for old, new in (("EventV1", "Event"), ("EntryV1", "Entry")):
            if out.get("$ref") == ref.format(name=old):
                out["$ref"] = ref.format(name=new)
        if out.get("title") in ("EventV1", "EntryV1"):
            out["title"] = out["title"][:-2]
        return out
    if isinstance(value, list):
        return [_retarget(v, ref) for v in value]
    return value
