"""The event store: versions gapless from 1, optimistic concurrency, all-or-nothing batches."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import psycopg
import pytest

import graven
from graven.errors import ConflictError, ValidationError
from graven.sourcing import EventStore, NewEvent
from graven.trail import Trail
from tests.sourcing.conftest import Log

ACTOR = {"type": "user", "id": "u-1"}


def opened(n: int = 1) -> list[NewEvent]:
    return [NewEvent("Opened", {"n": i}, entry={"actor": ACTOR}) for i in range(n)]


class TestAppend:
    def test_versions_are_gapless_from_one(self, trail: Trail) -> None:
        """Appends number a stream's events 1, 2, 3 ... and store them as entries naming the stream."""
        store = EventStore(trail)
        first = store.append("account:a-1", opened(2), expected_version=0)
        second = store.append(("account", "a-1"), opened(1), expected_version=2)
        assert [1, 2, 3] == [r.version for r in [*first, *second]]
        assert 3 == store.version("account:a-1")
        events = store.read("account:a-1")
        assert [1, 2, 3] == [e.version for e in events]
        assert [r.index for r in [*first, *second]] == [e.index for e in events]
        entry = trail.get(events[0].index)
        assert {"type": "account", "id": "a-1"} == entry.targets[0]
        assert "account.opened" == entry.action
        assert {"n": 0} == events[0].data

    def test_read_from_a_version(self, trail: Trail) -> None:
        """A stream reads from a version, up to one, newest first and limited."""
        store = EventStore(trail)
        store.append("account:a-1", opened(5), expected_version=0)
        assert [3, 4, 5] == [e.version for e in store.read("account:a-1", after=2)]
        assert [2, 3] == [e.version for e in store.read("account:a-1", after=1, upto=3)]
        assert [5, 4] == [e.version for e in store.read("account:a-1", newest_first=True, limit=2)]
        assert [] == store.read("account:nobody")
        assert 0 == store.version("account:nobody")

    def test_conflict_names_stream_and_versions_and_appends_nothing(self, trail: Trail) -> None:
        """An append based on a stale version is refused whole, naming the stream and both versions."""
        store = EventStore(trail)
        store.append("account:a-1", opened(2), expected_version=0)
        size = trail.size
        with pytest.raises(ConflictError) as caught:
            store.append("account:a-1", opened(3), expected_version=1)
        assert (("account", "a-1"), 1, 2) == (caught.value.stream, caught.value.expected, caught.value.actual)
        assert "account:a-1" in str(caught.value)
        assert "expected version 1" in str(caught.value)
        assert size == trail.size
        assert 2 == store.version("account:a-1")

    def test_batch_over_streams_is_all_or_nothing(self, trail: Trail) -> None:
        """A batch for several streams stores nothing when one of them conflicts."""
        store = EventStore(trail)
        store.append("account:b", opened(1), expected_version=0)
        size = trail.size
        with pytest.raises(ConflictError) as caught:
            store.append_batch([("account:a", 0, opened(2)), ("account:b", 0, opened(1))])
        assert ("account", "b") == caught.value.stream
        assert size == trail.size
        assert 0 == store.version("account:a")
        done = store.append_batch([("account:a", 0, opened(2)), ("account:b", 1, opened(1))])
        assert [("account", "a", 1), ("account", "a", 2), ("account", "b", 2)] == [(*r.stream, r.version) for r in done]

    def test_bad_input_is_refused_before_writing(self, trail: Trail) -> None:
        """Bad streams, versions and event types name the field; nothing is written."""
        store = EventStore(trail)
        size = trail.size
        with pytest.raises(ValidationError, match="stream"):
            store.append("no-colon", opened(), expected_version=0)
        with pytest.raises(ValidationError, match="expected_version"):
            store.append("account:a", opened(), expected_version=-1)
        with pytest.raises(ValidationError, match=r"events\[0\]\.type"):
            store.append("account:a", [NewEvent("has space")], expected_version=0)
        with pytest.raises(ValidationError, match="metadata"):
            store.append("account:a", [NewEvent("X", entry={"metadata": {"sourcing": 1}})], expected_version=0)
        with pytest.raises(ValidationError, match="once"):
            store.append_batch([("account:a", 0, opened()), ("account:a", 1, opened())])
        assert size == trail.size

    def test_a_repeated_event_id_is_stored_once(self, trail: Trail) -> None:
        """Retrying an append with the same event ids returns the stored versions' indices."""
        store = EventStore(trail)
        events = [NewEvent("Opened", {}, id="0190a000-0000-7000-8000-000000000001", entry={"actor": ACTOR})]
        first = store.append("account:a", events, expected_version=0)
        again = store.append("account:a", events, expected_version=0)
        assert first == again
        assert 1 == store.version("account:a")

    def test_verify_checks_the_stream_index(self, trail: Trail) -> None:
        """An intact log verifies; verify re-derives the stream index from the entries."""
        store = EventStore(trail)
        store.append("account:a", opened(3), expected_version=0)
        trail.record(action="note.add", actor=ACTOR)
        assert trail.verify().ok


