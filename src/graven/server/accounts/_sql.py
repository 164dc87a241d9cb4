"""The SQL both account backends run, written once with ``?`` placeholders.

A backend supplies ``_run(sql, params) -> rows`` (one statement, committed on return) and maps its
driver's unique-violation error to :class:`AccountConflict`; everything else is here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from graven.server.accounts import ApiKey, Session, User

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS server_api_keys (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        role       TEXT NOT NULL,
        key_hash   TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT,
        revoked_at TEXT
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS server_api_keys_active_name ON server_api_keys (name) WHERE revoked_at IS NULL",
    """CREATE TABLE IF NOT EXISTS server_users (
        name          TEXT PRIMARY KEY,
        role          TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        created_by    TEXT,
        disabled_at   TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS server_sessions (
        token_hash TEXT PRIMARY KEY,
        user_name  TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        ip         TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS server_sessions_user ON server_sessions (user_name)",
    """CREATE TABLE IF NOT EXISTS server_jobs (
        id         TEXT PRIMARY KEY,
        state      TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
)

_KEY_COLUMNS = "id, name, role, key_hash, created_at, created_by, revoked_at"
_USER_COLUMNS = "name, role, password_hash, created_at, created_by, disabled_at"
_SESSION_COLUMNS = "token_hash, user_name, created_at, expires_at, ip"


class SqlAccounts:
    """:class:`AccountStore` over any DB-API-like ``_run``."""

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _changed(self, sql: str, params: Sequence[Any]) -> int:
        """Run a statement with RETURNING 1 and count the rows it touched."""
        return len(self._run(sql + " RETURNING 1", params))

    # --- keys
    def insert_key(self, key: ApiKey) -> None:
        self._run(
            f"INSERT INTO server_api_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key.id, key.name, key.role, key.key_hash, key.created_at, key.created_by, key.revoked_at),
        )

    def select_keys(self) -> list[ApiKey]:
        rows = self._run(f"SELECT {_KEY_COLUMNS} FROM server_api_keys ORDER BY created_at, id")
        return [ApiKey(*row) for row in rows]

    def select_key(self, key_id: str) -> ApiKey | None:
        rows = self._run(f"SELECT {_KEY_COLUMNS} FROM server_api_keys WHERE id = ?", (key_id,))
        return ApiKey(*rows[0]) if rows else None

    def revoke_key(self, key_id: str, at: str) -> bool:
        return bool(
            self._changed("UPDATE server_api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (at, key_id))
        )

    def delete_key(self, key_id: str) -> None:
        self._run("DELETE FROM server_api_keys WHERE id = ?", (key_id,))

    # --- users
    def insert_user(self, user: User) -> None:
        self._run(
            f"INSERT INTO server_users ({_USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (user.name, user.role, user.password_hash, user.created_at, user.created_by, user.disabled_at),
        )

    def select_users(self) -> list[User]:
        return [User(*row) for row in self._run(f"SELECT {_USER_COLUMNS} FROM server_users ORDER BY name")]

    def select_user(self, name: str) -> User | None:
        rows = self._run(f"SELECT {_USER_COLUMNS} FROM server_users WHERE name = ?", (name,))
        return User(*rows[0]) if rows else None

    def update_password(self, name: str, password_hash: str) -> bool:
        return bool(
            self._changed(
                "UPDATE server_users SET password_hash = ? WHERE name = ? AND disabled_at IS NULL",
                (password_hash, name),
            )
        )

    def disable_user(self, name: str, at: str) -> bool:
        return bool(
            self._changed("UPDATE server_users SET disabled_at = ? WHERE name = ? AND disabled_at IS NULL", (at, name))
        )

    def delete_user(self, name: str) -> None:
        self._run("DELETE FROM server_users WHERE name = ?", (name,))

    # --- sessions
    def insert_session(self, session: Session) -> None:
        self._run(
            f"INSERT INTO server_sessions ({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
            (session.token_hash, session.user, session.created_at, session.expires_at, session.ip),
        )

    def select_session(self, token_hash: str) -> Session | None:
        rows = self._run(f"SELECT {_SESSION_COLUMNS} FROM server_sessions WHERE token_hash = ?", (token_hash,))
        return Session(*rows[0]) if rows else None

    def delete_session(self, token_hash: str) -> None:
        self._run("DELETE FROM server_sessions WHERE token_hash = ?", (token_hash,))

    # --- verification jobs
    def upsert_job(self, job_id: str, state: str, updated_at: str) -> None:
        updated = self._changed(
            "UPDATE server_jobs SET state = ?, updated_at = ? WHERE id = ?", (state, updated_at, job_id)
        )
        if not updated:
            self._run("INSERT INTO server_jobs (id, state, updated_at) VALUES (?, ?, ?)", (job_id, state, updated_at))

    def select_job(self, job_id: str) -> tuple[str, str] | None:
        rows = self._run("SELECT state, updated_at FROM server_jobs WHERE id = ?", (job_id,))
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    def select_jobs(self, newest: int) -> list[tuple[str, str, str]]:
        rows = self._run("SELECT id, state, updated_at FROM server_jobs ORDER BY updated_at DESC LIMIT ?", (newest,))
        return [(str(a), str(b), str(c)) for a, b, c in rows]

    def delete_sessions(self, *, user: str | None = None, expired_before: str | None = None) -> int:
        if user is not None:
            return self._changed("DELETE FROM server_sessions WHERE user_name = ?", (user,))
        if expired_before is not None:
            return self._changed("DELETE FROM server_sessions WHERE expires_at < ?", (expired_before,))
        raise ValueError("name a user or a time")
