"""The deep check of a SQLite log's engine structures (``graven verify --deep``).

The Merkle tree covers the entries; the engine's own structures around them are not covered, and an
attacker with the file can change them without touching an entry: drop an immutability trigger,
redefine an index so a search skips entries, or leave an index disagreeing with its table. This
compares every index and trigger with those a new log of this version has (on the tables the file
holds; objects of later features are expected only where their table exists), names triggers
nobody made, and runs SQLite's ``PRAGMA integrity_check`` (every index against its table).

MUST NOT report a log that this version created or upgraded and nobody altered (a false alarm is as
wrong as a miss).
"""

from __future__ import annotations

import re
import sqlite3
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

from graven.store.structure import differences

MAX_REPORTED = 5  # integrity_check lines named in one sentence

_SPACE = re.compile(r"\s+")


def _normal(text: str) -> str:
    return _SPACE.sub(" ", text.strip().rstrip(";")).replace("( ", "(").replace(" )", ")")


def _objects(conn: sqlite3.Connection) -> dict[str, tuple[str, str, str]]:
    """name -> (type, table, normalised SQL) of every index and trigger with SQL text."""
    rows = conn.execute(
        "SELECT name, type, tbl_name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND sql IS NOT NULL"
    )
    return {str(name): (str(kind), str(table), _normal(str(text))) for name, kind, table, text in rows}


@cache
def reference(create: Callable[[Path], None]) -> dict[str, tuple[str, str, str]]:
    """The indexes and triggers of a new log, made by ``create`` in a scratch file."""
    with tempfile.TemporaryDirectory(prefix="graven-reference-") as folder:
        path = Path(folder) / "reference.db"
        create(path)
        conn = sqlite3.connect(path)
        try:
            return _objects(conn)
        finally:
            conn.close()


def problems(conn: sqlite3.Connection, expected: dict[str, tuple[str, str, str]]) -> list[str]:
    """Sentences naming each structure that differs from ``expected`` (empty: all as made)."""
    tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    actual = _objects(conn)
    found = differences(expected, actual, tables)
    lines = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
    if lines != ["ok"]:
        shown = "; ".join(lines[:MAX_REPORTED]) + ("; ..." if len(lines) > MAX_REPORTED else "")
        found.append(f"SQLite's integrity check fails: {shown}")
    return found
