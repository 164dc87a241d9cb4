"""The SQLite write path: what one append costs in statements, and that its shortcuts stay right
when another connection writes the same file in between."""

from __future__ import annotations

from pathlib import Path

import graven
from graven.store.sqlite import SQLiteStore
from graven.trail import Trail


def _event(ident: str | None = None, target: str = "c-1") -> dict[str, object]:
    event: dict[str, object] = {"actor": "u-1", "action": "user.login", "targets": [("customer", target)]}
    if ident is not None:
        event["id"] = ident
    return event


def _statements(trail: Trail, event: dict[str, object]) -> list[str]:
    store = trail.store
    assert isinstance(store, SQLiteStore)
    assert store._writer is not None
    seen: list[str] = []
    store._writer.set_trace_callback(seen.append)
    try:
        trail.record(event)
    finally:
        store._writer.set_trace_callback(None)
    return [s.split(" (")[0].split(" VALUES")[0] for s in seen]


class TestStatements:
    def test_an_append_after_this_writers_own_commit_reads_nothing_back(self, trail: Trail) -> None:
        """While no other connection committed, a record() is one check of ``PRAGMA data_version``
        and the inserts: neither the tree size, nor the greatest id, nor a fresh id is read back."""
        trail.record(_event())
        expected = [
            "BEGIN IMMEDIATE",
            "PRAGMA data_version",
            "INSERT INTO entries",
            "INSERT INTO entry_targets",
            "INSERT INTO tiles",
            "COMMIT",
        ]
        assert expected == _statements(trail, _event(target="c-2"))

    def test_a_commit_by_another_connection_makes_the_writer_read_the_head(self, tmp_path: Path) -> None:
        """After another store object wrote the file, the next append reads size and ids again."""
        db, key = tmp_path / "t.db", tmp_path / "k"
        with graven.init(db, signing_key=key) as first, graven.open(db, signing_key=key) as second:
            first.record(_event())
            second.record(_event(target="c-2"))
            seen = _statements(first, _event(target="c-3"))
        assert "SELECT idx, width FROM tiles WHERE level = 0 ORDER BY idx DESC, width DESC LIMIT 1" in seen
        assert "SELECT max(event_id) FROM entries" in seen


class TestTwoWriters:
    def test_indices_stay_gapless_and_ids_are_found_across_writers(self, tmp_path: Path) -> None:
        """Two store objects taking turns on one file: each sees the other's entries and ids, so
        indices run gaplessly and a repeat of an id the other wrote (above every id this writer
        knew) returns the other's index instead of appending."""
        db, key = tmp_path / "t.db", tmp_path / "k"
        with graven.init(db, signing_key=key) as first, graven.open(db, signing_key=key) as second:
            got = [first.record(_event("m-1")), second.record(_event("m-2")), first.record(_event("m-3"))]
            got.append(second.record(_event("m-4")))
            assert [0, 1, 2, 3] == got
            assert 3 == first.record(_event("m-4"))  # "m-4" sorts above all "first" wrote itself
            assert 1 == first.record(_event("m-2"))
            assert [4, 5] == first.record_many([_event("m-5"), _event("m-6")])
            assert 6 == second.record(_event("m-7"))
            assert 7 == first.size == second.size
            report = first.verify()
            assert report.ok, report.message
