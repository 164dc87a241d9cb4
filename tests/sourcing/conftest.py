"""Fixtures of the event-sourcing tests: one log per test on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import graven
from graven.trail import Trail


@dataclass(frozen=True)
class Log:
    """Where a test's log lives: its URL and the signing key beside it."""

    url: str
    key: Path

    def open(self) -> Trail:
        return graven.open(self.url, signing_key=self.key, create=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Log:
    """A fresh, initialised log on each backend."""
    url = str(tmp_path / "trail.db") if request.param == "sqlite" else request.getfixturevalue("pg").schema_url("src")
    key = tmp_path / "signing.key"
    graven.init(url, signing_key=key).close()
    return Log(url, key)


@pytest.fixture
def trail(log: Log) -> Iterator[Trail]:
    with log.open() as t:
        yield t
