"""The storage port: a small protocol that every backend implements, and ``open_store(url)``.

A backend keeps four things: the entries (their leaf bytes plus derived query columns), the Merkle
tree as C2SP ``tlog-tiles`` (see ``merkle.tile_of``; a full tile is one row, the partial tile at the
right edge of each level grows by one row per commit), the signed checkpoints, and a few settings.
Every backend MUST refuse UPDATE and DELETE of stored entries, tiles and checkpoints inside the
engine, except the removal of a partial tile's rows once its full tile is stored; and MUST make an
appended batch durable before ``WriteTx`` returns from its context (all of the batch or none of it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from graven.core import merkle
from graven.core.merkle import Node
from graven.core.model import Prepared
from graven.errors import ConfigError, StoreError


@dataclass(frozen=True, slots=True)
class Query:
    """Filters for reading entries; every one given must match. ``after``/``before`` are cursors.

    ``action`` matches exactly, or as a prefix when it ends in ``.*`` (``user.*``). ``text`` finds
    entries whose stored JSON contains it, ignoring ASCII case. Times are stored-form UTC strings.
    """

    actor: str | None = None
    action: str | None = None
    target: tuple[str, str] | None = None
    target_type: str | None = None
    outcome: str | None = None
    source: str | None = None
    tenant: str | None = None
    since: str | None = None
    until: str | None = None
    text: str | None = None
    after: int | None = None
    before: int | None = None
    limit: int = 100
    newest_first: bool = False


@dataclass(frozen=True, slots=True)
class StreamQuery:
    """Which entries of one stream to read: versions above ``after`` up to ``upto`` (inclusive),
    oldest first unless ``newest_first``, at most ``limit`` (all when None)."""

    after: int = 0
    upto: int | None = None
    limit: int | None = None
    newest_first: bool = False


@dataclass(frozen=True, slots=True)
class Head:
    """What a writer reads first, under the head lock: see :meth:`WriteTx.head`."""

    size: int
    frontier: dict[Node, bytes]
    existing: dict[str, int]
    captured: list[Any]
    bodies: dict[int, bytes] = field(default_factory=dict)  # of existing entries, where read with them


class HeadMoved(StoreError):
    """A write that guessed the log head (see :meth:`WriteTx.head`) found it moved, or needed a
    read the guess cannot answer: nothing of it was written. Run the write again; the store then
    reads the head first (the next ``write()`` after this error MUST NOT guess)."""


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A signed checkpoint note as stored, with the tree size it commits to."""

    size: int
    note: str


