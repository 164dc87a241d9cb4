"""SQLAlchemy capture on real SQLite files and the real PostgreSQL server: what each ORM write records."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, create_engine, delete, func, select, text, update
from sqlalchemy.orm import Session, scoped_session, sessionmaker

import graven
from graven.capture.sqlalchemy import Tracker, track
from graven.errors import ConfigError, ValidationError
from graven.trail import Trail
from tests.capture.sqla_models import Base, Customer, Document, Reseller, commit_then_crash
from tests.pgserver import Server


@dataclass
class App:
    """An application database with the models' tables, and a trail beside it."""

    url: str
    engine: Engine
    trail: Trail
    trail_url: str
    key: str
    trackers: list[Tracker] = field(default_factory=list)
    sessions: sessionmaker[Session] = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = sessionmaker(self.engine)

    def track(self, *models: type, **options: Any) -> Tracker:
        tracker = track(self.trail, options.pop("bind", None) or self.maker(), *(models or (Customer,)), **options)
        self.trackers.append(tracker)
        return tracker

    def maker(self) -> sessionmaker[Session]:
        return self.sessions

    def outbox(self, tracker: Tracker) -> list[str]:
        """The outbox rows' event text, oldest first."""
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(tracker.outbox.c.event).order_by(tracker.outbox.c.seq))]

    def waiting(self, tracker: Tracker) -> list[str]:
        """The targets of the events in the outbox, oldest first."""
        return [orjson.loads(row)["targets"][0]["id"] for row in self.outbox(tracker)]

    def entries(self, action_prefix: str = "") -> list[graven.Entry]:
        return [e for e in self.trail.query(limit=1000) if e.action.startswith(action_prefix)]


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    """The models' tables on a SQLite file, or in the session database on the PostgreSQL server
    (with the trail in a schema of that same database)."""
    key = str(tmp_path / "signing.key")
    if request.param == "sqlite":
        url, trail_url = f"sqlite:///{tmp_path / 'app.db'}", str(tmp_path / "trail.db")
    else:
        pg: Server = request.getfixturevalue("pg")
        url, trail_url = pg.url.replace("postgresql://", "postgresql+psycopg://", 1), pg.schema_url("sqla")
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    trail = graven.init(trail_url, signing_key=key)
    made = App(url, engine, trail, trail_url, key)
    try:
        yield made
    finally:
        for tracker in made.trackers:
            tracker.close()
        trail.close()
        Base.metadata.drop_all(engine)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS graven_outbox"))
        engine.dispose()


def changes(entry: graven.Entry) -> list[dict[str, Any]]:
    return list(entry.data["changes"])


