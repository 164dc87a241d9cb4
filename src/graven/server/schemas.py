"""Pydantic models of what the API accepts and returns: the OpenAPI document is built from them.

Routes build their JSON with orjson from the stored entries (already validated when recorded);
these models describe that JSON, so the document matches real responses.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Outcome = Literal["success", "denied", "failure"]
Role = Literal["writer", "reader", "auditor", "admin", "metrics"]


class Actor(BaseModel):
    type: Literal["user", "service", "system", "anonymous"]
    id: str | None = None
    name: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    session: str | None = None


class Target(BaseModel):
    type: str
    id: str
    name: str | None = None


class Change(BaseModel):
    field: str
    old: Any = None
    new: Any = None
    redacted: bool | None = None
    fingerprint: str | None = None


class EventIn(BaseModel):
    """An event as a client sends it (schema v1); the log checks every field before writing."""

    action: str = Field(description="dotted noun.verb, e.g. user.password.change")
    actor: Actor | str | None = Field(None, description="who; defaults to the API key's service")
    id: str | None = Field(None, description="unique id and idempotency key (a UUIDv7 when absent)")
    occurred_at: str | None = Field(None, description="ISO 8601 with a timezone (default: now)")
    targets: list[Target] | None = None
    outcome: Outcome | None = None
    reason: str | None = None
    changes: list[Change] | None = None
    source: str | None = None
    context: dict[str, Any] | None = None
    tenant: str | None = None
    metadata: dict[str, Any] | None = None
    v: Literal[1] | None = None


class Entry(BaseModel):
    """A stored entry: its fields as recorded, plus its index in the log."""

    index: int
    v: int
    id: str
    occurred_at: str
    recorded_at: str
    actor: Actor
    action: str
    targets: list[Target]
    outcome: Outcome
    changes: list[Change]
    reason: str | None = None
    source: str | None = None
    context: dict[str, Any] | None = None
    tenant: str | None = None
    metadata: dict[str, Any] | None = None


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
