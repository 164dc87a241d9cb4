"""The event store of aggregate streams: append with optimistic concurrency, read a stream back.

Each event becomes one entry of the log. Its stream is the entry's first target and its position is
declared in ``metadata.sourcing`` (see :mod:`graven.core.streams`), so it is covered by the leaf hash.

MUST: an append either stores every event it was given, at versions ``expected + 1 ...``, or
nothing (a concurrent writer that got there first makes it raise
:class:`graven.errors.ConflictError`); the check and the write happen in one transaction under the
log's write lock, so this holds across threads and processes, on SQLite and PostgreSQL.
The stored leaf never changes: upcasters (:mod:`graven.sourcing.upcasting`) work on read only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graven.core.model import MAX_SAFE_INTEGER, Entry, identifier
from graven.core.streams import MARKER, stream_of
from graven.errors import IntegrityError, ValidationError
from graven.sourcing.upcasting import Upcasters
from graven.store import StreamQuery

if TYPE_CHECKING:
    from graven.trail import Trail

Stream = tuple[str, str]
MAX_EVENTS = 10_000  # events of one append (the sequencer's batch limit)
_EVENT_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]{0,199}")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append to a stream.

    ``type`` names the event (``EmailChanged``; letters, digits, ``_ . : -``, up to 200);
    ``data`` is its JSON fields (kept in ``metadata.sourcing.data``: at most 64 KiB with the rest of
    the metadata); ``shape`` is the version of this type's data layout (for upcasting);
    ``action`` the entry's action (default ``<stream type>.<type in snake case>``);
    ``changes`` the field changes it makes (``[{field, old, new}]``, redacted like any entry's),
    which is what :meth:`graven.Trail.state` replays; ``id`` the event id (default a fresh UUIDv7;
    a repeat with the same content is not stored twice); ``entry`` any other entry field
    (``actor``, ``reason``, ``outcome``, ``source``, ``context``, ``tenant``, ``occurred_at``,
    ``metadata``, extra ``targets``).
    """

    type: str
    data: Mapping[str, Any] = field(default_factory=dict)
    shape: int = 1
    action: str | None = None
    changes: Sequence[Mapping[str, Any]] | None = None
    id: str | None = None
    entry: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Recorded:
    """Where an appended event went: its stream, its version there and its entry index."""

    stream: Stream
    version: int
    index: int


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """An event read back: stream, version, entry index, type, shape and data (upcast to the
    newest shape registered), and the entry itself as stored."""

    stream: Stream
    version: int
    index: int
    type: str
    shape: int
    data: dict[str, Any]
    entry: Entry


def parse_stream(value: Stream | list[str] | str, name: str = "stream") -> Stream:
    """A stream as ``(type, id)`` from ``(type, id)`` or ``"type:id"``, checked as identifiers."""
    if isinstance(value, str):
        kind, sep, ident = value.partition(":")
        if not sep:
            raise ValidationError(name, "must be type:id, such as account:a-1", value)
    elif isinstance(value, tuple | list) and len(value) == 2:
        kind, ident = value[0], value[1]
    else:
        raise ValidationError(name, "must be (type, id) or type:id", value)
    return identifier(kind, f"{name}.type"), identifier(str(ident) if isinstance(ident, int) else ident, f"{name}.id")


