"""Aggregates, snapshots and upcasting on both backends."""

from __future__ import annotations

import sqlite3
import warnings

import psycopg
import pytest

from graven.errors import ConflictError, NotFoundError
from graven.sourcing import EventStore, NewEvent, Repository, Snapshots, SnapshotWarning, UpcastError, Upcasters
from graven.trail import Trail
from tests.pgserver import Server
from tests.sourcing.accounts import Account
from tests.sourcing.conftest import Log

ACTOR = {"type": "user", "id": "u-1"}


@pytest.fixture
def app_db(log: Log, request: pytest.FixtureRequest) -> str:
    """The application's database (where snapshots live), on the log's backend."""
    if log.url.startswith("postgresql"):
        server: Server = request.getfixturevalue("pg")
        return server.schema_url("app")
    return str(log.key.parent / "app.db")


class TestAggregates:
    def test_commands_replay_and_record_changes(self, trail: Trail) -> None:
        """An aggregate saved and loaded again has the same state; each event records what it changed."""
        repo = Repository(trail)
        acct = Account("a-1")
        acct.trigger("Opened", {"email": "a@example.com"}, actor=ACTOR)
        for _ in range(3):
            acct.trigger("SignInFailed", actor=ACTOR)
        repo.save(acct)
        loaded = repo.get(Account, "a-1")
        assert (4, "a@example.com", 3, True) == (loaded.version, loaded.email, loaded.failures, loaded.locked)
        last = trail.get(EventStore(trail).read("account:a-1")[-1].index)
        assert [{"field": "failures", "old": 2, "new": 3}, {"field": "locked", "old": False, "new": True}] == (
            last.changes
        )

    def test_secret_fields_are_redacted(self, trail: Trail) -> None:
        """A password set by an event is recorded as changed-but-redacted, never stored."""
        repo = Repository(trail)
        acct = Account("a-1")
        acct.trigger("Opened", {"email": "a@example.com"}, actor=ACTOR)
        acct.trigger("PasswordChanged", {"password": "hunter2"}, actor=ACTOR)
        repo.save(acct)
        entry = trail.get(EventStore(trail).read("account:a-1")[-1].index)
        assert [{"field": "password", "redacted": True}] == entry.changes
        assert "hunter2" not in str(entry.data)

    def test_stale_aggregate_conflicts(self, trail: Trail) -> None:
        """Two copies of one aggregate: the second save conflicts and appends nothing."""
        repo = Repository(trail)
        acct = Account("a-1")
        acct.trigger("Opened", {"email": "a@example.com"}, actor=ACTOR)
        repo.save(acct)
        one, two = repo.get(Account, "a-1"), repo.get(Account, "a-1")
        one.trigger("EmailChanged", {"email": "b@example.com"}, actor=ACTOR)
        two.trigger("EmailChanged", {"email": "c@example.com"}, actor=ACTOR)
        repo.save(one)
        with pytest.raises(ConflictError, match=r"account:a-1: expected version 1, but the log holds version 2"):
            repo.save(two)
        assert "b@example.com" == repo.get(Account, "a-1").email

    def test_unknown_aggregate(self, trail: Trail) -> None:
        """Loading an aggregate without events names it."""
        with pytest.raises(NotFoundError, match="unknown aggregate account:nobody"):
            Repository(trail).get(Account, "nobody")

    def test_state_at_a_version(self, trail: Trail) -> None:
        """An aggregate loads as it was at an earlier version."""
        repo = Repository(trail)
        acct = Account("a-1")
        acct.trigger("Opened", {"email": "a@example.com"}, actor=ACTOR)
        acct.trigger("EmailChanged", {"email": "b@example.com"}, actor=ACTOR)
        repo.save(acct)
        assert "a@example.com" == repo.get(Account, "a-1", at_version=1).email


