"""Event sourcing on the trail: aggregate streams with optimistic concurrency, snapshots, upcasting.

The log is the source of truth: an aggregate's state is what replaying its stream's entries gives.
"""

from graven.errors import ConflictError
from graven.sourcing._db import AppDB
from graven.sourcing.aggregates import Aggregate, Repository
from graven.sourcing.events import EventStore, NewEvent, Recorded, StreamEvent, parse_stream
from graven.sourcing.projections import Projection, ProjectionError, ProjectionStatus, Projector
from graven.sourcing.snapshots import Snapshot, Snapshots, SnapshotWarning
from graven.sourcing.upcasting import UpcastError, Upcasters

__all__ = [
    "Aggregate",
    "AppDB",
    "ConflictError",
    "EventStore",
    "NewEvent",
    "Projection",
    "ProjectionError",
    "ProjectionStatus",
    "Projector",
    "Recorded",
    "Repository",
    "Snapshot",
    "SnapshotWarning",
    "Snapshots",
    "StreamEvent",
    "UpcastError",
    "Upcasters",
    "parse_stream",
]
