"""SQLAlchemy capture with the log in the application's own PostgreSQL database
(``same_database=True``): events written into the log's outbox in the session's transaction."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from psycopg import sql
from sqlalchemy import JSON, Engine, String, create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

import graven
from graven.capture import pg as capture
from graven.capture.sqlalchemy import Tracker, track, track_async
from graven.errors import ConfigError
from graven.trail import Trail
from tests.capture.sqla_models import Base, Customer
from tests.pgserver import Server, with_url


class NoteBase(DeclarativeBase):
    pass


class Note(NoteBase):
    """A ``json`` column (not jsonb) can hold U+0000, which the log's jsonb outbox cannot."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[Any] = mapped_column(JSON)
    title: Mapped[str] = mapped_column(String(200), default="")


@dataclass
class Shop:
    pg: Server
    schema: str
    role: str
    engine: Engine  # as the application's role
    trail: Trail
    trackers: list[Tracker]

    def track(self, *models: type, **options: Any) -> Tracker:
        tracker = track(self.trail, options.pop("bind", None) or self.engine, *(models or (Customer,)), **options)
        self.trackers.append(tracker)
        return tracker

    def pending(self) -> int:
        query = sql.SQL("SELECT count(*) FROM {}.captured").format(sql.Identifier(self.schema))
        return int(self.pg.db.execute(query).fetchall()[0][0])

    def outbox(self) -> int:
        return int(self.pg.db.execute("SELECT count(*) FROM graven_outbox").fetchall()[0][0])

    def entries(self, prefix: str = "customer.") -> list[graven.Entry]:
        return [e for e in self.trail.query(limit=1000) if e.action.startswith(prefix)]


