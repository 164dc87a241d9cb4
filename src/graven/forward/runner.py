"""The delivery loop: read the log page by page after the sink's cursor, send, then move the cursor.

Rules, each one a MUST:

* Order: batches go out in index order, one at a time; a batch is never sent before the one
  before it was acknowledged.
* At least once: the cursor moves (one committed transaction, with the batch's dead letters) only
  after the sink acknowledged the batch. A crash at any moment loses nothing and re-sends at most
  the one batch that was not acknowledged yet.
* Failures: a receiver that is down, slow or answers garbage raises :class:`Retry`; the same
  batch is retried after an exponential backoff with jitter, capped at ``retry_max_seconds``.
  A permanent refusal becomes a dead letter with the receiver's reason and delivery goes on.
* Proofs: with ``proofs`` on (the default) a batch only covers entries inside a signed
  checkpoint (one is signed when the forwarder holds the signing key) and carries the proof
  record of :mod:`graven.forward.proofs`.
* Stopping: :meth:`Forwarder.run` returns once ``stop`` is set and the batch in flight is done.
"""

from __future__ import annotations

import contextlib
import random
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import orjson

from graven.core import merkle
from graven.errors import ConfigError, GravenError, IntegrityError
from graven.forward import proofs
from graven.forward.config import SinkConfig
from graven.forward.cursor import Cursor, Cursors
from graven.forward.formats import encoder
from graven.forward.sinks import Batch, Record, Sink, make_sink
from graven.store import Query
from graven.trail import Trail

BACKOFF_BASE = 0.1