class TestRowChanges:
    def test_insert_update_delete(self, app: App) -> None:
        """Create, update and delete are one entry each, with exact field changes and the target."""
        app.track(exclude=("updated_at",))
        maker = app.maker()
        with maker() as s:
            c = Customer(id=7, email="ada@example.com", name="Ada", credit_limit=Decimal("1500.50"))
            s.add(c)
            s.commit()
            c.email, c.credit_limit, c.updated_at = "ada@example.org", Decimal(2000), 99
            s.commit()
            s.delete(c)
            s.commit()
        created, updated, deleted = app.entries()
        assert ["customer.create", "customer.update", "customer.delete"] == [
            e.action for e in (created, updated, deleted)
        ]
        assert [{"type": "customer", "id": "7"}] * 3 == [e.targets[0] for e in (created, updated, deleted)]
        assert [
            {"field": "credit_limit", "new": 1500.5},
            {"field": "email", "new": "ada@example.com"},
            {"field": "id", "new": 7},
            {"field": "name", "new": "Ada"},
            {"field": "password_hash", "redacted": True},
        ] == changes(created)
        assert [
            {"field": "credit_limit", "old": 1500.5, "new": 2000},
            {"field": "email", "old": "ada@example.com", "new": "ada@example.org"},
        ] == changes(updated)
        assert [
            {"field": "credit_limit", "old": 2000},
            {"field": "email", "old": "ada@example.org"},
            {"field": "id", "old": 7},
            {"field": "name", "old": "Ada"},
            {"field": "password_hash", "redacted": True},
        ] == changes(deleted)
        assert app.trail.verify().ok

    def test_only_changed_columns(self, app: App) -> None:
        """A value set to what it was, or a change of an excluded column only, records nothing."""
        app.track(exclude=("updated_at",))
        with app.maker()() as s:
            c = Customer(id=1, email="a@example.com", name="A")
            s.add(c)
            s.commit()
            c.email, c.name = "a@example.com", "B"
            s.commit()
            c.updated_at = 5
            s.commit()
        assert [[{"field": "name", "old": "A", "new": "B"}]] == [changes(e) for e in app.entries("customer.update")]

    def test_old_value_of_an_expired_attribute(self, app: App) -> None:
        """After a commit expires the object, setting a column without reading it still records the old value."""
        app.track()
        with app.maker()() as s:
            s.add(Customer(id=1, email="old@example.com"))
            s.commit()
        with app.maker()() as s:
            c = s.get(Customer, 1)
            assert c is not None
            s.expire(c)
            c.email = "new@example.com"
            s.commit()
        (entry,) = app.entries("customer.update")
        assert [{"field": "email", "old": "old@example.com", "new": "new@example.com"}] == changes(entry)

    def test_names_prefix_and_several_models(self, app: App) -> None:
        """Nouns come from ``names`` or the class name; ``action_prefix`` goes in front of every action."""
        app.track(Customer, Document, names={Customer: "client"}, action_prefix="crm")
        with app.maker()() as s:
            s.add(Customer(id=1, email="a@example.com"))
            s.flush()
            s.add(Document(id="d-1", customer_id=1, title="Contract", scan_token="tok-123"))
            s.commit()
        assert ["crm.client.create", "crm.document.create"] == [e.action for e in app.entries()]
        document = app.entries("crm.document")[0]
        assert {"type": "document", "id": "d-1"} == document.targets[0]
        assert {"field": "scan_token", "redacted": True} in changes(document)  # "token": the default policy
        assert "tok-123" not in str(document.data)

    def test_subclass_of_a_tracked_class(self, app: App) -> None:
        """A subclass (joined-table inheritance) is recorded under the tracked class's noun, with its own columns."""
        app.track(exclude=("updated_at",))
        with app.maker()() as s:
            r = Reseller(id=4, email="r@example.com", discount=5)
            s.add(r)
            s.commit()
            r.discount = 10
            s.commit()
        created, updated = app.entries()
        assert ("customer.create", {"type": "customer", "id": "4"}) == (created.action, created.targets[0])
        assert {"field": "discount", "new": 5} in changes(created)
        assert [{"field": "discount", "old": 5, "new": 10}] == changes(updated)

    @pytest.mark.parametrize("kind", ["engine", "scoped_session", "session"])
    def test_every_kind_of_bind(self, app: App, kind: str) -> None:
        """track() accepts an Engine, a scoped_session and one Session, as well as a sessionmaker."""
        scoped = scoped_session(app.maker())
        session = Session(app.engine)
        bind: Any = {"engine": app.engine, "scoped_session": scoped, "session": session}[kind]
        app.track(bind=bind)
        writer = {"engine": Session(app.engine), "scoped_session": scoped(), "session": session}[kind]
        with writer:
            writer.add(Customer(id=1, email="a@example.com"))
            writer.commit()
        scoped.remove()
        assert ["customer.create"] == [e.action for e in app.entries()]

    def test_untracked_models_and_other_engines_are_ignored(self, app: App, tmp_path: Path) -> None:
        """Only the tracked classes, written to the tracked database, are recorded."""
        app.track(Customer, bind=app.engine)
        other = create_engine(f"sqlite:///{tmp_path / 'other.db'}")
        Base.metadata.create_all(other)
        with Session(other) as s:
            s.add(Customer(id=1, email="elsewhere@example.com"))
            s.commit()
        with Session(app.engine) as s:
            s.add(Customer(id=1, email="here@example.com"))
            s.flush()
            s.add(Document(id="d-1", customer_id=1, title="Not tracked"))
            s.commit()
        assert [("customer.create", "here@example.com")] == [
            (e.action, next(c["new"] for c in changes(e) if c["field"] == "email")) for e in app.entries()
        ]
        other.dispose()


