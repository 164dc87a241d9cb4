"""Where the HTTP service keeps API keys, people, sessions and verification jobs: a small storage port.

These tables live in the log's own database but outside its append-only tables: keys are revoked,
people disabled, sessions deleted and job states replaced in place. They are not evidence; the log is: every creation,
revocation and sign-in is also recorded as an entry. Secrets are never stored in the clear (keys
and session tokens as HMAC-SHA256 under the server secret, passwords as scrypt hashes).

One module per backend (``sqlite``, ``postgres``) implements :class:`AccountStore` over the same
SQL (``_sql``); :func:`open_accounts` picks the one that matches the log's store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from graven.errors import ConfigError, GravenError
from graven.store import Store

ROLES = ("writer", "reader", "auditor", "admin")


class AccountConflict(GravenError):
    """A key or user name is already taken."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as stored: its public id, name, role and keyed hash; ``revoked_at`` once revoked."""

    id: str
    name: str
    role: str
    key_hash: str
    created_at: str
    created_by: str | None = None
    revoked_at: str | None = None


@dataclass(frozen=True, slots=True)
class User:
    """A person who signs in with a password; ``disabled_at`` once disabled (the name stays taken)."""

    name: str
    role: str
    password_hash: str
    created_at: str
    created_by: str | None = None
    disabled_at: str | None = None


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: the keyed hash of its cookie token, whose it is and until when."""

    token_hash: str
    user: str
    created_at: str
    expires_at: str
    ip: str | None = None


class AccountStore(Protocol):
    """Keys, users and sessions. Times are UTC ISO 8601 text, which sorts in time order."""

    def insert_key(self, key: ApiKey) -> None:
        """Store a new key; AccountConflict when an active key already has its name."""
        ...

    def select_keys(self) -> list[ApiKey]: ...

    def select_key(self, key_id: str) -> ApiKey | None: ...

    def revoke_key(self, key_id: str, at: str) -> bool:
        """Mark an active key revoked; False when it was not active."""
        ...

    def delete_key(self, key_id: str) -> None:
        """Remove a key that was never usable (its creation could not be recorded)."""
        ...

    def insert_user(self, user: User) -> None:
        """Store a new user; AccountConflict when the name was ever used."""
        ...

    def select_users(self) -> list[User]: ...

    def select_user(self, name: str) -> User | None: ...

    def update_password(self, name: str, password_hash: str) -> bool: ...

    def disable_user(self, name: str, at: str) -> bool: ...

    def delete_user(self, name: str) -> None:
        """Remove a user that was never usable (its creation could not be recorded)."""
        ...

    def insert_session(self, session: Session) -> None: ...

    def select_session(self, token_hash: str) -> Session | None: ...

    def delete_session(self, token_hash: str) -> None: ...

    def delete_sessions(self, *, user: str | None = None, expired_before: str | None = None) -> int:
        """Delete a user's sessions, or those that expired before a time; returns how many."""
        ...

    def upsert_job(self, job_id: str, state: str, updated_at: str) -> None:
        """Keep a verification job's state (JSON text), replacing what was kept."""
        ...

    def select_job(self, job_id: str) -> tuple[str, str] | None:
        """A job's state (JSON text) and when it was last updated."""
        ...

    def select_jobs(self, newest: int) -> list[tuple[str, str, str]]:
        """The most recently updated jobs: (id, state, updated_at)."""
        ...

    def close(self) -> None: ...


def open_accounts(store: Store) -> AccountStore:
    """The account storage that lives beside ``store`` (same SQLite file, or same PostgreSQL schema)."""
    if store.backend == "sqlite":
        from graven.server.accounts.sqlite import SQLiteAccounts

        return SQLiteAccounts(store.location())
    if store.backend == "postgresql":
        from graven.server.accounts.postgres import PostgresAccounts

        return PostgresAccounts(store.location())
    raise ConfigError(f"the HTTP service cannot keep accounts beside a {store.backend} store")


__all__ = ["ROLES", "AccountConflict", "AccountStore", "ApiKey", "Session", "User", "open_accounts"]
