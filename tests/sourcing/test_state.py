"""State as of a moment, for any target, from changes captured by any path."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest
from psycopg import sql
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

import graven
from graven.capture.pg import track as pg_track
from graven.capture.sqlalchemy import track
from graven.core.shredding import PersonalData
from graven.core.state import replay
from graven.errors import ValidationError
from graven.opening import open_trail
from graven.sourcing import Repository
from graven.trail import Trail
from tests.capture.sqla_models import Base, Customer
from tests.pgserver import Server
from tests.sourcing.accounts import Account

ACTOR = {"type": "user", "id": "u-17"}


def at(minute: int) -> str:
    return f"2026-12-03T14:{minute:02d}:00.000000Z"


def record(trail: Trail, minute: int, *changes: dict[str, object], action: str = "customer.update") -> int:
    return trail.record(
        action=action, actor=ACTOR, targets=[{"type": "customer", "id": "c-1042"}],
        changes=list(changes), occurred_at=at(minute),
    )  # fmt: skip


class TestState:
    def test_fields_as_of_a_moment_and_an_index(self, trail: Trail) -> None:
        """Each field holds its last value by then; later changes and other targets do not count."""
        first = record(trail, 1, {"field": "email", "new": "a@example.com"}, {"field": "plan", "new": "free"})
        record(trail, 5, {"field": "email", "old": "a@example.com", "new": "b@example.com"})
        trail.record(action="customer.update", actor=ACTOR, targets=[{"type": "customer", "id": "other"}],
                     changes=[{"field": "email", "new": "x"}], occurred_at=at(6))  # fmt: skip
        last = record(trail, 9, {"field": "plan", "old": "free"})
        assert {"email": "a@example.com", "plan": "free"} == trail.state("customer:c-1042", as_of=at(3)).values()
        assert {"email": "b@example.com"} == trail.state("customer:c-1042").values()
        assert "b@example.com" == trail.state("customer:c-1042", as_of=at(5)).values()["email"]  # at T counts
        assert {"email": "a@example.com", "plan": "free"} == trail.state(
            ("customer", "c-1042"), at_index=first
        ).values()
        latest = trail.state("customer:c-1042", as_of="2026-12-03T14:06")  # no offset: UTC
        assert {"email": "b@example.com", "plan": "free"} == latest.values()
        assert last not in latest.indices
        assert not trail.state("customer:c-1042", as_of=at(0)).exists

    def test_redacted_fields_are_changed_but_hidden(self, trail: Trail) -> None:
        """A secret field shows as redacted, with the entry that changed it."""
        index = record(trail, 1, {"field": "password", "old": "x", "new": "hunter2"})
        state = trail.state("customer:c-1042")
        assert {"password": "[redacted]"} == state.values()
        assert ("redacted", index) == (state.fields["password"].status, state.fields["password"].index)
        assert "hunter2" not in str(state.to_json())

    def test_deleted_target(self, trail: Trail) -> None:
        """A delete marks the target deleted."""
        record(trail, 1, {"field": "email", "new": "a@example.com"}, action="customer.create")
        record(trail, 2, {"field": "email", "old": "a@example.com"}, action="customer.delete")
        state = trail.state("customer:c-1042")
        assert (True, False, {}) == (state.deleted, state.exists, state.values())

    def test_bad_input_names_the_field(self, trail: Trail) -> None:
        """Bad targets, moments and indices are refused with the field named."""
        with pytest.raises(ValidationError, match="target"):
            trail.state("nocolon")
        with pytest.raises(ValidationError, match="as_of"):
            trail.state("customer:c-1", as_of="yesterday")
        with pytest.raises(ValidationError, match="at_index"):
            trail.state("customer:c-1", at_index=-1)

    def test_aggregates_replay_to_the_same_state(self, trail: Trail) -> None:
        """An aggregate's state from its changes equals the aggregate replayed from its events."""
        repo = Repository(trail)
        acct = Account("a-1")
        acct.trigger("Opened", {"email": "a@example.com"}, actor=ACTOR)
        acct.trigger("SignInFailed", actor=ACTOR)
        acct.trigger("PasswordChanged", {"password": "hunter2"}, actor=ACTOR)
        repo.save(acct)
        state = trail.state("account:a-1")
        loaded = repo.get(Account, "a-1")
        assert {"email": loaded.email, "failures": 1, "locked": False, "password": "[redacted]"} == state.values()