class TestTransactions:
    def test_rollback_records_nothing(self, app: App) -> None:
        """A rolled-back transaction leaves no entry and no outbox row, even after a flush."""
        tracker = app.track()
        with app.maker()() as s:
            s.add(Customer(id=1, email="a@example.com"))
            s.flush()
            s.rollback()
            s.add(Customer(id=2, email="b@example.com"))
            s.flush()  # closed without commit: rolled back too
        assert [] == app.entries()
        assert [] == app.outbox(tracker)

    def test_commit_records_all_with_one_transaction_id(self, app: App) -> None:
        """Every change of a committed transaction is recorded; they share one transaction id."""
        app.track()
        with app.maker()() as s:
            s.add_all([Customer(id=n, email=f"c{n}@example.com") for n in range(1, 6)])
            s.flush()
            s.get(Customer, 3).name = "Three"  # type: ignore[union-attr]
            s.delete(s.get(Customer, 5))
            s.commit()
        entries = app.entries()
        assert 7 == len(entries)
        assert 1 == len({e.data["context"]["transaction"] for e in entries})
        assert {"customer.create": 5, "customer.update": 1, "customer.delete": 1} == {
            a: sum(e.action == a for e in entries) for a in ("customer.create", "customer.update", "customer.delete")
        }

    def test_savepoints(self, app: App) -> None:
        """A rolled-back savepoint drops its changes; a released one keeps them until the outer commit."""
        app.track()
        with app.maker()() as s:
            s.add(Customer(id=1, email="kept@example.com"))
            with s.begin_nested() as sp:
                s.add(Customer(id=2, email="dropped@example.com"))
                s.flush()
                sp.rollback()
            with s.begin_nested():
                s.add(Customer(id=3, email="released@example.com"))
                with s.begin_nested() as inner:
                    s.get(Customer, 1).name = "dropped too"  # type: ignore[union-attr]
                    s.flush()
                    inner.rollback()
            assert [] == app.entries()  # nothing before the outermost commit
            s.commit()
        assert [("customer.create", "1"), ("customer.create", "3")] == sorted(
            (e.action, e.targets[0]["id"]) for e in app.entries()
        )

    def test_action_attempt_survives_rollback(self, app: App) -> None:
        """An attempt recorded with trail.action() stays recorded when the session rolls back."""
        app.track()
        with (  # noqa: PT012
            app.maker()() as s,
            app.trail.context(actor="u-5"),
            pytest.raises(graven.Denied),
            app.trail.action("customer.limit.raise", target=("customer", "1")),
        ):
            s.add(Customer(id=1, email="a@example.com", credit_limit=Decimal(10**6)))
            s.flush()
            raise graven.Denied("limit above 100000 needs approval")
        assert [("customer.limit.raise", "denied")] == [(e.action, e.outcome) for e in app.entries()]
        with app.maker()() as s:
            assert s.get(Customer, 1) is None

    def test_invalid_event_fails_the_flush(self, app: App) -> None:
        """An event the log would reject fails the flush; the transaction then writes nothing."""
        app.track()
        with app.maker()() as s, app.trail.context(actor={"type": "robot", "id": "r-1"}):
            s.add(Customer(id=1, email="a@example.com"))
            with pytest.raises(ValidationError, match=r"actor\.type"):
                s.commit()
        with app.maker()() as s:
            assert 0 == s.scalar(select(func.count()).select_from(Customer))
        assert [] == app.entries()


