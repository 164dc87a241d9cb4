"""Tampering with a real SQLite file, as someone with access to it would, after dropping the triggers.

Every kind of damage is detected by verification, with the right first bad index and kind.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import graven
from graven.core import merkle
from graven.core.note import Signer
from graven.store import sqlite as sqlite_store
from graven.store import sqlite_streams
from graven.store.sqlite import SQLiteStore
from graven.testing.store_contract import make_event
from graven.trail import Trail

SIZE = 20
BATCH = 4


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Path]:
    """A closed 20-entry log, recorded in batches of 4 with a checkpoint after each batch."""
    db, key = tmp_path / "trail.db", tmp_path / "signing.key"
    graven.init(db, signing_key=key).close()
    with graven.open(db, signing_key=key, checkpoint_interval=0) as trail:
        for start in range(0, SIZE, BATCH):
            trail.record_many(make_event(n) for n in range(start, start + BATCH))
    return db


def attacker(db: Path) -> sqlite3.Connection:
    """A raw connection with the immutability triggers dropped."""
    conn = sqlite3.connect(db, isolation_level=None)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    return conn


def verify(db: Path, **kw: object) -> graven.Report:
    with graven.open(db, signing_key=db.with_name("signing.key")) as trail:
        return trail.verify(**kw)  # type: ignore[arg-type]


def shift(conn: sqlite3.Connection, table: str, start: int, delta: int) -> None:
    """Renumber rows from ``start`` on by ``delta``, one at a time so the key never collides."""
    rows = conn.execute(f"SELECT idx FROM {table} WHERE idx >= ? ORDER BY idx", (start,)).fetchall()
    for (idx,) in rows if delta < 0 else reversed(rows):
        conn.execute(f"UPDATE {table} SET idx = ? WHERE idx = ?", (idx + delta, idx))


class TestIntact:
    def test_untouched_log_verifies(self, log: Path) -> None:
        """A log nobody touched verifies, checking every checkpoint."""
        report = verify(log)
        assert report.ok, report.message
        assert (SIZE, SIZE // BATCH + 1) == (report.entries, report.checkpoints)


class TestTamper:
    def test_one_field_changed(self, log: Path) -> None:
        """Editing one field of one entry is reported as modified at that index."""
        attacker(log).execute("UPDATE entries SET body = replace(body, '\"u-2\"', '\"u-9\"') WHERE idx = 5")
        report = verify(log)
        assert (5, "modified") == (report.first_bad_index, report.kind)
        assert "Entry 5 was modified" in report.message

    def test_entry_deleted(self, log: Path) -> None:
        """Deleting an entry leaves a gap, reported as missing at that index."""
        attacker(log).execute("DELETE FROM entries WHERE idx = 7")
        report = verify(log)
        assert (7, "missing") == (report.first_bad_index, report.kind)

    def test_entry_deleted_and_renumbered(self, log: Path) -> None:
        """Deleting an entry and moving the later ones down is still reported as missing there."""
        conn = attacker(log)
        conn.execute("DELETE FROM entries WHERE idx = 7")
        conn.execute("DELETE FROM entry_targets WHERE idx = 7")
        shift(conn, "entries", 8, -1)
        report = verify(log)
        assert (7, "missing") == (report.first_bad_index, report.kind)

    def test_forged_entry_inserted_in_the_middle(self, log: Path) -> None:
        """A forged entry slipped in with the later ones moved up is reported as inserted."""
        conn = attacker(log)
        body, *rest = conn.execute(
            "SELECT body, event_id, occurred_at, actor_id, action, outcome, source, tenant FROM entries WHERE idx = 4"
        ).fetchone()
        shift(conn, "entries", 4, +1)
        forged = body.replace("evt-00000004", "evt-forged")
        conn.execute("INSERT INTO entries VALUES (4, ?, ?, ?, ?, ?, ?, ?, ?)", (forged, "evt-forged", *rest[1:]))
        report = verify(log)
        assert (4, "inserted") == (report.first_bad_index, report.kind)

    def test_forged_entry_appended(self, log: Path) -> None:
        """A row added after the last entry, never integrated into the tree, is reported as inserted."""
        conn = attacker(log)
        body = conn.execute("SELECT body FROM entries WHERE idx = 3").fetchone()[0].replace("evt-00000003", "evt-x")
        conn.execute(
            "INSERT INTO entries (idx, body, event_id, occurred_at, action, outcome) "
            "VALUES (?, ?, 'evt-x', 't', 'a.b', 'success')",
            (SIZE, body),
        )
        report = verify(log)
        assert (SIZE, "inserted") == (report.first_bad_index, report.kind)

    def test_two_entries_swapped(self, log: Path) -> None:
        """Swapping the content of two entries is reported as reordered at the first of them."""
        conn = attacker(log)
        a = conn.execute("SELECT body FROM entries WHERE idx = 3").fetchone()[0]
        b = conn.execute("SELECT body FROM entries WHERE idx = 9").fetchone()[0]
        conn.execute("UPDATE entries SET body = ? WHERE idx = 3", (b,))
        conn.execute("UPDATE entries SET body = ? WHERE idx = 9", (a,))
        report = verify(log)
        assert (3, "reordered") == (report.first_bad_index, report.kind)
        assert "3 and 9" in report.message

    def test_tail_cut(self, log: Path) -> None:
        """Deleting the newest entries is reported as truncated where the cut starts."""
        attacker(log).execute("DELETE FROM entries WHERE idx >= 15")
        report = verify(log)
        assert (15, "truncated") == (report.first_bad_index, report.kind)

    def test_tail_cut_with_its_hashes_and_checkpoints(self, log: Path) -> None:
        """Removing the tail together with its tree hashes and checkpoints is caught by the kept checkpoint."""
        conn = attacker(log)
        for table in ("entries", "entry_targets"):
            conn.execute(f"DELETE FROM {table} WHERE idx >= 15")
        (part,) = conn.execute("SELECT hashes FROM tiles WHERE width = 16").fetchone()
        conn.execute("DELETE FROM tiles WHERE width > 12")
        conn.execute("INSERT INTO tiles VALUES (0, 0, 15, ?)", (part[:96],))
        conn.execute("DELETE FROM checkpoints WHERE size > 12")
        report = verify(log)
        assert (15, "truncated") == (report.first_bad_index, report.kind)

    def test_entry_changed_and_hashes_recomputed(self, log: Path) -> None:
        """Rewriting an entry and every stored hash is caught by the signed checkpoints, within the batch."""
        conn = attacker(log)
        conn.execute("UPDATE entries SET body = replace(body, '\"u-2\"', '\"u-9\"') WHERE idx = 5")
        bodies = [b.encode() for (b,) in conn.execute("SELECT body FROM entries ORDER BY idx")]
        conn.execute("DELETE FROM tiles")
        conn.execute("INSERT INTO tiles VALUES (0, 0, 20, ?)", (b"".join(merkle.leaf_hash(b) for b in bodies),))
        report = verify(log)
        assert (4, "modified") == (report.first_bad_index, report.kind)
        assert "between index 4 and 7" in report.message

    def test_query_column_edited(self, log: Path) -> None:
        """Editing an indexed column (not the content) is caught: searches would lie."""
        attacker(log).execute("UPDATE entries SET actor_id = 'u-7' WHERE idx = 6")
        report = verify(log)
        assert (6, "modified") == (report.first_bad_index, report.kind)
        assert "indexed columns" in report.message

    def test_target_row_deleted(self, log: Path) -> None:
        """Hiding an entry from a target's history by deleting its target row is caught."""
        attacker(log).execute("DELETE FROM entry_targets WHERE idx = 9")
        report = verify(log)
        assert (9, "modified") == (report.first_bad_index, report.kind)

    def test_stored_tree_hash_altered(self, tmp_path: Path) -> None:
        """Altering a hash of an upper tile (proofs would break) is reported at its first entry."""
        db, key = tmp_path / "big.db", tmp_path / "signing.key"
        with graven.init(db, signing_key=key) as trail:
            trail.record_many(make_event(n) for n in range(600))
        conn = attacker(db)
        (hashes,) = conn.execute("SELECT hashes FROM tiles WHERE level = 1").fetchone()
        conn.execute("UPDATE tiles SET hashes = ? WHERE level = 1", (hashes[:32] + bytes(32),))
        report = verify(db)
        assert (256, "modified") == (report.first_bad_index, report.kind)
        assert "stored tree hash over entries 256..511" in report.message

    def test_file_replaced_by_log_under_another_key(self, log: Path, tmp_path: Path) -> None:
        """A log rebuilt from scratch under another key and copied over the file is reported as forked."""
        other = tmp_path / "other"
        other.mkdir()
        db2 = other / "trail.db"
        with graven.init(db2, signing_key=other / "k") as forged:
            forged.record_many(make_event(n, reason="rewritten" if n == 6 else None) for n in range(SIZE))
        for suffix in ("", "-wal", "-shm"):
            Path(str(log) + suffix).unlink(missing_ok=True)
        shutil.copy(db2, log)
        with graven.open(log, signing_key=None, create=False) as trail:
            report = trail.verify(key=Signer.from_text(log.with_name("signing.key").read_text().strip()).verifier())
        assert "forked" == report.kind
        assert 0 == report.first_bad_index

    def test_pinned_key_rejects_other_signer(self, log: Path) -> None:
        """Given a pinned verifier key, checkpoints signed by any other key are rejected."""
        stranger = Signer.generate("stranger.example/log").verifier()
        report = verify(log, key=stranger.to_text())
        assert "forked" == report.kind
        assert not report.ok