class WriteTx(Protocol):
    """One write transaction holding the log head exclusively (one writer per log at a time)."""

    def size(self) -> int:
        """The number of leaves integrated into the tree."""
        ...

    def tree_hashes(self, nodes: Iterable[Node]) -> dict[Node, bytes]:
        """The stored hashes of the given perfect subtrees (missing ones are left out)."""
        ...

    def existing_ids(self, ids: Sequence[str]) -> dict[str, int]:
        """The index of each given event id already in the log."""
        ...

    def entry_bodies(self, indices: Sequence[int]) -> dict[int, bytes]:
        """The stored leaf bytes of the given entries (missing ones left out). Only a repeated
        event id reads them, to compare the repeat with the event that holds the id."""
        ...

    def insert(self, first: int, entries: Sequence[Prepared], rows: Sequence[bytes]) -> None:
        """Append entries at first, first+1, ... with the tree hashes they complete (``rows`` as
        ``merkle.append`` gives them; the backend stores their tiles) and, for entries of an aggregate
        stream (:func:`graven.core.streams.stream_of`), their stream index rows. MUST NOT overwrite."""
        ...

    def stream_versions(self, streams: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The current (highest) version of each given aggregate stream that has entries."""
        ...

    def latest_checkpoint(self) -> StoredCheckpoint | None: ...

    def insert_checkpoint(self, checkpoint: StoredCheckpoint) -> None: ...

    def archived_below(self) -> int:
        """Every entry below this index is in a written archive (0 when none was written)."""
        ...

    def mark_archived(self, below: int, name: str, digest: str) -> None:
        """Record that the archive ``name`` (its manifest's SHA-256 ``digest``) holds every entry below
        ``below``. MUST be called only once that archive is durably written and checked."""
        ...

    def prune(self, first: int, below: int, only: Sequence[int] | None = None) -> int:
        """Remove the stored bodies and target rows of the archived entries ``first .. below - 1``
        (``only`` those listed, when given); returns how many bodies were removed. The tree's tiles
        stay. The engine MUST refuse to remove an entry at or above ``archived_below()``."""
        ...

    def take_captured(self, limit: int) -> list[Any]:
        """Events the engine captured itself (database triggers), oldest first, removed from the
        capture table in this same transaction so each becomes exactly one entry. Backends
        without trigger capture return an empty list."""
        ...

    def head(self, ids: Sequence[str], captured: int) -> Head:
        """The size, the stored hashes of ``merkle.frontier_nodes(size)`` (missing ones left out),
        ``existing_ids(ids)``, ``entry_bodies`` of those and ``take_captured(captured)`` (nothing
        taken when 0), read together in this transaction: a backend with round trips SHOULD make
        it one. :func:`read_head` composes it from the other methods.

        A backend MAY instead answer from what it remembers of its own last commit (no read, no
        existing ids, nothing captured) and check that guess under the head lock in the statement
        that writes; when the guess was wrong, or a later call of this transaction needs a read,
        it raises :class:`HeadMoved` having written nothing."""
        ...


def read_head(tx: WriteTx, ids: Sequence[str], captured: int) -> Head:
    """``WriteTx.head`` built from the single-purpose methods (for backends without round trips)."""
    taken = tx.take_captured(captured) if captured > 0 else []
    size = tx.size()
    existing = tx.existing_ids(ids)
    bodies = tx.entry_bodies(sorted(set(existing.values()))) if existing else {}
    return Head(size, tx.tree_hashes(merkle.frontier_nodes(size)), existing, taken, bodies)


class Scan(Protocol):
    """A read snapshot of the raw stored rows, anomalies included (gaps, extra rows)."""

    def size(self) -> int: ...

    def entries(self) -> Iterator[tuple[int, bytes]]:
        """Stored (index, leaf bytes) in index order."""
        ...

    def tiles(self) -> Iterator[tuple[int, int, bytes]]:
        """Stored (tile level, tile index, hashes) by level, then index (see :func:`join_tile`)."""
        ...

    def checkpoints(self) -> list[StoredCheckpoint]: ...


class Store(Protocol):
    """A log's storage. Reads see a consistent snapshot per call."""

    url: str
    backend: str
    """``"sqlite"`` or ``"postgresql"``: which kind of companion storage (accounts, read models) fits beside it."""

    def location(self) -> Any:
        """Where companion storage opens beside the log: the SQLite file's ``Path``, or the ``PgTarget``."""
        ...

    def initialize(self, settings: Mapping[str, str]) -> None:
        """Create the schema if absent (idempotent) and store settings that are not yet set."""
        ...

    def settings(self) -> dict[str, str]: ...

    def write(self) -> AbstractContextManager[WriteTx]:
        """An exclusive write transaction; committed durably on a clean exit, rolled back otherwise."""
        ...

    def size(self) -> int: ...

    def entry(self, index: int) -> bytes | None:
        """The stored leaf bytes of one entry."""
        ...

    def scan(self) -> AbstractContextManager[Scan]:
        """One consistent read snapshot of everything stored, for verification."""
        ...

    def tree_hashes(self, nodes: Iterable[Node]) -> tuple[int, dict[Node, bytes]]:
        """The tree size and the requested hashes, read in one snapshot."""
        ...

    def checkpoints(self) -> list[StoredCheckpoint]: ...

    def latest_checkpoint(self) -> StoredCheckpoint | None: ...

    def archived_below(self) -> int:
        """See :meth:`WriteTx.archived_below`."""
        ...

    def query(self, query: Query) -> list[tuple[int, bytes]]: ...

    def stream_entries(self, stream: tuple[str, str], query: StreamQuery) -> list[tuple[int, int, bytes]]:
        """``(version, index, leaf bytes)`` of one aggregate stream's entries, read in one snapshot."""
        ...

    def stream_entries_after(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        """``(index, leaf bytes)`` of entries of any aggregate stream with index above ``after``, in
        index order (at most ``limit``)."""
        ...

    def structure_problems(self) -> list[str]:
        """The deep check: a sentence for each engine structure (index, trigger) that differs from
        a new log's, or that the engine's own checks find broken; empty when all is as made."""
        ...

    def derived_mismatch(self) -> int | None:
        """The first index whose derived query columns or target rows disagree with its leaf bytes."""
        ...

    def close(self) -> None: ...


def open_store(url: str | Path, *, create: bool = False) -> Store:
    """Open the store a URL names: a path, ``sqlite:///path``, or ``postgresql://...``.

    Without ``create`` a log that does not exist yet is an error (nothing is created by reading).
    """
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        from graven.store.postgres import PostgresStore

        return PostgresStore(text, create=create)
    if "://" in text and not text.startswith("sqlite://"):
        scheme = text.split("://", 1)[0]
        raise ConfigError(f"unsupported log URL scheme {scheme!r}: use a path, sqlite:///path or postgresql://...")
    from graven.store.sqlite import SQLiteStore

    return SQLiteStore(sqlite_path(text), create=create)


def sqlite_path(url: str) -> Path:
    """The file a SQLite URL or plain path names (``sqlite:///rel.db``, ``sqlite:////abs.db``)."""
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://") :]
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(
                f"malformed SQLite URL {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
        url = rest[1:]
    if not url:
        raise ConfigError("empty log path: give a file path or a sqlite:/// URL")
    return Path(url)


def join_tile(parts: Iterable[tuple[int, bytes]]) -> bytes:
    """A tile's hashes from its stored rows ``(width, hashes)``: the full tile (width 256) where it
    is stored, else the parts of the partial tile concatenated in width order."""
    ordered = sorted(parts, key=lambda part: part[0])
    if ordered and ordered[-1][0] == merkle.TILE_WIDTH:
        return bytes(ordered[-1][1])
    return b"".join(bytes(hashes) for _, hashes in ordered)


class FrontierMemo:
    """The frontier hashes of the tree as this store object last committed it, so that its next write
    need not read and rehash the partial tiles at the right edge. Tiles are append-only, so hashes
    known at a size stay right while the log has that size; a commit by anyone else changes the size.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: tuple[int, dict[Node, bytes]] | None = None

    def get(self, size: int) -> dict[Node, bytes] | None:
        with self._lock:
            known = self._known
        return dict(known[1]) if known is not None and known[0] == size else None

    def size(self) -> int:
        """The size whose frontier is known (-1 when none is)."""
        with self._lock:
            return -1 if self._known is None else self._known[0]

    def put(self, size: int, frontier: dict[Node, bytes]) -> None:
        with self._lock:
            self._known = (size, frontier)

    @staticmethod
    def grown(size: int, frontier: dict[Node, bytes], rows: Sequence[bytes]) -> tuple[int, dict[Node, bytes]] | None:
        """The size and frontier after appending ``rows`` (None when ``frontier`` is incomplete)."""
        if any(node not in frontier for node in merkle.frontier_nodes(size)):
            return None
        return size + len(rows), merkle.frontier_after(size, frontier, rows)
