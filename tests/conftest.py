"""Shared fixtures: real SQLite files in a temporary folder, fixed clocks; every entry the suite
prepares is checked against the published JSON Schema of entry v1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
import pytest

import graven
from graven.core import model, schema
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


_OFF_SCHEMA: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def _entries_follow_the_schema() -> Iterator[None]:
    """Every entry the suite prepares (so every entry it stores, on any backend) is validated
    against the published JSON Schema of entry v1; a test that made one off the schema fails."""
    validator = jsonschema_rs.validator_for(schema.entry_json_schema())
    finish = model._finish

    def checked(doc: dict[str, Any], flags: Any) -> model.Prepared:
        prepared = finish(doc, flags)
        error = next(iter(validator.iter_errors(orjson.loads(prepared.leaf))), None)
        if error is not None:
            _OFF_SCHEMA.append(f"{prepared.leaf[:300]!r}: {error.message} at {list(error.instance_path)}")
        return prepared

    model._finish = checked
    yield
    model._finish = finish


@pytest.fixture(autouse=True)
def _no_entry_off_schema(_entries_follow_the_schema: None) -> Iterator[None]:
    yield
    found = list(_OFF_SCHEMA)
    _OFF_SCHEMA.clear()
    assert not found, f"entries that do not validate against entry-v1.json: {found[:3]}"


@pytest.fixture
def trail(tmp_path: Path) -> Iterator[Trail]:
    """A fresh log on a real SQLite file, with its signing key beside it."""
    with graven.init(tmp_path / "trail.db", signing_key=tmp_path / "signing.key") as t:
        yield t
