"""A persistence module for the ``eventsourcing`` library (9.x): an application's events in a Graven log.

    PERSISTENCE_MODULE=graven.eventsourcing
    GRAVEN_DB=sqlite:///bank.db          # or postgresql://...; default .graven/trail.db
    GRAVEN_SIGNING_KEY=bank.key          # default .graven/signing.key (created with a new log)

Each setting may be prefixed with the application's name, as the library's own are
(``BANKACCOUNTS_GRAVEN_DB``). ``CREATE_TABLE=no`` refuses to create a log that does not exist.
Every stored event, snapshot and tracking record becomes one entry of the log (see
:mod:`graven.eventsourcing._entries`), so the application gains tamper evidence, proofs and
verification with no change to its domain code. Entries name the actor of the surrounding
``graven`` context (``trail.context(actor=...)`` or :func:`graven.capture.context.scope`), else
the service ``<application name>``.

MUST NOT be shared by two applications of one name in one log: the tracking records of an
application are kept per application name.
"""

from __future__ import annotations

from typing import TypeVar

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InfrastructureFactory,
    InfrastructureFactoryError,
    ProcessRecorder,
)
from eventsourcing.utils import Environment, EnvType, resolve_topic, strtobool

from graven.errors import GravenError
from graven.eventsourcing._entries import EVENTS, SNAPSHOTS
from graven.eventsourcing._recorders import (
    GravenAggregateRecorder,
    GravenApplicationRecorder,
    GravenProcessRecorder,
    GravenRecorder,
    GravenSubscription,
    GravenTrackingRecorder,
)
from graven.opening import open_trail
from graven.trail import Trail

R = TypeVar("R", bound=GravenRecorder)

__all__ = [
    "Factory",
    "GravenAggregateRecorder",
    "GravenApplicationRecorder",
    "GravenProcessRecorder",
    "GravenSubscription",
    "GravenTrackingRecorder",
]


class Factory(InfrastructureFactory[GravenTrackingRecorder]):
    """Builds the recorders of one application on one open log (closed by :meth:`close`)."""

    GRAVEN_DB = "GRAVEN_DB"
    GRAVEN_SIGNING_KEY = "GRAVEN_SIGNING_KEY"
    CREATE_TABLE = "CREATE_TABLE"

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        create = strtobool(self.env.get(self.CREATE_TABLE, "yes") or "yes")
        try:
            self.trail: Trail = open_trail(
                self.env.get(self.GRAVEN_DB) or None,
                signing_key=self.env.get(self.GRAVEN_SIGNING_KEY) or None,
                create=bool(create),
            )
        except GravenError as exc:
            keys = ", ".join(self.env.create_keys(self.GRAVEN_DB))
            raise InfrastructureFactoryError(f"cannot open the Graven log (settings {keys}): {exc}") from exc

    @property
    def application(self) -> str:
        return self.env.name

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        kind = SNAPSHOTS if purpose == "snapshots" else EVENTS
        return GravenAggregateRecorder(self.trail, self.application, kind)

    def application_recorder(self) -> ApplicationRecorder:
        cls = self._topic(self.APPLICATION_RECORDER_TOPIC, GravenApplicationRecorder)
        return cls(self.trail, self.application)

    def tracking_recorder(
        self, tracking_recorder_class: type[GravenTrackingRecorder] | None = None
    ) -> GravenTrackingRecorder:
        cls = tracking_recorder_class or self._topic(self.TRACKING_RECORDER_TOPIC, GravenTrackingRecorder)
        return cls(self.trail, self.application)

    def process_recorder(self) -> ProcessRecorder:
        cls = self._topic(self.PROCESS_RECORDER_TOPIC, GravenProcessRecorder)
        return cls(self.trail, self.application)

    def _topic(self, setting: str, default: type[R]) -> type[R]:
        """The recorder class a ``*_RECORDER_TOPIC`` setting names (a subclass of ``default``), else ``default``."""
        topic = self.env.get(setting)
        if not topic:
            return default
        cls = resolve_topic(topic)
        if not (isinstance(cls, type) and issubclass(cls, default)):
            raise InfrastructureFactoryError(f"{setting} must name a subclass of {default.__name__}; got {topic!r}")
        return cls

    def close(self) -> None:
        self.trail.close()
