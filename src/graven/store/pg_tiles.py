"""The Merkle tree of a PostgreSQL log as C2SP ``tlog-tiles`` rows (migration 4 of
:mod:`graven.store.postgres_schema` says how they are kept; ``merkle.tile_of`` maps nodes to tiles).

The writes a commit makes are statements handed back to the caller, who defers them into its
pipeline: appending costs no round trip of its own, completing a tile neither (its earlier hashes
are gathered by the INSERT itself, and the CHECK on full tiles refuses a tile with any missing).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from graven.core import merkle
from graven.core.merkle import Node, Tile
from graven.store import join_tile

#: The number of leaves, as a scalar subquery: the end of the last level-0 tile.
SIZE = "coalesce((SELECT idx * 256 + width FROM tiles WHERE level = 0 ORDER BY idx DESC, width DESC LIMIT 1), 0)"

#: The (level, idx) of the tiles holding the frontier of a tree of ``s.n`` leaves: per set bit k of
#: n, the node (k, (n >> k) - 1) (see ``merkle.frontier_nodes`` and ``merkle.tile_of``).
FRONTIER_TILES = """
SELECT k / 8, (((s.n >> k) - 1) << mod(k, 8)) >> 8 FROM s, generate_series(0, 62) AS k WHERE (s.n >> k) & 1 = 1
"""

#: Adds rows to tiles; its parameters are the first item ``writes`` returns.
ADD = (
    "INSERT INTO tiles (level, idx, width, hashes) "
    "SELECT * FROM unnest(%b::int[], %b::bigint[], %b::int[], %b::bytea[])"
)
_COMPLETE = """
INSERT INTO tiles (level, idx, width, hashes)
SELECT %s, %s, 256, string_agg(hashes, ''::bytea ORDER BY width) || %b FROM tiles
 WHERE level = %s AND idx = %s AND width < 256
"""
_COMPACT = "DELETE FROM tiles WHERE level = %s AND idx = %s AND width < 256"


def writes(first: int, rows: Sequence[bytes]) -> tuple[tuple[Any, ...], list[tuple[str, tuple[Any, ...]]]]:
    """How to store the tile hashes ``merkle.append`` rows of leaves ``first, ...`` add: the
    parameters of :data:`ADD` (the rows it adds), then the statements that complete tiles."""
    levels: list[int] = []
    indices: list[int] = []
    widths: list[int] = []
    parts: list[bytes] = []
    completions: list[tuple[str, tuple[Any, ...]]] = []
    for (level, idx), slot, hashes in merkle.tile_deltas(first, rows):
        end = slot + len(hashes) // merkle.HASH_SIZE
        if end == merkle.TILE_WIDTH and slot > 0:
            completions.append((_COMPLETE, (level, idx, hashes, level, idx)))
            completions.append((_COMPACT, (level, idx)))
            continue
        levels.append(level)
        indices.append(idx)
        widths.append(end)
        parts.append(hashes)
    return (levels, indices, widths, parts), completions


def tiles_query(tiles: Iterable[Tile]) -> tuple[str, tuple[Any, ...]]:
    """A SELECT of (level, idx, width, hashes) for the rows of the given tiles."""
    wanted = sorted(set(tiles))
    return (
        "SELECT level, idx, width, hashes FROM tiles "
        "WHERE (level, idx) IN (SELECT * FROM unnest(%s::int[], %s::bigint[]))",
        ([level for level, _ in wanted], [idx for _, idx in wanted]),
    )


def joined(rows: Iterable[Sequence[Any]]) -> dict[Tile, bytes]:
    """Tiles from (level, idx, width, hashes) rows, each tile's rows joined (see ``join_tile``)."""
    parts: dict[Tile, list[tuple[int, bytes]]] = {}
    for level, idx, width, hashes in rows:
        parts.setdefault((int(level), int(idx)), []).append((int(width), bytes(hashes)))
    return {tile: join_tile(found) for tile, found in parts.items()}


def node_hashes(nodes: Iterable[Node], rows: Iterable[Sequence[Any]]) -> dict[Node, bytes]:
    """The hashes of ``nodes`` that the tile rows (level, idx, width, hashes) hold."""
    return merkle.tile_hashes(nodes, joined(rows))


def scan(conn: psycopg.Connection[TupleRow], itersize: int) -> Iterator[tuple[int, int, bytes]]:
    """Every stored tile, (level, idx, hashes), by level then index, through a server-side cursor."""
    with conn.cursor(name="graven_scan_tiles", binary=True) as cur:
        cur.itersize = itersize
        cur.execute("SELECT level, idx, width, hashes FROM tiles ORDER BY level, idx, width")
        current: Tile | None = None
        parts: list[tuple[int, bytes]] = []
        for level, idx, width, hashes in cur:
            tile = (int(level), int(idx))
            if tile != current:
                if current is not None:
                    yield current[0], current[1], join_tile(parts)
                current, parts = tile, []
            parts.append((int(width), bytes(hashes)))
        if current is not None:
            yield current[0], current[1], join_tile(parts)
