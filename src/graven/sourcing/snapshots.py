"""Snapshots: an aggregate's state at one version, so loading it does not replay every event.

Derived data, kept apart from the log (in the application's database, table ``graven_snapshots``,
one row per aggregate, replaced as it moves on). A snapshot names the entry it summarises (its
stream version, its index and its leaf hash); before it is trusted, the log MUST show that very
entry at that version of that stream. A stale or forged snapshot (another entry, a changed leaf, a
version the stream does not have, another state shape) is ignored with a warning and the aggregate
is replayed from its first event: a snapshot is never believed over the log.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from graven.core.merkle import leaf_hash
from graven.core.streams import stream_of
from graven.sourcing._db import AppDB
from graven.store import StreamQuery

log = logging.getLogger("graven.sourcing")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS graven_snapshots (
    type      TEXT NOT NULL,
    id        TEXT NOT NULL,
    version   BIGINT NOT NULL,
    idx       BIGINT NOT NULL,
    leaf_hash TEXT NOT NULL,
    shape     BIGINT NOT NULL,
    state     TEXT NOT NULL,
    PRIMARY KEY (type, id)
)
"""


class SnapshotWarning(UserWarning):
    """A snapshot did not match the log and was ignored (the aggregate was replayed instead)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An aggregate's state after ``version``, which is entry ``index`` with leaf hash ``leaf_hash``."""

    stream: tuple[str, str]
    version: int
    index: int
    leaf_hash: str
    shape: int
    state: dict[str, Any]


class Snapshots:
    """Snapshots in a SQLite file or a PostgreSQL database (``?schema=`` honoured)."""

    def __init__(self, url: str | Path) -> None:
        self.db = AppDB(url)
        self.db.execute(_SCHEMA)

    def save(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot``, replacing the aggregate's previous one."""
        state = orjson.dumps(snapshot.state).decode()
        with self.db.transaction() as db:
            db.execute("DELETE FROM graven_snapshots WHERE type = ? AND id = ?", snapshot.stream)
            db.execute(
                "INSERT INTO graven_snapshots (type, id, version, idx, leaf_hash, shape, state) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*snapshot.stream, snapshot.version, snapshot.index, snapshot.leaf_hash, snapshot.shape, state),
            )

    def load(self, stream: tuple[str, str]) -> Snapshot | None:
        rows = self.db.execute(
            "SELECT version, idx, leaf_hash, shape, state FROM graven_snapshots WHERE type = ? AND id = ?", stream
        )
        if not rows:
            return None
        version, idx, digest, shape, state = rows[0]
        try:
            data = orjson.loads(state)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            data = {"__unreadable__": True}
        return Snapshot(stream, int(version), int(idx), str(digest), int(shape), data)

    def close(self) -> None:
        self.db.close()


def trusted(snapshot: Snapshot, store: Any, shape: int) -> bool:
    """Whether the log shows ``snapshot``'s entry at its version of its stream, leaf unchanged;
    warns (and returns False) otherwise."""
    where = f"snapshot of {snapshot.stream[0]}:{snapshot.stream[1]} at version {snapshot.version}"
    rows = store.stream_entries(snapshot.stream, StreamQuery(after=snapshot.version - 1, upto=snapshot.version))
    problem = None
    if snapshot.shape != shape:
        problem = f"its state shape is {snapshot.shape}, the aggregate's is {shape}"
    elif "__unreadable__" in snapshot.state:
        problem = "its state is not a JSON object"
    elif not rows:
        problem = "the stream has no such version"
    else:
        _, index, body = rows[0]
        try:
            pos = stream_of(orjson.loads(body))
        except orjson.JSONDecodeError:
            pos = None
        if index != snapshot.index:
            problem = f"it names entry {snapshot.index}, but that version is entry {index}"
        elif leaf_hash(body).hex() != snapshot.leaf_hash:
            problem = f"entry {index}'s leaf hash differs from the one it names"
        elif pos is None or (pos.stream, pos.version) != (snapshot.stream, snapshot.version):
            problem = f"entry {index} is not that version of that stream"
    if problem is None:
        return True
    message = f"ignored the {where}: {problem}; replaying the stream from its first event"
    log.warning("graven: %s", message)
    warnings.warn(message, SnapshotWarning, stacklevel=3)
    return False


__all__ = ["Snapshot", "SnapshotWarning", "Snapshots", "trusted"]
