"""The deep check of a PostgreSQL log's engine structures (``graven verify --deep``).

The Merkle tree covers the entries; the catalogue around them is not covered, and the owner of the
schema (or a superuser) can change it without touching an entry: drop or disable an append-only
trigger, or redefine an index so a search skips entries. This builds a new log of this version in a
scratch schema inside a transaction that is always rolled back, compares every index and trigger
of the log's tables with it (definition and enabled state), and names triggers nobody made. Where
the ``amcheck`` extension is installed, every B-tree index of the log is also checked against its
table (``bt_index_check(index, heapallindexed => true)``).

MUST leave nothing behind (the scratch schema never commits) and MUST NOT report a log that this
version created or upgraded and nobody altered.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import psycopg
from psycopg import sql

from graven.errors import ConfigError
from graven.store.pg_connection import Conn
from graven.store.structure import differences

_OBJECTS = """
SELECT c.relname, 'index', t.relname, pg_get_indexdef(c.oid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE n.nspname = %(schema)s
UNION ALL
SELECT g.tgname, 'trigger', t.relname,
       pg_get_triggerdef(g.oid) || CASE g.tgenabled WHEN 'O' THEN '' ELSE ' [disabled]' END
  FROM pg_trigger g JOIN pg_class t ON t.oid = g.tgrelid JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE n.nspname = %(schema)s AND NOT g.tgisinternal
"""
_TABLES = "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s"


def _objects(conn: Conn, schema: str) -> dict[str, tuple[str, str, str]]:
    """name -> (kind, table, definition without the schema's name) of each index and trigger."""
    with conn.transaction():
        # Every name printed qualified (nothing of the log on the path), then the schema's own taken off.
        conn.execute("SET LOCAL search_path = pg_catalog")
        prefix = str(conn.execute("SELECT quote_ident(%s)", (schema,)).fetchall()[0][0]) + "."
        rows = conn.execute(_OBJECTS, {"schema": schema}).fetchall()
    return {str(name): (str(kind), str(table), str(text).replace(prefix, "")) for name, kind, table, text in rows}


def problems(conn: Conn, schema: str, migrate: Callable[[Conn, str], object]) -> list[str]:
    """Sentences naming each structure of the log in ``schema`` that differs from a new log's."""
    scratch = f"graven_reference_{secrets.token_hex(6)}"
    try:
        with conn.transaction(force_rollback=True):
            migrate(conn, scratch)
            expected = _objects(conn, scratch)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise ConfigError(
            f"the deep check builds a reference log in a scratch schema (always rolled back), which role "
            f"{conn.info.user} may not do ({exc.diag.message_primary}); run it as the log's owner"
        ) from exc
    tables = {str(r[0]) for r in conn.execute(_TABLES, (schema,))}
    actual = _objects(conn, schema)
    found = differences(expected, actual, tables)
    return found + _amcheck(conn, schema)


def _amcheck(conn: Conn, schema: str) -> list[str]:
    """Each B-tree index of the log checked against its table, where amcheck is installed."""
    row = conn.execute(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'amcheck'"
    ).fetchone()
    if row is None:
        return []
    check = sql.SQL("SELECT {}.bt_index_check(%s::regclass, true)").format(sql.Identifier(str(row[0])))
    indexes = conn.execute(
        "SELECT c.oid::regclass::text, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_am a ON a.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND a.amname = 'btree' ORDER BY c.relname",
        (schema,),
    ).fetchall()
    found: list[str] = []
    for qualified, name in indexes:
        try:
            with conn.transaction():
                conn.execute(check, (qualified,))
        except psycopg.errors.InsufficientPrivilege:
            return found  # amcheck needs rights this role lacks: the comparison above still ran
        except psycopg.Error as exc:
            found.append(f"the index {name} disagrees with its table (amcheck: {exc.diag.message_primary})")
    return found
