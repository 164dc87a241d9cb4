"""Projections: read models kept in the application's database, fed from the log in order.

A projection has a name and a handler ``handle(entry, db)`` that writes its read model through
``db`` (a :class:`graven.sourcing.AppDB`, ``?`` marks on SQLite and PostgreSQL alike). The
:class:`Projector` feeds it every entry after its stored position, in index order, and stores the
new position in ``graven_projections`` IN THE SAME TRANSACTION as the handler's writes. So:

- MUST apply each entry exactly once: a crash (kill -9 included) rolls back the handler's writes
  together with the position, and the next run starts from the last committed position;
- a handler that raises stops the projection at that entry: the entries before it are committed,
  the failure is kept in the table (``graven projections status`` shows it) and raised as
  :class:`ProjectionError`; the next run starts again at that very entry (after the fix);
- :meth:`Projector.rebuild` clears the read model (the projection's ``reset``) and the position in
  one transaction, then replays the log from its first entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graven.core.model import Entry, identifier
from graven.errors import GravenError, ValidationError
from graven.sourcing._db import AppDB

if TYPE_CHECKING:
    from graven.trail import Trail

BATCH = 500
_SCHEMA = """
CREATE TABLE IF NOT EXISTS graven_projections (
    name       TEXT PRIMARY KEY,
    position   BIGINT NOT NULL,
    updated_at TEXT NOT NULL,
    error      TEXT
)
"""


class ProjectionError(GravenError):
    """A projection's handler raised: it stopped at ``index``, which it will retry next run."""

    def __init__(self, name: str, index: int, cause: BaseException) -> None:
        self.name = name
        self.index = index
        super().__init__(
            f"projection {name} stopped at entry {index}: its handler raised {type(cause).__name__}: {cause}; "
            "entries before it are applied; fix the handler and run it again to resume there"
        )


@dataclass(frozen=True)
class Projection:
    """A read model: ``handle(entry, db)`` applies one entry; ``reset(db)`` clears it for a rebuild."""

    name: str
    handle: Callable[[Entry, AppDB], None]
    reset: Callable[[AppDB], None] | None = None

    def __post_init__(self) -> None:
        identifier(self.name, "projection.name", 100)


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    """Where a projection stands: last applied index (-1: none), entries still to apply, last failure."""

    name: str
    position: int
    lag: int
    updated_at: str
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "position": self.position, "lag": self.lag,
                "updated_at": self.updated_at, "error": self.error}  # fmt: skip


class Projector:
    """Runs projections of ``trail`` into the application database at ``db`` (a URL or an AppDB)."""

    def __init__(self, trail: Trail, db: str | Path | AppDB, projections: Iterable[Projection] = ()) -> None:
        self.trail = trail
        self.db = db if isinstance(db, AppDB) else AppDB(db)
        self.db.execute(_SCHEMA)
        self.projections = {p.name: p for p in projections}

    def _get(self, name: str) -> Projection:
        if name not in self.projections:
            known = ", ".join(sorted(self.projections)) or "(none registered)"
            raise ValidationError("projection", f"must be one of {known}", name)
        return self.projections[name]

    def position(self, name: str) -> int:
        rows = self.db.execute("SELECT position FROM graven_projections WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else -1

    def run(self, name: str | None = None, *, limit: int | None = None) -> int:
        """Apply every entry after the stored position (of one projection, or all); returns how many.
        ``limit`` caps the entries applied per projection in this call."""
        names = [name] if name is not None else sorted(self.projections)
        return sum(self._catch_up(self._get(n), limit) for n in names)

    def _catch_up(self, projection: Projection, limit: int | None) -> int:
        applied = 0
        while limit is None or applied < limit:
            position = self.position(projection.name)
            want = BATCH if limit is None else min(BATCH, limit - applied)
            entries = self.trail.query(after=position, limit=want).entries
            if not entries:
                return applied
            applied += self._apply(projection, entries, position)
        return applied

    def _lock(self, db: AppDB, name: str, position: int) -> bool:
        """Hold the projection in this transaction; False when another runner moved it meanwhile."""
        if db.postgres:
            db.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"graven_projection:{name}",))
        return self.position(name) == position

    def _apply(self, projection: Projection, entries: list[Entry], position: int) -> int:
        failed: tuple[int, BaseException] | None = None
        try:
            with self.db.transaction() as db:
                if not self._lock(db, projection.name, position):
                    return 0  # another runner applied these: read the position again
                for n, entry in enumerate(entries):
                    try:
                        projection.handle(entry, db)
                    except Exception as exc:
                        failed = (n, exc)
                        raise
                self._store(db, projection.name, entries[-1].index, None)
            return len(entries)
        except Exception:
            if failed is None:
                raise
        n, cause = failed
        if n > 0:
            self._apply(projection, entries[:n], position)  # the entries before the failing one stand
        with self.db.transaction() as db:
            position = self.position(projection.name)
            self._store(db, projection.name, position, f"entry {entries[n].index}: {type(cause).__name__}: {cause}")
        raise ProjectionError(projection.name, entries[n].index, cause) from cause

    def _store(self, db: AppDB, name: str, position: int, error: str | None) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        db.execute("DELETE FROM graven_projections WHERE name = ?", (name,))
        db.execute(
            "INSERT INTO graven_projections (name, position, updated_at, error) VALUES (?, ?, ?, ?)",
            (name, position, now, error),
        )

    def rebuild(self, name: str) -> int:
        """Clear the read model and the position together, then replay the whole log into it."""
        projection = self._get(name)
        with self.db.transaction() as db:
            if projection.reset is not None:
                projection.reset(db)
            self._store(db, name, -1, None)
        return self._catch_up(projection, None)

    def status(self) -> list[ProjectionStatus]:
        """Every projection with a stored position in this database (registered or not)."""
        return projection_status(self.db, self.trail.size)

    def close(self) -> None:
        self.db.close()


def projection_status(db: AppDB, size: int) -> list[ProjectionStatus]:
    """The stored position, lag behind a log of ``size`` entries and last failure of each projection."""
    db.execute(_SCHEMA)
    rows = db.execute("SELECT name, position, updated_at, error FROM graven_projections ORDER BY name")
    return [ProjectionStatus(str(n), int(p), max(size - 1 - int(p), 0), str(u), e) for n, p, u, e in rows]


__all__ = ["Projection", "ProjectionError", "ProjectionStatus", "Projector", "projection_status"]
