"""The pieces every transactional outbox shares (SQLAlchemy, Django): events fixed at write time, recorded after commit.

An event is validated, completed from the capture context, redacted and given its id when the
application writes the change (:func:`staged_event`), stored as JSON in the application's own
transaction, and recorded after the commit with that id, so recording it again after a crash
appends nothing twice. MUST: a stored row that no longer validates never blocks the others: it
becomes a ``capture.invalid`` entry holding what was stored (:func:`record_rows`).
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from graven import context
from graven.core.model import load_json
from graven.errors import ValidationError

if TYPE_CHECKING:
    from graven.trail import Trail

__all__ = ["clean_context", "invalid", "jsonb_problem", "record", "record_rows", "staged_event"]

_INVALID = uuid.UUID("1b0c6f57-52c4-4a0e-9d43-8c0f3e2f4d11")  # namespace of stand-in ids for broken rows


def staged_event(
    trail: Trail, event: dict[str, Any], *, default_actor: Mapping[str, Any] | None, source: str | None
) -> dict[str, Any]:
    """``event`` as it will be recorded: validated, completed from the context now, redacted, with its id."""
    current = context.current()
    if source is not None and current.get("source") is None and "source" not in event:
        event["source"] = source
    if current.get("actor") is None and default_actor is not None and "actor" not in event:
        event["actor"] = dict(default_actor)
    doc = trail.prepare(event).doc
    doc.pop("recorded_at", None)  # set by the log when the event is recorded
    return doc


def clean_context(fn: Callable[[list[Any]], Any], docs: list[Any]) -> Any:
    """Run with an empty capture context: each event already carries the context it was staged in."""
    return contextvars.Context().run(fn, docs)


def record(trail: Trail, docs: list[Any]) -> list[int]:
    """Record staged events (idempotent: their ids are fixed)."""
    indices: list[int] = clean_context(trail.record_many, docs)
    return indices


def record_rows(trail: Trail, rows: list[tuple[str, str]]) -> None:
    """Record stored outbox rows ``(event id, JSON text)``; a row that no longer passes validation
    becomes a ``capture.invalid`` entry."""
    docs: list[Any] = []
    for event_id, text in rows:
        try:
            docs.append(load_json(text))  # exact integers: a huge one is refused, not rounded
        except orjson.JSONDecodeError:
            docs.append(invalid(event_id, text, "it is not JSON"))
    try:
        record(trail, docs)
    except ValidationError:
        for (event_id, text), doc in zip(rows, docs, strict=True):
            try:
                record(trail, [doc])
            except ValidationError as exc:
                record(trail, [invalid(event_id, text, str(exc))])


def invalid(event_id: str, text: str, why: str) -> dict[str, Any]:
    """A ``capture.invalid`` event standing for an outbox row that cannot be recorded as written."""
    return {
        "id": str(uuid.uuid5(_INVALID, f"{event_id}\x00{text}")),
        "action": "capture.invalid",
        "actor": {"type": "system", "id": "graven"},
        "outcome": "failure",
        "reason": f"an outbox row could not be recorded as written: {why}"[:4000],
        "source": "db",
        "metadata": {"captured": text[:10_000]},  # at most 60 KB once escaped: within the metadata limit
    }


def jsonb_problem(value: Any, where: str = "event", encoded: bytes | None = None) -> ValidationError | None:
    """Why ``value`` (a JSON-ready event; ``encoded``: its orjson encoding, when already made) cannot
    pass through PostgreSQL ``jsonb`` unchanged, or None.

    jsonb refuses U+0000 in a string or key; its numbers keep the value of every double and integer
    that validation lets through (a float comes back as the same double), so only text is checked.
    orjson writes U+0000 as the escape ``\\u0000``: without that text, nothing needs walking.
    """
    if b"\\u0000" not in (orjson.dumps(value) if encoded is None else encoded):
        return None
    return _jsonb_walk(value, where)


def _jsonb_walk(value: Any, where: str) -> ValidationError | None:
    if isinstance(value, str):
        if "\x00" in value:
            return ValidationError(
                where, "holds U+0000, which PostgreSQL jsonb cannot store: record this event with trail.record()",
                "<text with U+0000>",
            )  # fmt: skip
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            at = f"{where}.{key}"
            if "\x00" in key:
                return _jsonb_walk(key, at)
            problem = _jsonb_walk(item, at)
            if problem is not None:
                return problem
    elif isinstance(value, list):
        for i, item in enumerate(value):
            problem = _jsonb_walk(item, f"{where}[{i}]")
            if problem is not None:
                return problem
    return None
