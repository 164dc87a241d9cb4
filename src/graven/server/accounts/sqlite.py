"""Accounts in the log's SQLite file: one connection behind a lock, each statement its own commit."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from graven.errors import StoreError
from graven.private_files import create_private_file
from graven.server.accounts import AccountConflict
from graven.server.accounts._sql import SCHEMA, SqlAccounts
from graven.store.sqlite import BUSY_TIMEOUT_MS, translate_error


class SQLiteAccounts(SqlAccounts):
    """:class:`~graven.server.accounts.AccountStore` in the same file as the log (tables ``server_*``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            create_private_file(path)  # normally the log's own file, already there; else 0600 from the start
            self._conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
            )
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA synchronous = FULL")
            for statement in SCHEMA:
                self._conn.execute(statement)
        except sqlite3.DatabaseError as exc:
            raise translate_error(exc, path) from exc
        except OSError as exc:
            raise StoreError(f"cannot create the accounts database {path}: {exc.strerror}") from None

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.IntegrityError as exc:
                raise AccountConflict(str(exc)) from exc
            except sqlite3.DatabaseError as exc:
                error = translate_error(exc, self.path)
                raise (error if isinstance(error, StoreError) else StoreError(str(error))) from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()
