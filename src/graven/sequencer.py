"""The sequencer: gapless indices, Merkle integration and checkpoint signing, with group commit.

Callers in many threads hand over validated entries; whoever finds no write in progress becomes the
leader, takes everything queued so far and writes it as one transaction; the others wait for that
commit or lead the next one. Several processes are serialised by the store's write lock, and each
transaction re-reads the head inside the lock, so indices stay gapless.

MUST NOT return an index before the transaction that stored it has committed durably.
MUST NOT sign a checkpoint for a tree that is inconsistent with the latest signed checkpoint.
MUST NOT report a committed append as failed: what runs after the commit (the ``on_signed`` and
``on_committed`` hooks) cannot fail it; their errors are logged.
A repeated event id returns the index it was first given and appends nothing.

A write signs a checkpoint in its own transaction only when ``checkpoint_interval`` has passed
since the last one; the tail a burst leaves unsigned is the trail's background signer's to cover
(:mod:`graven.signing`), which learns of it through ``on_committed``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from graven.core import merkle
from graven.core.model import Prepared
from graven.core.note import Checkpoint, NoteError, Signer, open_checkpoint, sign_checkpoint
from graven.errors import IntegrityError
from graven.store import Head, Store, StoredCheckpoint, WriteTx

MAX_BATCH = 10_000
log = logging.getLogger("graven.signing")


@dataclass(eq=False)
class _Request:
    items: Sequence[Prepared]
    indices: list[int] | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class Sequencer:
    """Appends to one store; signs a checkpoint at most every ``checkpoint_interval`` seconds."""

    store: Store
    origin: str
    signer: Signer | None = None
    checkpoint_interval: float = 1.0
    monotonic: Callable[[], float] = time.monotonic
    on_signed: Callable[[StoredCheckpoint], None] | None = None
    on_committed: Callable[[int], None] | None = None
    prepare_captured: Callable[[list[Any]], list[Prepared]] | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition, init=False)
    _queue: list[_Request] = field(default_factory=list, init=False)
    _writing: bool = field(default=False, init=False)
    _last_signed: float = field(default=float("-inf"), init=False)

    def append(self, items: Sequence[Prepared]) -> list[int]:
        """Append entries all-or-nothing; returns their indices once durably committed."""
        if not items:
            return []
        request = _Request(items)
        with self._cond:
            self._queue.append(request)
        while True:
            with self._cond:
                while not request.done and self._writing:
                    self._cond.wait()
                if request.done:
                    return _result(request)
                self._writing = True
                batch = self._take_batch()
            try:
                self._write(batch)
            finally:
                with self._cond:
                    self._writing = False
                    self._cond.notify_all()

    def _take_batch(self) -> list[_Request]:
        batch: list[_Request] = []
        count = 0
        while self._queue and (not batch or count + len(self._queue[0].items) <= MAX_BATCH):
            request = self._queue.pop(0)
            batch.append(request)
            count += len(request.items)
        return batch

    def _write(self, batch: list[_Request]) -> None:
        try:
            with self.store.write() as tx:
                results, signed, _ = self._integrate(tx, [item for r in batch for item in r.items])
        except BaseException as exc:
            for request in batch:
                request.error, request.done = exc, True
            if not isinstance(exc, Exception):
                raise
            return
        position = 0
        for request in batch:
            request.indices = results[position : position + len(request.items)]
            position += len(request.items)
            request.done = True
        self._after_commit(signed, max(results) + 1 if results else None)

    def _after_commit(self, signed: StoredCheckpoint | None, size: int | None) -> None:
        """Tell the hooks about a commit; MUST NOT raise (the commit stands whatever they do)."""
        try:
            if signed is not None and self.on_signed is not None:
                self.on_signed(signed)
            if size is not None and self.on_committed is not None:
                self.on_committed(size)
        except Exception as exc:
            log.error("graven: a hook after a commit failed (the commit stands): %s: %s", type(exc).__name__, exc)

    def integrate_captured(self) -> int:
        """Move every event captured by the engine into the log now; returns how many."""
        moved = 0
        while True:
            with self.store.write() as tx:
                _, signed, grown = self._integrate(tx, [])
            self._after_commit(signed, self.store.size() if grown and signed is None else None)
            moved += grown
            if grown < MAX_BATCH:
                return moved

    def _integrate(self, tx: WriteTx, items: Sequence[Prepared]) -> tuple[list[int], StoredCheckpoint | None, int]:
        """Append ``items`` (after any captured events) in ``tx``: their indices, a new checkpoint
        and how many captured events were taken.

        Everything this needs from the store before writing is read by one ``tx.head`` call, after
        the head lock, so it sees the previous writer's commit.
        """
        ids = [item.id for item in items]
        head = tx.head(ids, MAX_BATCH if self.prepare_captured is not None else 0)
        existing = head.existing
        if head.captured and self.prepare_captured is not None:
            # Captured changes happened before this batch was handed over: they go first.
            extra = self.prepare_captured(head.captured)
            extra_ids = [item.id for item in extra]
            existing = {**existing, **tx.existing_ids(extra_ids)}
            items, ids = [*extra, *items], [*extra_ids, *ids]
        else:
            extra = []
        indices, signed = self._integrate_items(tx, head, existing, ids, items)
        return indices[len(extra) :], signed, len(head.captured)

    def _integrate_items(
        self, tx: WriteTx, head: Head, existing: dict[str, int], ids: list[str], items: Sequence[Prepared]
    ) -> tuple[list[int], StoredCheckpoint | None]:
        size = head.size
        signed: StoredCheckpoint | None = None
        existing = dict(existing)
        indices: list[int] = []
        new: list[Prepared] = []
        for ident, item in zip(ids, items, strict=True):
            known = existing.get(ident)
            if known is None:
                known = existing[ident] = size + len(new)
                new.append(item)
            indices.append(known)
        if new:
            nodes = merkle.frontier_nodes(size)
            hashes = head.frontier
            if any(n not in hashes for n in nodes):
                raise IntegrityError(
                    f"the stored tree is missing hashes needed to append at size {size}; run `graven verify`"
                )
            appended = merkle.append(size, [hashes[n] for n in nodes], [item.leaf_hash for item in new])
            tx.insert(size, new, appended.rows)
            now = self.monotonic()
            if self.signer is not None and now - self._last_signed >= self.checkpoint_interval:
                signed = self._sign(tx, size + len(new), appended.root)
                self._last_signed = now
        return indices, signed

    def checkpoint(self) -> StoredCheckpoint | None:
        """Sign a checkpoint of the current tree unless the latest one already covers it."""
        if self.signer is None:
            return None
        with self.store.write() as tx:
            size = tx.size()
            latest = tx.latest_checkpoint()
            if latest is not None and latest.size == size:
                return latest
            nodes = merkle.root_nodes(size)
            hashes = tx.tree_hashes(nodes)
            if len(hashes) != len(nodes):
                raise IntegrityError(f"the stored tree is missing hashes of the tree of size {size}")
            stored = self._sign(tx, size, merkle.root_from(size, hashes))
            self._last_signed = self.monotonic()
        self._after_commit(stored, None)
        return stored

    def _sign(self, tx: WriteTx, size: int, root: bytes) -> StoredCheckpoint:
        assert self.signer is not None
        latest = tx.latest_checkpoint()
        if latest is not None:
            try:
                previous, _ = open_checkpoint(latest.note, [self.signer.verifier()])
            except NoteError as exc:
                raise IntegrityError(
                    f"refusing to sign: the latest stored checkpoint (size {latest.size}) is not signed "
                    f"by this log's key ({exc}); run `graven verify`"
                ) from exc
            if previous.size > size:
                raise IntegrityError(
                    f"refusing to sign: the tree has {size} leaves but a checkpoint of size "
                    f"{previous.size} was signed; the log was truncated"
                )
            nodes = merkle.consistency_nodes(previous.size, size)
            proof = merkle.consistency_proof(previous.size, size, tx.tree_hashes(nodes))
            if not merkle.verify_consistency(previous.size, size, previous.root_hash, root, proof):
                raise IntegrityError(
                    f"refusing to sign: the tree of size {size} is not consistent with the signed "
                    f"checkpoint of size {previous.size}; run `graven verify`"
                )
        note = sign_checkpoint(Checkpoint(self.origin, size, root), self.signer)
        stored = StoredCheckpoint(size, note)
        tx.insert_checkpoint(stored)
        return stored


def _result(request: _Request) -> list[int]:
    if request.error is not None:
        raise request.error
    assert request.indices is not None
    return request.indices
