"""The tamper matrix on PostgreSQL: a superuser who switches the triggers off is caught by verify.

The same cases as on SQLite (tests/test_tamper.py), through `graven.open(...).verify()`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

import graven
from graven.core import merkle
from graven.core.note import Signer
from graven.store.pg_connection import parse_url
from graven.testing.store_contract import make_event
from tests.pgserver import Server

SIZE = 20
BATCH = 4


@pytest.fixture
def log(pg: Server, tmp_path: Path) -> tuple[str, Path]:
    """A 20-entry log recorded in batches of 4, a checkpoint after each batch."""
    url, key = pg.schema_url("tamper"), tmp_path / "signing.key"
    graven.init(url, signing_key=key).close()
    with graven.open(url, signing_key=key, checkpoint_interval=0) as trail:
        for start in range(0, SIZE, BATCH):
            trail.record_many(make_event(n) for n in range(start, start + BATCH))
    return url, key


def attacker(url: str) -> psycopg.Connection[Any]:
    """A superuser session in the log's schema with every user trigger switched off."""
    target = parse_url(url)
    conn = psycopg.connect(target.conninfo, autocommit=True)
    conn.execute("SELECT set_config('search_path', %s, false)", (target.schema,))
    conn.execute("SET session_replication_role = replica")
    return conn


def verify(url: str, signing_key: Path, **kw: Any) -> graven.Report:
    with graven.open(url, signing_key=signing_key) as trail:
        return trail.verify(**kw)


def shift(conn: psycopg.Connection[Any], start: int, delta: int) -> None:
    rows = conn.execute("SELECT idx FROM entries WHERE idx >= %s ORDER BY idx", (start,)).fetchall()
    for (idx,) in rows if delta < 0 else reversed(rows):
        conn.execute("UPDATE entries SET idx = %s WHERE idx = %s", (idx + delta, idx))
        conn.execute("UPDATE entry_targets SET idx = %s WHERE idx = %s", (idx + delta, idx))


class TestPgTamper:
    def test_intact(self, log: tuple[str, Path]) -> None:
        """An untouched log verifies."""
        report = verify(*log)
        assert report.ok, report.message

    def test_one_field_changed(self, log: tuple[str, Path]) -> None:
        """Editing one field of one entry: modified at that index."""
        attacker(log[0]).execute("UPDATE entries SET body = replace(body, '\"u-2\"', '\"u-9\"') WHERE idx = 5")
        report = verify(*log)
        assert (5, "modified") == (report.first_bad_index, report.kind)

    def test_entry_deleted(self, log: tuple[str, Path]) -> None:
        """Deleting an entry: missing at that index."""
        attacker(log[0]).execute("DELETE FROM entries WHERE idx = 7")
        report = verify(*log)
        assert (7, "missing") == (report.first_bad_index, report.kind)

    def test_entry_deleted_and_renumbered(self, log: tuple[str, Path]) -> None:
        """Deleting an entry and closing the gap: still missing there."""
        conn = attacker(log[0])
        conn.execute("DELETE FROM entries WHERE idx = 7")
        conn.execute("DELETE FROM entry_targets WHERE idx = 7")
        shift(conn, 8, -1)
        report = verify(*log)
        assert (7, "missing") == (report.first_bad_index, report.kind)

    def test_forged_entry_inserted(self, log: tuple[str, Path]) -> None:
        """A forged entry slipped into the middle: inserted at that index."""
        conn = attacker(log[0])
        shift(conn, 4, +1)
        conn.execute(
            "INSERT INTO entries SELECT 4, replace(body, 'evt-00000004', 'evt-forged'), 'evt-forged', occurred_at, "
            "actor_id, action, outcome, source, tenant FROM entries WHERE idx = 5"
        )
        conn.execute("INSERT INTO entry_targets SELECT type, id, 4 FROM entry_targets WHERE idx = 5")
        report = verify(*log)
        assert (4, "inserted") == (report.first_bad_index, report.kind)

    def test_two_entries_swapped(self, log: tuple[str, Path]) -> None:
        """Swapping two entries' content: reordered at the first."""
        conn = attacker(log[0])
        conn.execute("UPDATE entries e SET body = o.body FROM entries o WHERE (e.idx, o.idx) IN ((3, 9), (9, 3))")
        report = verify(*log)
        assert (3, "reordered") == (report.first_bad_index, report.kind)

    def test_tail_cut(self, log: tuple[str, Path]) -> None:
        """Deleting the newest entries: truncated where the cut starts."""
        attacker(log[0]).execute("DELETE FROM entries WHERE idx >= 15")
        report = verify(*log)
        assert (15, "truncated") == (report.first_bad_index, report.kind)

    def test_tail_cut_with_hashes_and_checkpoints(self, log: tuple[str, Path]) -> None:
        """Removing the tail with its tree hashes and checkpoints: caught by the kept checkpoint."""
        conn = attacker(log[0])
        for table in ("entries", "entry_targets"):
            conn.execute(f"DELETE FROM {table} WHERE idx >= 15")
        part = conn.execute("SELECT hashes FROM tiles WHERE width = 16").fetchone()
        assert part is not None
        conn.execute("DELETE FROM tiles WHERE width > 12")
        conn.execute("INSERT INTO tiles VALUES (0, 0, 15, %s)", (bytes(part[0])[:96],))
        conn.execute("DELETE FROM checkpoints WHERE size > 12")
        report = verify(*log)
        assert (15, "truncated") == (report.first_bad_index, report.kind)

    def test_rewritten_with_recomputed_hashes(self, log: tuple[str, Path]) -> None:
        """Rewriting an entry and every stored hash: caught by the signed checkpoints."""
        conn = attacker(log[0])
        conn.execute("UPDATE entries SET body = replace(body, '\"u-2\"', '\"u-9\"') WHERE idx = 5")
        bodies = [b.encode() for (b,) in conn.execute("SELECT body FROM entries ORDER BY idx")]
        conn.execute("DELETE FROM tiles")
        conn.execute("INSERT INTO tiles VALUES (0, 0, 20, %s)", (b"".join(merkle.leaf_hash(b) for b in bodies),))
        report = verify(*log)
        assert (4, "modified") == (report.first_bad_index, report.kind)

    def test_pinned_key_of_someone_else(self, log: tuple[str, Path]) -> None:
        """Checkpoints not signed by the pinned key: forked."""
        report = verify(*log, key=Signer.generate("x.example/log").verifier().to_text())
        assert "forked" == report.kind