def test_trail_refuses_to_sign_inconsistent_tree(log: Path) -> None:
    """After the stored tree is rewritten, the sequencer refuses to sign a new checkpoint (and,
    holding the log to the checkpoint kept beside the key, to append at all)."""
    conn = attacker(log)
    conn.execute("UPDATE tiles SET hashes = zeroblob(length(hashes)) WHERE width = 20")
    with (
        graven.open(log, signing_key=log.with_name("signing.key"), checkpoint_interval=0) as trail,
        pytest.raises(graven.IntegrityError, match=r"refusing to (append|sign)"),
    ):
        Trail.record(trail, make_event(100))


def test_forged_target_row_does_not_leak_into_history(log: Path) -> None:
    """A target row pointing an entry at a target it does not name never shows up in that history."""
    attacker(log).execute("INSERT INTO entry_targets VALUES ('customer', 'c-secret', 5)")
    with graven.open(log, signing_key=log.with_name("signing.key")) as trail:
        assert [] == trail.history("customer:c-secret")
        report = trail.verify()
        assert (5, "modified") == (report.first_bad_index, report.kind)


class TestWreckage:
    def test_dropped_table_is_damage_not_a_usage_error(self, log: Path) -> None:
        """Dropping a whole table of the log is reported as damage."""
        attacker(log).execute("DROP TABLE tiles")
        report = verify(log)
        assert (0, "modified") == (report.first_bad_index, report.kind)
        assert "tiles" in report.message

    def test_garbage_body_reads_as_tampering(self, log: Path) -> None:
        """An entry whose stored text is not JSON is refused on read and reported by verify."""
        attacker(log).execute("UPDATE entries SET body = 'not json at all' WHERE idx = 3")
        with graven.open(log, signing_key=log.with_name("signing.key")) as trail:
            with pytest.raises(graven.IntegrityError, match="entry 3 is not a JSON object"):
                trail.get(3)
            report = trail.verify()
        assert (3, "modified") == (report.first_bad_index, report.kind)


