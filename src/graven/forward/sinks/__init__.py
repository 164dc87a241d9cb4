"""Sinks: where a forwarder delivers. Each one turns a :class:`Batch` into the receiver's protocol.

A sink's ``send`` MUST return only once the receiver acknowledged the whole batch (the file is
fsynced, the HTTP receiver answered 2xx, the stream acked); it raises :class:`Retry` for anything
that may work later (the cursor does not move) and returns the entries the receiver refused for
good, with its reason, as dead letters. A receiver's answer that cannot be understood is a
:class:`Retry`, never an acknowledgement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from graven.errors import ConfigError, GravenError
from graven.forward.config import SinkConfig


class Retry(GravenError):
    """The batch was not acknowledged and may be sent again later."""


@dataclass(frozen=True, slots=True)
class Record:
    """One entry as delivered: its index, stored bytes, leaf hash and formatted bytes."""

    index: int
    body: bytes
    leaf_hash: bytes
    line: bytes

    @property
    def entry_id(self) -> str:
        """The entry's id (read from the stored bytes when asked)."""
        return str(orjson.loads(self.body).get("id", ""))


@dataclass(frozen=True, slots=True)
class Batch:
    """Entries ``first .. end - 1`` in order, and the proof that travels with them (or None)."""

    first: int
    end: int
    records: Sequence[Record]
    proof: dict[str, Any] | None = None
    proof_line: bytes | None = None


@dataclass(slots=True)
class Refused:
    """Entries a receiver refused for good: (index, entry id, reason) each."""

    entries: list[tuple[int, str, str]] = field(default_factory=list)


class Sink(Protocol):
    def open(self) -> None:
        """Check the configuration and reach the receiver; ConfigError (one line) when it cannot work."""
        ...

    def send(self, batch: Batch) -> Refused:
        """Deliver a batch and wait for its acknowledgement (see the module's rules)."""
        ...

    def tick(self) -> None:
        """Housekeeping when idle (rotation by time)."""
        ...

    def close(self) -> None: ...


def make_sink(config: SinkConfig) -> Sink:
    """The sink a configuration names (not opened yet)."""
    kind = config.sink
    if kind == "jsonl":
        from graven.forward.sinks.jsonl import JsonlSink

        return JsonlSink(config)
    if kind == "stdout":
        from graven.forward.sinks.stdout import StdoutSink

        return StdoutSink(config)
    if kind == "webhook":
        from graven.forward.sinks.http import WebhookSink

        return WebhookSink(config)
    if kind == "hec":
        from graven.forward.sinks.http import HecSink

        return HecSink(config)
    if kind == "syslog":
        from graven.forward.sinks.syslog import SyslogSink

        return SyslogSink(config)
    if kind == "nats":
        from graven.forward.sinks.nats import NatsSink

        return NatsSink(config)
    raise ConfigError(f"forwarder {config.name}: unknown sink {kind!r}")
