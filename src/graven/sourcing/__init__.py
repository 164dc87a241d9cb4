"""Event sourcing on the trail: aggregate streams with optimistic concurrency, upcasting, and more.

The log is the source of truth: an aggregate's state is what replaying its stream's entries gives.
"""

from graven.errors import ConflictError
from graven.sourcing.events import EventStore, NewEvent, Recorded, StreamEvent, parse_stream
from graven.sourcing.upcasting import UpcastError, Upcasters

__all__ = [
    "ConflictError",
    "EventStore",
    "NewEvent",
    "Recorded",
    "StreamEvent",
    "UpcastError",
    "Upcasters",
    "parse_stream",
]
