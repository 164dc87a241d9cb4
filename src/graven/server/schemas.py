"""Pydantic models of what the API accepts and returns: the OpenAPI document is built from them.

Routes build their JSON with orjson from the stored entries (already validated when recorded);
these models describe that JSON, so the document matches real responses. Events and entries are
not modelled here: their schemas come from the one definition of entry schema v1
(:mod:`graven.core.schema`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, Field, WithJsonSchema

from graven.core import schema

Outcome = Literal["success", "denied", "failure"]
Role = Literal["writer", "reader", "auditor", "admin", "metrics"]


def _entry_schema() -> dict[str, Any]:
    """A stored entry as the API returns it: entry schema v1 (graven.core.schema) plus its index."""
    entry = schema.inline(msgspec.json.schema(schema.EntryV1))
    entry["title"] = "Entry"
    entry["description"] = "A stored entry: its fields as recorded (entry schema v1), plus its index in the log."
    entry["properties"] = {"index": {"type": "integer", "minimum": 0}, **entry["properties"]}
    entry["required"] = ["index", *entry["required"]]
    return entry


def event_schemas(ref: str = "#/components/schemas/{name}") -> dict[str, Any]:
    """The OpenAPI components of what a client sends (``Event`` and its parts), from entry schema v1.

    Over HTTP ``actor`` may be left out: it defaults to the API key's service (and ``source`` to api).
    """
    components = schema.openapi_components(ref)
    del components["Entry"]
    event = components["Event"]
    event["required"] = [name for name in event["required"] if name != "actor"]
    event["properties"]["actor"]["description"] = "who; defaults to the API key's service"
    event["description"] = "An event as a client sends it (entry schema v1); the log checks every field before writing."
    return components


# Responses are built with orjson from the stored entries; this type only documents them.
Entry = Annotated[dict[str, Any], WithJsonSchema(_entry_schema())]


class Ingested(BaseModel):
    indices: list[int] = Field(description="the index of each event, in the order sent")


class Page(BaseModel):
    entries: list[Entry]
    next_cursor: int | None = Field(description="pass as `after` (or `before` with newest_first) for the next page")


class Proof(BaseModel):
    """An offline proof bundle: check it with `graven verify --bundle FILE --key KEY`."""

    entry: Entry
    tree_size: int
    inclusion_proof: list[str] = Field(description="base64 hashes, RFC 9162 order")
    checkpoint: str = Field(description="the signed checkpoint note of tree_size")


class Consistency(BaseModel):
    old_size: int
    new_size: int
    proof: list[str] = Field(description="base64 hashes of the RFC 9162 consistency proof")


class Problem(BaseModel):
    index: int
    kind: str
    message: str


class Report(BaseModel):
    ok: bool
    first_bad_index: int | None
    kind: str | None
    message: str
    size: int
    entries: int
    checkpoints: int
    witnessed: int
    trusted_keys: list[str]
    problems: list[Problem]


class Job(BaseModel):
    id: str
    status: Literal["running", "done", "failed"]
    started_at: str
    started_by: str
    finished_at: str | None
    total: int = Field(description="entries to check")
    done: int = Field(description="entries checked so far")
    result: Report | None
    error: str | None
    deep: bool = Field(False, description="whether the storage structures are checked too (verify --deep)")


class KeyIn(BaseModel):
    name: str
    role: Role


class Key(BaseModel):
    id: str
    name: str
    role: str
    created_at: str
    created_by: str | None
    revoked_at: str | None


class KeyCreated(Key):
    key: str = Field(description="the key itself: shown this once, never stored")


class UserIn(BaseModel):
    name: str
    role: Role
    password: str


class PasswordIn(BaseModel):
    password: str


class User(BaseModel):
    name: str
    role: str
    created_at: str
    created_by: str | None
    disabled_at: str | None


class LoginIn(BaseModel):
    username: str
    password: str


class Me(BaseModel):
    kind: Literal["key", "user"]
    name: str
    role: str
    csrf_token: str | None = Field(None, description="send as X-CSRF-Token with state-changing requests")
    expires_at: str | None = None


class Ok(BaseModel):
    ok: bool


class Error(BaseModel):
    """Every error: a code, a sentence, and for bad input the field, the rule or limit, what was given."""

    error: str
    message: str
    field: str | None = None
    rule: str | None = None
    limit: int | None = None
    given: str | None = None
