"""Shared fixtures: real SQLite files in a temporary folder, fixed clocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import graven
from graven.trail import Trail
from tests.pgserver import Server, server_session
from tests.server.server_harness import serve_log, served  # noqa: F401 (fixtures of the HTTP service tests)


@pytest.fixture(scope="session")
def pg() -> Iterator[Server]:
    """The session's database on the real PostgreSQL server."""
    yield from server_session()


@pytest.fixture(autouse=True)
def _live_server_helper() -> None:
    """Switch off pytest-django's helper (active once tests/django configures Django): the web tests'
    own ``live_server`` fixture needs no Django database; tests/django starts its own server."""


@pytest.fixture
def trail(tmp_path: Path) -> Iterator[Trail]:
    """A fresh log on a real SQLite file, with its signing key beside it."""
    with graven.init(tmp_path / "trail.db", signing_key=tmp_path / "signing.key") as t:
        yield t
