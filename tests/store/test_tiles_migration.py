"""Logs written before tiles (a ``tree`` table, a row per leaf) are converted when opened, on SQLite and
PostgreSQL, and keep verifying, proving and growing; writers granted on the old table keep writing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

import graven
from graven.core import merkle
from graven.core.note import Signer
from graven.store.postgres import PostgresStore, migrate, parse_url
from graven.testing.store_contract import make_event
from tests.pgserver import Server, with_url

OLD_TREE = "CREATE TABLE tree (idx INTEGER PRIMARY KEY, hashes BLOB NOT NULL)"


def old_rows(bodies: list[bytes]) -> list[tuple[int, bytes]]:
    """The per-leaf tree rows the previous format stored for these entry bodies."""
    return list(enumerate(merkle.append(0, [], [merkle.leaf_hash(b) for b in bodies]).rows))


def check_log(url: str, key: Path, size: int) -> None:
    """The converted log verifies, proves an old entry and appends a new one."""
    with graven.open(url, signing_key=key, checkpoint_interval=0) as trail:
        report = trail.verify(deep=True)  # the upgraded structures are those of a new log
        assert report.ok, report.message
        assert size == report.entries
        verifier = Signer.from_text(key.read_text().strip()).verifier()
        assert graven.verify_bundle(trail.prove(size // 2), [verifier]).ok
        assert size == trail.record(make_event(size))
        assert trail.verify().ok


class TestSQLite:
    def make_old_log(self, tmp_path: Path, size: int) -> tuple[Path, Path]:
        """A log as the previous format stored it: tiles turned back into a row per leaf."""
        db, key = tmp_path / "old.db", tmp_path / "signing.key"
        with graven.init(db, signing_key=key) as trail:
            for start in range(0, size, 250):
                trail.record_many(make_event(n) for n in range(start, min(size, start + 250)))
        conn = sqlite3.connect(db, isolation_level=None)
        bodies = [body.encode() for (body,) in conn.execute("SELECT body FROM entries ORDER BY idx")]
        conn.execute("DROP TABLE tiles")
        conn.execute(OLD_TREE)
        conn.executemany("INSERT INTO tree VALUES (?, ?)", old_rows(bodies))
        conn.close()
        return db, key

    def test_old_log_converted_on_open(self, tmp_path: Path) -> None:
        """Opening converts the tree rows into full tiles plus the partial edge, and drops the table."""
        db, key = self.make_old_log(tmp_path, 700)
        check_log(str(db), key, 700)
        conn = sqlite3.connect(db)
        names = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        assert "tree" not in names
        assert {"tiles_no_update", "tiles_no_delete"} <= names
        widths = conn.execute("SELECT level, idx, width FROM tiles ORDER BY level, idx, width").fetchall()
        assert [(0, 0, 256), (0, 1, 256), (0, 2, 188), (0, 2, 189), (1, 0, 2)] == widths

    def test_gap_in_old_tree_is_refused_untouched(self, tmp_path: Path) -> None:
        """A tree with a missing row is not converted: the error says so and the file keeps its tree."""
        db, _ = self.make_old_log(tmp_path, 10)
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("DELETE FROM tree WHERE idx = 4")
        conn.close()
        with pytest.raises(graven.IntegrityError, match="its row 4 is missing"):
            graven.open(db).close()
        conn = sqlite3.connect(db)
        assert (9,) == conn.execute("SELECT count(*) FROM tree").fetchone()


class TestPostgres:
    def test_old_log_converted_on_open(self, pg: Server, tmp_path: Path) -> None:
        """A schema at migration 2 (tree rows) is migrated on open; a writer granted before keeps writing."""
        url, key = pg.schema_url("new"), tmp_path / "signing.key"
        with graven.init(url, signing_key=key) as trail:
            trail.record_many(make_event(n) for n in range(300))
        old_url = pg.schema_url("old")
        source, target = parse_url(url).schema, parse_url(old_url).schema
        with psycopg.connect(parse_url(url).conninfo, autocommit=True) as conn:
            migrate(conn, target, upto=2)
            with conn.transaction():
                for table in ("settings", "entries", "entry_targets", "checkpoints"):
                    conn.execute(
                        sql.SQL("INSERT INTO {} SELECT * FROM {}").format(
                            sql.Identifier(target, table), sql.Identifier(source, table)
                        )
                    )
                bodies = [
                    str(b).encode()
                    for (b,) in conn.execute(sql.SQL("SELECT body FROM {}.entries ORDER BY idx").format(
                        sql.Identifier(source)))
                ]  # fmt: skip
                with conn.cursor() as cur:
                    cur.executemany(
                        sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(sql.Identifier(target, "tree")),
                        old_rows(bodies),
                    )
        writer = pg.login_role("writer")
        grant_old(old_url, writer)
        PostgresStore(old_url).close()  # opening as the owner migrates
        check_log(old_url, key, 300)
        with graven.open(with_url(old_url, user=writer), signing_key=key) as trail:
            assert 301 == trail.record(make_event(301))
            assert trail.verify().ok


def grant_old(url: str, role: str) -> None:
    """What ``grant(..., "writer")`` gave before tiles: INSERT on the tree table among others."""
    target = parse_url(url)
    with psycopg.connect(target.conninfo, autocommit=True) as conn:
        ident = sql.Identifier(target.schema)
        who = sql.Identifier(role)
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ident, who))
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(ident, who))
        conn.execute(
            sql.SQL("GRANT INSERT ON {}, {}, {}, {} TO {}").format(
                *(sql.Identifier(target.schema, t) for t in ("entries", "entry_targets", "tree", "checkpoints")), who
            )
        )
        conn.execute(sql.SQL("GRANT SELECT, DELETE ON {} TO {}").format(sql.Identifier(target.schema, "captured"), who))