def owner_url(pg: Server) -> str:
    return pg.url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def shop(pg: Server, tmp_path: Path) -> Iterator[Shop]:
    """The models' tables and the outbox made by the owner; the application connects as its own role."""
    schema = f"same_{secrets.token_hex(4)}"
    owner = create_engine(owner_url(pg))
    Base.metadata.create_all(owner)
    NoteBase.metadata.create_all(owner)
    trail = graven.init(with_url(pg.url, schema=schema), signing_key=tmp_path / "signing.key")
    track(trail, owner, Customer).close()  # creates graven_outbox
    role = pg.login_role("orm")
    pg.db.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(
        sql.Identifier(role)))  # fmt: skip
    pg.db.execute(sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {}").format(sql.Identifier(role)))
    capture.grant_record(pg.db, schema, role)
    engine = create_engine(owner_url(pg).replace("postgres@", f"{role}@", 1))
    made = Shop(pg, schema, role, engine, trail, [])
    try:
        yield made
    finally:
        for tracker in made.trackers:
            tracker.close()
        trail.close()
        engine.dispose()
        Base.metadata.drop_all(owner)
        NoteBase.metadata.drop_all(owner)
        with owner.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS graven_outbox"))
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        owner.dispose()


class TestSameDatabase:
    def test_the_commit_is_the_only_commit(self, shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
        shop.track(same_database=True, exclude=("updated_at",))
        writes: list[int] = []
        real = shop.trail.store.write
        monkeypatch.setattr(shop.trail.store, "write", lambda *a, **k: writes.append(1) or real(*a, **k))
        with sessionmaker(shop.engine)() as s:
            s.add_all([Customer(id=1, email="a@example.com"), Customer(id=2, email="b@example.com")])
            s.commit()
            s.get(Customer, 1).name = "Ada"  # type: ignore[union-attr]
            s.commit()
        assert writes == []  # no write of the trail after the commits
        assert (shop.pending(), shop.outbox()) == (3, 0)
        assert shop.trail.integrate() == 3
        assert [("customer.create", "1"), ("customer.create", "2"), ("customer.update", "1")] == [
            (e.action, e.targets[0]["id"]) for e in shop.entries()
        ]
        assert shop.trail.verify().ok

    def test_rollback_and_savepoints_leave_nothing(self, shop: Shop) -> None:
        shop.track(same_database=True)
        with sessionmaker(shop.engine)() as s:
            s.add(Customer(id=1, email="gone@example.com"))
            s.flush()
            s.rollback()
            s.add(Customer(id=2, email="kept@example.com"))
            with s.begin_nested() as sp:
                s.add(Customer(id=3, email="dropped@example.com"))
                s.flush()
                sp.rollback()
            s.commit()
        assert shop.pending() == 1
        shop.trail.integrate()
        assert [("customer.create", "2")] == [(e.action, e.targets[0]["id"]) for e in shop.entries()]

    def test_drain_integrates_and_background_integrates_after_commits(self, shop: Shop) -> None:
        tracker = shop.track(same_database=True)
        with sessionmaker(shop.engine)() as s:
            s.add(Customer(id=1, email="a@example.com"))
            s.commit()
        assert tracker.drain() == 1
        assert len(shop.entries()) == 1
        tracker.close()
        shop.track(same_database=True, background=True)
        with sessionmaker(shop.engine)() as s:
            s.add(Customer(id=2, email="b@example.com"))
            s.commit()
        deadline = time.monotonic() + 10
        while len(shop.entries()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # the worker integrates; nothing here calls integrate()
        assert [("customer.create", "2")] == [(e.action, e.targets[0]["id"]) for e in shop.entries()[1:]]
        assert shop.pending() == 0

    def test_a_change_folded_into_an_action_goes_by_the_outbox(self, shop: Shop) -> None:
        """One attempt, one entry: the block's own change is not also integrated on its own."""
        shop.track(same_database=True)
        with sessionmaker(shop.engine)() as s:
            s.add(Customer(id=1, email="a@example.com"))
            s.commit()
        with (
            shop.trail.context(actor="u-1"),
            shop.trail.action("customer.update", target=("customer", "1")),
            sessionmaker(shop.engine)() as s,
        ):
            s.get(Customer, 1).name = "Ada"  # type: ignore[union-attr]
            s.add(Customer(id=2, email="b@example.com"))  # not the block's: straight into the log's outbox
            s.commit()
            assert shop.outbox() == 1
        shop.trail.integrate()
        got = [(e.action, e.targets[0]["id"], [c["field"] for c in e.changes]) for e in shop.entries()]
        assert sorted(got) == [
            ("customer.create", "1", ["credit_limit", "email", "id", "name", "password_hash", "updated_at"]),
            ("customer.create", "2", ["credit_limit", "email", "id", "name", "password_hash", "updated_at"]),
            ("customer.update", "1", ["name"]),
        ]
        shop.trackers[0].close()  # the folded change's outbox row goes with the tracker's next write
        assert (shop.outbox(), shop.pending()) == (0, 0)

    def test_text_jsonb_cannot_hold_goes_by_the_outbox(self, shop: Shop) -> None:
        tracker = shop.track(Note, same_database=True)
        with sessionmaker(shop.engine)() as s:
            s.add(Note(id=1, body={"text": "a\x00b"}))
            s.add(Note(id=2, body={"text": "fine"}))
            s.commit()
        rows = shop.pg.db.execute("SELECT event FROM graven_outbox").fetchall()
        assert [orjson.loads(row[0])["targets"][0]["id"] for row in rows] == ["1"]  # note 1 alone: the app's outbox
        tracker.drain()
        notes = {e.targets[0]["id"]: e.changes for e in shop.entries("note.")}
        assert set(notes) == {"1", "2"}
        assert {"field": "body", "new": {"text": "a\x00b"}} in notes["1"]

    def test_async_sessions(self, shop: Shop) -> None:
        async def main() -> int:
            url = owner_url(shop.pg).replace("postgres@", f"{shop.role}@", 1).replace("+psycopg", "+psycopg_async")
            engine = create_async_engine(url)
            tracker = await track_async(shop.trail, engine, Customer, same_database=True)
            try:
                from sqlalchemy.ext.asyncio import async_sessionmaker

                async with async_sessionmaker(engine)() as s:
                    s.add(Customer(id=1, email="a@example.com"))
                    await s.commit()
                pending = shop.pending()
                await tracker.adrain()
                return pending
            finally:
                await tracker.aclose()
                await engine.dispose()

        assert asyncio.run(main()) == 1
        assert [("customer.create", "1")] == [(e.action, e.targets[0]["id"]) for e in shop.entries()]


class TestRefused:
    def test_a_role_without_the_grant(self, shop: Shop) -> None:
        capture.grant_record(shop.pg.db, shop.schema, shop.role, revoke=True)
        with pytest.raises(ConfigError, match=f"role {shop.role} may not record events.*grant-record {shop.role}"):
            shop.track(same_database=True)
        shop.track()  # the application's outbox needs no grant

    def test_a_log_made_before_the_function_gets_it_from_the_trail(self, shop: Shop) -> None:
        """The trail's role (the log's owner) installs capture_record; the application's role still needs the grant."""
        function = f"{shop.schema}.capture_record(jsonb)"
        shop.pg.db.execute(f"DROP FUNCTION {function}")
        with pytest.raises(ConfigError, match="may not record events"):
            shop.track(same_database=True)
        assert shop.pg.db.execute("SELECT to_regprocedure(%s)", (function,)).fetchall()[0][0] is not None
        capture.grant_record(shop.pg.db, shop.schema, shop.role)
        shop.track(same_database=True)

    def test_another_database(self, shop: Shop) -> None:
        elsewhere = create_engine(owner_url(shop.pg).rpartition("/")[0] + "/postgres")
        try:
            with pytest.raises(
                ConfigError, match="same_database=True, but the application's connection reaches database postgres"
            ):
                shop.track(bind=elsewhere, same_database=True)
        finally:
            elsewhere.dispose()

    def test_a_log_on_sqlite_or_an_app_on_sqlite(self, shop: Shop, tmp_path: Path) -> None:
        refused = pytest.raises(ConfigError, match="needs a PostgreSQL log")
        with graven.init(str(tmp_path / "log.db")) as trail, refused:
            track(trail, shop.engine, Customer, same_database=True)
        lite = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
        try:
            with pytest.raises(ConfigError, match="the engine is sqlite"):
                track(shop.trail, lite, Customer, same_database=True)
        finally:
            lite.dispose()

    def test_without_same_database_the_outbox_is_used(self, shop: Shop) -> None:
        """The default stays the application's outbox and the commit after it."""
        shop.track()
        with Session(shop.engine) as s:
            s.add(Customer(id=1, email="a@example.com"))
            s.commit()
        assert shop.pending() == 0
        assert len(shop.entries()) == 1