def derived(db: Path, parts: int) -> int | None:
    """The SQLite store's derived-data check alone, over ``parts`` ranges checked at once."""
    store = SQLiteStore(db)
    try:
        return store.derived_mismatch(parts)
    finally:
        store.close()


class TestDerivedDataInRanges:
    """The copied columns, target rows and stream rows are checked in ranges of indices, each on its
    own connection and thread: every range split finds the same first bad index, at either end."""

    PARTS = (1, 2, 3, 7, 40)  # 40: more ranges than entries (some empty)

    @pytest.mark.parametrize(
        ("tamper", "first"),
        [
            ([], None),
            (["UPDATE entries SET actor_id = 'u-9' WHERE idx = 13"], 13),
            (["UPDATE entries SET tenant = 't' WHERE idx = 0"], 0),
            (["UPDATE entries SET source = NULL WHERE idx = 19"], 19),
            (["DELETE FROM entry_targets WHERE idx = 11"], 11),
            (["UPDATE entry_targets SET id = 'c-9' WHERE idx = 6"], 6),
            (["INSERT INTO entry_targets VALUES ('customer', 'c-secret', 5)"], 5),
            (["INSERT INTO entry_targets VALUES ('customer', 'c-0', 99)"], 99),  # beyond the last entry
            (["DELETE FROM entry_targets WHERE idx = 17", "INSERT INTO entry_targets VALUES ('x', 'y', 2)"], 2),
            (["INSERT INTO stream_versions VALUES ('account', 'a', 1, 12)"], 12),
            (["UPDATE entries SET actor_id = 'u-9' WHERE idx = 18", "DELETE FROM entry_targets WHERE idx = 9"], 9),
        ],
    )
    def test_every_split_finds_the_first_bad_index(self, log: Path, tamper: list[str], first: int | None) -> None:
        conn = attacker(log)
        for sql in tamper:
            conn.execute(sql)
        conn.close()
        assert [first] * len(self.PARTS) == [derived(log, parts) for parts in self.PARTS]

    def test_parts_must_be_positive(self, log: Path) -> None:
        with pytest.raises(ValueError, match="parts must be at least 1, got 0"):
            derived(log, 0)

    @pytest.mark.parametrize("targets", ['{"customer": "c-1"}', '"c-1"', "[1, 2]"])
    def test_targets_that_are_not_target_objects_are_reported(self, log: Path, targets: str) -> None:
        """A body whose targets are not a list of target objects (no entry Graven writes) is judged in
        Python and reported, not passed over by the SQL that expects a list."""
        conn = attacker(log)
        head = '{"action":"a","actor":{"type":"system"},"id":"odd","occurred_at":"t","outcome":"success"'
        body = f'{head},"targets":{targets}}}'
        conn.execute("INSERT INTO entries VALUES (20, ?, 'odd', 't', NULL, 'a', 'success', NULL, NULL)", (body,))
        conn.close()
        assert [20] * len(self.PARTS) == [derived(log, parts) for parts in self.PARTS]


