"""The sequencer: gapless indices, Merkle integration and checkpoint signing, with group commit.

Callers in many threads hand over validated entries; whoever finds no write in progress becomes the
leader, takes everything queued so far and writes it as one transaction; the others wait for that
commit or lead the next one. Several processes are serialised by the store's write lock, and each
transaction learns the head inside the lock (``tx.head``: read again, or, where the store can prove
that nobody else committed since its own last commit, known), so indices stay gapless. (A store may
instead guess the head, from its own last commit, and check the guess under the lock in the
statement that writes: a wrong guess writes nothing and raises :class:`graven.store.HeadMoved`, and
the batch is written again, the head read this time.)

MUST NOT return an index before the transaction that stored it has committed durably.
MUST NOT sign a checkpoint for a tree that is inconsistent with the latest signed checkpoint.
MUST NOT report a committed append as failed: what runs after the commit (the ``on_signed`` and
``on_committed`` hooks) cannot fail it; their errors are logged.
MUST NOT append to, or sign, a tree smaller than or inconsistent with the newest checkpoint kept
outside the database (``kept``: the copy beside the signing key and the witnesses' cosigned ones),
which a database rolled back to an older copy cannot roll back with it.
A repeated event id with the same content returns the index it was first given and appends
nothing; with other content the request is refused (:class:`IdempotencyConflict`) and nothing of
it is appended, while the other callers' events of the same group commit are written.

A write signs a checkpoint in its own transaction only when ``checkpoint_interval`` has passed
since the last one; the tail a burst leaves unsigned is the trail's background signer's to cover
(:mod:`graven.signing`), which learns of it through ``on_committed``.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

from graven.core import merkle
from graven.core.idempotency import differing_fields
from graven.core.model import Prepared
from graven.core.note import Checkpoint, NoteError, Signer, Verifier, open_checkpoint, sign_note
from graven.core.streams import stream_of
from graven.errors import ConflictError, IdempotencyConflict, IntegrityError, RollbackRefused
from graven.store import Head, HeadMoved, Store, StoredCheckpoint, WriteTx

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
    captured_conflict: Callable[[Prepared, int | None, list[str]], Prepared] | None = None
    """The entry written in place of a captured event whose id another event holds with other
    content (index held, or None for an earlier captured event; the differing fields)."""
    kept: Callable[[], KeptCheckpoint | None] | None = None
    open_sealed: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    co_signers: list[tuple[Signer, int]] = field(default_factory=list)
    """Previous keys still in their overlap after a rotation: each signs checkpoints of sizes below its bound too."""
    known_keys: list[Verifier] = field(default_factory=list)
    """Every key of this log (its key history); the latest checkpoint may be signed by any of them."""
    _cond: threading.Condition = field(default_factory=threading.Condition, init=False)
    _queue: list[_Request] = field(default_factory=list, init=False)
    _writing: bool = field(default=False, init=False)
    _last_signed: float = field(default=float("-inf"), init=False)
    _anchor: KeptCheckpoint | None = field(default=None, init=False)
    _anchor_read: bool = field(default=False, init=False)
    _held: KeptCheckpoint | None = field(default=None, init=False)

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
        items = [item for r in batch for item in r.items]
        try:
            try:
                with self.store.write() as tx:
                    results, signed, _ = self._integrate(tx, items)
            except HeadMoved:
                # The store guessed the head and the guess failed: nothing was written. The store
                # reads the head this time (it MUST NOT guess right after HeadMoved).
                with self.store.write() as tx:
                    results, signed, _ = self._integrate(tx, items)
        except BaseException as exc:
            if isinstance(exc, IdempotencyConflict | ConflictError) and len(batch) > 1:
                self._write_apart(batch, exc)
                return
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

    def _write_apart(self, batch: list[_Request], conflict: IdempotencyConflict | ConflictError) -> None:
        """The request that reused an id fails alone: the others are written first, then it is
        tried by itself (so its error names the index the other event got)."""
        position = conflict.position
        culprit = batch[-1]
        for request in batch:
            if position < len(request.items):
                culprit = request
                break
            position -= len(request.items)
        self._write([r for r in batch if r is not culprit])
        self._write([culprit])

    def integrate_captured(self) -> int:
        """Move every event captured by the engine into the log now; returns how many.

        The cyclic garbage collector is paused while a batch is read, prepared and written: the
        batch's tens of thousands of fresh dicts (none of them cyclic) would otherwise set off
        repeated full collections over everything still alive, a quarter of the client CPU.
        """
        moved = 0
        while True:
            with _collector_paused(), self.store.write() as tx:
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
            if self.captured_conflict is not None:
                extra = self._captured_conflicts(tx, head, existing, extra)
                extra_ids = [item.id for item in extra]
            items, ids = [*extra, *items], [*extra_ids, *ids]
        else:
            extra = []
        indices, signed = self._integrate_items(tx, head, existing, ids, items, checked_from=len(extra))
        return indices[len(extra) :], signed, len(head.captured)

    def _integrate_items(
        self,
        tx: WriteTx,
        head: Head,
        existing: dict[str, int],
        ids: list[str],
        items: Sequence[Prepared],
        checked_from: int = 0,
    ) -> tuple[list[int], StoredCheckpoint | None]:
        """Append the items whose ids are new; repeats from ``checked_from`` on must be the same
        event as the one holding their id (captured events before it are not compared)."""
        size = head.size
        signed: StoredCheckpoint | None = None
        indices: list[int] = []
        new: list[Prepared] = []
        new_at: list[int] = []
        repeats: list[int] = []
        if not existing and len(set(ids)) == len(ids) == len(items):
            # The common case (no id stored yet, none repeated in the batch): all are new, in order.
            new, new_at, indices = list(items), list(range(len(items))), list(range(size, size + len(items)))
        else:
            existing = dict(existing)
            for ident, item in zip(ids, items, strict=True):
                known = existing.get(ident)
                if known is None:
                    known = existing[ident] = size + len(new)
                    new.append(item)
                    new_at.append(len(indices))
                else:
                    repeats.append(len(indices))
                indices.append(known)
        if repeats:
            self._refuse_other_events(tx, head, new, items, indices, [p for p in repeats if p >= checked_from],
                                      checked_from)  # fmt: skip
        if new:
            _check_streams(tx, new, new_at, checked_from)
            self._hold_to_kept(tx, size, "append")
            try:
                frontier = [head.frontier[n] for n in merkle.frontier_nodes(size)]
            except KeyError:
                raise IntegrityError(
                    f"the stored tree is missing hashes needed to append at size {size}; run `graven verify`"
                ) from None
            appended = merkle.append(size, frontier, [item.leaf_hash for item in new])
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
        previous: Checkpoint | None = None
        if latest is not None:
            try:
                previous, _ = open_checkpoint(latest.note, [self.signer.verifier(), *self.known_keys])
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
        self._hold_to_kept(tx, size, "sign", fresh=True, root=root, vouched=previous)
        checkpoint = Checkpoint(self.origin, size, root)
        also = [signer for signer, until in self.co_signers if size < until]
        note = sign_note(checkpoint.to_text(), [self.signer, *also])
        stored = StoredCheckpoint(size, note)
        tx.insert_checkpoint(stored)
        if self.kept is not None:
            # What this writer signs is kept next (on_signed): hold the log to it from now on.
            where = self._anchor.where if self._anchor is not None else "checkpoint this writer signed"
            self._anchor = self._held = KeptCheckpoint(checkpoint, where)
        return stored

    def _refuse_other_events(
        self,
        tx: WriteTx,
        head: Head,
        new: Sequence[Prepared],
        items: Sequence[Prepared],
        indices: Sequence[int],
        repeats: Sequence[int],
        checked_from: int,
    ) -> None:
        """Raise :class:`IdempotencyConflict` for the first repeat that is not the event holding its
        id (stored, or earlier in this batch). Only repeated ids pay for this comparison; stored
        bytes the head read brought along are not read again."""
        if not repeats:
            return
        size = head.size
        stored = _stored_bodies(tx, head, [indices[p] for p in repeats if indices[p] < size])
        for position in repeats:
            index = indices[position]
            first = new[index - size].leaf if index >= size else stored.get(index)
            if first is None:
                raise IntegrityError(f"entry {index} holds an event id but cannot be read; run `graven verify`")
            fields = differing_fields(self._opened(first), self._opened(items[position].leaf))
            if fields:
                held = index if index < size else None
                raise IdempotencyConflict(items[position].id, held, fields, position - checked_from)

    def _captured_conflicts(
        self, tx: WriteTx, head: Head, existing: dict[str, int], extra: list[Prepared]
    ) -> list[Prepared]:
        """Captured events whose id is already held: the same event again is left for the append
        to skip; another event becomes the ``captured_conflict`` entry in its place (nothing of it
        is appended), so a reused id is recorded rather than silently dropped."""
        assert self.captured_conflict is not None
        first_at: dict[str, int] = {}
        stored_at = {
            i: existing[item.id] for i, item in enumerate(extra) if existing.get(item.id, head.size) < head.size
        }
        repeated = [i for i, item in enumerate(extra) if first_at.setdefault(item.id, i) != i and i not in stored_at]
        if not stored_at and not repeated:
            return extra
        bodies = _stored_bodies(tx, head, stored_at.values())
        out = list(extra)
        for position in sorted([*stored_at, *repeated]):
            index = stored_at.get(position)
            first = bodies.get(index) if index is not None else extra[first_at[extra[position].id]].leaf
            if first is None:
                raise IntegrityError(f"entry {index} holds an event id but cannot be read; run `graven verify`")
            fields = differing_fields(self._opened(first), self._opened(extra[position].leaf))
            if fields:
                out[position] = self.captured_conflict(extra[position], index, fields)
        return out

    def _opened(self, leaf: bytes) -> dict[str, Any]:
        doc: dict[str, Any] = orjson.loads(leaf)
        # Sealed personal values carry a fresh nonce each time: they are compared opened.
        return doc if self.open_sealed is None else self.open_sealed(doc)

    def _hold_to_kept(
        self,
        tx: WriteTx,
        size: int,
        verb: str,
        *,
        fresh: bool = False,
        root: bytes | None = None,
        vouched: Checkpoint | None = None,
    ) -> None:
        """Raise :class:`RollbackRefused` unless the stored tree of ``size`` leaves (root ``root``
        when given) extends the newest checkpoint kept outside the database.

        The kept checkpoint is read once, then again only when signing (``fresh``: the reader
        re-reads its files only when they changed) or before refusing; the stored tree is checked
        against it once per kept checkpoint, so the append path costs one comparison.
        """
        if self.kept is None:
            return
        if fresh or not self._anchor_read:
            self._anchor, self._anchor_read = self.kept(), True
        anchor = self._anchor
        if anchor is None:
            return
        cp = anchor.checkpoint
        if cp.size > size:
            if not fresh:
                self._hold_to_kept(tx, size, verb, fresh=True, root=root, vouched=vouched)
                return
            raise _refusal(verb, size, anchor, forked=False)
        if anchor is self._held:
            return
        if vouched is not None and (vouched.size, vouched.root_hash) == (cp.size, cp.root_hash):
            self._held = anchor  # the stored checkpoint just proven consistent is this very one
            return
        if cp.size == 0:
            held = True  # every tree extends the empty one
        elif cp.size == size and root is not None:
            held = root == cp.root_hash
        else:
            nodes = merkle.root_nodes(cp.size)
            hashes = tx.tree_hashes(nodes)
            held = len(hashes) == len(nodes) and merkle.root_from(cp.size, hashes) == cp.root_hash
        if not held:
            if not fresh:
                self._hold_to_kept(tx, size, verb, fresh=True, root=root, vouched=vouched)
                return
            raise _refusal(verb, size, anchor, forked=True)
        self._held = anchor


def _stored_bodies(tx: WriteTx, head: Head, indices: Iterable[int]) -> dict[int, bytes]:
    """The stored bytes of these entries: those the head read brought along, the rest read now."""
    bodies = dict(head.bodies)
    missing = sorted(set(indices) - bodies.keys())
    if missing:
        bodies.update(tx.entry_bodies(missing))
    return bodies


@contextmanager
def _collector_paused() -> Iterator[None]:
    """``gc`` disabled in the block, enabled again after it unless it was disabled before."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _check_streams(tx: WriteTx, new: Sequence[Prepared], at: Sequence[int], checked_from: int) -> None:
    """Raise :class:`ConflictError` for the first new entry of an aggregate stream whose version is
    not one above the stream's version so far (in the log, then in this batch): streams stay gapless."""
    marked = [(pos, at[i]) for i, item in enumerate(new) if (pos := stream_of(item.doc)) is not None]
    if not marked:
        return
    current = tx.stream_versions(sorted({pos.stream for pos, _ in marked}))
    for pos, where in marked:
        have = current.get(pos.stream, 0)
        if pos.version != have + 1:
            raise ConflictError(pos.stream, pos.version - 1, have, where - checked_from)
        current[pos.stream] = pos.version


def _result(request: _Request) -> list[int]:
    if request.error is not None:
        raise request.error
    assert request.indices is not None
    return request.indices


@dataclass(frozen=True, eq=False)
class KeptCheckpoint:
    """The newest checkpoint kept outside the database, its signature checked, and where it is kept."""

    checkpoint: Checkpoint
    where: str


def _refusal(verb: str, size: int, anchor: KeptCheckpoint, forked: bool) -> RollbackRefused:
    cp = anchor.checkpoint
    if forked:
        what = (
            f"the log has {size} entries, but its first {cp.size} do not match the {anchor.where}, "
            f"signed at size {cp.size}: its history was rewritten (forked)"
        )
    else:
        what = (
            f"the log has {size} entries but the {anchor.where} was signed at size {cp.size}: "
            "the database was rolled back or truncated"
        )
    return RollbackRefused(
        f"refusing to {verb}: {what}; restore a newer backup with `graven restore BACKUP`, or accept the "
        "loss with `graven restore BACKUP --accept-loss`"
    )
