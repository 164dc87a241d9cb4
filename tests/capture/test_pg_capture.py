"""Trigger capture of application tables on a real PostgreSQL server, end to end through the CLI."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import graven
from graven.capture.pg import context as pg_context
from graven.trail import Trail
from tests.pgserver import Server, with_url

GRAVEN = Path(sys.executable).with_name("graven")


def run(url: str, key: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`graven --db URL --signing-key KEY ARGS` as a user would run it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVEN_")}
    return subprocess.run(
        [GRAVEN, "--db", url, "--signing-key", str(key), *args], capture_output=True, text=True, env=env, check=False
    )


@pytest.fixture
def shop(pg: Server, tmp_path: Path) -> Iterator[tuple[str, Path, psycopg.Connection[Any], str]]:
    """A log in its own schema, an application table and a login role for the application."""
    schema = f"audit_{secrets.token_hex(4)}"
    table = f"customers_{secrets.token_hex(3)}"
    url = with_url(pg.url, schema=schema)
    key = tmp_path / "signing.key"
    assert 0 == run(url, key, "init").returncode
    pg.db.execute(
        sql.SQL(
            "CREATE TABLE {} (id bigint PRIMARY KEY, email text, password_hash text, credit_limit numeric, "
            "updated_at timestamptz DEFAULT now())"
        ).format(sql.Identifier(table))
    )
    app = pg.login_role("app")
    pg.db.execute(
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON {} TO {}").format(
            sql.Identifier(table), sql.Identifier(app)
        )
    )
    conn = psycopg.connect(with_url(pg.url, user=app), autocommit=True)
    yield url, key, conn, table
    conn.close()


def entries_for(trail: Trail, table: str) -> list[graven.Entry]:
    trail.integrate()
    return [e for e in trail.query(limit=1000).entries if e.action.startswith(table + ".")]


class TestCapture:
    def test_every_change_is_recorded_with_who_and_what(
        self, shop: tuple[str, Path, psycopg.Connection[Any], str]
    ) -> None:
        """Inserts, updates (changed columns only, secrets redacted), bulk updates and deletes become entries."""
        url, key, conn, table = shop
        t = sql.Identifier(table)
        result = run(url, key, "pg", "track", table, "--exclude", "updated_at", "--redact", "password_hash")
        assert 0 == result.returncode, result.stderr
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (id, email, password_hash, credit_limit) "
                "VALUES (1, 'ada@example.com', 'h1', 100), (2, 'bob@example.com', 'h2', 50)"
            ).format(t)
        )
        with graven.open(url, signing_key=key) as trail:
            with pg_context(
                conn,
                actor={"type": "user", "id": "u-17", "name": "Dana"},
                ip="198.51.100.23",
                reason="ticket SUP-2231",
                request_id="req-7f19",
            ):
                conn.execute(
                    sql.SQL(
                        "UPDATE {} SET email = 'ada@evil.example', password_hash = 'h3', updated_at = now() "
                        "WHERE id = 1"
                    ).format(t)
                )
            conn.execute(sql.SQL("UPDATE {} SET credit_limit = credit_limit * 2").format(t))  # bulk, raw SQL
            conn.execute(sql.SQL("UPDATE {} SET updated_at = now()").format(t))  # only an excluded column
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("DELETE FROM {} WHERE id = 2").format(t))
                    raise RuntimeError("rolled back")
            except RuntimeError:
                pass
            conn.execute(sql.SQL("DELETE FROM {} WHERE id = 2").format(t))
            got = entries_for(trail, table)
            seen = [(e.action, e.targets[0]["id"]) for e in got]
            assert [(f"{table}.insert", "1"), (f"{table}.insert", "2"), (f"{table}.update", "1")] == seen[:3]
            assert {(f"{table}.update", "1"), (f"{table}.update", "2")} == set(seen[3:5])  # one per row, any order
            assert [(f"{table}.delete", "2")] == seen[5:]
            change = got[2]
            assert {"type": "user", "id": "u-17", "name": "Dana", "ip": "198.51.100.23"} == change.actor
            assert "ticket SUP-2231" == change.get("reason")
            assert "req-7f19" == change.get("context")["request_id"]
            assert [
                {"field": "email", "old": "ada@example.com", "new": "ada@evil.example"},
                {"field": "password_hash", "redacted": True},
            ] == change.changes
            bulk = next(e for e in got[3:5] if e.targets[0]["id"] == "1")
            assert ("system", "db") == (bulk.actor["type"], bulk.get("source"))
            assert [{"field": "credit_limit", "old": 100, "new": 200}] == bulk.changes
            assert "h1" not in str([e.data for e in got])
            history = trail.history((table, "1"))
            assert [e.index for e in got if e.targets[0]["id"] == "1"] == [e.index for e in history]
            assert trail.verify().ok
            assert graven.verify_bundle(trail.prove(change.index), [graven.trail.load_verifier(trail.verifier_key)]).ok

    def test_track_and_untrack_are_recorded(self, shop: tuple[str, Path, psycopg.Connection[Any], str]) -> None:
        """Tracking and untracking are entries themselves, and untracked changes are not captured."""
        url, key, conn, table = shop
        t = sql.Identifier(table)
        assert 0 == run(url, key, "pg", "track", table).returncode
        assert 0 == run(url, key, "pg", "untrack", table).returncode
        conn.execute(sql.SQL("INSERT INTO {} (id, email) VALUES (9, 'x@example.com')").format(t))
        conn.execute(sql.SQL("TRUNCATE {}").format(t))
        with graven.open(url, signing_key=key) as trail:
            trail.integrate()
            actions = [e.action for e in trail.query(limit=100).entries]
        assert ["audit.track", "audit.untrack"] == actions

    def test_truncate_and_big_ids(self, shop: tuple[str, Path, psycopg.Connection[Any], str]) -> None:
        """TRUNCATE is one entry; ids beyond 2**53 are kept exactly, as text."""
        url, key, conn, table = shop
        t = sql.Identifier(table)
        assert 0 == run(url, key, "pg", "track", table).returncode
        conn.execute(sql.SQL("INSERT INTO {} (id, email) VALUES (9007199254740993, 'big@example.com')").format(t))
        conn.execute(sql.SQL("TRUNCATE {}").format(t))
        result = run(url, key, "pg", "integrate")
        assert 0 == result.returncode, result.stderr
        with graven.open(url, signing_key=key) as trail:
            got = entries_for(trail, table)
        assert [f"{table}.insert", f"{table}.truncate"] == [e.action for e in got]
        assert "9007199254740993" == got[0].targets[0]["id"]
        assert {"field": "id", "new": "9007199254740993"} in got[0].changes

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (("pg", "track", "no_such_table"), "no table 'no_such_table'"),
            (("pg", "track", "{table}", "--exclude", "nope"), "--exclude: public.{table} has no column 'nope'"),
            (
                ("pg", "track", "{table}", "--exclude", "email", "--redact", "email"),
                "cannot be both excluded and redacted",
            ),
            (("pg", "grant", "somebody"), "choose --writer or --reader"),
        ],
    )
    def test_bad_input(
        self, shop: tuple[str, Path, psycopg.Connection[Any], str], args: tuple[str, ...], message: str
    ) -> None:
        """Bad input is one line, exit 2, and nothing is left half-installed."""
        url, key, conn, table = shop
        result = run(url, key, *(a.format(table=table) for a in args))
        assert 2 == result.returncode
        assert message.format(table=table) in result.stderr
        assert 1 == len(result.stderr.strip().splitlines())
        triggers = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND tgname LIKE 'graven_capture_%%'",
            (table,),
        ).fetchone()
        assert triggers is not None
        assert 0 == triggers[0]

    def test_table_without_primary_key(self, pg: Server, shop: tuple[str, Path, psycopg.Connection[Any], str]) -> None:
        """A table without a primary key cannot be tracked, and the message says what to add."""
        url, key, _, _ = shop
        name = f"nopk_{secrets.token_hex(3)}"
        pg.db.execute(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(name)))
        result = run(url, key, "pg", "track", name)
        assert 2 == result.returncode
        assert "has no primary key; add one" in result.stderr

    def test_grant_from_the_cli(self, pg: Server, shop: tuple[str, Path, psycopg.Connection[Any], str]) -> None:
        """`graven pg grant ROLE --reader` lets that role read the log and nothing more."""
        url, key, _, _ = shop
        reader = pg.login_role("reader")
        result = run(url, key, "pg", "grant", reader, "--reader")
        assert 0 == result.returncode, result.stderr
        as_reader = with_url(url, user=reader)
        assert 0 == run(as_reader, key, "log", "--json").returncode
        denied = run(as_reader, key, "record", "--action", "a.b", "--actor", "u")
        assert 2 == denied.returncode
        assert "graven pg grant" in denied.stderr


def test_an_unrecordable_change_is_kept_as_invalid(
    pg: Server, shop: tuple[str, Path, psycopg.Connection[Any], str]
) -> None:
    """A captured change that breaks a rule (here: an action from an odd table name) becomes a capture.invalid entry."""
    url, key, _, _ = shop
    odd = f"Odd Table {secrets.token_hex(2)}"
    pg.db.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, password text)").format(sql.Identifier(odd)))
    assert 0 == run(url, key, "pg", "track", f'"{odd}"').returncode
    pg.db.execute(sql.SQL("INSERT INTO {} VALUES (1, 'hunter2')").format(sql.Identifier(odd)))
    with graven.open(url, signing_key=key) as trail:
        trail.integrate()
        invalid = trail.query(action="capture.invalid").entries
        assert 1 == len(invalid)
        assert "action: must be dotted words" in str(invalid[0].get("reason"))
        assert "password" in invalid[0].get("metadata")["captured"]
        assert b"hunter2" not in (trail.store.entry(invalid[0].index) or b"")  # kept as redacted
        assert trail.verify().ok