def _version(value: Any, name: str, low: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= MAX_SAFE_INTEGER:
        raise ValidationError(name, f"must be an integer from {low} to {MAX_SAFE_INTEGER}", value)
    return value


def default_action(stream_type: str, event_type: str) -> str:
    """``account`` + ``EmailChanged`` -> ``account.email_changed`` (the entry's action by default)."""
    tail = _CAMEL.sub("_", event_type.rsplit(".", 1)[-1].rsplit(":", 1)[-1]).lower().replace("-", "_")
    kind = re.sub(r"[^A-Za-z0-9_\-]+", "_", stream_type) or "stream"
    return f"{kind}.{re.sub(r'[^A-Za-z0-9_]+', '_', tail) or 'event'}"


class EventStore:
    """Aggregate streams on one :class:`graven.Trail`. Safe to share between threads."""

    def __init__(self, trail: Trail, upcasters: Upcasters | None = None) -> None:
        self.trail = trail
        self.upcasters = upcasters or Upcasters()

    # --- writing ----------------------------------------------------------------------------

    def append(self, stream: Stream | str, events: Iterable[NewEvent], *, expected_version: int) -> list[Recorded]:
        """Append ``events`` to ``stream`` at versions ``expected_version + 1 ...``, all or nothing.

        Raises :class:`graven.errors.ConflictError` (nothing appended) when the stream is not at
        ``expected_version`` (0: the stream must not exist yet).
        """
        return self.append_batch([(stream, expected_version, events)])

    def append_batch(self, batch: Iterable[tuple[Stream | str, int, Iterable[NewEvent]]]) -> list[Recorded]:
        """Append to several streams in one transaction: every event of every stream, or none.

        ``batch`` holds ``(stream, expected_version, events)``; a stream may appear once.
        """
        docs: list[dict[str, Any]] = []
        where: list[Recorded] = []
        seen: set[Stream] = set()
        for n, (raw_stream, expected, events) in enumerate(batch):
            stream = parse_stream(raw_stream, f"batch[{n}].stream")
            if stream in seen:
                raise ValidationError(f"batch[{n}].stream", "must appear once per append", f"{stream[0]}:{stream[1]}")
            seen.add(stream)
            version = _version(expected, f"batch[{n}].expected_version")
            for event in events:
                if not isinstance(event, NewEvent):
                    raise ValidationError(f"batch[{n}].events", "must hold NewEvent objects", event)
                version += 1
                docs.append(self._doc(stream, version, event, f"events[{len(docs)}]"))
                where.append(Recorded(stream, version, -1))
        if len(docs) > MAX_EVENTS:
            raise ValidationError("events", f"must be at most {MAX_EVENTS} per append", f"<{len(docs)} events>")
        indices = self.trail.record_many(docs)
        return [Recorded(r.stream, r.version, i) for r, i in zip(where, indices, strict=True)]

    def _doc(self, stream: Stream, version: int, event: NewEvent, name: str) -> dict[str, Any]:
        if not isinstance(event.type, str) or not _EVENT_TYPE.fullmatch(event.type):
            raise ValidationError(
                f"{name}.type", "must be an event type name (letters, digits, _ . : -; up to 200)", event.type
            )
        shape = _version(event.shape, f"{name}.shape", 1)
        if not isinstance(event.data, Mapping):
            raise ValidationError(f"{name}.data", "must be a JSON object", event.data)
        doc: dict[str, Any] = dict(event.entry)
        extra = doc.get("metadata") or {}
        if not isinstance(extra, Mapping) or MARKER in extra:
            raise ValidationError(f"{name}.entry.metadata", f"must be an object without the key {MARKER!r}", extra)
        marker = {
            "stream": {"type": stream[0], "id": stream[1]},
            "version": version,
            "event": event.type,
            "shape": shape,
            "data": dict(event.data),
        }
        doc["metadata"] = {**extra, MARKER: marker}
        doc["action"] = event.action or default_action(stream[0], event.type)
        others = [t for t in doc.get("targets") or [] if not _same_target(t, stream)]
        doc["targets"] = [{"type": stream[0], "id": stream[1]}, *others]
        if event.changes is not None:
            doc["changes"] = [dict(c) for c in event.changes]
        if event.id is not None:
            doc["id"] = event.id
        return doc

    # --- reading ----------------------------------------------------------------------------

    def version(self, stream: Stream | str) -> int:
        """The stream's current version (0 when it has no events)."""
        rows = self.trail.store.stream_entries(parse_stream(stream), StreamQuery(limit=1, newest_first=True))
        return rows[0][0] if rows else 0

    def read(
        self,
        stream: Stream | str,
        *,
        after: int = 0,
        upto: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[StreamEvent]:
        """The stream's events with versions above ``after`` up to ``upto``, oldest first (or newest
        first), at most ``limit``; each is checked against its own entry and upcast."""
        key = parse_stream(stream)
        _version(after, "after")
        if upto is not None:
            _version(upto, "upto")
        if limit is not None:
            _version(limit, "limit", 1)
        rows = self.trail.store.stream_entries(key, StreamQuery(after, upto, limit, newest_first))
        return [self._event(index, body, version, key) for version, index, body in rows]

    def read_all(self, *, after: int = -1, limit: int = 1000) -> list[StreamEvent]:
        """Events of every stream with entry index above ``after``, in log order (at most ``limit``)."""
        _version(after + 1, "after")
        _version(limit, "limit", 1)
        return [self._event(index, body) for index, body in self.trail.store.stream_entries_after(after, limit)]

    def event_of(self, entry: Entry) -> StreamEvent | None:
        """The stream event an entry holds (upcast), or None for an entry of no stream."""
        pos = stream_of(entry.data)
        if pos is None:
            return None
        marker = entry.data["metadata"][MARKER]
        kind, shape, data = marker.get("event"), marker.get("shape", 1), marker.get("data", {})
        if not isinstance(kind, str) or not isinstance(shape, int) or not isinstance(data, dict):
            raise IntegrityError(f"entry {entry.index} of stream {pos.type}:{pos.id} has a malformed event")
        shape, data = self.upcasters.upcast(kind, shape, data, where=f"entry {entry.index}")
        return StreamEvent(pos.stream, pos.version, entry.index, kind, shape, data, entry)

    def _event(self, index: int, body: bytes, version: int | None = None, stream: Stream | None = None) -> StreamEvent:
        entry = self.trail._entry(index, body)
        event = self.event_of(entry)
        # The index is derived data: the entry itself has the last word.
        if event is None or (version is not None and (event.version, event.stream) != (version, stream)):
            raise IntegrityError(
                f"the stream index disagrees with entry {index}: the log's derived data was changed; "
                "run `graven verify`"
            )
        return event


def _same_target(target: Any, stream: Stream) -> bool:
    return isinstance(target, Mapping) and (target.get("type"), target.get("id")) == stream


__all__ = ["EventStore", "NewEvent", "Recorded", "StreamEvent", "default_action", "parse_stream"]
