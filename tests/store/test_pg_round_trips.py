"""Round trips per PostgreSQL write, and the batched head read (``WriteTx.head``) on both backends.

Round trips are counted from libpq's own protocol trace of the writer connection: every simple
Query and every Sync is one exchange with the server.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import pq, sql

from graven.capture.pg import track
from graven.core import merkle
from graven.core.model import Prepared, prepare
from graven.core.note import Signer
from graven.errors import StoreError
from graven.opening import open_trail
from graven.sequencer import Sequencer
from graven.store import HeadMoved, Store, StoredCheckpoint, read_head
from graven.store.postgres import COPY_FROM, PostgresStore, lock_key
from graven.store.sqlite import SQLiteStore
from graven.testing.store_contract import T0, make_event
from graven.trail import Trail
from tests.pgserver import Server

ORIGIN = "test.example/log"
EVENT = {"action": "user.login", "actor": {"type": "user", "id": "u-1"}, "outcome": "success"}


def prepared(n: int) -> Prepared:
    return prepare(make_event(n), now=T0, new_id=lambda: f"gen-{n}")


@contextmanager
def count_round_trips(store: PostgresStore, tmp_path: Path) -> Iterator[list[int]]:
    """Trace the writer connection; the list holds the count once the block ends."""
    conn = store._writer
    assert conn is not None
    path = tmp_path / "libpq.trace"
    counted: list[int] = []
    with path.open("w") as out:
        conn.pgconn.trace(out.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield counted
        finally:
            conn.pgconn.untrace()
    sent = [line.split("\t") for line in path.read_text().splitlines()]
    counted.append(sum(1 for p in sent if len(p) > 2 and p[0] == "F" and p[2].split(" ")[0] in ("Query", "Sync")))


@pytest.fixture
def pg_trail(pg: Server, tmp_path: Path) -> Iterator[Trail]:
    trail = open_trail(pg.schema_url(), signing_key=tmp_path / "signing.key", checkpoint_interval=3600)
    trail.record(EVENT)  # connects the writer and signs the first checkpoint
    yield trail
    trail.close()


class TestRoundTrips:
    """A write on PostgreSQL by the writer that made the last commit costs one round trip (the lock
    and the guarded INSERT, committed at one Sync); a write that reads the head costs three: BEGIN +
    lock, the head read, INSERT + COMMIT."""

    def test_record_costs_one_round_trip(self, pg_trail: Trail, tmp_path: Path) -> None:
        """One record() (no checkpoint due) is one exchange with the server."""
        store = pg_trail.store
        assert isinstance(store, PostgresStore)
        with count_round_trips(store, tmp_path) as counted:
            assert 1 == pg_trail.record(EVENT)
        assert [1] == counted

    def test_record_many_costs_one_round_trip(self, pg_trail: Trail, tmp_path: Path) -> None:
        """A batch below COPY_FROM is one exchange too, and every entry lands at the next index."""
        store = pg_trail.store
        assert isinstance(store, PostgresStore)
        size = COPY_FROM - 1
        with count_round_trips(store, tmp_path) as counted:
            assert list(range(1, size + 1)) == pg_trail.record_many([dict(EVENT) for _ in range(size)])
        assert [1] == counted
        assert pg_trail.verify().ok

    def test_write_after_another_writer_reads_the_head(self, pg_trail: Trail, tmp_path: Path) -> None:
        """When another writer committed meanwhile, the guessed write writes nothing (one exchange)
        and the write runs again reading the head (three): 4 in all, and the indices stay gapless."""
        store = pg_trail.store
        assert isinstance(store, PostgresStore)
        other = open_trail(store.url, signing_key=tmp_path / "signing.key", checkpoint_interval=3600)
        try:
            assert 1 == other.record(EVENT)
        finally:
            other.close()
        with count_round_trips(store, tmp_path) as counted:
            assert 2 == pg_trail.record(EVENT)
        assert [4] == counted
        with count_round_trips(store, tmp_path) as counted:
            assert 3 == pg_trail.record(EVENT)
        assert [1] == counted  # it knows the head again
        assert pg_trail.verify().ok

    def test_large_batch_goes_by_copy(self, pg_trail: Trail, tmp_path: Path) -> None:
        """A batch of 500 sends its entries and target rows by binary COPY (one exchange each)."""
        store = pg_trail.store
        assert isinstance(store, PostgresStore)
        with count_round_trips(store, tmp_path) as counted:
            events = [{**EVENT, "targets": [{"type": "customer", "id": f"c-{n % 7}"}]} for n in range(500)]
            assert list(range(1, 501)) == pg_trail.record_many(events)
        assert [5] == counted  # BEGIN, head, COPY entries, COPY target rows, tiles + COMMIT
        assert 71 == len(pg_trail.history("customer:c-3"))
        assert pg_trail.verify().ok

    def test_repeated_id_reads_and_writes_nothing_more(self, pg_trail: Trail, tmp_path: Path) -> None:
        """A repeat of a stored id fails the guessed write on the unique index (one exchange, rolled
        back), then is answered from the head read: BEGIN, head, COMMIT."""
        event = {**EVENT, "id": "fixed-id-1"}
        first = pg_trail.record(event)
        store = pg_trail.store
        assert isinstance(store, PostgresStore)
        with count_round_trips(store, tmp_path) as counted:
            assert first == pg_trail.record(event)
        assert [4] == counted
        assert first + 1 == pg_trail.size


class TestPlans:
    """The id lookup is planned for each write, so it uses the index however much the log grew."""

    def test_head_read_is_never_a_cached_prepared_statement(self, pg_trail: Trail) -> None:
        """After many writes the writer holds no prepared head read or id lookup (a generic plan made
        while the log was small scans every entry until the next ANALYZE)."""
        for _ in range(12):
            pg_trail.record(EVENT)
        store = pg_trail.store
        assert isinstance(store, PostgresStore)
        assert store._writer is not None
        rows = store._writer.execute("SELECT statement FROM pg_prepared_statements").fetchall()
        assert any("INSERT INTO entries" in r[0] for r in rows)  # the view lists this writer's statements
        assert [] == [r[0] for r in rows if "FROM entries" in r[0]]


class TestDeferredWrites:
    """Writes sent with COMMIT still fail whole, and the writer recovers."""

    def test_without_pipeline_support(self, pg_trail: Trail, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """With a libpq too old to pipeline, the INSERT and COMMIT go one by one (four round trips)."""
        monkeypatch.setattr("graven.store.postgres.PIPELINE", False)
        store = pg_trail.store
        assert isinstance(store, PostgresStore)
        with count_round_trips(store, tmp_path) as counted:
            assert [1, 2] == pg_trail.record_many([dict(EVENT), dict(EVENT)])
        assert [4] == counted
        assert pg_trail.verify().ok

    def test_failed_deferred_write_rolls_back_everything(self, pg: Server) -> None:
        """A duplicate checkpoint found at commit leaves neither it nor the entries of its batch."""
        store = PostgresStore(pg.schema_url(), create=True)
        store.initialize({"origin": ORIGIN})
        try:
            signer = Signer.generate(ORIGIN)
            Sequencer(store, ORIGIN, signer, checkpoint_interval=0).append([prepared(0)])
            note = store.checkpoints()[0].note
            item = prepared(1)
            with store.write() as tx:
                head = tx.head([], 0)
                hashes = [head.frontier[n] for n in merkle.frontier_nodes(head.size)]
                appended = merkle.append(head.size, hashes, [item.leaf_hash])

            def forge() -> None:
                with store.write() as tx:
                    tx.insert(1, [item], appended.rows)
                    tx.insert_checkpoint(StoredCheckpoint(1, note))

            with pytest.raises(StoreError, match="checkpoint of that size is already stored"):
                forge()
            assert 1 == store.size()
            assert None is store.entry(1)
            assert [1, 2] == Sequencer(store, ORIGIN, signer, checkpoint_interval=0).append([item, prepared(2)])
        finally:
            store.close()

    def test_read_after_deferred_write_sees_it(self, pg: Server) -> None:
        """A read in the same transaction is sent after the deferred INSERT, in one pipeline."""
        store = PostgresStore(pg.schema_url(), create=True)
        store.initialize({"origin": ORIGIN})
        try:
            items = [prepared(n) for n in range(3)]
            appended = merkle.append(0, [], [item.leaf_hash for item in items])
            with store.write() as tx:
                tx.insert(0, items, appended.rows)
                assert 3 == tx.size()
                assert {items[1].id: 1} == tx.existing_ids([items[1].id, "nope"])
            assert 3 == store.size()
        finally:
            store.close()


def _head_matches_single_reads(store: Store, signer: Signer, sizes: tuple[int, ...]) -> None:
    sequencer = Sequencer(store, ORIGIN, signer, checkpoint_interval=3600)
    for size in sizes:
        sequencer.append([prepared(n) for n in range(store.size(), size)])
        first, last = prepared(0).id, prepared(size - 1).id
        ids = [first, last, "absent", first]
        with store.write() as tx:
            tx.size()  # a read first: PostgreSQL would otherwise guess the head (see TestGuessedHead)
            head = tx.head(ids, 0)
            composed = read_head(tx, ids, 0)
        assert size == head.size
        assert composed == head
        assert set(merkle.frontier_nodes(size)) == set(head.frontier)
        assert {first: 0, last: size - 1} == head.existing


class TestHead:
    """``head`` answers exactly what the single-purpose reads answer, on both backends."""

    SIZES = (1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 33, 64, 100)

    def test_postgres(self, pg: Server) -> None:
        """PostgreSQL computes the frontier rows in SQL: they match merkle.frontier_nodes."""
        store = PostgresStore(pg.schema_url(), create=True)
        store.initialize({"origin": ORIGIN})
        try:
            _head_matches_single_reads(store, Signer.generate(ORIGIN), self.SIZES)
        finally:
            store.close()

    def test_sqlite(self, tmp_path: Path) -> None:
        """SQLite composes it from its single-purpose reads."""
        store = SQLiteStore(tmp_path / "log.db", create=True)
        store.initialize({"origin": ORIGIN})
        try:
            _head_matches_single_reads(store, Signer.generate(ORIGIN), self.SIZES)
        finally:
            store.close()

    def test_postgres_claims_captured_oldest_first(self, pg: Server) -> None:
        """The head read takes at most ``captured`` outbox events, oldest first, and deletes them."""
        store = PostgresStore(pg.schema_url(), create=True)
        store.initialize({"origin": ORIGIN})
        try:
            with store.write() as tx:
                for action in ("a.one", "a.two", "a.three"):
                    tx.conn.execute("INSERT INTO captured (event) VALUES (jsonb_build_object('action', %s::text))",
                                    (action,))  # fmt: skip
            with store.write() as tx:
                assert [] == tx.head([], 0).captured
            taken: list[Any] = []
            with store.write() as tx:
                taken += tx.head([], 2).captured
            with store.write() as tx:
                taken += tx.head([], 2).captured
            assert ["a.one", "a.two", "a.three"] == [e["action"] for e in taken]
            with store.write() as tx:
                assert [] == tx.head([], 2).captured
        finally:
            store.close()


class TestGuessedHead:
    """A write that guesses the head (the writer's own last commit) is checked under the lock: a
    wrong guess writes nothing, and the write runs again reading the head."""

    def test_a_read_after_a_guess_writes_nothing(self, pg_trail: Trail) -> None:
        """A guessed transaction cannot read (its decisions rest on the guess): HeadMoved, nothing
        written, and the next write reads the head (and may read)."""
        store = pg_trail.store
        assert isinstance(store, PostgresStore)

        def guess_then_read() -> None:
            with store.write() as tx:
                head = tx.head([prepared(1).id], 0)
                assert (1, {}, []) == (head.size, head.existing, head.captured)
                tx.size()

        with pytest.raises(HeadMoved, match="guessed the log head and needs a read"):
            guess_then_read()
        assert 1 == store.size()
        with store.write() as tx:
            assert {} == tx.head([prepared(1).id], 0).existing
            assert 1 == tx.size()  # a head that was read: reads go on in the same transaction
        assert 1 == pg_trail.record(EVENT)

    def test_a_stale_guess_writes_nothing(self, pg_trail: Trail, tmp_path: Path) -> None:
        """A guessed size another writer has moved on from: the guarded INSERT writes no row."""
        store = pg_trail.store
        assert isinstance(store, PostgresStore)
        item = prepared(1)

        def guess_while_another_writes() -> None:
            with store.write() as tx:
                head = tx.head([item.id], 0)
                appended = merkle.append(1, [head.frontier[n] for n in merkle.frontier_nodes(1)], [item.leaf_hash])
                other = open_trail(store.url, signing_key=tmp_path / "signing.key", checkpoint_interval=3600)
                try:
                    assert 1 == other.record(EVENT)
                finally:
                    other.close()
                tx.insert(1, [item], appended.rows)

        with pytest.raises(HeadMoved, match="no longer has the 1 entries"):
            guess_while_another_writes()
        assert 2 == store.size()
        assert None is store.entry(2)
        assert 2 == pg_trail.record(EVENT)
        assert pg_trail.verify().ok

    def test_completing_tiles_and_signing_read_the_head(self, pg: Server, tmp_path: Path) -> None:
        """Writes that complete a tile or sign a checkpoint need reads: they run again reading, and
        every entry lands at the next index (one per commit across the first tile's end)."""
        trail = open_trail(pg.schema_url(), signing_key=tmp_path / "signing.key", checkpoint_interval=0)
        try:
            assert list(range(300)) == [trail.record(EVENT) for _ in range(300)]
            assert 301 == len(trail.store.checkpoints())  # and the one of size 0 that init signed
            assert trail.verify().ok
        finally:
            trail.close()

    def test_captured_events_go_first(self, pg: Server, pg_trail: Trail) -> None:
        """An event waiting in the capture outbox makes the guess wrong: the write runs again, and
        the captured change takes the index before the recorded event."""
        store = pg_trail.store
        assert isinstance(store, PostgresStore)
        table = sql.Identifier(store.schema, "accounts")
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, name text)").format(table))
            track(conn, store.schema, f"{store.schema}.accounts")
            conn.execute(sql.SQL("INSERT INTO {} VALUES (1, 'a')").format(table))
        index = pg_trail.record(EVENT)
        assert index + 1 == pg_trail.size
        assert ["accounts.insert"] == [
            e.action for i in range(1, index) if (e := pg_trail.get(i)).action.endswith(".insert")
        ]
        assert pg_trail.verify().ok

    def test_the_write_run_again_reads_the_head(self, pg_trail: Trail) -> None:
        """After HeadMoved, the same thread's next write reads the head, even when another thread
        (the background signer, say) wrote in between and its guess held."""
        store = pg_trail.store
        assert isinstance(store, PostgresStore)

        def guess_then_read() -> None:
            with store.write() as tx:
                tx.head([prepared(1).id], 0)
                tx.size()

        with pytest.raises(HeadMoved):
            guess_then_read()
        other = threading.Thread(target=pg_trail.record, args=(EVENT,))
        other.start()
        other.join()
        assert 2 == pg_trail.size
        with store.write() as tx:
            assert 2 == tx.head([prepared(2).id], 0).size
            assert tx.guessed is None
            assert 2 == tx.size()

    def test_guesses_back_off_while_another_writer_commits(self, pg_trail: Trail, tmp_path: Path) -> None:
        """Each guess another writer's commit made wrong doubles the writes that read the head
        before the next guess; a guess that holds starts over."""
        store = pg_trail.store
        assert isinstance(store, PostgresStore)
        other = open_trail(store.url, signing_key=tmp_path / "signing.key", checkpoint_interval=3600)
        counts = []
        try:
            for step in range(5):
                if step < 2:
                    other.record(EVENT)
                with count_round_trips(store, tmp_path) as counted:
                    pg_trail.record(EVENT)
                counts += counted
        finally:
            other.close()
        # missed (1) and read (3); missed again, read, and one more write reads; then guesses again
        assert [4, 4, 3, 1, 1] == counts
        assert pg_trail.verify().ok

    def test_a_guessed_write_that_cannot_get_the_lock_says_so(
        self, pg: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The lock wait of a guessed write is bounded like any write's; nothing is written."""
        monkeypatch.setattr("graven.store.postgres.LOCK_TIMEOUT_S", 1)  # the wait
        monkeypatch.setattr("graven.store.pg_connection.LOCK_TIMEOUT_S", 1)  # the message
        trail = open_trail(pg.schema_url(), signing_key=tmp_path / "signing.key", checkpoint_interval=3600)
        try:
            trail.record(EVENT)  # reads the head: the next write guesses
            store = trail.store
            assert isinstance(store, PostgresStore)
            with psycopg.connect(store.target.conninfo, autocommit=True) as holder:
                holder.execute("SELECT pg_advisory_lock(%s)", (lock_key(store.schema, "head"),))
                with pytest.raises(StoreError, match="locked by another writer for over 1s"):
                    trail.record(EVENT)
            assert 1 == trail.size
            assert 1 == trail.record(EVENT)
            assert trail.verify().ok
        finally:
            trail.close()

    def test_a_deallocated_statement_is_prepared_again(self, pg_trail: Trail) -> None:
        """A guessed write whose prepared statement the session lost (DEALLOCATE, DISCARD ALL) writes
        nothing, runs again reading the head, and the next guessed write prepares it anew."""
        store = pg_trail.store
        assert isinstance(store, PostgresStore)
        assert 1 == pg_trail.record(EVENT)  # guessed: prepares the statement
        assert store._writer is not None
        store._writer.execute("DEALLOCATE ALL")
        assert 2 == pg_trail.record(EVENT)
        assert 3 == pg_trail.record(EVENT)
        rows = store._writer.execute("SELECT name FROM pg_prepared_statements").fetchall()
        assert any(name.startswith("graven_guessed_") for (name,) in rows)
        assert pg_trail.verify().ok
