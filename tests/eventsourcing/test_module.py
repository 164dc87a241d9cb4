"""graven.eventsourcing beyond the library's own cases: what the log holds, errors, and who is named."""

from __future__ import annotations

import sqlite3
import zlib
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import (
    DataError,
    InfrastructureFactoryError,
    IntegrityError,
    StoredEvent,
    Tracking,
)
from eventsourcing.utils import Environment

import graven
from graven.eventsourcing import Factory
from graven.eventsourcing._entries import EVENTS


@pytest.fixture
def settings(tmp_path: Path) -> dict[str, str]:
    return {"GRAVEN_DB": str(tmp_path / "es.db"), "GRAVEN_SIGNING_KEY": str(tmp_path / "es.key")}


@pytest.fixture
def factory(settings: dict[str, str]) -> Any:
    made = Factory(Environment("Bank", settings))
    yield made
    made.close()


def event(
    oid: Any, version: int, state: bytes = b'{"amount":"10.00"}', topic: str = "bank:Account.Credited"
) -> StoredEvent:
    return StoredEvent(originator_id=oid, originator_version=version, topic=topic, state=state)


def test_states_read_back_byte_for_byte(factory: Factory) -> None:
    """UTF-8 state is kept as readable text, other bytes (compressed) as base64; both read back exactly."""
    recorder = factory.application_recorder()
    oid = uuid4()
    text = '{"name":"Zoë ☃","note":"a\\u0000b"}'.encode()
    packed = zlib.compress(b'{"balance":"65.00"}')
    recorder.insert_events([event(oid, 1, text), event(oid, 2, packed)])
    assert [text, packed] == [e.state for e in recorder.select_events(oid)]
    first, second = factory.trail.history((EVENTS, str(oid)))
    assert text.decode() == first.data["metadata"]["sourcing"]["data"]["state"]
    assert "state_base64" in second.data["metadata"]["sourcing"]["data"]
    assert "eventsourcing.event" == first.action


def test_text_originator_ids_stay_text(factory: Factory) -> None:
    """An originator id given as text reads back as text, a UUID as a UUID."""
    recorder = factory.aggregate_recorder()
    recorder.insert_events([event("account-7", 0)])
    assert "account-7" == recorder.select_events("account-7")[0].originator_id


def test_the_log_verifies_and_names_the_service(factory: Factory) -> None:
    """Entries name the application as the acting service by default, and the log verifies."""
    recorder = factory.application_recorder()
    recorder.insert_events([event(uuid4(), 1)])
    entry = factory.trail.get(0)
    assert {"type": "service", "id": "Bank"} == {k: entry.actor[k] for k in ("type", "id")}
    assert factory.trail.verify().ok


def test_the_context_names_who_acted(factory: Factory) -> None:
    """Inside a graven context, entries name its actor and carry its reason."""
    recorder = factory.application_recorder()
    with factory.trail.context(actor="u-17", reason="ticket 4411"):
        recorder.insert_events([event(uuid4(), 1)])
    entry = factory.trail.get(0)
    assert ("u-17", "ticket 4411") == (entry.actor["id"], entry.data["reason"])


def test_other_entries_leave_gaps_in_notification_ids(factory: Factory) -> None:
    """Plain audit entries in the same log are not notifications: ids skip them, reads page past them."""
    recorder = factory.application_recorder()
    assert [1] == recorder.insert_events([event(uuid4(), 1, topic="t1")])
    factory.trail.record(action="user.login", actor={"type": "user", "id": "u-1"})
    assert [3] == recorder.insert_events([event(uuid4(), 1, topic="t2")])
    assert [1, 3] == [n.id for n in recorder.select_notifications(None, 10)]
    assert [3] == [n.id for n in recorder.select_notifications(2, 10)]
    assert [3] == [n.id for n in recorder.select_notifications(None, 10, topics=["t2"])]
    assert 3 == recorder.max_notification_id()


