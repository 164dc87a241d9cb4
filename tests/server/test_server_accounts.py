"""The accounts storage port: the same behaviour from the SQLite and the PostgreSQL module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import graven
from graven.server.accounts import AccountConflict, AccountStore, ApiKey, Session, User, open_accounts
from tests.pgserver import Server


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AccountStore]:
    url: str | Path = tmp_path / "trail.db"
    if request.param == "postgres":
        pg: Server = request.getfixturevalue("pg")
        url = pg.schema_url("acc")
    with graven.init(url, signing_key=tmp_path / "signing.key") as trail:
        accounts = open_accounts(trail.store)
        yield accounts
        accounts.close()


def key(key_id: str, name: str) -> ApiKey:
    return ApiKey(key_id, name, "reader", "h" * 64, "2026-01-01T00:00:00.000000Z", "user:ops")


class TestAccountStore:
    def test_active_key_names_are_unique(self, store: AccountStore) -> None:
        """Two active keys cannot share a name; once one is revoked, the name is free again."""
        store.insert_key(key("000000000001", "svc"))
        with pytest.raises(AccountConflict):
            store.insert_key(key("000000000002", "svc"))
        assert store.revoke_key("000000000001", "2026-01-02T00:00:00.000000Z")
        assert not store.revoke_key("000000000001", "2026-01-03T00:00:00.000000Z")
        store.insert_key(key("000000000002", "svc"))
        assert [("000000000001", "2026-01-02T00:00:00.000000Z"), ("000000000002", None)] == [
            (k.id, k.revoked_at) for k in store.select_keys()
        ]

    def test_users_and_sessions(self, store: AccountStore) -> None:
        """User names are taken forever; sessions are found by token hash and deleted by user or expiry."""
        store.insert_user(User("ann", "admin", "scrypt$x", "2026-01-01T00:00:00.000000Z"))
        with pytest.raises(AccountConflict):
            store.insert_user(User("ann", "reader", "scrypt$y", "2026-01-01T00:00:00.000000Z"))
        store.insert_session(Session("t1", "ann", "2026-01-01T00:00:00Z", "2026-01-01T08:00:00Z"))
        store.insert_session(Session("t2", "ann", "2026-01-01T00:00:00Z", "2026-01-02T08:00:00Z"))
        assert "ann" == store.select_session("t1").user  # type: ignore[union-attr]
        assert 1 == store.delete_sessions(expired_before="2026-01-01T09:00:00Z")
        assert store.select_session("t1") is None
        assert store.disable_user("ann", "2026-01-03T00:00:00.000000Z")
        assert not store.update_password("ann", "scrypt$z")
        assert 1 == store.delete_sessions(user="ann")

    def test_jobs_are_replaced_in_place(self, store: AccountStore) -> None:
        store.upsert_job("j1", '{"status": "running"}', "2026-01-01T00:00:00.000000Z")
        store.upsert_job("j1", '{"status": "done"}', "2026-01-01T00:00:01.000000Z")
        assert ('{"status": "done"}', "2026-01-01T00:00:01.000000Z") == store.select_job("j1")
        assert ["j1"] == [j[0] for j in store.select_jobs(10)]