def _append_many(url: str, key: str, stream: str, n: int, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    conflicts = 0
    with graven.open(url, signing_key=key, create=False) as trail:
        store = EventStore(trail)
        done = 0
        while done < n:
            try:
                store.append(stream, opened(1), expected_version=store.version(stream))
                done += 1
            except ConflictError:
                conflicts += 1
    results.put(conflicts)


class TestConcurrency:
    def test_threads_never_share_a_version(self, trail: Trail) -> None:
        """Threads appending to one stream from what they read get gapless versions, losers conflicts."""
        store = EventStore(trail)
        conflicts: list[ConflictError] = []

        def work() -> None:
            done = 0
            while done < 10:
                try:
                    store.append("account:a", opened(1), expected_version=store.version("account:a"))
                    done += 1
                except ConflictError as exc:
                    conflicts.append(exc)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert list(range(1, 41)) == [e.version for e in store.read("account:a")]
        assert trail.verify().ok

    def test_processes_never_share_a_version(self, log: Log) -> None:
        """Processes appending to one stream get gapless versions; nothing is lost or doubled."""
        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        procs = [ctx.Process(target=_append_many, args=(log.url, str(log.key), "account:p", 8, results))
                 for _ in range(3)]  # fmt: skip
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
            assert 0 == p.exitcode
        with log.open() as trail:
            store = EventStore(trail)
            assert list(range(1, 25)) == [e.version for e in store.read("account:p")]
            assert trail.verify().ok


class TestDerivedIndex:
    def test_primary_key_forbids_two_entries_at_one_version(self, log: Log, tmp_path: Path) -> None:
        """The stream index refuses a second row for a version, and verify names a tampered row."""
        with log.open() as trail:
            EventStore(trail).append("account:a", opened(2), expected_version=0)
            first = EventStore(trail).read("account:a")[0].index
        if log.url.startswith("postgresql"):
            schema = log.url.rsplit("schema=", 1)[1]
            with psycopg.connect(log.url.split("?")[0], autocommit=True) as conn:
                with pytest.raises(psycopg.errors.UniqueViolation):
                    conn.execute(f"INSERT INTO {schema}.stream_versions VALUES ('account', 'a', 2, 99)")
                conn.execute(f"ALTER TABLE {schema}.stream_versions DISABLE TRIGGER USER")
                conn.execute(f"DELETE FROM {schema}.stream_versions WHERE version = 1")
        else:
            lite = sqlite3.connect(log.url)
            with pytest.raises(sqlite3.IntegrityError):
                lite.execute("INSERT INTO stream_versions VALUES ('account', 'a', 2, 99)")
            lite.execute("DROP TRIGGER stream_versions_no_delete")
            lite.execute("DELETE FROM stream_versions WHERE version = 1")
            lite.commit()
            lite.close()
        with log.open() as trail:
            report = trail.verify()
            assert not report.ok
            assert first == report.problems[0].index
