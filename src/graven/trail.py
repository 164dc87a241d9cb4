"""The façade: one object to record, read, prove and verify a log.

``record()`` and ``record_many()`` validate every event before anything is written, then return
indices only after the entries are durably committed. Reads return :class:`Entry` objects built
from the stored bytes, which are the leaves themselves.

With a signing key, every entry is covered by a signed checkpoint within ``checkpoint_interval``
seconds (a background signer signs the tail a burst leaves), and each checkpoint is kept in the
checkpoint file beside the key. Until then an operator who can write the database could rewrite
the entry undetected; ``durable="signed"`` returns only once a kept checkpoint covers it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import orjson

from graven import context
from graven.action import Action, Denied, audited
from graven.archive import ARCHIVE_ACTION, check_archives, vouched_below
from graven.checkpoint_file import CheckpointFile, kept_size
from graven.core import audit, audit_stream, merkle
from graven.core.bundle import make_bundle, make_state_bundle
from graven.core.ids import uuid7
from graven.core.key_history import KeyHistory, Trust, trusted_verifiers, unannounced
from graven.core.model import Entry, Prepared, change_dict, event_from, nfc, parse_time, prepare
from graven.core.note import Signer, Verifier
from graven.core.redaction import RedactionPolicy
from graven.core.shredding import PREFIX, PersonalData, open_entry, seal_event
from graven.core.state import TargetState, as_of_time, just_after, replay
from graven.cosigned_file import kept_notes
from graven.errors import ConfigError, GravenError, IdempotencyConflict, IntegrityError, NotFoundError, ValidationError
from graven.keys import current_stored_key, load_trust, load_verifier  # noqa: F401 (graven.trail.load_verifier, as before)
from graven.lineage import KeptCheckpoints, archived_notes
from graven.sequencer import Sequencer
from graven.signing import BackgroundSigner, SigningStatus, disabled_status
from graven.store import Query, Store, StoredCheckpoint
from graven.subject_keys import SubjectKeys, check_subject

DEFAULT_POLICY = RedactionPolicy()
_CHANGE_KEYS = frozenset({"field", "old", "new", "redacted", "fingerprint"})
MAX_PAGE = 10_000
MAX_INDEX = 2**63 - 1  # the largest index any store can hold
Durable = Literal["committed", "signed"]
ID_CONFLICT_ACTION = "event.id_conflict"
# Who writes through this thread or task (the HTTP service: the credential), for refusals it records.
_writer: ContextVar[Mapping[str, Any] | None] = ContextVar("graven_writer", default=None)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of query results; pass ``next_cursor`` as ``after`` (or ``before``) for the next."""

    entries: list[Entry]
    next_cursor: int | None

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


