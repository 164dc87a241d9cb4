"""Projections: exactly once across crashes (a real SIGKILL), stop at a failing handler, rebuild."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graven.core.model import Entry
from graven.sourcing import AppDB, Projection, ProjectionError, Projector
from graven.trail import Trail
from tests.pgserver import Server
from tests.sourcing.conftest import Log
from tests.sourcing.projection_worker import projection

ACTOR = {"type": "user", "id": "u-1"}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app_db(log: Log, request: pytest.FixtureRequest) -> str:
    if log.url.startswith("postgresql"):
        server: Server = request.getfixturevalue("pg")
        return server.schema_url("app")
    return str(log.key.parent / "app.db")


def fill(trail: Trail, n: int) -> None:
    trail.record_many([{"action": f"item.n{i % 7}", "actor": ACTOR} for i in range(n)])


def seen(db: AppDB) -> tuple[int, int]:
    [(count, distinct)] = db.execute("SELECT count(*), count(DISTINCT idx) FROM seen")
    return int(count), int(distinct)


class TestProjector:
    def test_applies_each_entry_once_and_resumes_from_its_position(self, trail: Trail, app_db: str) -> None:
        """Runs apply only the entries after the stored position; status shows position and lag."""
        projector = Projector(trail, app_db, [projection()])
        projector.db.execute("CREATE TABLE seen (idx BIGINT NOT NULL, action TEXT NOT NULL)")
        base = trail.size
        fill(trail, 30)
        assert base + 30 == projector.run()
        fill(trail, 5)
        [status] = projector.status()
        assert (trail.size - 6, 5) == (status.position, status.lag)
        assert 5 == projector.run()
        assert (trail.size, trail.size) == seen(projector.db)
        assert 0 == projector.status()[0].lag

    def test_failing_handler_stops_at_that_entry_and_resumes_there(self, trail: Trail, app_db: str) -> None:
        """A raising handler: entries before it stand, the failure is reported, the fix resumes there."""
        fill(trail, 10)
        bad = trail.size - 4
        broken = True

        def handle(entry: Entry, db: AppDB) -> None:
            if broken and entry.index == bad:
                raise RuntimeError("read model says no")
            db.execute("INSERT INTO seen (idx, action) VALUES (?, ?)", (entry.index, entry.action))

        projector = Projector(trail, app_db, [Projection("seen", handle)])
        projector.db.execute("CREATE TABLE seen (idx BIGINT NOT NULL, action TEXT NOT NULL)")
        with pytest.raises(ProjectionError, match=rf"projection seen stopped at entry {bad}: .*RuntimeError"):
            projector.run()
        [status] = projector.status()
        assert bad - 1 == status.position
        assert status.error is not None
        assert f"entry {bad}" in status.error
        assert (bad, bad) == seen(projector.db)
        broken = False
        assert 4 == projector.run()
        assert (trail.size, trail.size) == seen(projector.db)
        assert projector.status()[0].error is None

    def test_rebuild_replays_from_zero(self, trail: Trail, app_db: str) -> None:
        """A rebuild clears the read model with the position and replays everything once."""
        fill(trail, 12)
        projector = Projector(trail, app_db, [projection()])
        projector.db.execute("CREATE TABLE seen (idx BIGINT NOT NULL, action TEXT NOT NULL)")
        projector.run()
        assert trail.size == projector.rebuild("seen")
        assert (trail.size, trail.size) == seen(projector.db)

    def test_unknown_projection_is_named(self, trail: Trail, app_db: str) -> None:
        """Asking for a projection that is not registered names the known ones."""
        with pytest.raises(Exception, match="projection: must be one of seen"):
            Projector(trail, app_db, [projection()]).run("nope")


class TestKill:
    def test_sigkill_mid_run_neither_misses_nor_doubles(self, log: Log, app_db: str) -> None:
        """A runner killed by SIGKILL mid-run, then run again, has applied every entry exactly once."""
        with log.open() as trail:
            fill(trail, 3000)
            size = trail.size
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        args = [sys.executable, "-m", "tests.sourcing.projection_worker", log.url, str(log.key), app_db]
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        assert b"ready" in proc.stdout.readline()
        db = AppDB(app_db)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = db.execute("SELECT position FROM graven_projections WHERE name = 'seen'")
            if rows and int(rows[0][0]) > 600:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert -signal.SIGKILL == proc.returncode
        [(position,)] = db.execute("SELECT position FROM graven_projections WHERE name = 'seen'")
        assert 0 < int(position) < size - 1  # killed mid-run
        count, distinct = seen(db)
        assert (int(position) + 1, int(position) + 1) == (count, distinct)  # writes and position agree
        subprocess.run(args, cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
        assert (size, size) == seen(db)
        db.close()