class TestSnapshots:
    def _saved(self, trail: Trail, app_db: str, n: int) -> Repository:
        repo = Repository(trail, snapshots=app_db, snapshot_every=10)
        acct = Account("a-1")
        acct.trigger("Opened", {"email": "a@example.com"}, actor=ACTOR)
        for i in range(n - 1):
            acct.trigger("EmailChanged", {"email": f"{i}@example.com"}, actor=ACTOR)
        repo.save(acct)
        return repo

    def test_load_starts_from_a_matching_snapshot(self, trail: Trail, app_db: str) -> None:
        """A snapshot that matches its entry is used: only the events after it are read."""
        repo = self._saved(trail, app_db, 25)
        acct = repo.get(Account, "a-1")
        acct.trigger("SignInFailed", actor=ACTOR)
        repo.save(acct)  # 26: no snapshot due
        assert repo.snapshots is not None
        snap = repo.snapshots.load(("account", "a-1"))
        assert snap is not None
        assert 25 == snap.version  # saving 25 events crossed version 10 and 20: snapshotted at the end
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loaded = repo.get(Account, "a-1")
        assert (26, "23@example.com", 1) == (loaded.version, loaded.email, loaded.failures)

    @pytest.mark.parametrize(
        ("column", "value", "why"),
        [
            ("idx", "0", "names entry 0"),
            ("leaf_hash", "'00'", "leaf hash differs"),
            ("version", "99", "no such version"),
            ("state", "'[1]'", "not a JSON object"),
        ],
    )
    def test_forged_snapshot_is_ignored_with_a_warning(
        self, trail: Trail, app_db: str, column: str, value: str, why: str
    ) -> None:
        """A snapshot that does not match the log is never believed: the stream is replayed."""
        repo = self._saved(trail, app_db, 25)
        forged = """'{"email": "forged", "failures": 0, "locked": false}'"""
        forge = f"UPDATE graven_snapshots SET {column} = {value}" + ("" if column == "state" else f", state = {forged}")
        if app_db.startswith("postgresql"):
            schema = app_db.rsplit("schema=", 1)[1]
            with psycopg.connect(app_db.split("?")[0], autocommit=True) as conn:
                conn.execute(f"SET search_path TO {schema}")
                conn.execute(forge)
        else:
            with sqlite3.connect(app_db) as conn:
                conn.execute(forge)
        with pytest.warns(SnapshotWarning, match=why):
            loaded = repo.get(Account, "a-1")
        assert (25, "23@example.com") == (loaded.version, loaded.email)

    def test_a_new_state_shape_ignores_old_snapshots(self, trail: Trail, app_db: str) -> None:
        """Snapshots of another state layout are ignored."""
        repo = self._saved(trail, app_db, 10)

        class AccountV2(Account):
            state_shape = 2

        with pytest.warns(SnapshotWarning, match="shape"):
            assert 10 == repo.get(AccountV2, "a-1").version
        assert isinstance(Snapshots(app_db), Snapshots)


class TestUpcasting:
    def test_old_shapes_are_raised_on_read_and_the_leaf_is_unchanged(self, trail: Trail) -> None:
        """Registered upcasters raise old event data step by step; the stored entry keeps its shape."""
        store = EventStore(trail)
        store.append(
            "account:a-1", [NewEvent("Opened", {"mail": "a@example.com"}, entry={"actor": ACTOR})], expected_version=0
        )
        leaf = trail.store.entry(0 if trail.size == 1 else store.read("account:a-1")[0].index)
        up = Upcasters()

        @up("Opened", 1)
        def rename(data: dict[str, object]) -> dict[str, object]:
            return {"email": data["mail"]}

        up.register("Opened", 2, lambda d: {**d, "verified": False})
        event = EventStore(trail, up).read("account:a-1")[0]
        assert (3, {"email": "a@example.com", "verified": False}) == (event.shape, event.data)
        assert leaf == trail.store.entry(event.index)
        assert "a@example.com" == Repository(trail, upcasters=up).get(Account, "a-1").email

    def test_an_upcaster_that_raises_names_type_shape_and_entry(self, trail: Trail) -> None:
        """A failing upcaster is reported with what and where."""
        store = EventStore(trail)
        [rec] = store.append("account:a-1", [NewEvent("Opened", {}, entry={"actor": ACTOR})], expected_version=0)
        up = Upcasters()
        up.register("Opened", 1, lambda d: d["missing"])
        with pytest.raises(UpcastError, match=rf"Opened shape 1 failed on entry {rec.index}: KeyError"):
            EventStore(trail, up).read("account:a-1")