class TestCapturePaths:
    def test_sqlalchemy_changes(self, trail: Trail, tmp_path: Path) -> None:
        """Rows changed through SQLAlchemy have their state as of any entry."""
        engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
        Base.metadata.create_all(engine)
        sessions = sessionmaker(engine)
        tracker = track(trail, sessions, Customer, exclude=("updated_at",))
        with sessions() as s:
            s.add(Customer(id=7, email="ada@example.com", name="Ada", password_hash="h1"))
            s.commit()
            tracker.drain()
            created = trail.size - 1
            assert "customer" in trail.get(created).action
            s.get(Customer, 7).email = "ada@new.example"  # type: ignore[union-attr]
            s.commit()
        tracker.drain()
        tracker.close()
        engine.dispose()
        target = next(e for e in trail.query(limit=100) if e.targets and e.targets[0]["id"] == "7").targets[0]
        kind = f"{target['type']}:{target['id']}"
        assert "ada@example.com" == trail.state(kind, at_index=created).values()["email"]
        now = trail.state(kind).values()
        assert ("ada@new.example", "[redacted]") == (now["email"], now["password_hash"])

    def test_forgotten_values_read_as_erased(self, tmp_path: Path) -> None:
        """After a subject is forgotten, its personal fields read as erased."""
        url = tmp_path / "trail.db"
        graven.init(url, signing_key=tmp_path / "signing.key").close()
        with open_trail(url, signing_key=tmp_path / "signing.key", personal=PersonalData(),
                        subject_keys=tmp_path / "keys.db") as trail:  # fmt: skip
            record(trail, 1, {"field": "email", "new": "ada@example.com"}, {"field": "plan", "new": "pro"})
            assert "ada@example.com" == trail.state("customer:c-1042").values()["email"]
            trail.forget("customer:c-1042", actor=ACTOR)
            assert {"email": "[erased]", "plan": "pro"} == trail.state("customer:c-1042").values()


def test_replay_is_pure_and_ordered() -> None:
    """The core replay refuses entries out of index order."""
    doc = {"targets": [{"type": "t", "id": "1"}], "changes": [], "occurred_at": datetime.now(UTC).isoformat()}
    with pytest.raises(ValueError, match="index order"):
        replay(("t", "1"), [(2, doc), (1, doc)])


def test_postgresql_trigger_changes(pg: Server, tmp_path: Path) -> None:
    """Rows changed by raw SQL and captured by PostgreSQL triggers have their state as of any entry."""
    url = pg.schema_url("trg")
    schema = url.rsplit("schema=", 1)[1]
    table = f"customers_{secrets.token_hex(3)}"
    pg.db.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, email text, password_hash text)").format(
        sql.Identifier(table)))  # fmt: skip
    with graven.init(url, signing_key=tmp_path / "signing.key") as trail:
        with pg.db.transaction():
            pg_track(pg.db, schema, table)
        pg.db.execute(sql.SQL("INSERT INTO {} VALUES (1, 'ada@example.com', 'h1')").format(sql.Identifier(table)))
        trail.integrate()
        created = trail.size - 1
        pg.db.execute(sql.SQL("UPDATE {} SET email = 'ada@new.example'").format(sql.Identifier(table)))
        trail.integrate()
        assert {"email": "ada@example.com", "id": 1, "password_hash": "[redacted]"} == trail.state(
            (table, "1"), at_index=created
        ).values()
        assert "ada@new.example" == trail.state(f"{table}:1").values()["email"]
