"""The application's own database (SQLite or PostgreSQL), where snapshots and read models live.

One small adapter so snapshots and projections write the same SQL to either engine: statements use
``?`` marks (rewritten to ``%s`` for psycopg); ``transaction()`` commits on a clean exit and rolls
back otherwise. These tables are derived data, kept apart from the log's append-only tables.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from graven.errors import ConfigError, StoreError
from graven.store.pg_connection import parse_url, redact


class AppDB:
    """A connection to a SQLite file or a PostgreSQL database. One connection, behind a lock."""

    def __init__(self, url: str | Path) -> None:
        text = str(url)
        self.url = redact(text)
        self.postgres = text.startswith(("postgresql://", "postgres://"))
        self._lock = threading.RLock()
        try:
            if self.postgres:
                target = parse_url(text)
                self._pg: psycopg.Connection[Any] | None = psycopg.connect(target.conninfo, autocommit=True)
                self._sqlite: sqlite3.Connection | None = None
                self.schema = target.schema if "schema=" in text else None
            else:
                path = text.removeprefix("sqlite:///")
                if not Path(path).parent.is_dir():
                    raise ConfigError(f"{path}: folder {Path(path).parent} does not exist")
                self._sqlite = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
                self._sqlite.execute("PRAGMA journal_mode = WAL")
                self._sqlite.execute("PRAGMA synchronous = FULL")
                self._pg = None
                self.schema = None
        except (sqlite3.Error, psycopg.Error) as exc:
            raise StoreError(f"cannot open the application database {self.url}: {exc}") from exc
        if self.schema is not None:
            self.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            self.execute(f'SET search_path TO "{self.schema}"')

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.postgres else statement

    def execute(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (in the open transaction, if any) and return its rows."""
        with self._lock:
            try:
                if self._pg is not None:
                    cur = self._pg.execute(self._sql(statement), params)
                    return list(cur.fetchall()) if cur.description else []
                assert self._sqlite is not None
                return list(self._sqlite.execute(statement, params).fetchall())
            except (sqlite3.Error, psycopg.Error) as exc:
                raise StoreError(f"{self.url}: {exc}".strip()) from exc

    @contextmanager
    def transaction(self) -> Iterator[AppDB]:
        """A transaction: committed durably on a clean exit, rolled back if the block raises."""
        with self._lock:
            self.execute("BEGIN IMMEDIATE" if not self.postgres else "BEGIN")
            try:
                yield self
            except BaseException:
                self.execute("ROLLBACK")
                raise
            self.execute("COMMIT")

    @property
    def connection(self) -> Any:
        """The underlying DB-API connection (sqlite3 or psycopg), for a projection's own writes."""
        return self._pg if self._pg is not None else self._sqlite

    def close(self) -> None:
        with self._lock:
            if self._pg is not None:
                self._pg.close()
            if self._sqlite is not None:
                self._sqlite.close()


__all__ = ["AppDB"]
