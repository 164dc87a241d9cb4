"""One attempt, one entry: a trail.action() block and the SQLAlchemy tracker seeing the same change."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from graven.capture.sqlalchemy import Tracker, track
from graven.trail import Trail
from tests.capture.sqla_models import Base, Customer, Document

Orm = tuple[sessionmaker[Session], Tracker]


@pytest.fixture
def orm(tmp_path: Path, trail: Trail) -> Iterator[tuple[sessionmaker[Session], Tracker]]:
    """A SQLite application database with a customer and two documents, Documents tracked."""
    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    Base.metadata.create_all(engine)
    maker = sessionmaker(engine)
    with maker() as session:
        session.add(Customer(id=1, email="a@example.org"))
        session.add_all([Document(id=f"d-{i}", customer_id=1, title=title) for i, title in ((1, "Lease"), (2, "Deed"))])
        session.commit()
    tracker = track(trail, maker, Document)
    yield maker, tracker
    tracker.close()
    engine.dispose()


ALL = ["customer_id", "id", "scan_token", "title"]  # a deleted document's recorded columns


def entries(trail: Trail) -> list[tuple[str, str, str, list[str]]]:
    return [(e.action, e.targets[0]["id"], e.outcome, [c["field"] for c in e.changes]) for e in trail.query()]


def outbox_ids(maker: sessionmaker[Session], tracker: Tracker) -> list[str]:
    with maker() as session:
        return list(session.scalars(select(tracker.outbox.c.event_id)))


class TestFold:
    def test_action_around_orm_delete_is_one_entry(self, trail: Trail, orm: Orm) -> None:
        """The block's entry carries the ORM's field changes; the tracker writes no entry of its own."""
        maker, _ = orm
        with trail.context(actor="u-1"), trail.action("document.delete", target=("document", "d-1")) as a:
            with maker() as session:
                session.delete(session.get(Document, "d-1"))
                session.commit()
            a.metadata["why"] = "expired"
        [entry] = trail.query().entries
        assert ("document.delete", "d-1", "success") == (entry.action, entry.targets[0]["id"], entry.outcome)
        assert {"customer_id": 1, "id": "d-1", "title": "Lease"} == {c["field"]: c["old"] for c in entry.changes
                                                                      if "old" in c}  # fmt: skip
        assert entry.get("context")["transaction"]

    def test_outbox_row_deleted_after_the_action(self, trail: Trail, orm: Orm) -> None:
        """The folded change's outbox row stays until the block's entry is in, and is then removed."""
        maker, tracker = orm
        with trail.context(actor="u-1"), trail.action("document.delete", target=("document", "d-1", "Lease")):
            with maker() as session:
                session.delete(session.get(Document, "d-1"))
                session.commit()
            assert 1 == len(outbox_ids(maker, tracker))
            assert 0 == tracker.drain()  # a held row is not recorded on its own meanwhile
        tracker.close()
        assert [] == outbox_ids(maker, tracker)
        assert 1 == trail.size

    def test_failure_after_commit_keeps_the_changes(self, trail: Trail, orm: Orm) -> None:
        """A block that fails after its commit is one failure entry still holding what was committed."""
        maker, _ = orm

        def sign() -> None:
            with trail.context(actor="u-1"), trail.action("document.update", target=("document", "d-2")):
                with maker() as session:
                    session.get(Document, "d-2").title = "Deed (signed)"  # type: ignore[union-attr]
                    session.commit()
                raise RuntimeError("mail server down")

        with pytest.raises(RuntimeError):
            sign()
        assert [("document.update", "d-2", "failure", ["title"])] == entries(trail)

    def test_other_changes_are_their_own_entries(self, trail: Trail, orm: Orm) -> None:
        """Only the block's own action and target fold: a change of another row is recorded by the tracker."""
        maker, _ = orm
        block = trail.action("document.delete", target=("document", "d-1"))
        with trail.context(actor="u-1"), block, maker() as session:
            session.delete(session.get(Document, "d-1"))
            session.get(Document, "d-2").title = "Deed 2"  # type: ignore[union-attr]
            session.commit()
        assert [
            ("document.update", "d-2", "success", ["title"]),
            ("document.delete", "d-1", "success", ALL),
        ] == entries(trail)

    def test_commit_after_the_block_is_not_folded(self, trail: Trail, orm: Orm) -> None:
        """A change committed after the block ended is the tracker's entry: the block never saw it committed."""
        maker, _ = orm
        with trail.context(actor="u-1"), maker() as session:
            with trail.action("document.delete", target=("document", "d-1")):
                session.delete(session.get(Document, "d-1"))
                session.flush()
            session.commit()
        assert [("document.delete", "d-1", "success", []), ("document.delete", "d-1", "success", ALL)] == entries(trail)

    def test_rolled_back_change_is_not_carried(self, trail: Trail, orm: Orm) -> None:
        """A change rolled back inside the block adds nothing to its entry."""
        maker, _ = orm
        with trail.context(actor="u-1"), trail.action("document.delete", target=("document", "d-1")) as a:
            with maker() as session:
                session.delete(session.get(Document, "d-1"))
                session.flush()
                session.rollback()
            a.deny("the document is under legal hold")
        assert [("document.delete", "d-1", "denied", [])] == entries(trail)

    def test_crash_before_the_action_records_the_change(self, orm: Orm) -> None:
        """Should the block's entry never be written, the change is still recorded from the outbox (on its own)."""
        maker, tracker = orm
        trail = tracker.trail
        with trail.context(actor="u-1"):
            block = trail.action("document.delete", target=("document", "d-1"))
            block.__enter__()
            with maker() as session:
                session.delete(session.get(Document, "d-1"))
                session.commit()
            tracker.folded_released(list(block._folded))  # what a failed write of the block's entry does
        assert 1 == tracker.drain()
        assert [("document.delete", "d-1", "success", ALL)] == entries(trail)
