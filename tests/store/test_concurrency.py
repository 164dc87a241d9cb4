"""Several processes and threads writing one SQLite file: gapless, complete, verifying."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import graven
from graven.testing.store_contract import make_event
from tests.writers import run_writers

PROCESSES = 4
PER_PROCESS = 2000


@pytest.mark.slow
def test_four_processes_one_file(tmp_path: Path) -> None:
    """4 processes x 2,000 events give 8,000 gapless entries, each exactly once, that verify."""
    db, key = tmp_path / "trail.db", tmp_path / "signing.key"
    graven.init(db, signing_key=key).close()
    indices = run_writers(str(db), str(key), PROCESSES, PER_PROCESS)
    assert list(range(PROCESSES * PER_PROCESS)) == indices
    with graven.open(db, signing_key=key) as trail:
        assert PROCESSES * PER_PROCESS == trail.size
        ids = {e.id for e in trail.query(limit=10_000)}
        assert PROCESSES * PER_PROCESS == len(ids)
        report = trail.verify()
        assert report.ok, report.message
        assert report.checkpoints >= 2


def test_threads_share_one_trail(tmp_path: Path) -> None:
    """Threads recording through one Trail get distinct indices; repeats keep their first index."""
    with graven.init(tmp_path / "t.db", signing_key=tmp_path / "k") as trail:
        got: dict[int, int] = {}
        lock = threading.Lock()

        def work(worker: int) -> None:
            for n in range(50):
                event = make_event(worker * 1000 + n)
                index = trail.record(event)
                assert index == trail.record(event)  # idempotent under contention too
                with lock:
                    got[worker * 1000 + n] = index

        threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert list(range(300)) == sorted(got.values())
        assert trail.verify().ok