def test_stream_rows_of_entries_appended_after_the_pass_are_not_judged(log: Path) -> None:
    """``below`` (the tree size the one pass saw) keeps stream rows of later entries out of the check."""
    conn = attacker(log)
    conn.execute("INSERT INTO stream_versions VALUES ('account', 'a', 1, 20)")  # as if entry 20 came since
    conn.text_factory = bytes
    assert sqlite_streams.stream_mismatch(conn, [], below=20) is None
    assert 20 == sqlite_streams.stream_mismatch(conn, [], below=21)
    assert 20 == sqlite_streams.stream_mismatch(conn)  # no pass: the entries are searched here


@pytest.mark.parametrize(("cores", "min_range", "ranges"), [(4, 4096, 1), (4, 5, 4), (3, 5, 3), (4, 8, 2), (1, 5, 1)])
def test_default_ranges_one_per_core_of_at_least_min_range(
    log: Path, monkeypatch: pytest.MonkeyPatch, cores: int, min_range: int, ranges: int
) -> None:
    """By default a range per core, each of at least MIN_RANGE entries: one connection per range."""
    monkeypatch.setattr(sqlite_store, "check_parts", lambda: cores)
    monkeypatch.setattr(sqlite_store, "MIN_RANGE", min_range)
    opened: list[object] = []
    connect = SQLiteStore._connect

    def counting(self: SQLiteStore) -> sqlite3.Connection:
        opened.append(self)
        return connect(self)

    store = SQLiteStore(log)
    monkeypatch.setattr(SQLiteStore, "_connect", counting)
    try:
        assert store.derived_mismatch() is None
    finally:
        store.close()
    assert ranges == len(opened)


def test_no_false_alarm_while_another_connection_appends(tmp_path: Path) -> None:
    """Each range reads its own snapshot while a writer appends entries with targets and stream rows:
    the counts still agree (the last range counts every target row in its own snapshot)."""
    db, key = tmp_path / "busy.db", tmp_path / "busy.key"
    graven.init(db, signing_key=key).close()
    with graven.open(db, signing_key=key, checkpoint_interval=0) as trail:
        trail.record_many(make_event(n) for n in range(200))
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        with graven.open(db, signing_key=key, checkpoint_interval=0) as trail:
            n = 200
            while not stop.is_set():
                two = [{"type": "customer", "id": f"c-{n}"}, {"type": "plan", "id": "p"}]
                trail.record_many(make_event(n + i, targets=two) for i in range(20))
                n += 20
                written.append(n)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        found = [derived(db, parts) for parts in (1, 2, 3, 4, 5, 6) * 3]
    finally:
        stop.set()
        thread.join()
    assert len(written) >= 2  # the writer did append while the checks ran
    assert [None] * len(found) == found