def backoff(attempt: int, cap: float, rand: Callable[[], float] = random.random, base: float = BACKOFF_BASE) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): half of ``min(cap, base * 2**(attempt-1))``
    plus a random part of the other half, so that many forwarders do not retry in step."""
    ceiling = min(cap, base * float(2 ** min(attempt - 1, 60)))
    return ceiling / 2 + rand() * ceiling / 2


class Forwarder:
    """One sink fed from one log. ``step()`` delivers one batch; ``run()`` loops until stopped."""

    def __init__(
        self,
        trail: Trail,
        config: SinkConfig,
        cursors: Cursors,
        *,
        sink: Sink | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.trail = trail
        self.config = config
        self.name = config.name
        self.cursors = cursors
        self.sink = sink if sink is not None else make_sink(config)
        options = config.options
        self.encode = encoder(config.format, app_name=str(options.get("app_name", "graven")),
                              hostname=str(options.get("hostname", "-")))  # fmt: skip
        self.on_error = on_error
        self._helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"forward-{config.name}-read")
        self._ready: tuple[Batch, int] | None = None
        self.attempt = 0
        self.delivered = 0

    def open(self) -> None:
        """Check the sink can work (secrets, receiver reachable); ConfigError otherwise."""
        self.sink.open()

    def close(self) -> None:
        self._helper.shutdown(wait=True)
        self.sink.close()

    def _checkpoint_for(self, position: int, end: int) -> tuple[int, str] | None:
        """A signed checkpoint of size >= ``end`` if there is one (signing it if we can), else the
        newest one above ``position``; None when no entry after the cursor is signed yet."""
        store = self.trail.store
        latest = store.latest_checkpoint()
        if (latest is None or latest.size < end) and self.trail.signer is not None and not self.trail.write_refusal:
            self.trail.checkpoint()
            latest = store.latest_checkpoint()
        if latest is None or latest.size <= position:
            return None
        return latest.size, latest.note

    def _prepare(self, position: int, proof_size: int) -> tuple[Batch, int] | None:
        """The batch starting at ``position`` and the checkpoint size it carries (None: nothing to send)."""
        store = self.trail.store
        size = store.size()
        if position >= size:
            return None
        end = min(position + self.config.batch, size)
        signed: tuple[int, str] | None = None
        if self.config.proofs:
            signed = self._checkpoint_for(position, end)
            if signed is None:
                return None
            end = min(end, signed[0])
        rows = store.query(Query(after=position - 1, limit=end - position))
        if [i for i, _ in rows] != list(range(position, position + len(rows))) or len(rows) != end - position:
            raise IntegrityError(
                f"the log has a gap after index {position}: run `graven verify`; forwarder {self.name} stops"
            )
        encode = self.encode
        records = []
        for index, body in rows:
            leaf = merkle.leaf_hash(body)
            records.append(Record(index, body, leaf, encode(index, body, leaf)))
        proof = None
        if signed is not None:
            proof = self._proof(position, end, signed, proof_size)
            proof_size = signed[0]
        return Batch(position, end, records, proof, None if proof is None else orjson.dumps(proof)), proof_size

    def step(self) -> int:
        """Deliver the next batch, if any; returns how many entries were acknowledged.

        While the sink works on a batch (an fsync, a round trip) the next one is read and encoded
        in a helper thread; it is sent only after this one was acknowledged and the cursor moved.
        Raises :class:`Retry` when the sink did not acknowledge (the cursor stays).
        """
        cursor = self.cursors.get(self.name)
        ready, self._ready = self._ready, None
        if ready is None or ready[0].first != cursor.position:
            ready = self._prepare(cursor.position, cursor.proof_size)
        if ready is None:
            self.sink.tick()
            return 0
        batch, proof_size = ready
        upcoming = self._helper.submit(self._prepare, batch.end, proof_size)
        try:
            refused = self.sink.send(batch)
            self.cursors.advance(self.name, batch.end, proof_size, refused.entries)
        finally:
            try:
                following = upcoming.result()
            except GravenError:
                following = None  # met again, and raised, when its turn comes
        self._ready = following
        self.delivered += batch.end - batch.first
        return batch.end - batch.first

    def _proof(self, first: int, end: int, signed: tuple[int, str], proof_size: int) -> dict[str, Any]:
        size, note = signed
        nodes = merkle.frontier_nodes(first)
        _, found = self.trail.store.tree_hashes(nodes)
        if len(found) != len(nodes):
            raise IntegrityError(f"the log lacks tree hashes below index {first}: run `graven verify`")
        previous = proof_size if 0 < proof_size <= size else 0
        return proofs.proof_record(
            first=first, end=end, tree_size=size, checkpoint=note, frontier=[found[n] for n in nodes],
            prefix_proof=self.trail.consistency(end, size), previous_size=previous,
            consistency=self.trail.consistency(previous, size) if 0 < previous < size else [],
        )  # fmt: skip

    def run(self, stop: threading.Event, *, poll: float = 0.2) -> None:
        """Deliver until ``stop`` is set; the batch in flight is finished first.

        A receiver's failure, the database out of reach, or an unexpected error in a sink is
        retried with backoff (and kept as the last error); a damaged log (IntegrityError) or a
        configuration that stopped working (ConfigError) ends the loop by raising.
        """
        while not stop.is_set():
            try:
                if self.step() == 0:
                    stop.wait(poll)
                self.attempt = 0
            except (IntegrityError, ConfigError):
                raise
            except Exception as exc:  # Retry, StoreError, and whatever else a sink may raise
                self.attempt += 1
                message = str(exc) if isinstance(exc, GravenError) else f"{type(exc).__name__}: {exc}"
                with contextlib.suppress(GravenError):  # the database out of reach: the message still goes out
                    self.cursors.fail(self.name, message)
                if self.on_error is not None:
                    self.on_error(f"forwarder {self.name}: {message} (retry {self.attempt})")
                stop.wait(backoff(self.attempt, self.config.retry_max_seconds))


def guarded(
    forwarder: Forwarder, stop: threading.Event, failures: list[str], poll: float = 0.2,
    report: Callable[[str], None] | None = None,
) -> None:  # fmt: skip
    """``forwarder.run`` for a thread: an error that ends it is kept in ``failures`` as one line (and
    given to ``report``) and stops the others too, instead of a thread dying with a traceback."""
    try:
        forwarder.run(stop, poll=poll)
    except GravenError as exc:
        line = f"forwarder {forwarder.name} stopped: {exc}"
        failures.append(line)
        if report is not None:
            report(line)
        stop.set()


def status(trail: Trail, cursors: Cursors, configs: dict[str, SinkConfig]) -> list[dict[str, Any]]:
    """Per forwarder: cursor, lag in entries and seconds, last error, dead letters."""
    size = trail.store.size()
    known = {c.sink: c for c in cursors.all()}
    now = datetime.now(UTC)
    out = []
    for name, config in configs.items():
        cursor = known.get(name, Cursor(name))
        lag_seconds = 0.0
        if cursor.position < size:
            body = trail.store.entry(cursor.position)
            try:
                recorded = orjson.loads(body or b"{}").get("recorded_at")
                lag_seconds = max(0.0, (now - datetime.fromisoformat(recorded)).total_seconds())
            except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
                lag_seconds = 0.0
        out.append({
            "name": name, "sink": config.sink, "format": config.format, "position": cursor.position,
            "log_size": size, "lag_entries": max(0, size - cursor.position), "lag_seconds": round(lag_seconds, 3),
            "proof_size": cursor.proof_size, "delivered_at": cursor.delivered_at, "last_error": cursor.last_error,
            "error_at": cursor.error_at, "dead_letters": cursor.dead,
        })  # fmt: skip
    return out


def configured_status(trail: Trail, path: str | None = None) -> list[dict[str, Any]]:
    """:func:`status` of every forwarder in the configuration file (``graven.toml`` or ``$GRAVEN_CONFIG``)."""
    from graven.forward import config as forward_config

    configs = forward_config.load(path)
    cursors = Cursors(trail.store)
    try:
        return status(trail, cursors, configs)
    finally:
        cursors.close()


class Background:
    """Forwarders running in threads of another process (``graven serve --forward NAME``).

    Every sink is opened (and so checked) before any thread starts; :meth:`stop` lets each finish
    its batch in flight, then closes the sinks, the cursors and the trail it was given.
    """

    def __init__(self, trail: Trail, configs: list[SinkConfig], on_error: Callable[[str], None] | None = None) -> None:
        self.trail = trail
        self.cursors = Cursors(trail.store)
        self.forwarders: list[Forwarder] = []
        self.stop_event = threading.Event()
        try:
            for config in configs:
                forwarder = Forwarder(trail, config, self.cursors, on_error=on_error)
                forwarder.open()
                self.forwarders.append(forwarder)
        except BaseException:
            self._close()
            raise
        self.failures: list[str] = []
        self.threads = [
            threading.Thread(target=guarded, args=(f, self.stop_event, self.failures, 0.2, on_error),
                             name=f"forward-{f.name}", daemon=True)
            for f in self.forwarders
        ]  # fmt: skip
        for thread in self.threads:
            thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout)
        self._close()

    def _close(self) -> None:
        for forwarder in self.forwarders:
            forwarder.close()
        self.cursors.close()
        self.trail.close()


def start_named(open_trail: Callable[[], Trail], names: Sequence[str], path: str | None = None) -> Background | None:
    """Start the named forwarders of the configuration file in background threads (None if no names)."""
    if not names:
        return None
    from graven.forward import config as forward_config

    configs = [forward_config.get(name, path) for name in names]
    from graven.render import visible

    return Background(
        open_trail(), configs, on_error=lambda message: print(visible(f"graven: {message}"), file=sys.stderr)
    )


__all__ = ["Background", "Forwarder", "backoff", "configured_status", "guarded", "start_named", "status"]
