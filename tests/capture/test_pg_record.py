"""Events recorded in the application's own PostgreSQL transaction (``graven.capture.pg.record``)
through the log's SECURITY DEFINER function ``capture_record``, on the real server."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import sql

import graven
from graven.capture import pg as capture
from graven.core.canonical import canonical
from graven.core.shredding import PREFIX
from graven.errors import ConfigError, ValidationError
from graven.trail import Trail
from tests.pgserver import Server, with_url

GRAVEN = Path(sys.executable).with_name("graven")


def run(url: str, key: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`graven --db URL --signing-key KEY ARGS` as a user would run it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVEN_")}
    return subprocess.run(
        [GRAVEN, "--db", url, "--signing-key", str(key), *args], capture_output=True, text=True, env=env, check=False
    )


@dataclass
class Shop:
    """A log in its own schema, an application table, and the application's login role."""

    url: str
    key: Path
    schema: str
    table: str
    role: str
    pg: Server

    def app(self, role: str | None = None) -> psycopg.Connection[Any]:
        return psycopg.connect(with_url(self.pg.url, user=role or self.role))

    def trail(self, **options: Any) -> Trail:
        return graven.open(self.url, signing_key=self.key, **options)

    def pending(self) -> int:
        row = self.pg.db.execute(sql.SQL("SELECT count(*) FROM {}.captured").format(sql.Identifier(self.schema)))
        return int(row.fetchall()[0][0])


@pytest.fixture
def shop(pg: Server, tmp_path: Path) -> Iterator[Shop]:
    schema = f"audit_{secrets.token_hex(4)}"
    table = f"orders_{secrets.token_hex(3)}"
    url = with_url(pg.url, schema=schema)
    key = tmp_path / "signing.key"
    assert 0 == run(url, key, "init").returncode
    pg.db.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, total numeric)").format(sql.Identifier(table)))
    role = pg.login_role("app")
    pg.db.execute(
        sql.SQL("GRANT SELECT, INSERT, UPDATE ON {} TO {}").format(sql.Identifier(table), sql.Identifier(role))
    )
    result = run(url, key, "pg", "grant-record", role)
    assert 0 == result.returncode, result.stderr
    assert f"{role}: may record events in its own transactions into the log in schema {schema}" in result.stdout
    yield Shop(url, key, schema, table, role, pg)
    pg.db.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


def order_event(ident: int) -> dict[str, Any]:
    return {
        "action": "order.create",
        "actor": {"type": "user", "id": "u-1"},
        "targets": [{"type": "order", "id": str(ident)}],
        "changes": [{"field": "total", "new": 10 * ident}],
    }


