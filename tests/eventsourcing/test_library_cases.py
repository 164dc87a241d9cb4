"""The eventsourcing library's own recorder test cases, run against graven.eventsourcing.

Each case class ships inside the library (eventsourcing.tests.persistence and .application); here
each is subclassed once per backend, on a fresh log: a SQLite file, or a fresh schema on the real
PostgreSQL server. (The example application's case is reached through its module, so that pytest
does not also collect the library's class itself, which would run on the library's default backend.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    ProcessRecorder,
    TrackingRecorder,
)
from eventsourcing.tests import application as library_application
from eventsourcing.tests.persistence import (
    AggregateRecorderTestCase,
    ApplicationRecorderTestCase,
    InfrastructureFactoryTestCase,
    NonInterleavingNotificationIDsBaseCase,
    ProcessRecorderTestCase,
    TrackingRecorderTestCase,
)
from eventsourcing.utils import Environment

from graven.eventsourcing import (
    Factory,
    GravenAggregateRecorder,
    GravenApplicationRecorder,
    GravenProcessRecorder,
    GravenTrackingRecorder,
)
from tests.pgserver import Server


class MyTrackingRecorder(GravenTrackingRecorder):
    """A subclass, as an application's own view would be (the factory must build it when named)."""


class OnSQLite:
    """A fresh SQLite log per test, and a factory on it closed after the test."""

    settings: dict[str, str]

    @pytest.fixture(autouse=True)
    def _log(self, tmp_path: Path) -> None:
        self.settings = {"GRAVEN_DB": str(tmp_path / "es.db"), "GRAVEN_SIGNING_KEY": str(tmp_path / "es.key")}

    def factory(self) -> Factory:
        factory = Factory(Environment(env=dict(self.settings)))
        self.addCleanup(factory.close)  # type: ignore[attr-defined]
        return factory


class OnPostgres(OnSQLite):
    """A fresh schema of the session's PostgreSQL database per test."""

    @pytest.fixture(autouse=True)
    def _log(self, tmp_path: Path, pg: Server) -> None:
        self.settings = {"GRAVEN_DB": pg.schema_url("es"), "GRAVEN_SIGNING_KEY": str(tmp_path / "es.key")}


# --- SQLite ----------------------------------------------------------------------------------


class TestAggregateRecorderSQLite(OnSQLite, AggregateRecorderTestCase):
    def create_recorder(self) -> AggregateRecorder:
        return self.factory().aggregate_recorder()


class TestSnapshotRecorderSQLite(OnSQLite, AggregateRecorderTestCase):
    def create_recorder(self) -> AggregateRecorder:
        return self.factory().aggregate_recorder("snapshots")


class TestApplicationRecorderSQLite(OnSQLite, ApplicationRecorderTestCase[ApplicationRecorder]):
    def create_recorder(self) -> ApplicationRecorder:
        return self.factory().application_recorder()

    def test_insert_subscribe(self) -> None:
        """The library's optional subscription case holds too."""
        self.optional_test_insert_subscribe()


class TestNonInterleavingSQLite(OnSQLite, NonInterleavingNotificationIDsBaseCase):
    def create_recorder(self) -> ApplicationRecorder:
        return self.factory().application_recorder()


class TestTrackingRecorderSQLite(OnSQLite, TrackingRecorderTestCase):
    def create_recorder(self) -> TrackingRecorder:
        return self.factory().tracking_recorder()


class TestProcessRecorderSQLite(OnSQLite, ProcessRecorderTestCase):
    def create_recorder(self) -> ProcessRecorder:
        return self.factory().process_recorder()


class TestInfrastructureFactorySQLite(OnSQLite, InfrastructureFactoryTestCase[Factory]):
    def setUp(self) -> None:
        self.env = Environment(env={"PERSISTENCE_MODULE": "graven.eventsourcing", **self.settings})
        super().setUp()

    def expected_factory_class(self) -> type[Factory]:
        return Factory

    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        return GravenAggregateRecorder

    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        return GravenApplicationRecorder

    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        return GravenTrackingRecorder

    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        return MyTrackingRecorder

    def expected_process_recorder_class(self) -> type[ProcessRecorder]:
        return GravenProcessRecorder


class TestExampleApplicationSQLite(OnSQLite, library_application.ExampleApplicationTestCase):
    expected_factory_topic = "graven.eventsourcing:Factory"

    def setUp(self) -> None:
        self.saved: dict[str, Any] = {k: os.environ.get(k) for k in ("PERSISTENCE_MODULE", *self.settings)}
        os.environ.update({"PERSISTENCE_MODULE": "graven.eventsourcing", **self.settings})
        super().setUp()

    def tearDown(self) -> None:
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        super().tearDown()


# --- PostgreSQL ------------------------------------------------------------------------------


class TestAggregateRecorderPostgres(OnPostgres, TestAggregateRecorderSQLite):
    pass


class TestSnapshotRecorderPostgres(OnPostgres, TestSnapshotRecorderSQLite):
    pass


class TestApplicationRecorderPostgres(OnPostgres, TestApplicationRecorderSQLite):
    pass


class TestNonInterleavingPostgres(OnPostgres, TestNonInterleavingSQLite):
    pass


class TestTrackingRecorderPostgres(OnPostgres, TestTrackingRecorderSQLite):
    pass


class TestProcessRecorderPostgres(OnPostgres, TestProcessRecorderSQLite):
    pass


class TestInfrastructureFactoryPostgres(OnPostgres, TestInfrastructureFactorySQLite):
    pass


class TestExampleApplicationPostgres(OnPostgres, TestExampleApplicationSQLite):
    pass
