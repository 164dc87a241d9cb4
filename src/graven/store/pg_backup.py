"""Backups of a PostgreSQL log: every log table copied in one snapshot, loaded into a new schema.

:func:`dump` runs one REPEATABLE READ, read-only transaction and ``COPY``s the log's tables
(entries, entry_targets, tiles, checkpoints, archives, stream_versions) to ``<table>.copy``
files in PostgreSQL's text format
and returns the settings read in the same snapshot, so the copy is consistent while writers go on
(they are never blocked). The capture outbox is not log data and is not copied. No ``pg_dump`` is
needed.

:func:`load` creates the log in a schema that MUST NOT exist yet (the tables refuse UPDATE, DELETE
and TRUNCATE, so nothing is overwritten in place) and ``COPY``s the files into it in one
transaction (a backup made before tiles, with ``tree.copy``, is loaded into the schema as it was
then and converted by the migration that followed); :func:`drop` removes such a freshly loaded
schema again when the restore refuses it.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from graven.core import merkle
from graven.errors import ConfigError, IntegrityError
from graven.store import Store, pg_tiles
from graven.store.pg_connection import connect, parse_url, translate_error
from graven.store.postgres import PostgresStore, migrate

TABLES = ("entries", "entry_targets", "tiles", "checkpoints", "archives", "stream_versions")
LEGACY_TABLES = ("entries", "entry_targets", "tree", "checkpoints", "stream_versions")  # backups made before tiles
LEGACY_VERSION = 3  # the last migration before the tree became tiles


def dump(store: Store, dest: Path) -> tuple[int, bytes, dict[str, str]]:
    """Copy the log's tables to files in ``dest``; the tree's size and root and the settings, all
    from the one snapshot the files hold."""
    if not isinstance(store, PostgresStore):
        raise ConfigError(f"{store.url} is not a PostgreSQL log")
    target = store.target
    conn = connect(target)
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            for table in TABLES:
                name = sql.Identifier(target.schema, table)
                with (
                    open(dest / f"{table}.copy", "wb") as handle,
                    conn.cursor().copy(sql.SQL("COPY {} TO STDOUT").format(name)) as copy,
                ):
                    for chunk in copy:
                        handle.write(chunk)
            settings = {str(k): str(v) for k, v in conn.execute(
                sql.SQL("SELECT key, value FROM {}").format(sql.Identifier(target.schema, "settings")))}  # fmt: skip
            conn.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(target.schema)))
            row = conn.execute(f"SELECT {pg_tiles.SIZE}").fetchone()
            size = 0 if row is None else int(row[0])
            nodes = merkle.root_nodes(size)
            hashes = pg_tiles.node_hashes(nodes, conn.execute(*pg_tiles.tiles_query(merkle.tiles_for(nodes))))
    except psycopg.Error as exc:
        raise translate_error(exc, target) from exc
    finally:
        conn.close()
    if size and len(hashes) != len(merkle.root_nodes(size)):
        raise IntegrityError(f"the tree of size {size} is missing stored hashes; run `graven verify`")
    return size, merkle.root_from(size, hashes) if size else merkle.EMPTY_ROOT, settings


def load(url: str, folder: Path, settings: dict[str, str]) -> PostgresStore:
    """Create the log in the (new) schema ``url`` names and load the backup's tables into it."""
    target = parse_url(url)
    conn = connect(target)
    try:
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (target.schema,)).fetchone()
    finally:
        conn.close()
    if exists:
        raise ConfigError(
            f"schema {target.schema} exists at {target.where}: a PostgreSQL backup is restored into a new schema; "
            f"move the old one aside first (ALTER SCHEMA {target.schema} RENAME TO {target.schema}_old) or name "
            "another with ?schema="
        )
    legacy = not (folder / "tiles.copy").exists() and (folder / "tree.copy").exists()
    store = PostgresStore(url, create=True)
    conn = connect(target)
    try:
        if legacy:
            migrate(conn, target.schema, upto=LEGACY_VERSION)
        else:
            store.initialize(settings)
        with conn.transaction():
            for table in LEGACY_TABLES if legacy else TABLES:
                if table == "stream_versions" and not (folder / f"{table}.copy").exists():
                    continue  # a backup made before streams existed, which therefore has none
                name = sql.Identifier(target.schema, table)
                with (
                    open(folder / f"{table}.copy", "rb") as handle,
                    conn.cursor().copy(sql.SQL("COPY {} FROM STDIN").format(name)) as copy,
                ):
                    while chunk := handle.read(1 << 20):
                        copy.write(chunk)
    except (psycopg.Error, OSError) as exc:
        store.close()
        drop(url)
        if isinstance(exc, OSError):
            raise ConfigError(f"cannot read the backup in {folder}: {exc}") from None
        raise translate_error(exc, target) from exc
    finally:
        conn.close()
    if legacy:
        store.initialize(settings)  # the remaining migrations: the tree becomes tiles
    return store


def drop(url: str) -> None:
    """Remove a schema :func:`load` just created (a restore that was refused leaves nothing)."""
    target = parse_url(url)
    conn = connect(target)
    try:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(target.schema)))
    except psycopg.Error as exc:
        raise translate_error(exc, target) from exc
    finally:
        conn.close()
