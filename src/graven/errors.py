"""The project's one error hierarchy.

Every message says what was wrong and, where it helps, what to do about it. Driver errors are
translated into these at the storage boundary so callers never see sqlite3 or psycopg exceptions.
"""

from __future__ import annotations

from typing import Any


class GravenError(Exception):
    """Base class of every error Graven raises on purpose."""


class ValidationError(GravenError, ValueError):
    """An event was rejected before anything was written.

    ``field`` is a dotted path (``actor.type``, ``changes[1].old``), ``rule`` says what the field must
    satisfy and ``given`` is a short description of the value that broke it.
    """

    def __init__(self, field: str, rule: str, given: Any = ...) -> None:
        self.field = field
        self.rule = rule
        self.value = given
        if given is ...:  # nothing to show: the field is absent or the rule is about its shape
            self.given = ""
            super().__init__(f"{field}: {rule}")
            return
        self.given = given if isinstance(given, str) and given.startswith("<") else _show(given)
        super().__init__(f"{field}: {rule}; got {self.given}")


class ConfigError(GravenError):
    """A URL, path, key or option cannot be used as given."""


class StoreError(GravenError):
    """The storage engine refused or failed an operation (locked, unreachable, read-only, ...)."""


class ImmutableError(StoreError):
    """Something tried to change or remove a stored entry, tree hash or checkpoint."""


class NotFoundError(GravenError, LookupError):
    """A requested index, entry or checkpoint does not exist."""


class IntegrityError(GravenError):
    """The stored log contradicts its own hashes or signed checkpoints; refusing to go on."""


class RollbackRefused(IntegrityError):
    """The log is smaller than, or inconsistent with, a checkpoint kept outside the database (the
    kept copy beside the signing key, or one a witness cosigned): it was rolled back, truncated or
    forked, and the writer refuses to append or sign anything until it is restored."""


class IdempotencyConflict(ValidationError):
    """An event reused the id of another event: the same id with other content is refused.

    ``event_id`` is the id, ``index`` the index of the event that holds it (None when that event
    came earlier in the same batch, so nothing holds it yet), ``fields`` the fields that differ,
    and ``position`` the refused event's place in the batch it came in.
    """

    def __init__(self, event_id: str, index: int | None, fields: list[str], position: int = 0) -> None:
        self.event_id = event_id
        self.index = index
        self.fields = list(fields)
        self.position = position
        first = f"entry {index}" if index is not None else "an earlier event of the same batch"
        super().__init__(
            "id",
            f"already names another event ({first}); a repeat must carry the same content, but "
            f"{', '.join(self.fields)} differ{'s' if len(self.fields) == 1 else ''}; nothing of the batch was recorded",
            event_id,
        )


class ConflictError(GravenError):
    """An append to an aggregate stream expected a version the stream no longer has (a concurrent
    writer got there first). Nothing of the batch it came in was appended.

    ``stream`` is ``(type, id)``, ``expected`` the version the append was based on, ``actual`` the
    stream's version in the log, ``position`` the refused event's place in its batch.
    """

    def __init__(self, stream: tuple[str, str], expected: int, actual: int, position: int = 0) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        self.position = position
        super().__init__(
            f"stream {stream[0]}:{stream[1]}: expected version {expected}, but the log holds version {actual}; "
            "nothing was appended (reload the aggregate and retry the command)"
        )


def _show(value: Any, limit: int = 80) -> str:
    """A short, printable description of a rejected value."""
    text = repr(value) if isinstance(value, str | bool | int | float | None) else f"{type(value).__name__} {value!r}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
