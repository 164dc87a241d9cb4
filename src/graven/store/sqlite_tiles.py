"""The Merkle tree of a SQLite log, stored as C2SP ``tlog-tiles`` rows (see ``merkle.tile_of``).

Row ``(level, idx, width)`` of ``tiles``: width 256 holds the whole tile; a smaller width holds the
hashes the tile gained in one commit, from the previous row's width up to ``width``. When a commit
completes a tile it writes the full tile and removes that tile's partial rows, the only removal the
triggers allow. Logs written before tiles (a ``tree`` table with a row per leaf) are converted when
they are opened.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator

from graven.core import merkle
from graven.core.merkle import Node, Tile
from graven.errors import IntegrityError
from graven.store import join_tile

# Tile (level, idx) holds the hashes of tree level 8 * level, nodes 256 * idx on: one row of width
# 256 when full, else one row per commit that added hashes (each holding those it added).
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tiles (
        level  INTEGER NOT NULL,
        idx    INTEGER NOT NULL,
        width  INTEGER NOT NULL,
        hashes BLOB NOT NULL,
        PRIMARY KEY (level, idx, width)
    )""",
    """CREATE TRIGGER IF NOT EXISTS tiles_no_update BEFORE UPDATE ON tiles
    BEGIN SELECT RAISE(ABORT, 'graven: tiles is append-only; UPDATE is refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS tiles_no_delete BEFORE DELETE ON tiles
    WHEN OLD.width >= 256 OR NOT EXISTS (SELECT 1 FROM tiles t WHERE t.level = OLD.level AND t.idx = OLD.idx
                                           AND t.width = 256 AND length(t.hashes) = 8192)
    BEGIN SELECT RAISE(ABORT, 'graven: tiles is append-only; DELETE is refused'); END""",
)


_INSERT = "INSERT INTO tiles (level, idx, width, hashes) VALUES (?, ?, ?, ?)"


def create(conn: sqlite3.Connection) -> None:
    """Create the tiles table and its triggers if absent (inside the caller's transaction)."""
    for statement in SCHEMA:
        conn.execute(statement)


def size(conn: sqlite3.Connection) -> int:
    """The number of leaves: the end of the last level-0 tile."""
    row = conn.execute("SELECT idx, width FROM tiles WHERE level = 0 ORDER BY idx DESC, width DESC LIMIT 1").fetchone()
    return 0 if row is None else int(row[0]) * merkle.TILE_WIDTH + int(row[1])


def read_tiles(conn: sqlite3.Connection, tiles: Iterable[Tile]) -> dict[Tile, bytes]:
    """The stored hashes of each tile (tiles not stored are left out)."""
    out: dict[Tile, bytes] = {}
    for level, idx in tiles:
        parts = conn.execute("SELECT width, hashes FROM tiles WHERE level = ? AND idx = ?", (level, idx)).fetchall()
        if parts:
            out[(level, idx)] = join_tile(parts)
    return out


def tree_hashes(conn: sqlite3.Connection, nodes: Iterable[Node]) -> dict[Node, bytes]:
    """The hashes of the given perfect subtrees that the stored tiles hold."""
    wanted = list(nodes)
    return merkle.tile_hashes(wanted, read_tiles(conn, merkle.tiles_for(wanted)))


def insert(conn: sqlite3.Connection, first: int, rows: Iterable[bytes]) -> None:
    """Store the tile hashes that ``merkle.append`` rows of leaves ``first, ...`` add."""
    new_rows: list[tuple[int, int, int, bytes]] = []
    completed: list[Tile] = []
    for (level, idx), slot, hashes in merkle.tile_deltas(first, list(rows)):
        end = slot + len(hashes) // merkle.HASH_SIZE
        if end == merkle.TILE_WIDTH and slot > 0:
            before = read_tiles(conn, [(level, idx)]).get((level, idx), b"")
            if len(before) != slot * merkle.HASH_SIZE:
                raise IntegrityError(
                    f"the stored tile {level}/{idx} holds {len(before) // merkle.HASH_SIZE} hashes where "
                    f"{slot} were expected; run `graven verify`"
                )
            hashes = before + hashes
            completed.append((level, idx))
        new_rows.append((level, idx, end, hashes))
    if len(new_rows) == 1:  # one commit of a few leaves: one row, and execute() is cheaper
        conn.execute(_INSERT, new_rows[0])
    else:
        conn.executemany(_INSERT, new_rows)
    if completed:
        conn.executemany("DELETE FROM tiles WHERE level = ? AND idx = ? AND width < 256", completed)


def scan(conn: sqlite3.Connection) -> Iterator[tuple[int, int, bytes]]:
    """Every stored tile, (level, idx, hashes), by level then index."""
    current: tuple[int, int] | None = None
    parts: list[tuple[int, bytes]] = []
    for level, idx, width, hashes in conn.execute("SELECT level, idx, width, hashes FROM tiles ORDER BY level, idx"):
        if (level, idx) != current:
            if current is not None:
                yield current[0], current[1], join_tile(parts)
            current, parts = (level, idx), []
        parts.append((width, hashes))
    if current is not None:
        yield current[0], current[1], join_tile(parts)


def migrate(conn: sqlite3.Connection, where: str) -> bool:
    """Convert a ``tree`` table (a row per leaf) into tiles, in the caller's write transaction.

    Returns False when there is nothing to convert. MUST NOT lose a hash that proofs need: the rows
    must run gaplessly from 0, else the log is refused untouched.
    """
    present = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "tree" not in present:
        return False
    create(conn)
    tiles: dict[Tile, bytearray] = {}
    expected = 0
    batch: list[bytes] = []
    for idx, hashes in conn.execute("SELECT idx, hashes FROM tree ORDER BY idx"):
        if idx != expected:
            raise IntegrityError(
                f"{where}: cannot convert the tree to tiles: its row {expected} is missing; "
                "check the log with `graven verify` using the Graven version that wrote it"
            )
        batch.append(bytes(hashes))
        expected += 1
        if len(batch) == 65_536:
            _gather(tiles, expected - len(batch), batch)
            batch = []
    _gather(tiles, expected - len(batch), batch)
    conn.executemany(
        _INSERT,
        [(level, idx, len(blob) // merkle.HASH_SIZE, bytes(blob)) for (level, idx), blob in sorted(tiles.items())],
    )
    conn.execute("DROP TABLE tree")  # its immutability triggers go with it
    return True


def _gather(tiles: dict[Tile, bytearray], first: int, rows: list[bytes]) -> None:
    for tile, _, hashes in merkle.tile_deltas(first, rows):
        tiles.setdefault(tile, bytearray()).extend(hashes)
