"""Aggregates: objects whose state is whatever replaying their stream's events gives.

A subclass names its stream type (``stream_type = "account"``) and implements :meth:`Aggregate.apply`,
which changes the object's fields for one event. Commands call :meth:`Aggregate.trigger`, which
applies the event at once and queues it; :meth:`Repository.save` appends the queued events with
the version the aggregate was loaded at as the expected one, so a concurrent change is refused
(:class:`graven.errors.ConflictError`, nothing appended) rather than overwritten.

Each event records the fields it changed as the entry's ``changes`` (secret ones redacted by the
trail's policy), so :meth:`graven.Trail.state` rebuilds an aggregate like any other target.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from graven.core.merkle import leaf_hash
from graven.errors import ConfigError, IntegrityError, NotFoundError, ValidationError
from graven.sourcing.events import EventStore, NewEvent, Recorded, StreamEvent, parse_stream
from graven.sourcing.snapshots import Snapshot, Snapshots, trusted
from graven.sourcing.upcasting import Upcasters

if TYPE_CHECKING:
    from graven.trail import Trail

A = TypeVar("A", bound="Aggregate")
_OWN = frozenset({"id", "version"})


class Aggregate:
    """Base class of an event-sourced aggregate. Public attributes (other than ``id`` and
    ``version``) are its state: they are snapshotted, and their changes recorded per event."""

    stream_type: ClassVar[str] = ""
    #: The layout of the state; raise it when the fields change, so older snapshots are ignored.
    state_shape: ClassVar[int] = 1

    def __init__(self, id: str) -> None:
        self.id = id
        self.version = 0
        self._pending: list[NewEvent] = []

    def apply(self, event: str, data: Mapping[str, Any]) -> None:
        """Change the state for one event (called on trigger and on every replay). Override this."""
        raise NotImplementedError(f"{type(self).__name__}.apply must handle event {event!r}")

    def trigger(self, event: str, data: Mapping[str, Any] | None = None, **entry: Any) -> None:
        """Apply a new event now and queue it for :meth:`Repository.save`. ``entry`` holds other
        entry fields (``actor``, ``reason``, ``outcome``, ...)."""
        before = self.state() if self.version > 0 else {}  # a new aggregate records every field
        payload = dict(data or {})
        self.apply(event, payload)
        changes = _changes(before, self.state())
        self._pending.append(NewEvent(event, payload, changes=changes, entry=entry))
        self.version += 1

    @property
    def pending(self) -> list[NewEvent]:
        """Events triggered since the aggregate was loaded or saved."""
        return list(self._pending)

    def state(self) -> dict[str, Any]:
        """The public state: every attribute not starting with ``_``, except id and version."""
        return {k: copy.deepcopy(v) for k, v in vars(self).items() if not k.startswith("_") and k not in _OWN}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Set the state from a snapshot (the inverse of :meth:`state`)."""
        for key, value in state.items():
            setattr(self, key, copy.deepcopy(value))

    @property
    def stream(self) -> tuple[str, str]:
        return (self.stream_type, self.id)


def _changes(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key in sorted(before.keys() | after.keys()):
        if key not in after:
            out.append({"field": key, "old": before[key], "new": None})
        elif key not in before:
            out.append({"field": key, "new": after[key]})
        elif before[key] != after[key]:
            out.append({"field": key, "old": before.get(key), "new": after[key]})
    return out


class Repository:
    """Loads and saves aggregates of the given classes on one trail.

    ``snapshots`` (a :class:`Snapshots` or the URL of the application database that holds them)
    and ``snapshot_every`` (events between snapshots) make loading cost one snapshot plus the
    events after it; without them every load replays the whole stream.
    """

    def __init__(
        self,
        trail: Trail,
        *,
        upcasters: Upcasters | None = None,
        snapshots: Snapshots | str | Path | None = None,
        snapshot_every: int = 100,
    ) -> None:
        if not isinstance(snapshot_every, int) or snapshot_every < 1:
            raise ValidationError("snapshot_every", "must be a positive integer", snapshot_every)
        self.events = EventStore(trail, upcasters)
        self.trail = trail
        self.snapshots = Snapshots(snapshots) if isinstance(snapshots, str | Path) else snapshots
        self.snapshot_every = snapshot_every

    def get(self, cls: type[A], id: str, *, at_version: int | None = None) -> A:
        """The aggregate rebuilt from its stream (up to ``at_version`` when given).

        Raises :class:`graven.errors.NotFoundError` for an aggregate that has no events.
        """
        if not cls.stream_type:
            raise ConfigError(f"{cls.__name__} names no stream_type")
        stream = parse_stream((cls.stream_type, id))
        aggregate = cls(stream[1])
        after = 0
        snapshot = self.snapshots.load(stream) if self.snapshots is not None else None
        usable = snapshot is not None and (at_version is None or snapshot.version <= at_version)
        if snapshot is not None and usable and trusted(snapshot, self.trail.store, cls.state_shape):
            aggregate.restore(snapshot.state)
            aggregate.version = after = snapshot.version
        events = self.events.read(stream, after=after, upto=at_version)
        for event in events:
            self._replay(aggregate, event)
        if aggregate.version == 0:
            raise NotFoundError(f"unknown aggregate {stream[0]}:{stream[1]}: its stream has no events")
        return aggregate

    def _replay(self, aggregate: Aggregate, event: StreamEvent) -> None:
        if event.version != aggregate.version + 1:
            raise IntegrityError(
                f"{event.stream[0]}:{event.stream[1]} lacks version {aggregate.version + 1} (found {event.version})"
            )
        aggregate.apply(event.type, event.data)
        aggregate.version = event.version

    def save(self, *aggregates: Aggregate) -> list[Recorded]:
        """Append every aggregate's pending events in one transaction (all or nothing)."""
        batch = []
        shape = self.events.upcasters.current  # new events are written in the newest shape
        for agg in aggregates:
            if agg._pending:
                events = [replace(e, shape=shape(e.type)) for e in agg._pending]
                batch.append((agg.stream, agg.version - len(agg._pending), events))
        if not batch:
            return []
        recorded = self.events.append_batch(batch)
        for agg in aggregates:
            agg._pending.clear()
        if self.snapshots is not None:
            for agg in aggregates:
                mine = [r for r in recorded if r.stream == agg.stream]
                if mine and any(r.version % self.snapshot_every == 0 for r in mine):
                    self.snapshot(agg, mine[-1])
        return recorded

    def snapshot(self, aggregate: Aggregate, at: Recorded | None = None) -> Snapshot:
        """Keep a snapshot of ``aggregate`` at its current version (which must be saved)."""
        if self.snapshots is None:
            raise ConfigError("this repository keeps no snapshots: pass snapshots=URL")
        if aggregate._pending:
            raise ValidationError("aggregate", "must be saved before it is snapshotted", aggregate.stream)
        rows = self.events.read(aggregate.stream, after=aggregate.version - 1, upto=aggregate.version)
        if not rows:
            raise NotFoundError(f"{aggregate.stream[0]}:{aggregate.stream[1]} has no version {aggregate.version}")
        body = self.trail.store.entry(rows[0].index)
        assert body is not None
        snap = Snapshot(
            aggregate.stream, aggregate.version, rows[0].index, leaf_hash(body).hex(),
            type(aggregate).state_shape, aggregate.state(),
        )  # fmt: skip
        self.snapshots.save(snap)
        return snap


__all__ = ["Aggregate", "Repository"]
