"""pytest-django for this folder only: the settings are named here, so the rest of the suite runs without Django."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django.settings")

import django

django.setup()

from django.conf import settings as django_settings  # noqa: E402

from graven.django import conf  # noqa: E402


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> Iterator[None]:
    """Keep the suite's own order: with Django configured, pytest-django would move every test using
    a database or a fixture named ``live_server`` (the web tests' own) to the front, and the web
    tests' session-wide browser would then run ahead of tests that need no running event loop."""
    position = {id(item): i for i, item in enumerate(items)}
    yield
    items.sort(key=lambda item: position.get(id(item), len(position)))


def aliases() -> list[Any]:
    """The databases the tracking tests run on: SQLite always, PostgreSQL when the server answers (on CI it must)."""
    out: list[Any] = ["default"]
    if "pg" in django_settings.DATABASES:
        out.append(pytest.param("pg", marks=pytest.mark.django_db(transaction=True, databases=["default", "pg"])))
    else:  # the log fixture asks the session's pg fixture, which skips here and fails on CI
        out.append("pg")
    return out


@pytest.fixture
def log(tmp_path: Path, settings: Any, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh trail for the test, named in GRAVEN (the app opens it on first use)."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("alias") == "pg" and "pg" not in django_settings.DATABASES:
        request.getfixturevalue("pg")  # no server: says why (a skip, or a failure on CI)
    settings.GRAVEN = {
        **django_settings.GRAVEN, "LOG": str(tmp_path / "trail.db"), "SIGNING_KEY": str(tmp_path / "signing.key"),
    }  # fmt: skip
    yield tmp_path
    conf.reset()


@pytest.fixture
def django_server(transactional_db: Any) -> Iterator[str]:
    """The test project served by Django's live-server thread on a free port (its URL)."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.db import connections
    from django.test.testcases import LiveServerThread

    shared = {c.alias: c for c in connections.all() if c.vendor == "sqlite" and c.is_in_memory_db()}
    for connection in shared.values():
        connection.inc_thread_sharing()
    thread = LiveServerThread("127.0.0.1", StaticFilesHandler, connections_override=shared, port=0)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    try:
        yield f"http://127.0.0.1:{thread.port}"
    finally:
        thread.terminate()
        for connection in shared.values():
            connection.dec_thread_sharing()