class TestTransaction:
    def test_rollback_leaves_nothing_commit_leaves_one_entry(self, shop: Shop) -> None:
        insert = sql.SQL("INSERT INTO {} (id, total) VALUES (%s, %s)").format(sql.Identifier(shop.table))
        with shop.trail() as trail, shop.app() as conn:
            size = trail.size
            conn.execute(insert, (1, 10))
            capture.record(conn, trail, order_event(1))
            conn.rollback()
            assert shop.pending() == 0
            assert trail.integrate() == 0
            conn.execute(insert, (1, 10))
            ident = capture.record(conn, trail, order_event(1))
            assert shop.pending() == 0  # not visible before the application's commit
            conn.commit()
            assert shop.pending() == 1
            assert trail.integrate() == 1
            assert trail.integrate() == 0
            assert trail.size == size + 1
            entry = trail.get(size)
            assert entry.data["id"] == ident
            assert entry.data["changes"] == [{"field": "total", "new": 10}]
            assert trail.verify().ok

    def test_the_application_commit_is_the_only_commit(self, shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
        """Recording and committing never opens a write transaction on the log."""
        with shop.trail() as trail, shop.app() as conn:
            writes: list[int] = []
            real = trail.store.write
            monkeypatch.setattr(trail.store, "write", lambda *a, **k: writes.append(1) or real(*a, **k))
            for i in range(3):
                capture.record(conn, trail, order_event(i))
                conn.commit()
            assert writes == []
            assert shop.pending() == 3
            assert trail.integrate() == 3
            assert writes  # the sequencer's own write moved them

    def test_integrating_twice_or_after_a_crash_never_duplicates(self, shop: Shop) -> None:
        """The same staged event written twice (a retry after a crash) becomes one entry."""
        with shop.trail() as trail, shop.app() as conn:
            size = trail.size
            doc = capture.staged(trail, order_event(7))
            capture.write(conn, shop.schema, [doc])
            conn.commit()
            assert trail.integrate() == 1
            capture.write(conn, shop.schema, [doc, doc])  # replayed: in the log already
            conn.commit()
            trail.integrate()
            assert trail.size == size + 1
            assert trail.get(size).action == "order.create"
            assert [e.data["id"] for e in trail.query(limit=10)].count(doc["id"]) == 1
            assert trail.verify().ok

    def test_a_reused_id_is_recorded_as_a_conflict_not_dropped(self, shop: Shop) -> None:
        """Another event under an id the log holds (or an earlier captured event holds) appends
        nothing of it: an ``event.id_conflict`` entry in its place names the id, the index holding
        it and the fields that differ, by the refused event's actor."""
        with shop.trail() as trail, shop.app() as conn:
            size = trail.size
            doc = capture.staged(trail, order_event(8))
            capture.write(conn, shop.schema, [doc])
            conn.commit()
            trail.integrate()
            fresh = capture.staged(trail, order_event(9))
            other = {**fresh, "action": "order.other", "changes": []}
            capture.write(conn, shop.schema, [{**doc, "action": "order.other"}, fresh, other])
            conn.commit()
            assert trail.integrate() == 3
            assert trail.size == size + 4
            stored, first, second = trail.get(size + 1), trail.get(size + 2), trail.get(size + 3)
            assert ("event.id_conflict", "denied", "db") == (stored.action, stored.outcome, stored.data["source"])
            assert {"event_id": doc["id"], "first_index": size, "differing_fields": ["action"]} == stored.metadata
            assert {"type": "user", "id": "u-1"} == {k: stored.data["actor"][k] for k in ("type", "id")}
            assert (fresh["id"], "order.create") == (first.data["id"], first.action)
            assert "event.id_conflict" == second.action
            assert {"event_id": fresh["id"], "first_index": None, "differing_fields": ["action", "changes"]} == (
                second.metadata
            )
            assert [e.data["id"] for e in trail.query(limit=20)].count(doc["id"]) == 1
            assert trail.verify().ok

    def test_an_autocommit_connection_commits_the_event_alone(self, shop: Shop) -> None:
        with shop.trail() as trail, psycopg.connect(with_url(shop.pg.url, user=shop.role), autocommit=True) as conn:
            capture.record(conn, trail, order_event(3))
            assert shop.pending() == 1


class TestRights:
    def test_a_role_without_the_grant_is_refused_clearly(self, shop: Shop) -> None:
        other = shop.pg.login_role("other")
        with (
            shop.trail() as trail,
            shop.app(other) as conn,
            pytest.raises(ConfigError, match=f"role {other} may not record events.*graven pg grant-record {other}"),
        ):
            capture.record(conn, trail, order_event(1))
        assert shop.pending() == 0

    def test_revoked_role_is_refused(self, shop: Shop) -> None:
        assert 0 == run(shop.url, shop.key, "pg", "grant-record", shop.role, "--revoke").returncode
        with shop.trail() as trail, shop.app() as conn, pytest.raises(ConfigError, match="may not record events"):
            capture.record(conn, trail, order_event(1))

    def test_the_granted_role_can_write_nothing_else(self, shop: Shop) -> None:
        """EXECUTE on the function, USAGE on the schema: no table of the log is writable or readable."""
        ident = sql.Identifier
        with shop.app() as conn:
            for statement in (
                sql.SQL("INSERT INTO {}.captured (event) VALUES ('{{}}')").format(ident(shop.schema)),
                sql.SQL("DELETE FROM {}.captured").format(ident(shop.schema)),
                sql.SQL("SELECT * FROM {}.entries").format(ident(shop.schema)),
                sql.SQL("INSERT INTO {}.entries (idx) VALUES (99)").format(ident(shop.schema)),
                sql.SQL("SELECT {}.capture_note('x.y', 't', '1', '[]')").format(ident(shop.schema)),
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
                conn.rollback()

    @pytest.mark.parametrize(
        "payload",
        ['"text"', "[1]", '{"action": "a.b"}', '{"id": 1, "action": "a.b"}', '{"id": "x"}', "null", '[{"id": "x"}]'],
    )
    def test_the_function_takes_event_objects_only(self, shop: Shop, payload: str) -> None:
        query = sql.SQL("SELECT {}.capture_record(%s::jsonb)").format(sql.Identifier(shop.schema))
        with shop.app() as conn, pytest.raises(psycopg.errors.InvalidParameterValue, match="capture_record"):
            conn.execute(query, (payload,))
        assert shop.pending() == 0

    def test_the_function_refuses_an_oversized_event(self, shop: Shop) -> None:
        query = sql.SQL("SELECT {}.capture_record(%s::jsonb)").format(sql.Identifier(shop.schema))
        huge = orjson.dumps({"id": "x", "action": "a.b", "metadata": {"blob": "x" * capture.MAX_RECORD_BYTES}})
        with shop.app() as conn, pytest.raises(psycopg.errors.InvalidParameterValue, match="at most 4194304 bytes"):
            conn.execute(query, (huge.decode(),))
        assert shop.pending() == 0

    def test_injection_attempts_are_plain_data(self, shop: Shop) -> None:
        """Whatever text the event holds, the function writes one row of it and runs no SQL."""
        evil = "x'); DROP TABLE entries; --"
        with shop.trail() as trail, shop.app() as conn:
            size = trail.size
            capture.record(conn, trail, {**order_event(1), "reason": evil})
            conn.commit()
            assert trail.integrate() == 1
            assert trail.get(size).data["reason"] == evil
            assert trail.verify().ok

    def test_a_log_made_before_the_function_gets_it_from_grant_record(self, shop: Shop) -> None:
        shop.pg.db.execute(sql.SQL("DROP FUNCTION {}.capture_record(jsonb)").format(sql.Identifier(shop.schema)))
        with shop.trail() as trail, shop.app() as conn:
            with pytest.raises(ConfigError, match=r"no function .*capture_record.*grant-record"):
                capture.record(conn, trail, order_event(1))
            conn.rollback()
            assert 0 == run(shop.url, shop.key, "pg", "grant-record", shop.role).returncode
            capture.record(conn, trail, order_event(1))
            conn.commit()
            assert trail.integrate() == 1

    def test_grant_record_names_what_is_wrong(self, shop: Shop) -> None:
        result = run(shop.url, shop.key, "pg", "grant-record", "no_such_role_here")
        assert result.returncode != 0
        assert "no role 'no_such_role_here'" in result.stderr
        with pytest.raises(ConfigError, match="no log in schema nothing_here"):
            capture.grant_record(shop.pg.db, "nothing_here", shop.role)

    def test_a_trail_on_sqlite_is_refused(self, shop: Shop, tmp_path: Path) -> None:
        sqlite = pytest.raises(ConfigError, match=r"needs a PostgreSQL log.*SQLiteStore")
        with graven.init(str(tmp_path / "log.db")) as trail, shop.app() as conn, sqlite:
            capture.record(conn, trail, order_event(1))


class TestSameEntry:
    """The entry is the one trail.record() makes: all fields but recorded_at."""

    def event(self) -> dict[str, Any]:
        return {
            "id": "0190a6d4-8a1e-7c2b-9e3f-4a5b6c7d8e9f",
            "occurred_at": "2026-01-02T03:04:05.123456Z",
            "action": "customer.update",
            "targets": [{"type": "customer", "id": "c-1", "name": "Ada"}],
            "changes": [
                {"field": "email", "old": "ada@example.com", "new": "ada@example.org"},
                {"field": "password_hash", "old": "h1", "new": "h2"},
                {"field": "limit", "old": 1e21, "new": 0.1},
            ],
            "metadata": {"token": "secret", "floats": [5e-324, -0.0, 1.5e300, 2.5e-7], "text": "é\u2028😀"},
        }

    def both(self, shop: Shop, **options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The event recorded by trail.record() in one log and by capture.record() in another."""
        other = with_url(shop.pg.url, schema=f"twin_{secrets.token_hex(4)}")
        try:
            graven.init(other, signing_key=shop.key.with_name("twin.key")).close()
            with graven.open(other, signing_key=shop.key.with_name("twin.key"), **options) as twin:
                with twin.context(actor={"type": "user", "id": "u-9", "name": "Bo"}, ip="10.0.0.1", tenant="acme",
                                  request_id="r-1"):  # fmt: skip
                    index = twin.record(self.event())
                expected = dict(twin.get(index).data)
            with shop.trail(**options) as trail, shop.app() as conn:
                with trail.context(actor={"type": "user", "id": "u-9", "name": "Bo"}, ip="10.0.0.1", tenant="acme",
                                   request_id="r-1"):  # fmt: skip
                    capture.record(conn, trail, self.event())
                conn.commit()
                size = trail.size
                assert trail.integrate() == 1
                got = dict(trail.get(size).data)
                assert trail.verify().ok
        finally:
            shop.pg.db.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(other.rpartition("=")[2]))
            )
        return expected, got

    def test_redaction_context_and_tenant(self, shop: Shop) -> None:
        expected, got = self.both(shop)
        expected.pop("recorded_at")
        got.pop("recorded_at")
        assert canonical(got) == canonical(expected)
        assert got["tenant"] == "acme"
        assert {"field": "password_hash", "redacted": True} in [
            {k: v for k, v in c.items() if k in ("field", "redacted")} for c in got["changes"]
        ]
        assert got["metadata"]["token"] != "secret"

    def test_sealed_personal_fields(self, shop: Shop, tmp_path: Path) -> None:
        personal = graven.PersonalData(("email",), ("customer",))
        expected, got = self.both(shop, personal=personal, subject_keys=tmp_path / "keys.db")
        expected.pop("recorded_at")
        got.pop("recorded_at")
        assert canonical(got) == canonical(expected)  # opened: the same values
        assert got["changes"][0]["new"] == "ada@example.org"
        with shop.trail() as bare:  # without the subject keys: the stored value is sealed
            stored = next(e for e in bare.query(limit=100) if e.data["id"] == got["id"])
            assert str(stored.data["changes"][0]["new"]).startswith(PREFIX)

    def test_text_jsonb_cannot_hold_is_refused_before_writing(self, shop: Shop) -> None:
        with shop.trail() as trail, shop.app() as conn:
            with pytest.raises(ValidationError, match=r"event\.metadata\.note: holds U\+0000.*trail\.record"):
                capture.record(conn, trail, {**order_event(1), "metadata": {"note": "a\x00b"}})
            conn.commit()
        assert shop.pending() == 0


def test_readme_example(shop: Shop) -> None:
    """The README's example of an event in the application's own transaction runs as written."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    found = re.search(r"```python\n( *from graven\.capture import pg as audit\n.*?) *```", text, re.S)
    assert found is not None
    snippet = textwrap.dedent(found.group(1))
    shop.pg.db.execute(sql.SQL("ALTER TABLE {} ADD COLUMN status text").format(sql.Identifier(shop.table)))
    shop.pg.db.execute(sql.SQL("INSERT INTO {} (id, total) VALUES (42, 1)").format(sql.Identifier(shop.table)))
    with shop.trail() as trail, shop.app() as conn:
        size = trail.size
        code = snippet.replace("UPDATE orders", f"UPDATE {shop.table}")
        exec(code, {"conn": conn, "trail": trail, "order_id": 42})  # noqa: S102 (the README's own text)
        assert trail.integrate() == 1
        entry = trail.get(size)
        assert (entry.action, entry.targets, entry.actor["id"]) == (
            "order.ship",
            [{"type": "order", "id": "42"}],
            "u-17",
        )
