"""How the ``eventsourcing`` library's records become entries of a Graven log, and back. Pure.

A stored event (originator id, originator version, topic, state bytes) is one entry of the
aggregate stream ``es-aggregate:<originator id>``; a snapshot is one entry of
``es-snapshot:<originator id>``; a tracking record (an upstream application's notification id,
as processed by a downstream one) is one entry of ``es-tracking:<downstream>/<upstream>``. The
record rides in the entry's ``metadata.sourcing`` marker (see :mod:`graven.core.streams`)::

    {"stream": {"type": "es-aggregate", "id": "<uuid>"}, "version": 7, "event": "<topic>",
     "shape": 1, "data": {"originator_version": 6, "uuid": true, "state": "<UTF-8 text>"}}

The stream version counts the stream's entries (gapless from 1, as the log requires); the
library's own version is ``data.originator_version``. State bytes that are UTF-8 are kept as text
(readable in the log, untouched by redaction, which looks at key names only); any other bytes
(compressed or enciphered state) as ``state_base64``. Either way they read back byte for byte.
Notification ids are log indices plus one (the library counts from 1, the log from 0).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import Notification, StoredEvent, Tracking

EVENTS = "es-aggregate"
SNAPSHOTS = "es-snapshot"
TRACKING = "es-tracking"
ACTIONS = {EVENTS: "eventsourcing.event", SNAPSHOTS: "eventsourcing.snapshot", TRACKING: "eventsourcing.tracking"}
TRACKING_TOPIC = "eventsourcing.persistence:Tracking"


@dataclass(frozen=True, slots=True)
class Read:
    """One stored record as read back: its stream version, log index and library record."""

    version: int
    index: int
    event: StoredEvent


def event_entry(kind: str, event: StoredEvent, version: int) -> dict[str, Any]:
    """The Graven event for ``event`` as the ``version``-th entry of its stream of ``kind``."""
    oid = event.originator_id
    data: dict[str, Any] = {"originator_version": event.originator_version, "uuid": isinstance(oid, UUID)}
    state = event.state
    try:
        text = state.decode("utf-8")
    except UnicodeDecodeError:
        data["state_base64"] = base64.b64encode(state).decode("ascii")
    else:
        data["state"] = text
    return _entry(kind, str(oid), version, event.topic, data)


def tracking_entry(stream_id: str, tracking: Tracking, version: int) -> dict[str, Any]:
    """The Graven event recording that ``tracking.notification_id`` of an upstream application was processed."""
    data = {"application_name": tracking.application_name, "notification_id": tracking.notification_id}
    return _entry(TRACKING, stream_id, version, TRACKING_TOPIC, data)


def _entry(kind: str, stream_id: str, version: int, topic: str, data: dict[str, Any]) -> dict[str, Any]:
    marker = {"stream": {"type": kind, "id": stream_id}, "version": version, "event": topic, "shape": 1,
              "data": data}  # fmt: skip
    return {
        "action": ACTIONS[kind],
        "targets": [{"type": kind, "id": stream_id}],
        "metadata": {"sourcing": marker},
    }


def marker(doc: dict[str, Any]) -> dict[str, Any]:
    """The ``metadata.sourcing`` object of a stored entry document."""
    found: dict[str, Any] = doc["metadata"]["sourcing"]
    return found


def stored_event(doc: dict[str, Any]) -> StoredEvent:
    """The library's record back from an entry document written by :func:`event_entry`."""
    m = marker(doc)
    data = m["data"]
    ident: str = m["stream"]["id"]
    state = data["state"].encode("utf-8") if "state" in data else base64.b64decode(data["state_base64"])
    return StoredEvent(
        originator_id=UUID(ident) if data["uuid"] else ident,
        originator_version=data["originator_version"],
        topic=m["event"],
        state=state,
    )


def reads(ident: str, rows: Sequence[tuple[int, int, bytes]]) -> list[Read]:
    """The records of one stream's ``(version, index, leaf bytes)`` rows (as :func:`stored_event`
    reads one, with the originator id made once for the whole stream)."""
    out = []
    oid: UUID | str | None = None
    for version, index, body in rows:
        m = orjson.loads(body)["metadata"]["sourcing"]
        data = m["data"]
        if oid is None:
            oid = UUID(ident) if data["uuid"] else ident
        state = data["state"].encode("utf-8") if "state" in data else base64.b64decode(data["state_base64"])
        out.append(Read(version, index, StoredEvent(oid, data["originator_version"], m["event"], state)))
    return out


def notification(index: int, doc: dict[str, Any]) -> Notification:
    """The library's notification of the entry at ``index`` (its id is the index plus one)."""
    event = stored_event(doc)
    return Notification(
        id=index + 1,
        originator_id=event.originator_id,
        originator_version=event.originator_version,
        topic=event.topic,
        state=event.state,
    )


def originator_version(doc: dict[str, Any]) -> int:
    """The library's version of the record an entry document holds."""
    found: int = marker(doc)["data"]["originator_version"]
    return found


def tracked_id(doc: dict[str, Any]) -> int:
    """The upstream notification id a tracking entry records."""
    found: int = marker(doc)["data"]["notification_id"]
    return found