class TestOutbox:
    def test_crash_between_commit_and_recording(self, app: App) -> None:
        """A process that dies right after its commit leaves outbox rows; they are recorded exactly once."""
        ctx = multiprocessing.get_context("spawn")
        proc = ctx.Process(
            target=commit_then_crash, args=(app.url, app.trail_url, app.key, ["a@example.com", "b@example.com"])
        )
        proc.start()
        proc.join(120)
        assert 3 == proc.exitcode
        with app.engine.connect() as conn:
            assert 2 == conn.scalar(text("SELECT count(*) FROM graven_outbox"))
            assert 2 == conn.scalar(select(func.count()).select_from(Customer))
        assert [] == app.entries()
        tracker = app.track(exclude=("updated_at",))  # drains what it finds
        assert ["a@example.com", "b@example.com"] == sorted(
            next(c["new"] for c in changes(e) if c["field"] == "email") for e in app.entries()
        )
        assert [] == app.outbox(tracker)
        assert 0 == tracker.drain()
        second = app.track()
        assert 0 == second.drain()
        assert 2 == len(app.entries())

    def test_recorded_rows_are_not_recorded_twice(self, app: App) -> None:
        """Rows whose events are in the trail but not yet deleted are drained without duplicates."""
        tracker = app.track()
        with app.maker()() as s:
            s.add(Customer(id=1, email="a@example.com"))
            s.commit()
        assert 1 == len(app.outbox(tracker))  # deleted by the next write transaction, saving a commit
        restarted = app.track(bind=sessionmaker(app.engine))  # as another process would: it drains at once
        assert [] == app.outbox(restarted)
        assert 1 == len(app.entries())
        with app.maker()() as s:
            s.add(Customer(id=2, email="b@example.com"))
            s.commit()  # the first tracker's pending delete finds the row already gone
        assert 2 == len(app.entries())

    def test_pending_delete_rides_the_next_transaction(self, app: App) -> None:
        """After the next write transaction commits, the earlier row is gone and only the newest waits."""
        tracker = app.track()
        with app.maker()() as s:
            s.add(Customer(id=1, email="a@example.com"))
            s.commit()
            s.add(Customer(id=2, email="b@example.com"))
            s.commit()
        assert ["2"] == app.waiting(tracker)
        tracker.close()
        assert [] == app.outbox(tracker)

    def test_failing_trail_then_next_commit(self, app: App) -> None:
        """When the trail refuses a write, the commit stands and the next commit records both."""
        tracker = app.track()
        app.trail.write_refusal = "the log is being migrated"
        with app.maker()() as s:
            s.add(Customer(id=1, email="a@example.com"))
            s.commit()
        assert ["1"] == app.waiting(tracker)
        assert [] == app.entries()
        app.trail.write_refusal = None
        with app.maker()() as s:
            s.add(Customer(id=2, email="b@example.com"))
            s.commit()
        assert ["1", "2"] == sorted(e.targets[0]["id"] for e in app.entries())
        assert "1" not in app.waiting(tracker)

    def test_broken_rows_do_not_block_the_rest(self, app: App) -> None:
        """An outbox row that is not a valid event is kept as a capture.invalid entry; the others go in."""
        tracker = app.track()
        with app.engine.begin() as conn:
            conn.execute(
                tracker.outbox.insert(),
                [
                    {"event_id": "e-1", "event": "{not json", "created_at": 0.0},
                    {"event_id": "e-2", "event": '{"id": "e-2", "action": "customer.create"}', "created_at": 0.0},
                ],
            )
        assert 2 == tracker.drain()
        with app.maker()() as s:
            s.add(Customer(id=1, email="a@example.com"))
            s.commit()
        invalid, missing_actor, created = app.entries()
        assert ("capture.invalid", "failure") == (invalid.action, invalid.outcome)
        assert "{not json" == invalid.get("metadata")["captured"]
        assert "actor: is required" in missing_actor.get("reason")
        assert "customer.create" == created.action
        assert ["1"] == app.waiting(tracker)  # recorded; its row goes with the next write transaction
        assert 1 == tracker.drain()
        assert 3 == len(app.entries())

    def test_threads_record_each_change_once(self, app: App) -> None:
        """Many threads committing through one tracker: every change recorded once, the outbox emptied."""
        tracker = app.track()
        maker = app.maker()
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                with app.trail.context(actor=f"u-{n}"):
                    for k in range(10):
                        with maker() as s:
                            s.add(Customer(id=n * 100 + k, email=f"{n}-{k}@example.com"))
                            s.commit()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [] == errors
        entries = app.entries()
        assert 40 == len(entries) == len({e.targets[0]["id"] for e in entries})
        assert all(e.actor["id"] == f"u-{int(e.targets[0]['id']) // 100}" for e in entries)
        tracker.drain()
        assert [] == app.outbox(tracker)
        assert 40 == len(app.entries())


