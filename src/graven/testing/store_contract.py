"""The Store contract: one test suite every storage backend passes unchanged, against a real engine.

Subclass :class:`StoreContract` in a ``Test*`` class and implement :meth:`make_store` (a fresh, empty,
uninitialised store) and :meth:`raw_execute` (run SQL behind the library's back, as the engine's
owner would); pytest collects the inherited tests.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest

from graven.core import audit, audit_stream, merkle
from graven.core.model import Prepared, prepare
from graven.core.note import Signer
from graven.errors import ConflictError, GravenError, ImmutableError
from graven.sequencer import Sequencer
from graven.store import Query, Store, StoredCheckpoint, StreamQuery

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def make_event(n: int, **overrides: Any) -> dict[str, Any]:
    """A realistic event whose fields vary with ``n``."""
    event: dict[str, Any] = {
        "id": f"evt-{n:08d}",
        "occurred_at": (T0 + timedelta(minutes=n)).isoformat(),
        "actor": {"type": "user", "id": f"u-{n % 3}", "ip": "192.0.2.1"},
        "action": ("customer.update", "session.login", "file.delete")[n % 3],
        "targets": [{"type": "customer", "id": f"c-{n % 4}"}],
        "outcome": ("success", "success", "denied", "failure")[n % 4],
        "source": ("web", "api")[n % 2],
        "changes": [{"field": "email", "old": f"a{n}@example.com", "new": f"b{n}@example.com"}],
    }
    event.update(overrides)
    return event


class StoreContract:
    """Behaviour every :class:`~graven.store.Store` MUST have."""

    def make_store(self) -> Store:
        raise NotImplementedError

    def raw_execute(self, store: Store, sql: str) -> None:
        raise NotImplementedError

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        store = self.make_store()
        store.initialize({"origin": "test.example/log"})
        yield store
        store.close()

    @pytest.fixture
    def sequencer(self, store: Store) -> Sequencer:
        return Sequencer(store, "test.example/log", Signer.generate("test.example/log"), checkpoint_interval=0)

    def prepared(self, n: int, **overrides: Any) -> Prepared:
        ids = count()
        return prepare(make_event(n, **overrides), now=T0, new_id=lambda: f"gen-{next(ids)}")

    def fill(self, sequencer: Sequencer, n: int, start: int = 0) -> list[int]:
        return sequencer.append([self.prepared(i) for i in range(start, start + n)])

    # --- schema --------------------------------------------------------------------------

    def test_initialize_is_idempotent_and_keeps_settings(self, store: Store) -> None:
        """A second initialize neither fails nor overwrites a setting already stored."""
        store.initialize({"origin": "other.example/log", "extra": "x"})
        settings = store.settings()
        assert "test.example/log" == settings["origin"]
        assert "x" == settings["extra"]

    def test_new_store_is_empty(self, store: Store) -> None:
        """A fresh log has no entries, no checkpoints and size 0."""
        assert 0 == store.size()
        assert [] == store.checkpoints()
        assert None is store.latest_checkpoint()
        assert None is store.entry(0)

    # --- appending -----------------------------------------------------------------------

    def test_append_assigns_gapless_indices(self, store: Store, sequencer: Sequencer) -> None:
        """Batches get consecutive indices starting at 0 and the stored bytes are the leaves."""
        assert [0, 1, 2] == self.fill(sequencer, 3)
        assert [3, 4] == self.fill(sequencer, 2, start=3)
        assert 5 == store.size()
        assert self.prepared(3).leaf == store.entry(3)

    def test_repeated_id_returns_original_index(self, store: Store, sequencer: Sequencer) -> None:
        """An event id seen before (in the log or earlier in the batch) appends nothing."""
        self.fill(sequencer, 2)
        again = [self.prepared(1), self.prepared(7), self.prepared(7)]
        assert [1, 2, 2] == sequencer.append(again)
        assert 3 == store.size()

    def test_failed_transaction_writes_nothing(self, store: Store) -> None:
        """An exception inside a write transaction rolls every row of it back."""
        item = self.prepared(0)
        appended = merkle.append(0, [], [item.leaf_hash])

        def failing_write() -> None:
            with store.write() as tx:
                tx.insert(0, [item], appended.rows)
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            failing_write()
        assert 0 == store.size()
        assert None is store.entry(0)

    def test_tree_hashes_give_valid_proofs(self, store: Store, sequencer: Sequencer) -> None:
        """Proofs assembled from stored subtree hashes verify against the rebuilt root."""
        self.fill(sequencer, 13)
        leaves = [merkle.leaf_hash(self.prepared(i).leaf) for i in range(13)]
        root = merkle.root_of(leaves)
        for index in (0, 6, 12):
            size, hashes = store.tree_hashes(merkle.inclusion_nodes(index, 13))
            assert 13 == size
            proof = merkle.inclusion_proof(index, 13, hashes)
            assert merkle.verify_inclusion(leaves[index], index, 13, proof, root)
        _, hashes = store.tree_hashes(merkle.consistency_nodes(5, 13))
        proof = merkle.consistency_proof(5, 13, hashes)
        assert merkle.verify_consistency(5, 13, merkle.root_of(leaves[:5]), root, proof)

    def test_checkpoints_are_signed_and_ordered(self, store: Store, sequencer: Sequencer) -> None:
        """Each committed batch (interval 0) leaves a checkpoint; the latest has the full size."""
        self.fill(sequencer, 2)
        self.fill(sequencer, 3, start=2)
        sizes = [c.size for c in store.checkpoints()]
        assert [2, 5] == sizes
        latest = store.latest_checkpoint()
        assert latest is not None
        assert 5 == latest.size

    def test_explicit_checkpoint_is_not_repeated(self, store: Store, sequencer: Sequencer) -> None:
        """Asking for a checkpoint when the latest covers the tree returns that one."""
        self.fill(sequencer, 2)
        first = sequencer.checkpoint()
        assert first == sequencer.checkpoint()
        assert 1 == len(store.checkpoints())

    def test_duplicate_checkpoint_size_is_refused(self, store: Store, sequencer: Sequencer) -> None:
        """A second checkpoint for the same size cannot be stored."""
        self.fill(sequencer, 1)
        with pytest.raises(GravenError), store.write() as tx:
            tx.insert_checkpoint(StoredCheckpoint(1, "forged\n"))

    def test_concurrent_threads_stay_gapless(self, store: Store, sequencer: Sequencer) -> None:
        """Eight threads appending at once get distinct, gapless indices (group commit)."""
        results: list[list[int]] = []
        lock = threading.Lock()

        def work(worker: int) -> None:
            for k in range(25):
                got = sequencer.append([self.prepared(worker * 1000 + k)])
                with lock:
                    results.append(got)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        indices = sorted(i for r in results for i in r)
        assert list(range(200)) == indices
        with store.scan() as scan:
            signed = [(c.size, c.note) for c in scan.checkpoints()]
            trusted = [sequencer.signer.verifier()] if sequencer.signer else []
            report = audit.verify_log(scan.entries(), scan.tiles(), signed, trusted)
            # the one-pass check, in chunks smaller than the log, reads the same scan alike
            streamed = audit_stream.verify_stream(scan.entries(), scan.tiles(), signed, trusted, chunk=16)
        assert report.ok, report.message
        assert streamed is not None
        assert report.to_json() == streamed.to_json()

    # --- reading -------------------------------------------------------------------------

    def test_scan_returns_every_row_in_order(self, store: Store, sequencer: Sequencer) -> None:
        """A scan yields entries in index order and the tree's tiles, partial at the right edge."""
        self.fill(sequencer, 4)
        with store.scan() as scan:
            assert 4 == scan.size()
            assert [0, 1, 2, 3] == [i for i, _ in scan.entries()]
            assert [(0, 0, 4)] == [(level, idx, len(h) // 32) for level, idx, h in scan.tiles()]

    def test_tiles_fill_and_grow_a_level(self, store: Store, sequencer: Sequencer) -> None:
        """Commits of every size leave one full tile per 256 hashes, the edge partial, and valid proofs."""
        leaves: list[bytes] = []
        for n in (1, 200, 54, 1, 300, 7):
            items = [self.prepared(i) for i in range(len(leaves), len(leaves) + n)]
            sequencer.append(items)
            leaves += [item.leaf_hash for item in items]
        size = len(leaves)
        with store.scan() as scan:
            widths = [(level, idx, len(h) // 32) for level, idx, h in scan.tiles()]
        assert [(0, 0, 256), (0, 1, 256), (0, 2, 51), (1, 0, 2)] == widths
        for index in (0, 255, 256, size - 1):
            got, hashes = store.tree_hashes(merkle.inclusion_nodes(index, size))
            assert got == size
            assert merkle.inclusion_proof_from_leaves(index, leaves) == merkle.inclusion_proof(index, size, hashes)
        _, hashes = store.tree_hashes(merkle.consistency_nodes(200, size))
        assert merkle.consistency_proof_from_leaves(200, leaves) == merkle.consistency_proof(200, size, hashes)

    def test_query_filters(self, store: Store, sequencer: Sequencer) -> None:
        """Every filter narrows the result to the matching entries, in index order."""
        self.fill(sequencer, 12)

        def ids(**kw: Any) -> list[int]:
            return [i for i, _ in store.query(Query(**kw))]

        assert [0, 3, 6, 9] == ids(actor="u-0")
        assert [1, 4, 7, 10] == ids(action="session.login")
        assert [0, 3, 6, 9] == ids(action="customer.*")
        assert [2, 6, 10] == ids(target=("customer", "c-2"))
        assert list(range(12)) == ids(target_type="customer")
        assert [2, 6, 10] == ids(outcome="denied")
        assert [1, 3, 5, 7, 9, 11] == ids(source="api")
        assert [] == ids(tenant="acme")
        assert [2, 3, 4] == ids(since=_t(2), until=_t(5))
        assert [5] == ids(text="A5@EXAMPLE")
        assert [4, 5] == ids(after=3, limit=2)
        assert [11, 10] == ids(newest_first=True, limit=2)
        assert [7, 6] == ids(newest_first=True, before=8, limit=2)
        assert [6] == ids(actor="u-0", outcome="denied")

    def test_query_text_treats_wildcards_literally(self, store: Store, sequencer: Sequencer) -> None:
        """Free text containing % or _ matches those characters, not anything."""
        sequencer.append([self.prepared(0, reason="100% sure"), self.prepared(1, reason="x_y")])
        assert [0] == [i for i, _ in store.query(Query(text="100%"))]
        assert [] == [i for i, _ in store.query(Query(text="%%"))]

    def test_derived_columns_match_when_untouched(self, store: Store, sequencer: Sequencer) -> None:
        """A clean log reports no disagreement between query columns and content."""
        self.fill(sequencer, 5)
        assert None is store.derived_mismatch()

    # --- aggregate streams ---------------------------------------------------------------

    def streamed(self, n: int, stream: str, version: int) -> Prepared:
        marker = {"stream": {"type": "account", "id": stream}, "version": version, "event": "E", "data": {}}
        return self.prepared(n, metadata={"sourcing": marker})

    def test_stream_versions_are_indexed_with_the_entries(self, store: Store, sequencer: Sequencer) -> None:
        """Entries of a stream are found by version; the index agrees with the entries."""
        self.fill(sequencer, 2)
        first = sequencer.append([self.streamed(10, "a", 1), self.streamed(11, "b", 1), self.streamed(12, "a", 2)])
        rows = store.stream_entries(("account", "a"), StreamQuery())
        assert [(1, first[0]), (2, first[2])] == [(v, i) for v, i, _ in rows]
        assert [first[0], first[1], first[2]] == [i for i, _ in store.stream_entries_after(1, 10)]
        assert None is store.derived_mismatch()
        for sql in ("DELETE FROM stream_versions", "UPDATE stream_versions SET version = 9"):
            with pytest.raises(ImmutableError, match="append-only"):
                self.raw_execute(store, sql)

    def test_stream_version_out_of_turn_is_refused(self, store: Store, sequencer: Sequencer) -> None:
        """A stream entry whose version is not one above the stream's is refused, nothing appended."""
        sequencer.append([self.streamed(1, "a", 1)])
        with pytest.raises(ConflictError) as caught:
            sequencer.append([self.prepared(2), self.streamed(3, "a", 3)])
        assert (("account", "a"), 2, 1, 1) == (caught.value.stream, caught.value.expected, caught.value.actual,
                                               caught.value.position)  # fmt: skip
        assert 1 == store.size()

    # --- archives and pruning ------------------------------------------------------------

    def test_pruning_only_below_an_archived_boundary(self, store: Store, sequencer: Sequencer) -> None:
        """Bodies below a recorded archive boundary can be removed; the tiles and proofs stay; nothing
        at or above the boundary can be, and a refused prune changes nothing."""
        items = [self.prepared(i) for i in range(30)]
        sequencer.append(items)
        _, before = store.tree_hashes(merkle.inclusion_nodes(25, 30))
        assert 0 == store.archived_below()
        with pytest.raises(ImmutableError, match="append-only"), store.write() as tx:
            tx.prune(0, 5)
        with store.write() as tx:
            tx.mark_archived(10, "a1", "d1")
            assert 10 == tx.archived_below()
            assert 3 == tx.prune(0, 10, [1, 4, 7, 12])
        assert [None, None, None] == [store.entry(i) for i in (1, 4, 7)]
        assert store.entry(12) is not None
        with store.write() as tx:
            assert 7 == tx.prune(0, 10)
        with pytest.raises(ImmutableError, match="append-only"), store.write() as tx:
            tx.prune(10, 11)
        assert 10 == store.archived_below()
        assert store.entry(10) is not None
        assert [11, 15, 19, 23, 27] == [i for i, _ in store.query(Query(target=("customer", "c-3")))]
        _, after = store.tree_hashes(merkle.inclusion_nodes(25, 30))
        assert before == after
        with store.scan() as scan:
            report = audit.verify_log(scan.entries(), scan.tiles(), [], [], archived_below=10)
        assert report.ok, report.message
        assert 30 == report.entries

    # --- immutability --------------------------------------------------------------------

    @pytest.mark.parametrize(
        "sql",
        [
            "UPDATE entries SET action = 'x.y' WHERE idx = 0",
            "DELETE FROM entries WHERE idx = 0",
            "DELETE FROM entries",
            "UPDATE tiles SET hashes = hashes",
            "DELETE FROM tiles",
            "DELETE FROM checkpoints",
            "UPDATE checkpoints SET note = 'x'",
            "DELETE FROM entry_targets",
        ],
    )
    def test_engine_refuses_changes(self, store: Store, sequencer: Sequencer, sql: str) -> None:
        """UPDATE and DELETE of log data are refused by the engine itself, with a clear message."""
        self.fill(sequencer, 2)
        with pytest.raises(ImmutableError, match="append-only"):
            self.raw_execute(store, sql)
        assert 2 == store.size()


def _t(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
