"""Accounts in the log's PostgreSQL schema: one autocommit connection behind a lock, reconnected once
when the server dropped it. Tables ``server_*`` sit beside the log's tables, with no append-only
triggers (they are not evidence; the log records every change made to them)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from graven.server.accounts import AccountConflict
from graven.server.accounts._sql import SCHEMA, SqlAccounts
from graven.store.pg_connection import Conn, PgTarget, connect, lock_key, translate_error


class PostgresAccounts(SqlAccounts):
    """:class:`~graven.server.accounts.AccountStore` in the log's schema."""

    def __init__(self, target: PgTarget) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._conn: Conn | None = None
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():  # one creator at a time: concurrent CREATE ... IF NOT EXISTS collide
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(target.schema, "accounts"),))
                    for statement in SCHEMA:
                        conn.execute(statement.encode())
            except psycopg.Error as exc:
                raise translate_error(exc, target) from exc

    def _connection(self) -> Conn:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self.target)
        return self._conn

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        text = sql.replace("?", "%s")
        with self._lock:
            for attempt in (1, 2):
                conn = self._connection()
                try:
                    cursor = conn.execute(text.encode(), tuple(params))
                    return list(cursor.fetchall()) if cursor.description is not None else []
                except pgerrors.UniqueViolation as exc:
                    raise AccountConflict(str(exc.diag.message_primary or exc)) from exc
                except psycopg.OperationalError as exc:
                    if attempt == 1 and conn.broken:
                        continue  # the server closed an idle session: reconnect once
                    raise translate_error(exc, self.target) from exc
                except psycopg.Error as exc:
                    raise translate_error(exc, self.target) from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
