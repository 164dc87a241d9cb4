"""The ``eventsourcing`` library's recorders, kept in a Graven log (see :mod:`._entries` for the mapping).

Writes go through ``Trail.record_many``: one call per ``insert_events`` (the events, and the
tracking record of a process recorder, all or nothing), each entry at the next version of its
stream. The log's stream index refuses an append based on a stale stream version
(``ConflictError``) with nothing appended; the recorder then checks the records again against the
log: a version already taken is the library's ``IntegrityError``, anything else is appended on a
retry. Reads use the stream index and the action column.

MUST NOT append anything when any record of a call is refused: every check (a version not above
the stream's last, a repeat inside the batch, a tracking id not above the last one) runs before
the one ``record_many``, which is itself all or nothing.
Versions of one originator MUST increase: a version at or below the last stored one is refused
like a duplicate (aggregates always append increasing versions; the library's SQL recorders would
accept a lower unused one).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    DataError,
    IntegrityError,
    ListenNotifySubscription,
    Notification,
    OperationalError,
    PersistenceError,
    ProcessRecorder,
    StoredEvent,
    Subscription,
    Tracking,
    TrackingRecorder,
)

from graven import context
from graven.errors import ConflictError, GravenError, IdempotencyConflict, StoreError, ValidationError
from graven.eventsourcing import _entries
from graven.eventsourcing._entries import EVENTS, TRACKING, Read
from graven.store import Query, StreamQuery
from graven.trail import Trail

Tip = tuple[int, int | None]  # a stream's version, and the last originator version or tracked id in it
RETRIES = 5  # appends tried again after a stream moved meanwhile
MAX_TIPS = 10_000  # streams whose tip a recorder remembers
PAGE = 1000  # entries read per query when filtering notifications by topic
POLL = 0.1  # seconds between a subscription's looks for entries written by other processes


class GravenRecorder:
    """What every recorder here shares: the log, the application's name and the translated errors."""

    def __init__(self, trail: Trail, application: str, kind: str = EVENTS) -> None:
        self.trail = trail
        self.application = application or "eventsourcing"
        self.kind = kind  # the streams its events go to
        self.listeners: set[threading.Event] = set()
        self._tips: OrderedDict[tuple[str, str], Tip] = OrderedDict()
        self._tips_lock = threading.Lock()

    def _append(self, events: list[dict[str, Any]]) -> list[int]:
        """Record ``events`` all or nothing (``ConflictError`` when a stream moved meanwhile)."""
        if "actor" not in context.current():
            actor = {"type": "service", "id": self.application}
            events = [{**e, "actor": actor} for e in events]
        indices = self.trail.record_many(events)
        for listener in list(self.listeners):
            listener.set()
        return indices

    def _last(self, kind: str, stream_id: str) -> tuple[int, dict[str, Any]] | None:
        """The stream's version and last entry document, or None when it has none."""
        rows = self._stream(kind, stream_id, StreamQuery(limit=1, newest_first=True))
        return (rows[0][0], rows[0][2]) if rows else None

    def _stream(self, kind: str, stream_id: str, query: StreamQuery) -> list[tuple[int, int, dict[str, Any]]]:
        with _translated():
            rows = self.trail.store.stream_entries((kind, stream_id), query)
        return [(version, index, orjson.loads(body)) for version, index, body in rows]

    def _tip(self, kind: str, stream_id: str, fresh: bool) -> Tip:
        """A stream's version and the last originator version (or tracked notification id) in it:
        remembered from this recorder's own appends unless ``fresh``. A remembered tip can only lag
        the log (which only grows): a lagging one makes the append conflict, and it is retried fresh."""
        key = (kind, stream_id)
        if not fresh and key in self._tips:
            return self._tips[key]
        last = self._last(kind, stream_id)
        if last is None:
            return (0, None)
        value = _entries.tracked_id(last[1]) if kind == TRACKING else _entries.originator_version(last[1])
        return (last[0], value)

    def _insert(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> list[int]:
        """Check every record, then append them (and a tracking record, if given) in one call; when a
        stream moved meanwhile, check again against the log and retry (a few times at most)."""
        tracking: Tracking | None = kwargs.get("tracking")
        if not stored_events and tracking is None:
            return []
        for attempt in range(RETRIES):
            tips: dict[tuple[str, str], Tip] = {}
            entries = self._entries(stored_events, tips, fresh=attempt > 0)
            if tracking is not None:
                entries.append(self._tracking_entry(tracking, tips, fresh=attempt > 0))
            try:
                with _translated(conflicts=False):
                    indices = self._append(entries)
            except ConflictError as exc:
                if attempt == RETRIES - 1:
                    raise IntegrityError(f"{exc} (concurrent writers kept moving the stream)") from exc
                continue
            self._remember(tips)
            return [i + 1 for i in indices[: len(stored_events)]]
        raise AssertionError("unreachable")  # pragma: no cover

    def _remember(self, tips: dict[tuple[str, str], Tip]) -> None:
        with self._tips_lock:
            for key, tip in tips.items():
                self._tips[key] = tip
                self._tips.move_to_end(key)
            while len(self._tips) > MAX_TIPS:
                self._tips.popitem(last=False)

    def _entries(
        self, stored_events: Sequence[StoredEvent], tips: dict[tuple[str, str], Tip], fresh: bool
    ) -> list[dict[str, Any]]:
        entries = []
        for event in stored_events:
            key = (self.kind, str(event.originator_id))
            version, newest = tips[key] if key in tips else self._tip(*key, fresh)
            if newest is not None and event.originator_version <= newest:
                raise IntegrityError(
                    f"originator {key[1]} already has version {newest}; version {event.originator_version} "
                    "must be above it (nothing was recorded)"
                )
            tips[key] = (version + 1, event.originator_version)
            entries.append(_entries.event_entry(self.kind, event, version + 1))
        return entries

    def _tracking_entry(self, tracking: Tracking, tips: dict[tuple[str, str], Tip], fresh: bool) -> dict[str, Any]:
        key = (TRACKING, self._tracking_stream(tracking.application_name))
        version, last = self._tip(*key, fresh)
        if last is not None and last >= tracking.notification_id:
            raise IntegrityError(
                f"notification {tracking.notification_id} of {tracking.application_name!r} must be above the "
                f"last one recorded as processed, {last} (nothing was recorded)"
            )
        tips[key] = (version + 1, tracking.notification_id)
        return _entries.tracking_entry(key[1], tracking, version + 1)

    def _tracking_stream(self, upstream: str) -> str:
        return f"{self.application}/{upstream}"


class GravenAggregateRecorder(GravenRecorder, AggregateRecorder):
    """Stored events (or, with ``kind`` ``es-snapshot``, snapshots) as stream entries of the log."""

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        self._insert(stored_events, **kwargs)
        return None

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        return [r.event for r in self._select(str(originator_id), gt, lte, desc, limit)]

    def _select(self, ident: str, gt: int | None, lte: int | None, desc: bool, limit: int | None) -> list[Read]:
        """A stream's records with originator versions in (gt, lte]: read by stream version when
        the stream's originator versions are contiguous (as an aggregate's are), else filtered here."""
        if gt is None and lte is None:
            return self._reads(ident, StreamQuery(limit=limit, newest_first=desc))
        first = self._reads(ident, StreamQuery(limit=1))
        if not first:
            return []
        last = self._reads(ident, StreamQuery(limit=1, newest_first=True))[0]
        base = first[0].event.originator_version
        if last.event.originator_version - base == last.version - 1:  # contiguous: version = ov - base + 1
            after = 0 if gt is None else max(0, gt - base + 1)
            upto = None if lte is None else lte - base + 1
            if upto is not None and upto <= after:
                return []
            return self._reads(ident, StreamQuery(after=after, upto=upto, limit=limit, newest_first=desc))
        reads = [
            r
            for r in self._reads(ident, StreamQuery(newest_first=desc))
            if (gt is None or r.event.originator_version > gt) and (lte is None or r.event.originator_version <= lte)
        ]
        return reads if limit is None else reads[:limit]

    def _reads(self, ident: str, query: StreamQuery) -> list[Read]:
        with _translated():
            rows = self.trail.store.stream_entries((self.kind, ident), query)
        return _entries.reads(ident, rows)


class GravenApplicationRecorder(GravenAggregateRecorder, ApplicationRecorder):
    """Stored events with their notification ids: each entry's log index plus one."""

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        return self._insert(stored_events, **kwargs)

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        after = None if start is None else start - (2 if inclusive_of_start else 1)  # id n is index n - 1
        before = None if stop is None else stop  # ids up to stop: indices below it
        wanted = frozenset(topics)
        found: list[Notification] = []
        while len(found) < limit:
            size = limit - len(found) if not wanted else PAGE
            query = Query(action=_entries.ACTIONS[EVENTS], after=after if after is None or after >= 0 else None,
                          before=before, limit=size)  # fmt: skip
            with _translated():
                rows = self.trail.store.query(query)
            for index, body in rows:
                item = _entries.notification(index, orjson.loads(body))
                if not wanted or item.topic in wanted:
                    found.append(item)
                    if len(found) == limit:
                        break
            if len(rows) < size:
                break
            after = rows[-1][0]
        return found

    def max_notification_id(self) -> int | None:
        with _translated():
            rows = self.trail.store.query(Query(action=_entries.ACTIONS[EVENTS], newest_first=True, limit=1))
        return rows[0][0] + 1 if rows else None

    def subscribe(self, gt: int | None = None, topics: Sequence[str] = ()) -> Subscription[ApplicationRecorder]:
        return GravenSubscription(self, gt=gt, topics=topics)


class GravenSubscription(ListenNotifySubscription[GravenApplicationRecorder]):
    """Notifications as they are recorded: woken by this process's writes, and every ``POLL`` seconds
    for those of other processes."""

    def __init__(self, recorder: GravenApplicationRecorder, gt: int | None = None, topics: Sequence[str] = ()) -> None:
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        recorder.listeners.add(self._has_been_notified)
        self._stopped = threading.Event()
        self._poller = threading.Thread(target=self._poll, daemon=True, name="graven-es-subscription")
        self._poller.start()

    def _poll(self) -> None:
        while not self._stopped.wait(POLL):
            self._has_been_notified.set()

    def stop(self) -> None:
        self._stopped.set()
        self._recorder.listeners.discard(self._has_been_notified)
        super().stop()


class GravenTrackingRecorder(GravenRecorder, TrackingRecorder):
    """Which upstream notifications this application has processed, as entries of the log."""

    def insert_tracking(self, tracking: Tracking) -> None:
        self._insert([], tracking=tracking)

    def max_tracking_id(self, application_name: str) -> int | None:
        last = self._last(TRACKING, self._tracking_stream(application_name))
        return None if last is None else _entries.tracked_id(last[1])


class GravenProcessRecorder(GravenTrackingRecorder, GravenApplicationRecorder, ProcessRecorder):
    """Events and the tracking record of the notification that caused them, in one all-or-nothing append."""

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        return self._insert(stored_events, **kwargs)


@contextmanager
def _translated(*, conflicts: bool = True) -> Iterator[None]:
    """The log's errors as the library's (PEP 249 shaped) ones, with the log's message
    (a ``ConflictError`` passes through when ``conflicts`` is False: the caller retries)."""
    try:
        yield
    except ConflictError as exc:
        if not conflicts:
            raise
        raise IntegrityError(f"{exc} (a concurrent writer recorded first)") from exc
    except IdempotencyConflict as exc:
        raise IntegrityError(str(exc)) from exc
    except ValidationError as exc:
        raise DataError(str(exc)) from exc
    except StoreError as exc:
        raise OperationalError(str(exc)) from exc
    except GravenError as exc:
        raise PersistenceError(str(exc)) from exc