class TestBackground:
    def test_changes_recorded_by_the_worker(self, app: App) -> None:
        """With background=True the entries follow the commit; drain() waits for them, exactly once each."""
        tracker = app.track(background=True)
        with app.maker()() as s, app.trail.context(actor="u-3"):
            c = Customer(id=1, email="a@example.com")
            s.add(c)
            s.commit()
            c.email = "b@example.com"
            s.commit()
            s.add(Customer(id=2, email="rolled@example.com"))
            s.flush()
            s.rollback()
        tracker.drain()
        assert [("customer.create", "u-3"), ("customer.update", "u-3")] == [
            (e.action, e.actor["id"]) for e in app.entries()
        ]
        assert [{"field": "email", "old": "a@example.com", "new": "b@example.com"}] == changes(app.entries()[1])
        assert [] == app.outbox(tracker)

    def test_close_records_what_was_committed(self, app: App) -> None:
        """close() waits for the worker, so nothing committed is left unrecorded in the process."""
        tracker = app.track(background=True)
        with app.maker()() as s:
            s.add_all([Customer(id=n, email=f"{n}@example.com") for n in range(1, 51)])
            s.commit()
        tracker.close()
        assert 50 == len(app.entries())
        assert [] == app.outbox(tracker)

    def test_worker_failure_leaves_rows_for_later(self, app: App) -> None:
        """When the trail refuses the worker's write, the rows wait; the next commit's worker records them."""
        tracker = app.track(background=True)
        app.trail.write_refusal = "the log is being migrated"
        with app.maker()() as s:
            s.add(Customer(id=1, email="a@example.com"))
            s.commit()
        with pytest.raises(ConfigError, match="being migrated"):
            tracker.drain()  # waits for the worker's failed attempt, then fails the same way itself
        assert ["1"] == app.waiting(tracker)
        app.trail.write_refusal = None
        with app.maker()() as s:
            s.add(Customer(id=2, email="b@example.com"))
            s.commit()
        tracker.drain()
        assert ["1", "2"] == [e.targets[0]["id"] for e in app.entries()]  # the older commit first


class TestBulk:
    def seed(self, app: App) -> None:
        with app.maker()() as s:
            s.add_all([Customer(id=n, email=f"c{n}@example.com", credit_limit=Decimal(100 * n)) for n in (1, 2, 3)])
            s.commit()

    def test_bulk_update_one_entry_per_row(self, app: App) -> None:
        """update(Model).where(...) records each affected row with its old and new values."""
        app.track()
        self.seed(app)
        with app.maker()() as s, app.trail.context(actor="u-admin", reason="limits doubled"):
            doubled = (
                update(Customer).where(Customer.credit_limit >= 200).values(credit_limit=Customer.credit_limit * 2)
            )
            s.execute(doubled)
            s.commit()
        updates = sorted(app.entries("customer.update"), key=lambda e: e.targets[0]["id"])
        assert [
            ("2", [{"field": "credit_limit", "old": 200, "new": 400}]),
            ("3", [{"field": "credit_limit", "old": 300, "new": 600}]),
        ] == [(e.targets[0]["id"], changes(e)) for e in updates]
        assert {("u-admin", "limits doubled")} == {(e.actor["id"], e.get("reason")) for e in updates}

    def test_bulk_update_by_primary_key(self, app: App) -> None:
        """session.execute(update(Model), [rows]) records each row it changed."""
        app.track()
        self.seed(app)
        with app.maker()() as s:
            s.execute(update(Customer), [{"id": 1, "name": "One"}, {"id": 3, "name": ""}])
            s.commit()
        assert [("1", [{"field": "name", "old": "", "new": "One"}])] == [
            (e.targets[0]["id"], changes(e)) for e in app.entries("customer.update")
        ]

    def test_bulk_delete_one_entry_per_row(self, app: App) -> None:
        """delete(Model).where(...) records each deleted row with its old values."""
        app.track(exclude=("updated_at", "password_hash", "name"))
        self.seed(app)
        with app.maker()() as s:
            s.execute(delete(Customer).where(Customer.id != 2))
            s.commit()
        assert [
            ("1", [{"field": "credit_limit", "old": 100}, {"field": "email", "old": "c1@example.com"},
                   {"field": "id", "old": 1}]),
            ("3", [{"field": "credit_limit", "old": 300}, {"field": "email", "old": "c3@example.com"},
                   {"field": "id", "old": 3}]),
        ] == sorted((e.targets[0]["id"], changes(e)) for e in app.entries("customer.delete"))  # fmt: skip

    def test_bulk_rolled_back(self, app: App) -> None:
        """A bulk statement in a rolled-back transaction records nothing."""
        tracker = app.track()
        self.seed(app)
        with app.maker()() as s:
            s.execute(delete(Customer))
            s.rollback()
        assert [] == app.entries("customer.delete")
        assert all('"customer.delete"' not in row for row in app.outbox(tracker))

    def test_raw_sql_is_not_seen(self, app: App) -> None:
        """The documented limit: text() SQL bypasses the ORM and is not recorded."""
        app.track()
        self.seed(app)
        with app.maker()() as s:
            s.execute(text("UPDATE customers SET name = 'raw'"))
            s.commit()
        assert [] == app.entries("customer.update")