class Trail:
    """An open log. Safe to share between threads; close it (or use ``with``) when done."""

    def __init__(
        self,
        store: Store,
        *,
        signer: Signer | None = None,
        witness: CheckpointFile | None = None,
        clock: Callable[[], datetime] | None = None,
        new_id: Callable[[], str] = uuid7,
        checkpoint_interval: float = 1.0,
        denied: tuple[type[BaseException], ...] = (),
        redaction: RedactionPolicy | None = DEFAULT_POLICY,
        personal: PersonalData | None = None,
        subject_keys: SubjectKeys | None = None,
        key_history: KeyHistory | None = None,
        co_signers: Sequence[tuple[Signer, int]] = (),
    ) -> None:
        if personal is not None and subject_keys is None:
            raise ConfigError("declaring personal fields needs a subject key store (subject_keys=SubjectKeys(path))")
        self.store = store
        self.redaction = redaction
        self.personal = personal
        self.subject_keys = subject_keys
        self._sealed = PREFIX.encode()
        self.denied_types: tuple[type[BaseException], ...] = (Denied, *denied)
        settings = store.settings()
        self.origin = settings["origin"]
        self.signer = signer
        self.key_history = key_history  # the log's keys after a rotation (see graven.rotation)
        self.witness = witness
        self._clock = clock or (lambda: datetime.now(UTC))
        self._new_id = new_id
        self._sequencer = Sequencer(
            store, self.origin, signer, checkpoint_interval,
            on_signed=self._push_witness, prepare_captured=self._prepare_captured,
            captured_conflict=self._captured_conflict,
        )  # fmt: skip
        self._signing = BackgroundSigner(self._sequencer, witness, checkpoint_interval) if signer else None
        if self._signing is not None:
            self._sequencer.on_committed = self._signing.committed
        if key_history is not None:
            self._sequencer.known_keys = key_history.verifiers
            self._sequencer.co_signers = list(co_signers)
        self._stored_key = current_stored_key(settings)
        self._hold_writer_to_kept(witness, subject_keys)
        self._appended = False
        self.trusted_signer: Signer | None = None  # trusted for verification only (see open_trail)
        self.write_refusal: str | None = None
        self.witnesses: tuple[str, ...] = ()
        self.pusher: Any = None  # a graven.witnessing.pusher.Pusher, attached by graven.witnessing.attach
        self._signed_hooks: list[Callable[[StoredCheckpoint], None]] = []
        self._close_hooks: list[Callable[[], None]] = []

    # --- writing -----------------------------------------------------------------------------

    def prepare(self, event: Any = None, /, **fields: Any) -> Prepared:
        """Validate one event, completed from the current context, without writing it."""
        # context.apply copies the event, so a plain dict needs no copy of its own first
        plain = type(event) is dict and not fields
        return self._make(self._shaped(event if plain else event_from(event, **fields)), self._clock())

    def record(self, event: Any = None, /, *, durable: Durable = "committed", **fields: Any) -> int:
        """Record one event (a dict, an Event, or keyword arguments); returns its index once durable.

        ``durable="committed"`` (the default) returns once the entry is committed; it is covered by
        a signed checkpoint within ``checkpoint_interval``. ``durable="signed"`` returns only once a
        signed checkpoint covering it is kept beside the key (raising :class:`graven.signing.NotYetSigned`,
        entry committed, if that takes longer than 30 s).
        """
        self._check_durable(durable)
        return self._append([self.prepare(event, **fields)], durable)[0]

    def record_many(self, events: Iterable[Any], *, durable: Durable = "committed") -> list[int]:
        """Record a batch all-or-nothing: if any event is invalid, none is written (``durable``: see :meth:`record`)."""
        self._check_durable(durable)
        now = self._clock()
        prepared = []
        for i, event in enumerate(events):
            try:
                # context.apply copies the event, so a plain dict needs no copy of its own first
                shaped = self._shaped(event if type(event) is dict else event_from(event))
                prepared.append(self._make(shaped, now))
            except ValidationError as exc:
                raise ValidationError(f"events[{i}].{exc.field}", exc.rule, exc.value) from None
        return self._append(prepared, durable)

    def _check_durable(self, durable: str) -> None:
        """``durable`` is checked before anything is written."""
        if durable not in ("committed", "signed"):
            raise ValidationError("durable", "must be committed or signed", durable)
        if durable == "signed" and self._signing is None:
            raise ConfigError(
                'durable="signed" needs the log\'s signing key; pass signing_key= or set GRAVEN_SIGNING_KEY'
            )

    def _shaped(self, event: dict[str, Any]) -> dict[str, Any]:
        """An event completed from the context, with secrets redacted: what every path records."""
        return self._redacted(context.apply(event))

    def _make(self, event: dict[str, Any], now: datetime) -> Prepared:
        """Validate ``event``; then seal its personal values (validated again, sealed) when declared."""
        prepared = prepare(event, now=now, new_id=self._new_id)
        if self.personal is None or self.subject_keys is None:
            return prepared
        doc = {k: v for k, v in prepared.doc.items() if k != "recorded_at"}
        sealed = seal_event(doc, self.personal, self.subject_keys.key_for)
        return prepared if sealed == doc else prepare(sealed, now=now, new_id=self._new_id)

    def _redacted(self, event: dict[str, Any]) -> dict[str, Any]:
        """Secrets never reach the log: redaction runs before validation and hashing, on every path."""
        policy = self.redaction
        if policy is None:
            return event
        changes = event.get("changes")
        if changes:
            items = [c if type(c) is dict or isinstance(c, Mapping) else change_dict(c) for c in _as_list(changes)]
            # A malformed change is left for validation to name precisely (nothing is written then).
            event["changes"] = policy.changes(items) if all(map(_well_formed, items)) else items
        for key in ("context", "metadata"):
            value = event.get(key)
            if value is not None and (type(value) is dict or isinstance(value, Mapping)):
                event[key] = policy.mapping(value)
        return event

    async def arecord(self, event: Any = None, /, *, durable: Durable = "committed", **fields: Any) -> int:
        """:meth:`record` without blocking the event loop (the write runs in a worker thread)."""
        self._check_durable(durable)
        prepared = self.prepare(event, **fields)  # here, so the task's context applies
        indices = await asyncio.to_thread(self._append, [prepared], durable)
        return indices[0]

    async def arecord_many(self, events: Iterable[Any], *, durable: Durable = "committed") -> list[int]:
        """:meth:`record_many` without blocking the event loop."""
        self._check_durable(durable)
        events = [context.apply(event_from(e)) for e in events]  # the task's context, applied here
        return await asyncio.to_thread(self.record_many, events, durable=durable)

    # --- capture from the application -----------------------------------------------------------

    def context(self, **fields: Any) -> AbstractContextManager[Mapping[str, Any]]:
        """``with trail.context(actor=..., ip=..., user_agent=..., request_id=..., source=..., reason=...):``

        Entries recorded inside (in this thread or asyncio task and what it starts) carry these
        fields unless they state their own. Nested scopes add to the enclosing one.
        """
        return context.scope(**fields)

    def action(self, name: str, **fields: Any) -> Action:
        """``with trail.action("file.delete", target=("file", file_id)) as a:``: exactly one entry,
        ``success``, ``denied`` (``Denied``, a configured type, or ``a.deny(reason)``) or ``failure``."""
        return Action(self, name, **fields)

    def audited(self, name: str, **fields: Any) -> Callable[[Any], Any]:
        """Decorator: every call of the function is one :meth:`action` (sync or async)."""
        return audited(self, name, **fields)

    def is_denial(self, exc: BaseException) -> bool:
        """Whether an exception means "not allowed" (recorded as denied rather than failure)."""
        return isinstance(exc, self.denied_types)

    def login_attempt(self, user: Any, *, ok: bool, reason: str | None = None, **fields: Any) -> int:
        """Record a sign-in attempt, failed ones included (``ok=False`` is a ``failure``, and the
        request's refusal that follows is not recorded a second time)."""
        actor = context.actor_of(user) or {}
        target = {"type": "user", "id": actor.get("id") or "unknown"}
        event = {"action": "session.login", "actor": actor, "targets": [target],
                 "outcome": "success" if ok else "failure", **fields}  # fmt: skip
        if reason is not None:
            event["reason"] = reason
        index = self.record(event)
        if not ok:
            context.note_denied()  # the request's 401/403 is this attempt: not recorded again as http.request
        return index

    def integrate(self) -> int:
        """Move events captured by database triggers into the log now; returns how many."""
        if self.write_refusal is not None:
            raise ConfigError(self.write_refusal)
        moved = self._sequencer.integrate_captured()
        self._appended = self._appended or moved > 0
        return moved

    def _prepare_captured(self, events: list[Any]) -> list[Prepared]:
        """Captured events as entries (one clock reading for the batch); an event that breaks a
        rule is kept as a ``capture.invalid`` entry saying why, so one bad row never blocks the rest."""
        now = self._clock()
        out = []
        for event in events:
            shaped = self._redacted(_safe_numbers(event)) if isinstance(event, dict) else event
            try:
                out.append(self._make(shaped, now))
            except ValidationError as exc:
                out.append(
                    prepare(_invalid_capture(shaped, exc, self.personal is not None), now=now, new_id=self._new_id)
                )
        return out

    def _captured_conflict(self, refused: Prepared, index: int | None, fields: list[str]) -> Prepared:
        """What goes into the log in place of a captured event (``capture_record``) whose id another
        event holds: its ``event.id_conflict`` entry, by the refused event's actor."""
        actor = {k: v for k, v in refused.doc["actor"].items() if k in ("type", "id")}
        event = _conflict_event(refused.id, index, fields, actor)
        event["source"] = "db"
        return prepare(event, now=self._clock(), new_id=self._new_id)

    def _append(self, prepared: list[Prepared], durable: Durable = "committed") -> list[int]:
        if self.write_refusal is not None:
            raise ConfigError(self.write_refusal)
        self._appended = True
        try:
            indices = self._sequencer.append(prepared)
        except IdempotencyConflict as exc:
            self._record_conflict(exc, prepared[exc.position])
            raise
        if durable == "signed" and self._signing is not None and indices:
            self._signing.wait_covered(indices)
        return indices

    def _hold_writer_to_kept(self, witness: CheckpointFile | None, subject_keys: SubjectKeys | None) -> None:
        """Hooks of the sequencer: the checkpoints kept beside the key (a writer refuses to append
        to or sign a log smaller than or inconsistent with them) and the opening of sealed values
        (a repeated id is compared with its values opened)."""
        verifier = self.signer.verifier() if self.signer is not None else None
        if verifier is None and self._stored_key:
            verifier = Verifier.from_text(self._stored_key)
        if witness is not None and verifier is not None:
            keys = [verifier, *(self.key_history.verifiers if self.key_history is not None else [])]
            self._sequencer.kept = KeptCheckpoints(witness.path, keys)
        if subject_keys is not None:
            self._sequencer.open_sealed = lambda doc: open_entry(doc, subject_keys.lookup)

    def set_co_signers(self, co_signers: Sequence[tuple[Signer, int]]) -> None:
        """Keys that sign every new checkpoint of a size below their bound beside the signing key
        (a key rotation: see :mod:`graven.rotation`)."""
        self._sequencer.co_signers = list(co_signers)

    @property
    def co_signers(self) -> list[tuple[Signer, int]]:
        return list(self._sequencer.co_signers)

    @contextmanager
    def writing_as(self, actor: Mapping[str, Any]) -> Iterator[None]:
        """Name who writes in this block (the HTTP service: the credential's actor), for the
        refusals the log records about what they sent. The events themselves are not changed."""
        token = _writer.set(actor)
        try:
            yield
        finally:
            _writer.reset(token)

    def _record_conflict(self, conflict: IdempotencyConflict, refused: Prepared) -> None:
        """Record a refused id reuse as its own ``event.id_conflict`` entry (after the refused batch,
        in its own transaction): the id, the index holding it and the names of the fields that
        differ, nothing of the refused content. The actor is the writer: the one named by
        :meth:`writing_as`, else the context's actor, else the refused event's (type and id)."""
        actor = _writer.get() or context.current().get("actor")
        if actor is None:
            actor = {k: v for k, v in refused.doc["actor"].items() if k in ("type", "id")}
        event = _conflict_event(conflict.event_id, conflict.index, conflict.fields, dict(actor))
        try:
            self._sequencer.append([self._make(self._shaped(event), self._clock())])
        except GravenError as exc:
            conflict.add_note(f"the refusal could not be recorded: {exc}")

    def checkpoint(self) -> str:
        """Sign a checkpoint of the current tree (unless one exists), keep it, and return its note text.

        A failure to keep it (beside the key) does not raise: see :meth:`signing_status`.
        """
        if self._signing is None:
            raise ConfigError(
                "this log was opened without its signing key; pass signing_key= or set GRAVEN_SIGNING_KEY"
            )
        stored = self._signing.sign_now()
        assert stored is not None
        return stored.note

    def signing_status(self) -> SigningStatus:
        """Whether signing and keeping checkpoints keep up in this process, and if not, why and since when."""
        if self._signing is None:
            return disabled_status(self._sequencer.checkpoint_interval)
        return self._signing.status()

    def kept_warning(self) -> str | None:
        """A warning when the checkpoint kept beside the key is missing or behind the newest signed one."""
        if self.witness is None:
            return None
        latest = self.store.latest_checkpoint()
        if latest is None:
            return None
        try:
            note = self.witness.read()
        except ConfigError as exc:
            return f"the kept checkpoint cannot be read ({exc}): only the database vouches for the log"
        size = kept_size(note)
        if note is None:
            return (
                f"no checkpoint is kept in {self.witness.path}: the newest signed checkpoint (size "
                f"{latest.size}) is only in the database, which cannot vouch for itself"
            )
        if size < latest.size:
            first = max(size, 0)
            which = f"entry {first} is" if first == latest.size - 1 else f"entries {first}..{latest.size - 1} are"
            return (
                f"the checkpoint kept in {self.witness.path} (size {size}) is behind the newest signed one "
                f"(size {latest.size}): {which} vouched for by the database alone"
            )
        return None

    def _latest_size(self) -> int:
        latest = self.store.latest_checkpoint()
        return -1 if latest is None else latest.size

    def on_signed(self, hook: Callable[[StoredCheckpoint], None]) -> None:
        """Call ``hook`` after each checkpoint is committed. It MUST NOT block (no I/O on the write path)."""
        self._signed_hooks.append(hook)

    def on_close(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` when the trail closes, after its final checkpoint and before its store closes."""
        self._close_hooks.append(hook)

    def _push_witness(self, checkpoint: StoredCheckpoint) -> None:
        """After a checkpoint is committed: the signer keeps it, the hooks (the witness pusher) hear of it."""
        if self._signing is not None:
            self._signing.signed(checkpoint)
        for hook in self._signed_hooks:
            hook(checkpoint)

    # --- reading -----------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """The number of entries in the log."""
        return self.store.size()

    def get(self, index: int) -> Entry:
        """The entry at ``index``."""
        return self._entry(index, self._stored(index))

    def _stored(self, index: int) -> bytes:
        """The stored bytes (the leaf) of entry ``index``; the index is checked."""
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= MAX_INDEX:
            raise ValidationError("index", f"must be an integer from 0 to {MAX_INDEX}", index)
        body = self.store.entry(index)
        if body is None and index < self.store.archived_below():
            raise NotFoundError(f"entry {index} was archived and pruned from the live log: find it in the archive")
        if body is None:
            raise NotFoundError(f"no entry {index}: the log has {self.size} entries (0..{self.size - 1})")
        return body

    def _document(self, index: int, body: bytes) -> dict[str, Any]:
        """An entry's fields as stored (sealed values opened), without an :class:`Entry` around them."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if type(data) is not dict:
            return self._entry(index, body).data  # raises, naming the entry
        if self.subject_keys is not None and self._sealed in body:
            return open_entry(data, self.subject_keys.lookup)
        return data

    def _entry(self, index: int, body: bytes) -> Entry:
        """The entry as stored, with sealed personal values opened (or read as erased)."""
        entry = _entry(index, body)
        if self.subject_keys is not None and self._sealed in body:
            return Entry(index, open_entry(entry.data, self.subject_keys.lookup))
        return entry

    def query(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: tuple[str, str] | str | None = None,
        target_type: str | None = None,
        outcome: str | None = None,
        source: str | None = None,
        tenant: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        text: str | None = None,
        after: int | None = None,
        before: int | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> Page:
        """Entries matching every filter given, in index order, one page at a time."""
        if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise ValidationError("limit", f"must be between 1 and {MAX_PAGE}", limit)
        for name, cursor in (("after", after), ("before", before)):
            if cursor is not None and (not isinstance(cursor, int) or not -1 <= cursor <= MAX_INDEX):
                raise ValidationError(name, f"must be an entry index (an integer from 0 to {MAX_INDEX})", cursor)
        if outcome is not None and outcome not in ("success", "denied", "failure"):
            raise ValidationError("outcome", "must be one of success, denied, failure", outcome)
        # Identifiers are stored in NFC: a query for either spelling of a name finds it.
        actor, target_type, tenant = (None if v is None else nfc(v) for v in (actor, target_type, tenant))
        q = Query(
            actor=actor, action=action, target=parse_target(target) if target is not None else None,
            target_type=target_type, outcome=outcome, source=source, tenant=tenant,
            since=parse_time(since, "since") if since is not None else None,
            until=parse_time(until, "until") if until is not None else None,
            text=text, after=after, before=before, limit=limit, newest_first=newest_first,
        )  # fmt: skip
        rows = self.store.query(q)
        entries = [self._entry(idx, body) for idx, body in rows]
        if q.target is not None or q.target_type is not None:
            # Target rows are an index kept beside the entries; the entry itself has the last word.
            entries = [e for e in entries if _names_target(e, q.target, q.target_type)]
        return Page(entries, rows[-1][0] if len(rows) == limit else None)

    def history(self, target: tuple[str, str] | str, *, limit: int = MAX_PAGE) -> list[Entry]:
        """Everything done to one target, oldest first (all of it, read page by page)."""
        out: list[Entry] = []
        after: int | None = None
        while True:
            page = self.query(target=target, after=after, limit=min(limit, MAX_PAGE))
            out += page.entries
            if page.next_cursor is None or len(out) >= limit:
                return out[:limit]
            after = page.next_cursor

    def state(
        self, target: tuple[str, str] | str, *, as_of: datetime | str | None = None, at_index: int | None = None
    ) -> TargetState:
        """A target's fields as of a moment (``occurred_at`` at or before ``as_of``; text without an
        offset is UTC) and/or up to entry ``at_index``, replayed from the changes its entries
        recorded, whatever captured them (see :mod:`graven.core.state`); the latest state without either."""
        key = parse_target(target)
        moment = None if as_of is None else as_of_time(as_of)
        if at_index is not None and (not isinstance(at_index, int) or not 0 <= at_index <= MAX_INDEX):
            raise ValidationError("at_index", f"must be an entry index (an integer from 0 to {MAX_INDEX})", at_index)
        before = None if at_index is None else at_index + 1
        until = None if moment is None else just_after(moment)  # the store skips what came later
        docs: list[tuple[int, dict[str, Any]]] = []
        after: int | None = None
        while True:  # the store's rows parsed once (replay checks the target itself)
            rows = self.store.query(Query(target=key, after=after, before=before, until=until, limit=MAX_PAGE))
            docs += [(i, self._document(i, body)) for i, body in rows]
            if len(rows) < MAX_PAGE:
                return replay(key, docs, as_of=moment, at_index=at_index)
            after = rows[-1][0]

    # --- forgetting ---------------------------------------------------------------------------

    def forget(self, subject: str, *, reason: str | None = None, actor: Any = None) -> int:
        """Destroy ``subject``'s keys, so its sealed personal values read as erased; returns the entry index.

        The forgetting is itself recorded (``subject.forget``, target the subject; the actor is
        ``actor`` or the context's). Entries are not
        touched: every leaf still covers its ciphertext, so verification keeps passing.
        """
        check_subject(subject)
        if self.subject_keys is None:
            raise ConfigError("no subject key store: open the log with a subject key store (--subject-keys)")
        if self.write_refusal:
            raise ConfigError(self.write_refusal)
        event: dict[str, Any] = {"action": "subject.forget", "targets": [parse_target(subject)]}
        if reason is not None:
            event["reason"] = reason
        if actor is not None:
            event["actor"] = context.actor_of(actor)
        self.prepare({**event, "metadata": {"keys_destroyed": 0}})  # a bad actor or reason fails before any key goes
        try:
            destroyed = self.subject_keys.destroy(subject)
        except Exception as exc:
            self.record({**event, "outcome": "failure", "metadata": {"error": type(exc).__name__}})
            raise
        return self.record({**event, "metadata": {"keys_destroyed": destroyed}})

    # --- proving -----------------------------------------------------------------------------

    def prove(self, index: int) -> dict[str, Any]:
        """An offline bundle: the entry as stored (sealed values stay sealed), its proof and a checkpoint."""
        entry = _entry(index, self._stored(index))
        latest = self.store.latest_checkpoint()
        if latest is None or latest.size <= index:
            self.checkpoint()
            latest = self.store.latest_checkpoint()
            assert latest is not None
        size = latest.size
        nodes = merkle.inclusion_nodes(index, size)
        _, hashes = self.store.tree_hashes(nodes)
        proof = merkle.inclusion_proof(index, size, hashes)
        return make_bundle(entry.to_json(), size, proof, latest.note)

    def prove_state(
        self, target: tuple[str, str] | str, *, as_of: datetime | str | None = None, at_index: int | None = None
    ) -> dict[str, Any]:
        """An offline bundle of a target's state (see :func:`graven.core.bundle.verify_state_bundle`):
        the entries it replays, as stored, each with its inclusion proof in one signed checkpoint."""
        opened = self.state(target, as_of=as_of, at_index=at_index)
        stored = [_entry(i, self._stored(i)) for i in opened.indices]
        state = replay(opened.target, [(e.index, e.data) for e in stored], as_of=opened.as_of, at_index=at_index)
        latest = self.store.latest_checkpoint()
        if stored and (latest is None or latest.size <= stored[-1].index):
            self.checkpoint()
            latest = self.store.latest_checkpoint()
        if latest is None:
            raise ConfigError("the log has no signed checkpoint to prove against; open it with its signing key")
        proofs = []
        for entry in stored:
            nodes = merkle.inclusion_nodes(entry.index, latest.size)
            _, hashes = self.store.tree_hashes(nodes)
            proofs.append((entry.to_json(), merkle.inclusion_proof(entry.index, latest.size, hashes)))
        return make_state_bundle(state.to_json(), proofs, latest.size, latest.note)

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        """The RFC 9162 consistency proof between two tree sizes."""
        size = self.size
        if not 0 <= old_size <= new_size <= size:
            raise ValidationError(
                "new_size", f"sizes must satisfy 0 <= old <= new <= {size}", f"{old_size}, {new_size}"
            )
        nodes = merkle.consistency_nodes(old_size, new_size)
        _, hashes = self.store.tree_hashes(nodes)
        return merkle.consistency_proof(old_size, new_size, hashes)

    @property
    def verifier_key(self) -> str:
        """The public key that checks this log's checkpoints (signed-note verifier text form)."""
        if self.signer is not None:
            return self.signer.verifier().to_text()
        if self._stored_key:
            return self._stored_key
        raise ConfigError("this log has no verifier key on record")

    def latest_checkpoint(self) -> str | None:
        """The newest signed checkpoint note, if any."""
        latest = self.store.latest_checkpoint()
        return None if latest is None else latest.note

    # --- verifying ---------------------------------------------------------------------------

    def verify(
        self,
        key: str | Path | Verifier | Trust | None = None,
        *,
        progress: Callable[[int], None] | None = None,
        witnessed: Sequence[str] = (),
        archives: Sequence[str | Path] = (),
        deep: bool = False,
    ) -> audit.Report:
        """Check every entry, the tree, every checkpoint and the witnessed checkpoints.

        ``deep`` also checks the engine's structures around the entries (indexes and append-only
        triggers as a new log has them, and the engine's own index checks; see
        :meth:`graven.store.Store.structure_problems`), each finding reported as kind ``structure``.

        Trust comes from ``key`` (a verifier key, or a key history after rotations) when given;
        otherwise from the key history beside the signing key (a log that rotated its key); otherwise
        from this log's signing key; as a last resort from the verifier key recorded in the database
        (which an attacker could replace too).
        Witnessed checkpoints are the copy kept beside the key, the cosigned ones kept there, and
        ``witnessed`` (e.g. fetched from witnesses). ``progress`` is called with entries hashed so far.
        Entries pruned after archiving are checked by their stored hashes; ``archives`` (folders, see
        :mod:`graven.archive`) are checked too, each against its signed checkpoint and this log.
        """
        trusted = self._trusted(key)
        kept: list[str] = []
        if self.witness is not None and (note := self.witness.read()) is not None:
            kept.append(note)
        if self.witness is not None:
            kept += archived_notes(self.witness.path)  # earlier lineages (see graven.lineage)
        witnessed = list(dict.fromkeys([*kept, *kept_notes(self.witness), *witnessed]))
        restores = self._restores()
        archived = self._archived_below()
        derived: list[int | None] = []

        def check_derived() -> None:
            try:
                derived.append(self.store.derived_mismatch())
            except GravenError:
                derived.append(None)  # a dropped table is reported by the scan below

        checker = threading.Thread(target=check_derived)
        checker.start()
        try:
            with self.store.scan() as scan:
                signed = [(c.size, c.note) for c in scan.checkpoints()]
                # One pass; where the rows disagree (or entries were pruned after archiving), the
                # whole log is read again (same snapshot) to locate and classify the damage.
                streamed = None if archived else audit_stream.verify_stream(
                    scan.entries(), scan.tiles(), signed, trusted, witnessed=witnessed,
                    progress=progress, restores=restores,
                )  # fmt: skip
                report = streamed if streamed is not None else audit.verify_log(
                    scan.entries(), scan.tiles(), signed, trusted, witnessed=witnessed,
                    progress=progress, restores=restores, archived_below=archived,
                )  # fmt: skip
        except IntegrityError as exc:
            checker.join()
            damaged = audit.Problem(0, "modified", f"{str(exc)[0].upper()}{str(exc)[1:]}: nothing can be checked.")
            keys = tuple(v.to_text() for v in trusted_verifiers(trusted))
            return audit.Report(size=0, entries=0, checkpoints=0, problems=[damaged], trusted_keys=keys)
        finally:
            checker.join()
        if derived and derived[0] is not None:
            report.problems.append(audit.derived_problem(derived[0]))
        if isinstance(trusted, KeyHistory):
            for index, message in unannounced(trusted, self.store.entry):
                report.problems.append(audit.Problem(index, "key-history", message, 1))
        for folder in archives:
            report.problems.extend(check_archives(self, folder, trusted_verifiers(trusted)))
        if deep:
            for finding in self.store.structure_problems():
                message = f"The log's storage was altered around the entries: {finding}."
                # No entry is wrong: reported at the log's size, after any finding about entries.
                report.problems.append(audit.Problem(report.size, "structure", message, 3))
        return report

    def _archived_below(self) -> int:
        """The archived boundary, as far as ``log.archive`` entries in the log vouch for it."""
        try:
            marked = self.store.archived_below()
            if not marked:
                return 0
            return min(marked, vouched_below(self.store.query(Query(action=ARCHIVE_ACTION, limit=MAX_PAGE))))
        except GravenError:
            return 0  # a damaged store is reported by the scan

    def _restores(self) -> list[tuple[int, bytes]]:
        """The stored ``log.restore`` entries (verification checks each against its leaf)."""
        try:
            return self.store.query(Query(action=audit.RESTORE_ACTION, limit=MAX_PAGE))
        except GravenError:
            return []  # a damaged store is reported by the scan

    def _trusted(self, key: str | Path | Verifier | Trust | None) -> Trust:
        """A key or key history given; else the history beside the signing key; else its key."""
        if key is not None:
            return load_trust(key)
        if self.key_history is not None:
            return self.key_history
        signer = self.signer or self.trusted_signer
        if signer is not None:
            return [signer.verifier()]
        if self._stored_key:
            return [Verifier.from_text(self._stored_key)]
        raise ConfigError("no verifier key: pass --key (the log's public key)")

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the background signer, sign a final checkpoint if this trail appended since the last
        one and keep it, then close the store."""
        try:
            if self._signing is not None:
                self._signing.close(self._appended and self.store.size() != self._latest_size())
        finally:
            for hook in self._close_hooks:
                hook()  # e.g. the last checkpoint reaches the witnesses before the store closes
            self.store.close()
            if self.subject_keys is not None:
                self.subject_keys.close()

    def __enter__(self) -> Trail:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _conflict_event(event_id: str, index: int | None, fields: list[str], actor: dict[str, Any]) -> dict[str, Any]:
    """The ``event.id_conflict`` entry of a refused id reuse: the id, the index holding it and the
    names of the fields that differ, nothing of the refused content."""
    first = "an earlier event of the same batch" if index is None else f"entry {index}"
    return {
        "action": ID_CONFLICT_ACTION, "actor": actor, "outcome": "denied",
        "targets": [{"type": "event", "id": event_id}],
        "reason": f"the event id is held by {first}; a repeat with other content ({', '.join(fields)}) was refused",
        "metadata": {"event_id": event_id, "first_index": index, "differing_fields": fields},
    }  # fmt: skip


def _invalid_capture(event: Any, error: ValidationError, personal: bool) -> dict[str, Any]:
    """The ``capture.invalid`` entry kept for a captured event that broke a rule: why, and the
    event as redacted (with personal data declared, its values are left out: only field names)."""
    if personal and isinstance(event, dict):
        changes = event.get("changes")
        kept = {k: v for k, v in event.items() if k not in ("changes", "context", "metadata")}
        kept["changed_fields"] = (
            [c.get("field") for c in changes if isinstance(c, dict)] if isinstance(changes, list) else []
        )
        event = kept
    return {
        "action": "capture.invalid",
        "actor": {"type": "system", "id": "graven"},
        "outcome": "failure",
        "reason": f"a captured change could not be recorded as given: {error}"[:4000],
        "source": "db",
        "metadata": {"captured": orjson.dumps(event, default=str).decode()[:60_000]},
    }


def _well_formed(change: Any) -> bool:
    """A change redaction can read: a mapping of change keys with a text ``field``."""
    if type(change) is dict:
        return isinstance(change.get("field"), str) and change.keys() <= _CHANGE_KEYS
    return isinstance(change, Mapping) and isinstance(change.get("field"), str) and not (change.keys() - _CHANGE_KEYS)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    raise ValidationError("changes", "must be a list of {field, old, new} objects", value)


def _safe_numbers(value: Any) -> Any:
    """Integers beyond what JSON numbers carry exactly (bigint ids) become text, as ids are.

    A captured event is a freshly parsed dict: when it holds no such integer (almost always, as
    orjson's 53-bit check finds in a quarter of a microsecond) it is returned as it is, a tenth of
    the cost of walking and copying it.
    """
    if type(value) is dict:
        try:
            orjson.dumps(value, option=orjson.OPT_STRICT_INTEGER)
            return value
        except orjson.JSONEncodeError:  # an integer beyond +-(2**53 - 1), or not plain JSON
            pass
    return _safe_copy(value)


def _safe_copy(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not -(2**53 - 1) <= value <= 2**53 - 1:
        return str(value)
    if isinstance(value, dict):
        return {k: _safe_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_safe_copy(v) for v in value]
    return value


def _names_target(entry: Entry, target: tuple[str, str] | None, target_type: str | None) -> bool:
    for t in entry.data["targets"]:
        if (target is None or (t["type"], t["id"]) == target) and (target_type is None or t["type"] == target_type):
            return True
    return False


def _entry(index: int, body: bytes) -> Entry:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise IntegrityError(
            f"entry {index} is not a JSON object as stored: the log was tampered with; run `graven verify`"
        )
    return Entry(index, data)


def parse_target(value: tuple[str, str] | list[str] | str) -> tuple[str, str]:
    """A target as ``(type, id)`` or ``"type:id"``, in NFC as identifiers are stored (nothing else is
    refused: the HTTP service checks its parameters with ``identifier``)."""
    if isinstance(value, str):
        kind, sep, ident = value.partition(":")
        if not sep or not kind or not ident:
            raise ValidationError("target", "must be type:id, such as customer:c-1042", value)
    elif isinstance(value, tuple | list) and len(value) == 2 and all(isinstance(v, str | int) for v in value):
        kind, ident = str(value[0]), str(value[1])
    else:
        raise ValidationError("target", "must be (type, id) or type:id", value)
    return nfc(kind), nfc(ident)


__all__ = ["MAX_INDEX", "MAX_PAGE", "Page", "Trail", "parse_target"]
