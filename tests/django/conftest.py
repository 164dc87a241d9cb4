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


def aliases() -> list[Any]:
    """The databases the tracking tests run on: SQLite always, PostgreSQL when the server answers (on CI it must)."""
    out: list[Any] = ["default"]
    if "pg" in django_settings.DATABASES:
        out.append(pytest.param("pg", marks=pytest.mark.django_db(transaction=True, databases=["default", "pg"])))
    elif os.environ.get("CI") == "true":
        out.append(pytest.param("pg", marks=pytest.mark.skip(reason="no PostgreSQL server")))
    return out


@pytest.fixture
def log(tmp_path: Path, settings: Any) -> Iterator[Path]:
    """A fresh trail for the test, named in GRAVEN (the app opens it on first use)."""
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