class TestPrivacyAndContext:
    def test_secret_columns_never_stored(self, app: App) -> None:
        """A password column and a column named in ``redact`` are recorded as changed, their values nowhere."""
        tracker = app.track(redact=("name",))
        with app.maker()() as s:
            c = Customer(id=1, email="a@example.com", name="Ada Secret", password_hash="argon2$first")
            s.add(c)
            s.commit()
            c.password_hash, c.name = "argon2$second", "Ada Hidden"
            s.flush()
            assert not any("argon2" in row or "Ada " in row for row in app.outbox(tracker))
            s.commit()
        for entry in app.entries():
            assert "argon2" not in str(entry.data)
            assert "Ada " not in str(entry.data)
        (updated,) = app.entries("customer.update")
        assert [{"field": "name", "redacted": True}, {"field": "password_hash", "redacted": True}] == changes(updated)

    def test_context_at_flush_time(self, app: App) -> None:
        """The entry carries the context of the flush, not the one in force at commit."""
        app.track()
        with app.maker()() as s:
            with app.trail.context(actor="u-17", ip="198.51.100.23", request_id="req-1", source="web"):
                s.add(Customer(id=1, email="a@example.com"))
                s.flush()
            with app.trail.context(actor="u-99", request_id="req-2"):
                s.commit()
        (entry,) = app.entries()
        assert {"type": "user", "id": "u-17", "ip": "198.51.100.23"} == entry.actor
        assert ("web", "req-1") == (entry.get("source"), entry.get("context")["request_id"])

    def test_default_actor_without_context(self, app: App) -> None:
        """With no actor in the context, the tracker's default actor is recorded."""
        app.track(default_actor="service:billing", source="job")
        with app.maker()() as s:
            s.add(Customer(id=1, email="a@example.com"))
            s.commit()
        (entry,) = app.entries()
        assert ({"type": "service", "id": "billing"}, "job") == (entry.actor, entry.get("source"))


class TestConfiguration:
    def test_bad_arguments(self, app: App) -> None:
        """Misuse is refused with a message naming what was wrong."""
        with pytest.raises(ConfigError, match="at least one mapped class"):
            track(app.trail, app.engine)
        with pytest.raises(ConfigError, match="'str' is not a mapped class"):
            track(app.trail, app.engine, str)
        with pytest.raises(ConfigError, match="exclude: no tracked model has a column 'nope'"):
            track(app.trail, app.engine, Customer, exclude=("nope",))
        with pytest.raises(ConfigError, match="both excluded and redacted"):
            track(app.trail, app.engine, Customer, exclude=("name",), redact=("name",))
        with pytest.raises(ConfigError, match="cannot start an action"):
            track(app.trail, app.engine, Customer, action_prefix="crm app")
        with pytest.raises(ConfigError, match=r"names\[Customer\] must be a word of 1 to 150 characters; got 5"):
            track(app.trail, app.engine, Customer, names={Customer: 5})  # type: ignore[dict-item]
        with pytest.raises(ConfigError, match="names: Document is not one of the tracked models"):
            track(app.trail, app.engine, Customer, names={Document: "doc"})
        with pytest.raises(ConfigError, match="sweep_interval must be a positive number of seconds; got 0"):
            track(app.trail, app.engine, Customer, sweep_interval=0)
        with pytest.raises(ConfigError, match="needs an Engine, a Session"):
            track(app.trail, "sqlite://", Customer)  # type: ignore[arg-type]

    def test_close_stops_tracking(self, app: App) -> None:
        """After close() nothing more is recorded."""
        tracker = app.track()
        tracker.close()
        with app.maker()() as s:
            s.add(Customer(id=1, email="a@example.com"))
            s.commit()
        assert [] == app.entries()
