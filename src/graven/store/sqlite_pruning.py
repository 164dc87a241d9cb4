"""Archived ranges of a SQLite log, and the removal of archived entries' bodies (see graven.archive).

``archives`` records each archive written: every entry below ``below`` is in a written archive. The
triggers refuse DELETE on ``entries`` and ``entry_targets`` except below the greatest ``below``; the
tree's tiles are never pruned, so every proof of a kept entry stays as it was.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

_BELOW = "coalesce((SELECT max(below) FROM archives), 0)"

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS archives (
        below  INTEGER PRIMARY KEY,
        name   TEXT NOT NULL,
        digest TEXT NOT NULL
    )""",
    """CREATE TRIGGER IF NOT EXISTS archives_no_update BEFORE UPDATE ON archives
    BEGIN SELECT RAISE(ABORT, 'graven: archives is append-only; UPDATE is refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS archives_no_delete BEFORE DELETE ON archives
    BEGIN SELECT RAISE(ABORT, 'graven: archives is append-only; DELETE is refused'); END""",
)

#: The DELETE triggers of the tables whose rows an archive may prune.
PRUNABLE = ("entries", "entry_targets")


def delete_trigger(table: str) -> str:
    """The trigger refusing DELETE on ``table`` except of archived entries."""
    return (
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table} WHEN OLD.idx >= {_BELOW} "
        f"BEGIN SELECT RAISE(ABORT, 'graven: {table} is append-only; DELETE is refused'); END"
    )


def create(conn: sqlite3.Connection) -> None:
    """Create the archives table and its triggers if absent (inside the caller's transaction)."""
    for statement in SCHEMA:
        conn.execute(statement)


def upgrade(conn: sqlite3.Connection) -> bool:
    """Give a log made before archives its table and the pruning-aware DELETE triggers."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'archives'").fetchone():
        return False
    create(conn)
    for table in PRUNABLE:
        conn.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
        conn.execute(delete_trigger(table))
    return True


def archived_below(conn: sqlite3.Connection) -> int:
    return int(conn.execute(f"SELECT {_BELOW}").fetchone()[0])


def mark(conn: sqlite3.Connection, below: int, name: str, digest: str) -> None:
    conn.execute("INSERT INTO archives (below, name, digest) VALUES (?, ?, ?)", (below, name, digest))


def prune(conn: sqlite3.Connection, indices: Sequence[int]) -> int:
    """Remove the bodies (and target rows) of the given archived entries; returns how many were there."""
    removed = 0
    for start in range(0, len(indices), 500):
        chunk = list(indices[start : start + 500])
        marks = ",".join("?" * len(chunk))
        conn.execute(f"DELETE FROM entry_targets WHERE idx IN ({marks})", chunk)
        removed += conn.execute(f"DELETE FROM entries WHERE idx IN ({marks})", chunk).rowcount
    return removed


def prune_range(conn: sqlite3.Connection, first: int, below: int) -> int:
    """Remove the bodies (and target rows) of the archived entries ``first .. below - 1``."""
    conn.execute("DELETE FROM entry_targets WHERE idx >= ? AND idx < ?", (first, below))
    return int(conn.execute("DELETE FROM entries WHERE idx >= ? AND idx < ?", (first, below)).rowcount)
