"""`verify --deep`: the engine's structures around the entries (indexes, append-only triggers and the
engine's own index checks) as a new log has them, on SQLite and PostgreSQL. Each alteration below
leaves every entry intact, so the plain verify passes while a search or the immutability changed."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

import graven
from graven.core.audit import Report
from graven.store.postgres import parse_url
from graven.testing.store_contract import make_event
from tests.pgserver import Server

EXE = Path(sys.executable).with_name("graven")


def sqlite_log(tmp_path: Path) -> tuple[Path, Path]:
    db, key = tmp_path / "log.db", tmp_path / "signing.key"
    with graven.init(db, signing_key=key) as trail:
        trail.record_many(make_event(n) for n in range(40))
        assert trail.verify(deep=True).ok
    return db, key


def deep(db: str | Path, key: Path) -> Report:
    with graven.open(db, signing_key=key) as trail:
        assert trail.verify().ok  # the entries themselves are intact
        return trail.verify(deep=True)


def set_index_sql(db: Path, name: str, text: str, *, reindex: bool) -> None:
    """Rewrite an index's definition in the file (what someone with the file can do)."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("UPDATE sqlite_master SET sql = ? WHERE name = ?", (text, name))
    conn.execute("PRAGMA writable_schema = OFF")
    conn.close()
    if reindex:
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute(f"REINDEX {name}")
        conn.close()


class TestSQLite:
    def test_a_dropped_append_only_trigger_is_named(self, tmp_path: Path) -> None:
        db, key = sqlite_log(tmp_path)
        with sqlite3.connect(db) as conn:
            conn.execute("DROP TRIGGER entries_no_update")
        report = deep(db, key)
        assert ("structure", 40) == (report.kind, report.first_bad_index)
        assert "the trigger entries_no_update on entries is missing" in report.message

    def test_an_index_redefined_to_skip_an_entry_is_named(self, tmp_path: Path) -> None:
        """A partial index that leaves entry 5 out hides it from action searches; deep names it."""
        db, key = sqlite_log(tmp_path)
        set_index_sql(db, "entries_action", "CREATE INDEX entries_action ON entries (action) WHERE idx <> 5",
                      reindex=True)  # fmt: skip
        report = deep(db, key)
        assert "the index entries_action on entries was changed" in report.message

    def test_an_index_disagreeing_with_its_table_is_named(self, tmp_path: Path) -> None:
        """The index rebuilt without entry 5, then its definition put back: only the engine's own
        check sees the missing row, and a search by action misses the entry meanwhile."""
        db, key = sqlite_log(tmp_path)
        original = sqlite3.connect(db).execute("SELECT sql FROM sqlite_master WHERE name = 'entries_action'").fetchone()
        set_index_sql(db, "entries_action", "CREATE INDEX entries_action ON entries (action) WHERE idx <> 5",
                      reindex=True)  # fmt: skip
        set_index_sql(db, "entries_action", original[0], reindex=False)
        with graven.open(db, signing_key=key) as trail:
            action = trail.get(5).action
            assert 5 not in [e.index for e in trail.query(action=action, limit=100)]
        report = deep(db, key)
        assert report.kind == "structure"
        assert "SQLite's integrity check fails" in report.message
        assert "entries_action" in report.message

    def test_a_trigger_nobody_made_is_named(self, tmp_path: Path) -> None:
        db, key = sqlite_log(tmp_path)
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TRIGGER sneaky AFTER INSERT ON entries BEGIN SELECT 1; END")
        assert "a trigger nobody made, sneaky, is on entries" in deep(db, key).message

    def test_the_cli_says_it_and_exits_1(self, tmp_path: Path) -> None:
        db, key = sqlite_log(tmp_path)
        args = [str(EXE), "--db", str(db), "--signing-key", str(key), "verify"]
        assert 0 == subprocess.run([*args, "--deep"], capture_output=True, text=True).returncode
        with sqlite3.connect(db) as conn:
            conn.execute("DROP TRIGGER entries_no_delete")
        plain = subprocess.run(args, capture_output=True, text=True)
        checked = subprocess.run([*args, "--deep"], capture_output=True, text=True)
        assert 0 == plain.returncode
        assert 1 == checked.returncode
        assert "(structure)" in checked.stderr
        assert "entries_no_delete" in checked.stderr


class TestPostgres:
    @pytest.fixture
    def log(self, pg: Server, tmp_path: Path) -> tuple[str, Path, str]:
        url, key = pg.schema_url("deep"), tmp_path / "signing.key"
        with graven.init(url, signing_key=key) as trail:
            trail.record_many(make_event(n) for n in range(40))
            assert trail.verify(deep=True).ok
        return url, key, parse_url(url).schema

    def alter(self, url: str, *statements: sql.Composable) -> None:
        with psycopg.connect(parse_url(url).conninfo, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def test_a_disabled_trigger_and_a_redefined_index_are_named(self, log: tuple[str, Path, str]) -> None:
        url, key, schema = log
        entries = sql.Identifier(schema, "entries")
        self.alter(
            url,
            sql.SQL("ALTER TABLE {} DISABLE TRIGGER entries_append_only").format(entries),
            sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, "entries_action")),
            sql.SQL("CREATE INDEX entries_action ON {} (action) WHERE idx <> 5").format(entries),
        )
        report = deep(url, key)
        messages = [p.message for p in report.problems]
        assert report.kind == "structure"
        assert any("the trigger entries_append_only on entries was changed" in m and "[disabled]" in m
                   for m in messages)  # fmt: skip
        assert any("the index entries_action on entries was changed" in m and "idx <> 5" in m for m in messages)
        assert 2 == len(messages)

    def test_a_dropped_trigger_and_a_trigger_nobody_made(self, log: tuple[str, Path, str]) -> None:
        url, key, schema = log
        checkpoints = sql.Identifier(schema, "checkpoints")
        self.alter(
            url,
            sql.SQL("DROP TRIGGER checkpoints_no_truncate ON {}").format(checkpoints),
            sql.SQL("CREATE TRIGGER sneaky BEFORE INSERT ON {} FOR EACH ROW EXECUTE FUNCTION {}()").format(
                checkpoints, sql.Identifier(schema, "refuse_change")
            ),
        )
        messages = [p.message for p in deep(url, key).problems]
        assert any("checkpoints_no_truncate on checkpoints is missing" in m for m in messages)
        assert any("a trigger nobody made, sneaky, is on checkpoints" in m for m in messages)

    def test_nothing_is_left_behind_and_amcheck_runs_where_installed(self, pg: Server, log: tuple[str, Path, str]
                                                                      ) -> None:  # fmt: skip
        url, key, _ = log
        with psycopg.connect(parse_url(url).conninfo, autocommit=True) as conn:
            had = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'amcheck'").fetchone() is not None
            conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
            try:
                assert deep(url, key).ok
            finally:
                if not had:
                    conn.execute("DROP EXTENSION amcheck")
            left = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'graven_reference_%'")
            assert (0,) == left.fetchone()
