"""Two processes appending to one originator through graven.eventsourcing: each version lands once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from uuid import uuid4

import pytest
from eventsourcing.utils import Environment

from graven.eventsourcing import Factory
from tests.pgserver import Server

WRITER = """
import sys
from uuid import UUID
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.utils import Environment
from graven.eventsourcing import Factory

db, key, oid, name, count = sys.argv[1], sys.argv[2], UUID(sys.argv[3]), sys.argv[4], int(sys.argv[5])
factory = Factory(Environment("Bank", {"GRAVEN_DB": db, "GRAVEN_SIGNING_KEY": key}))
recorder = factory.application_recorder()
written = conflicts = 0
while written < count:
    last = recorder.select_events(oid, desc=True, limit=1)
    version = last[0].originator_version + 1 if last else 1
    try:
        recorder.insert_events([StoredEvent(oid, version, "bank:Account.Credited", name.encode())])
    except IntegrityError:
        conflicts += 1
        continue
    written += 1
factory.close()
print(conflicts)
"""


def run_two_writers(db: str, key: Path, count: int) -> list[int]:
    oid = str(uuid4())
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, db, str(key), oid, name, str(count)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]  # fmt: skip
    for proc in procs:
        _conflicts, err = proc.communicate(timeout=300)  # (how many attempts lost a race: not asserted)
        assert 0 == proc.returncode, err[-2000:]
    factory = Factory(Environment("Bank", {"GRAVEN_DB": db, "GRAVEN_SIGNING_KEY": str(key)}))
    try:
        events = factory.application_recorder().select_events(oid)
        assert factory.trail.verify().ok
    finally:
        factory.close()
    assert list(range(1, 2 * count + 1)) == [e.originator_version for e in events]
    return [e.state.count(b"a") for e in events]


@pytest.mark.slow
def test_two_processes_on_sqlite(tmp_path: Path) -> None:
    """Versions stay gapless and unique when two processes race for them on one SQLite log."""
    key = tmp_path / "es.key"
    Factory(Environment("Bank", {"GRAVEN_DB": str(tmp_path / "es.db"), "GRAVEN_SIGNING_KEY": str(key)})).close()
    marks = run_two_writers(str(tmp_path / "es.db"), key, 60)
    assert 60 == sum(marks)  # each writer's 60 events are there, once


@pytest.mark.slow
def test_two_processes_on_postgres(tmp_path: Path, pg: Server) -> None:
    """The same on PostgreSQL."""
    url, key = pg.schema_url("esp"), tmp_path / "es.key"
    Factory(Environment("Bank", {"GRAVEN_DB": url, "GRAVEN_SIGNING_KEY": str(key)})).close()
    marks = run_two_writers(url, key, 40)
    assert 40 == sum(marks)
