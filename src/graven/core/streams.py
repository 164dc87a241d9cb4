"""Aggregate streams inside entries: which entries belong to a stream, and at which version.

An entry is the ``version``-th event of the stream (aggregate) ``type:id`` when its ``metadata``
holds a ``sourcing`` object of this shape (and only then; anything else there is plain metadata)::

    "metadata": {"sourcing": {"stream": {"type": "account", "id": "a-1"}, "version": 3,
                              "event": "EmailChanged", "shape": 1, "data": {...}}}

``event`` names the event's type, ``shape`` the version of that type's data layout (upcasters
raise old shapes on read) and ``data`` the event's own fields. The marker is part of the leaf, so
a stream's history is as tamper-evident as the rest of the entry.

The stores keep a derived index ``(type, id, version) -> index`` written in the same transaction
as the entries; :func:`stream_of` is the one rule both the writer and the verifier derive it by.
Writers MUST keep every stream gapless from 1: an entry is appended only when its version is one
above the stream's current one (see :class:`graven.errors.ConflictError`). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from graven.core.model import MAX_SAFE_INTEGER

MARKER = "sourcing"
#: The text every canonical leaf of a stream entry contains (RFC 8785 writes keys without spaces):
#: stores use it to pick candidate entries cheaply before :func:`stream_of` decides.
MARKER_TEXT = '"sourcing":'


@dataclass(frozen=True, slots=True, order=True)
class StreamPosition:
    """Where an entry sits in its stream: the stream's type and id, and its version (from 1)."""

    type: str
    id: str
    version: int

    @property
    def stream(self) -> tuple[str, str]:
        return (self.type, self.id)


def stream_of(doc: Mapping[str, Any]) -> StreamPosition | None:
    """The stream position an entry's document declares, or None when it declares none."""
    metadata = doc.get("metadata")
    if type(metadata) is not dict or MARKER not in metadata:
        return None
    marker = metadata[MARKER]
    if type(marker) is not dict:
        return None
    stream, version = marker.get("stream"), marker.get("version")
    if type(stream) is not dict or type(version) is not int or not 1 <= version <= MAX_SAFE_INTEGER:
        return None
    kind, ident = stream.get("type"), stream.get("id")
    if type(kind) is not str or type(ident) is not str or not kind or not ident:
        return None
    return StreamPosition(kind, ident, version)


def stream_text(stream: tuple[str, str]) -> str:
    """``type:id``, as errors and the CLI show a stream."""
    return f"{stream[0]}:{stream[1]}"


def first_gap(positions: Iterable[tuple[int, StreamPosition]]) -> int | None:
    """The first index (of ``(index, position)`` pairs in index order) whose version is not one above
    the previous version of its stream (the first of a stream must be 1), or None."""
    last: dict[tuple[str, str], int] = {}
    for index, pos in positions:
        if pos.version != last.get(pos.stream, 0) + 1:
            return index
        last[pos.stream] = pos.version
    return None


__all__ = ["MARKER", "MARKER_TEXT", "StreamPosition", "first_gap", "stream_of", "stream_text"]