def test_a_concurrent_writer_is_refused_with_nothing_written(settings: dict[str, str]) -> None:
    """Two writers (two factories, as two processes): one whose last append is stale is refused by
    the log's stream index, checks again, and gets IntegrityError for a taken version (neither its
    events nor its tracking record land) or records a free one on its retry."""
    first, second = Factory(Environment("Bank", settings)), Factory(Environment("Bank", settings))
    try:
        a, b = first.process_recorder(), second.process_recorder()
        oid = uuid4()
        b.insert_events([event(oid, 1)])  # b remembers the stream at version 1
        a.insert_events([event(oid, 2)])
        with pytest.raises(IntegrityError, match="already has version 2"):
            b.insert_events([event(oid, 2, b"other")], tracking=Tracking("upstream", 5))
        assert [(1, b'{"amount":"10.00"}'), (2, b'{"amount":"10.00"}')] == [
            (e.originator_version, e.state) for e in a.select_events(oid)
        ]
        assert a.max_tracking_id("upstream") is None
        assert [3] == b.insert_events([event(oid, 3)], tracking=Tracking("upstream", 5))
        assert [1, 2, 3] == [e.originator_version for e in a.select_events(oid)]
        assert 5 == a.max_tracking_id("upstream")
    finally:
        first.close()
        second.close()


def test_an_oversized_state_is_a_data_error_naming_the_limit(factory: Factory) -> None:
    """A state beyond the entry's limits is refused with the log's message; nothing is written."""
    recorder = factory.application_recorder()
    oid = uuid4()
    with pytest.raises(DataError, match="metadata"):
        recorder.insert_events([event(oid, 1), event(oid, 2, b"x" * 70_000)])
    assert 0 == factory.trail.size


def test_lower_versions_are_refused(factory: Factory) -> None:
    """A version at or below the originator's last one is refused like a duplicate."""
    recorder = factory.aggregate_recorder()
    oid = uuid4()
    recorder.insert_events([event(oid, 1), event(oid, 3)])
    with pytest.raises(IntegrityError, match="already has version 3"):
        recorder.insert_events([event(oid, 2)])


def test_versions_with_gaps_are_read_by_range(factory: Factory) -> None:
    """Snapshots skip versions: range reads still select by the library's versions."""
    recorder = factory.aggregate_recorder("snapshots")
    oid = uuid4()
    recorder.insert_events([event(oid, 5)])
    recorder.insert_events([event(oid, 10)])
    recorder.insert_events([event(oid, 15)])
    assert [10] == [e.originator_version for e in recorder.select_events(oid, lte=12, desc=True, limit=1)]
    assert [10, 15] == [e.originator_version for e in recorder.select_events(oid, gt=5)]


def test_no_log_without_create_table(tmp_path: Path) -> None:
    """CREATE_TABLE=no with no log there: a factory error naming the setting."""
    env = {"GRAVEN_DB": str(tmp_path / "none.db"), "GRAVEN_SIGNING_KEY": str(tmp_path / "k"), "CREATE_TABLE": "no"}
    with pytest.raises(InfrastructureFactoryError, match="GRAVEN_DB"):
        Factory(Environment("Bank", env))
    assert not (tmp_path / "none.db").exists()


def test_persistence_module_setting_finds_the_factory(settings: dict[str, str]) -> None:
    """PERSISTENCE_MODULE=graven.eventsourcing resolves to this module's one factory."""
    from eventsourcing.persistence import InfrastructureFactory

    made = InfrastructureFactory.construct(
        Environment("Bank", {"PERSISTENCE_MODULE": "graven.eventsourcing", **settings})
    )
    try:
        assert isinstance(made, Factory)
    finally:
        made.close()


def test_graven_open_reads_what_the_application_wrote(settings: dict[str, str]) -> None:
    """The application's log is an ordinary Graven log: graven.open reads and verifies it."""
    made = Factory(Environment("Bank", settings))
    made.application_recorder().insert_events([event(uuid4(), 1)])
    made.close()
    with graven.open(settings["GRAVEN_DB"], signing_key=settings["GRAVEN_SIGNING_KEY"]) as trail:
        assert 1 == trail.size
        assert trail.verify().ok


def test_a_rewritten_event_is_caught(settings: dict[str, str]) -> None:
    """Someone with the database file changes a stored event's state: verification names the entry."""
    made = Factory(Environment("Bank", settings))
    recorder = made.application_recorder()
    oid = uuid4()
    recorder.insert_events([event(oid, 1), event(oid, 2, b'{"amount":"99.00"}')])
    made.close()
    conn = sqlite3.connect(settings["GRAVEN_DB"], isolation_level=None)
    trigger = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'entries_no_update'").fetchone()[0]
    conn.execute("DROP TRIGGER entries_no_update")
    conn.execute("UPDATE entries SET body = replace(body, '99.00', '9.00') WHERE idx = 1")
    conn.execute(trigger)
    conn.close()
    with graven.open(settings["GRAVEN_DB"], signing_key=settings["GRAVEN_SIGNING_KEY"]) as trail:
        report = trail.verify()
    assert (False, 1) == (report.ok, report.first_bad_index)
